"""The plugin manager: built-ins and third-party plugins load through one path.

Sources, in order: the entry-point group `sipo_bench` (built-ins are declared there too), then
loose `*.py` files of `--plugins-dir` (imported as `sipo_bench_local_plugins.<file stem>`, see
`sipo_bench.plugin_host.localplugins`). `SIPO_BENCH_PLUGINS=a,b` restricts loading to the named
entry points / files (an allow-list); unset loads all.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from ..contract import hookspecs
from ..contract.hookspecs import LEGACY_API_VERSION
from . import localplugins
from ..errors import PluginError
from ..contract.interfaces import Executor, Generator, Method, Objective, Scorer, Task
from .registry import Registry

GROUP = "sipo_bench"
ALLOW_ENV = "SIPO_BENCH_PLUGINS"


@dataclass
class PluginInfo:
    name: str
    version: str
    source: str  # "entry point" | "plugins-dir" | "registered"
    registers: dict[str, list[str]] = field(default_factory=dict)
    api: str = LEGACY_API_VERSION  # the plugin's `SIPO_BENCH_API`: the API version it was written for


@dataclass
class BrokenPlugin:
    """A plugin that could not be loaded or registered; its names are unavailable."""

    name: str
    source: str  # "entry point" | "plugins-dir" | "registered"
    error: str  # one line: `plugin 'x' (...): what went wrong`
    requested: bool = False  # named in SIPO_BENCH_PLUGINS or a --plugins-dir file: must load


def api_version(plugin: Any) -> str:
    """The API version a plugin module declares (`SIPO_BENCH_API`), or 0.1 when it declares none."""
    return str(getattr(plugin, "SIPO_BENCH_API", None) or LEGACY_API_VERSION)


def _allow_list() -> set[str] | None:
    raw = os.environ.get(ALLOW_ENV, "").strip()
    return {p.strip() for p in raw.split(",") if p.strip()} if raw else None


def _first_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return text.splitlines()[0]


def _is_builtin(ep: Any) -> bool:
    dist = getattr(ep, "dist", None)
    name = (getattr(dist, "name", None) or "").lower().replace("_", "-")
    return name == "sipo-bench"


def get_plugin_manager(plugins_dir: str | Path | None = None, *, load_entry_points: bool = True,
                       extra: list[Any] | None = None) -> pluggy.PluginManager:
    """A fresh plugin manager with every allowed plugin registered and hooks checked.

    A plugin that fails to import or declares an unknown hook does not stop the others: it is
    recorded in `pm._sipo_broken` (see :class:`BrokenPlugin`) and left out. `SIPO_BENCH_PLUGINS`
    naming a plugin that does not exist is a :class:`PluginError` listing the available ones."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    allow = _allow_list()
    pm._sipo_sources = {}  # type: ignore[attr-defined]  # name -> (source, version, built-in?)
    pm._sipo_broken = {}  # type: ignore[attr-defined]
    broken: dict[str, BrokenPlugin] = pm._sipo_broken  # type: ignore[attr-defined]
    eps = sorted(entry_points(group=GROUP), key=lambda e: e.name) if load_entry_points else []
    files = []
    if plugins_dir is not None:
        d = Path(plugins_dir)
        if not d.is_dir():
            raise PluginError(f"`--plugins-dir`: expected a directory, got {str(d)!r}")
        files = sorted(d.glob("*.py"))
        localplugins.reset(d)
    if allow is not None:
        available = {ep.name for ep in eps} | {f.stem for f in files}
        unknown = sorted(allow - available)
        if unknown:
            raise PluginError(f"`{ALLOW_ENV}`: unknown plugin(s) {', '.join(repr(u) for u in unknown)}. "
                              f"Available: {', '.join(sorted(available)) or '(none)'}")
    for ep in eps:
        if allow is not None and ep.name not in allow:
            continue
        if pm.get_plugin(ep.name) is not None or ep.name in broken:
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as e:  # a broken plugin must say who it is, and stay out of the others' way
            broken[ep.name] = BrokenPlugin(ep.name, "entry point", f"plugin {ep.name!r} ({ep.value}): failed to load: "
                                           f"{_first_line(e)}", requested=allow is not None)
            continue
        dist = getattr(ep, "dist", None)
        pm._sipo_sources[ep.name] = ("entry point", getattr(dist, "version", "?") if dist else "?",  # type: ignore[attr-defined]
                                     _is_builtin(ep))
    for path in files:
        name = path.stem
        if allow is not None and name not in allow:
            continue
        if pm.get_plugin(name) is not None:
            broken[name] = BrokenPlugin(name, "plugins-dir", f"plugin {name!r} ({path}): a plugin of that name is "
                                        f"already loaded", requested=True)
            continue
        try:
            module = localplugins.import_file(path)
            pm.register(module, name=name)
        except Exception as e:
            sys.modules.pop(localplugins.module_name(path), None)
            broken[name] = BrokenPlugin(name, "plugins-dir", f"plugin {name!r} ({path}): failed to load: {_first_line(e)}",
                                        requested=True)
            continue
        pm._sipo_sources[name] = ("plugins-dir", getattr(module, "__version__", "local"), False)  # type: ignore[attr-defined]
    for plugin in extra or []:
        pm.register(plugin)
    while True:  # a misspelled hook: that plugin is broken, not the harness
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as e:
            plugin = getattr(e, "plugin", None)
            name = pm.get_name(plugin) if plugin is not None else None
            if name is None:
                raise PluginError(f"plugin {getattr(e, 'plugin', '?')!r}: {e}") from e
            src = pm._sipo_sources.pop(name, ("registered",))[0]  # type: ignore[attr-defined]
            pm.unregister(plugin)
            broken[name] = BrokenPlugin(name, src, f"plugin {name!r}: {str(e).splitlines()[0]}",
                                        requested=src == "plugins-dir" or allow is not None)
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
    """All registries of one plugin manager, filled by calling each `register_*` hook.

    A plugin whose hook raises, returns something other than a list, registers a wrong class or
    a name another plugin already has is *broken*: all of its registrations are left out and it
    is listed in :attr:`broken`. For a duplicate name the blame goes to the plugin that is not
    built-in (an installed package cannot shadow or be shadowed by a built-in silently); between
    two third-party plugins, to the one loaded second."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.plugins: dict[str, PluginInfo] = {}
        self.broken: dict[str, BrokenPlugin] = dict(getattr(pm, "_sipo_broken", {}))
        sources = getattr(pm, "_sipo_sources", {})

        def builtin(name: str) -> bool:
            return len(sources.get(name, ())) > 2 and bool(sources[name][2])

        def source(name: str) -> str:
            return sources.get(name, ("registered",))[0]

        regs = {attr: Registry(word, base, instances) for attr, (_, word, base, instances) in KINDS.items()}
        collected: dict[str, list[tuple[str, Any]]] = {}
        order: list[str] = []
        for attr, (hook, word, base, instances) in KINDS.items():
            for impl in getattr(pm.hook, hook).get_hookimpls():  # registration order
                name = pm.get_name(impl.plugin) or repr(impl.plugin)
                if name not in order:
                    order.append(name)
                if name in self.broken:
                    continue
                try:
                    values = impl.function() or []
                except Exception as e:
                    self._break(name, source(name), f"plugin {name!r}: hook {hook} raised {_first_line(e)}")
                    continue
                if not isinstance(values, (list, tuple)):
                    self._break(name, source(name), f"plugin {name!r}: hook {hook} must return a list, got {type(values).__name__}")
                    continue
                collected.setdefault(name, []).extend((attr, v) for v in values)
        owner: dict[tuple[str, str], str] = {}  # (kind, name) -> plugin
        for name in order:
            if name in self.broken:
                continue
            entries = collected.get(name, [])
            try:
                named = [(attr, regs[attr].name_of(v, name), v) for attr, v in entries]
            except PluginError as e:
                self._break(name, source(name), str(e))
                continue
            clash = None
            seen: set[tuple[str, str]] = set()
            for attr, n, _ in named:
                if (attr, n) in owner or (attr, n) in seen:
                    clash = (attr, n, owner.get((attr, n), name))
                    break
                seen.add((attr, n))
            if clash is not None:
                attr, n, other = clash
                word = KINDS[attr][1]
                if other != name and builtin(name) and not builtin(other):  # blame the installed package
                    self._break(other, source(other), f"plugin {other!r}: {word} name {n!r} is already registered by "
                                                      f"the built-in plugin {name!r}")
                    for a in regs.values():
                        a.remove_plugin(other)
                    owner = {k: v for k, v in owner.items() if v != other}
                    self.plugins.pop(other, None)
                else:
                    self._break(name, source(name), f"plugin {name!r}: {word} name {n!r} is already registered by "
                                                    f"{'the built-in ' if builtin(other) else ''}plugin {other!r}")
                    continue
            src, version = sources.get(name, ("registered", getattr(pm.get_plugin(name), "__version__", "?")))[:2]
            info = self.plugins.setdefault(name, PluginInfo(name, str(version), src, api=api_version(pm.get_plugin(name))))
            for attr, n, v in named:
                regs[attr].add(v, name)
                owner[(attr, n)] = name
                info.registers.setdefault(attr, []).append(n)
        for attr, reg in regs.items():
            reg.hint = self.lookup_hint()
            setattr(self, attr, reg)
        for name in pm.list_name_plugin():
            n = name[0]
            if n and n not in self.plugins and n not in self.broken and not n.startswith("_"):
                src, version = sources.get(n, ("registered", "?"))[:2]
                self.plugins[n] = PluginInfo(n, str(version), src, api=api_version(pm.get_plugin(n)))

    def _break(self, name: str, source: str, error: str) -> None:
        requested = source == "plugins-dir" or _allow_list() is not None
        self.broken[name] = BrokenPlugin(name, source, error, requested)

    def lookup_hint(self) -> str:
        """What an unknown-name error adds: plugins that failed, and the allow-list if set."""
        parts = []
        if self.broken:
            parts.append(f"plugin(s) {', '.join(repr(b) for b in sorted(self.broken))} failed to load "
                         f"(`sipo-bench plugins` shows why)")
        raw = os.environ.get(ALLOW_ENV, "").strip()
        if raw:
            parts.append(f"{ALLOW_ENV}={raw} restricts loading to those plugins")
        return f" ({'; '.join(parts)})" if parts else ""

    def check_requested(self) -> None:
        """Raise for a broken plugin the user asked for by name (a `--plugins-dir` file, or
        one named in `SIPO_BENCH_PLUGINS`): that is a usage error, not something to skip."""
        for b in self.broken.values():
            if b.requested:
                raise PluginError(b.error)

    def warnings(self) -> list[str]:
        """One line per broken plugin nobody asked for (an installed package that fails)."""
        return [f"{b.error}; it is disabled. Set {ALLOW_ENV} to the plugins you use to skip it "
                f"(`sipo-bench plugins` lists them)" for b in self.broken.values() if not b.requested]

    tasks: Registry
    objectives: Registry
    scorers: Registry
    methods: Registry
    generators: Registry
    executors: Registry

    def plugin_list(self) -> list[PluginInfo]:
        return [self.plugins[k] for k in sorted(self.plugins)]


def load(plugins_dir: str | Path | None = None, extra: list[Any] | None = None, *, strict: bool = True) -> Registries:
    """Plugin manager + registries in one call. `strict`: a broken plugin that was asked for
    by name raises (see :meth:`Registries.check_requested`)."""
    regs = Registries(get_plugin_manager(plugins_dir, extra=extra))
    if strict:
        regs.check_requested()
    return regs
