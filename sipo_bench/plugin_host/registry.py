"""Typed registries of plugin-provided classes, filled from the `register_*` hooks.

An entry is a class, an `Objective` instance, or a :class:`Lazy` reference naming
`"package.module:Class"`, imported only when used, so `sipo-bench plugins` never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import PluginError, UsageError, did_you_mean

T = TypeVar("T")


@dataclass(frozen=True)
class Lazy:
    """A registration that imports its target on first use."""

    name: str
    target: str  # "package.module:Class"
    description: str = ""

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise PluginError(f"plugin entry {self.name!r}: cannot import {self.target!r}: {e}") from e
        return obj


@dataclass
class Entry:
    name: str
    value: Any  # class, instance or Lazy
    plugin: str
    description: str = ""


class Registry(Generic[T]):
    """Name -> implementation, with duplicate and base-class checks.

    `kind` is the word used in messages ("method", "task"...); `base` the class every entry
    must subclass (or be an instance of, with `instances=True`).
    """

    def __init__(self, kind: str, base: type, instances: bool = False):
        self.kind = kind
        self.base = base
        self.instances = instances
        self._entries: dict[str, Entry] = {}
        #: appended to unknown-name errors (broken plugins, the allow-list)
        self.hint = ""

    def name_of(self, value: Any, plugin: str) -> str:
        """The name `value` registers under, after checking its type (`PluginError` if wrong)."""
        if isinstance(value, Lazy):
            return value.name
        self._check_type(value, plugin)
        name = getattr(value, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r}: {self.kind} {value!r} has no `name`")
        return name

    def add(self, value: Any, plugin: str) -> None:
        name = self.name_of(value, plugin)
        description = value.description if isinstance(value, Lazy) else (getattr(value, "description", "") or "")
        if name in self._entries:
            other = self._entries[name].plugin
            raise PluginError(f"plugin {plugin!r}: {self.kind} name {name!r} is already registered by plugin {other!r}")
        self._entries[name] = Entry(name, value, plugin, description)

    def remove_plugin(self, plugin: str) -> None:
        """Forget every entry `plugin` registered."""
        self._entries = {n: e for n, e in self._entries.items() if e.plugin != plugin}

    def _check_type(self, value: Any, plugin: str) -> None:
        ok = isinstance(value, self.base) if self.instances else (isinstance(value, type) and issubclass(value, self.base))
        if not ok:
            what = "an instance" if self.instances else "a subclass"
            raise PluginError(f"plugin {plugin!r}: {self.kind} {value!r} is not {what} of {self.base.__module__}.{self.base.__name__}")

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UsageError(did_you_mean(self.kind, name, self.names()) + self.hint)
        entry = self._entries[name]
        if isinstance(entry.value, Lazy):
            value = entry.value.load()
            self._check_type(value, entry.plugin)
            entry.value = value
        return entry.value

    def entry(self, name: str) -> Entry:
        self.get(name)
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
