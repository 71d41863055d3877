"""The plugin manager: built-ins and third-party plugins load through one path.

Sources, in order: the entry-point group `sipo_bench` (built-ins are declared there too), then
loose `*.py` files of `--plugins-dir` (imported as `sipo_bench_local_plugins.<file stem>`, see
`sipo_bench.localplugins`). `SIPO_BENCH_PLUGINS=a,b` restricts loading to the named
entry points / files (an allow-list); unset loads all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs, localplugins
from .errors import PluginError
from .interfaces import Executor, Generator, Method, Objective, Scorer, Task
from .registry import Registry

GROUP = "sipo_bench"
ALLOW_ENV = "SIPO_BENCH_PLUGINS"


@dataclass
class PluginInfo:
    name: str
    version: str
    source: str  # "entry point" | "plugins-dir" | "registered"
    registers: dict[str, list[str]] = field(default_factory=dict)


def _allow_list() -> set[str] | None:
    raw = os.environ.get(ALLOW_ENV, "").strip()
    return {p.strip() for p in raw.split(",") if p.strip()} if raw else None


def get_plugin_manager(plugins_dir: str | Path | None = None, *, load_entry_points: bool = True,
                       extra: list[Any] | None = None) -> pluggy.PluginManager:
    """A fresh plugin manager with every allowed plugin registered and hooks checked."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    allow = _allow_list()
    pm._sipo_sources = {}  # type: ignore[attr-defined]
    if load_entry_points:
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            if allow is not None and ep.name not in allow:
                continue
            if pm.get_plugin(ep.name) is not None:
                continue
            try:
                module = ep.load()
            except Exception as e:  # a broken third-party plugin must say who it is
                raise PluginError(f"plugin {ep.name!r} ({ep.value}): failed to load: {e}") from e
            pm.register(module, name=ep.name)
            dist = getattr(ep, "dist", None)
            pm._sipo_sources[ep.name] = ("entry point", getattr(dist, "version", "?") if dist else "?")  # type: ignore[attr-defined]
    if plugins_dir is not None:
        d = Path(plugins_dir)
        if not d.is_dir():
            raise PluginError(f"`--plugins-dir`: expected a directory, got {str(d)!r}")
        localplugins.reset(d)
        for path in sorted(d.glob("*.py")):
            name = path.stem
            if allow is not None and name not in allow:
                continue
            try:
                module = localplugins.import_file(path)
            except Exception as e:
                raise PluginError(f"plugin {name!r} ({path}): failed to load: {e}") from e
            if pm.get_plugin(name) is not None:
                raise PluginError(f"plugin {name!r} ({path}): a plugin of that name is already loaded")
            pm.register(module, name=name)
            pm._sipo_sources[name] = ("plugins-dir", getattr(module, "__version__", "local"))  # type: ignore[attr-defined]
    for plugin in extra or []:
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        raise PluginError(f"plugin {getattr(e, 'plugin', '?')!r}: {e}") from e
    return pm


KINDS: dict[str, tuple[str, str, type, bool]] = {
    # registry attribute: (hook, word, base, instances)
    "tasks": ("sipo_bench_register_tasks", "task", Task, False),
    "objectives": ("sipo_bench_register_objectives", "objective", Objective, True),
    "scorers": ("sipo_bench_register_scorers", "scorer", Scorer, False),
    "methods": ("sipo_bench_register_methods", "method", Method, False),
    "generators": ("sipo_bench_register_generators", "generator", Generator, False),
    "executors": ("sipo_bench_register_executors", "executor", Executor, False),
}


class Registries:
    """All registries of one plugin manager, filled by calling each `register_*` hook."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.plugins: dict[str, PluginInfo] = {}
        sources = getattr(pm, "_sipo_sources", {})
        for attr, (hook, word, base, instances) in KINDS.items():
            reg: Registry = Registry(word, base, instances)
            caller = getattr(pm.hook, hook)
            for impl in caller.get_hookimpls():  # registration order
                name = pm.get_name(impl.plugin) or repr(impl.plugin)
                src, version = sources.get(name, ("registered", getattr(impl.plugin, "__version__", "?")))
                info = self.plugins.setdefault(name, PluginInfo(name, str(version), src))
                values = impl.function() or []
                if not isinstance(values, (list, tuple)):
                    raise PluginError(f"plugin {name!r}: hook {hook} must return a list, got {type(values).__name__}")
                for v in values:
                    reg.add(v, name)
                    info.registers.setdefault(attr, []).append(getattr(v, "name", "?"))
            setattr(self, attr, reg)
        for name in pm.list_name_plugin():
            n = name[0]
            if n and n not in self.plugins and not n.startswith("_"):
                src, version = sources.get(n, ("registered", "?"))
                self.plugins[n] = PluginInfo(n, str(version), src)

    tasks: Registry
    objectives: Registry
    scorers: Registry
    methods: Registry
    generators: Registry
    executors: Registry

    def plugin_list(self) -> list[PluginInfo]:
        return [self.plugins[k] for k in sorted(self.plugins)]


def load(plugins_dir: str | Path | None = None, extra: list[Any] | None = None) -> Registries:
    """Plugin manager + registries in one call."""
    return Registries(get_plugin_manager(plugins_dir, extra=extra))
