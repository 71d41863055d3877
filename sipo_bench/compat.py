"""The 0.1 import paths, kept working for one release (removed in 0.3).

sipo-bench 0.1 was one flat package (`sipo_bench.config`, `sipo_bench.stages`, ...); 0.2 moved
every module into the room of its concern (see docs/architecture.md). :data:`MOVED` maps each old
module path to its new one, and :class:`MovedModuleFinder` (installed by `sipo_bench/__init__.py`)
makes `import sipo_bench.<old>` return the *same module object* as the new path, with a
`DeprecationWarning` naming the new path. Plugins should import from :mod:`sipo_bench.api`.

Stage functions are named by `"module:function"` strings that are part of every cache key
(:class:`sipo_bench.execution.stages.Stage`), so the core's own stage functions keep their 0.1
names: :func:`stable_module` turns a new module path into its 0.1 name for a key, and
:func:`current_module` turns a 0.1 name back into the module to import, without a warning.

Some 0.1 modules were also split: :data:`MOVED_NAMES` lists, per module, the names that moved
out to another module. The module's `__getattr__` calls :func:`moved_attr`, so
`from sipo_bench.experiment import RunConfig` (or `sipo_bench.planning.experiment.RunConfig`)
still works, with a `DeprecationWarning` naming the new module. Stage functions never move
module (their `"module:function"` names are cache keys).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED: dict[str, str] = {
    "sipo_bench.hookspecs": "sipo_bench.contract.hookspecs",
    "sipo_bench.interfaces": "sipo_bench.contract.interfaces",
    "sipo_bench.responses": "sipo_bench.contract.responses",
    "sipo_bench.weights": "sipo_bench.contract.weights",
    "sipo_bench.plugins": "sipo_bench.plugin_host.manager",
    "sipo_bench.registry": "sipo_bench.plugin_host.registry",
    "sipo_bench.localplugins": "sipo_bench.plugin_host.localplugins",
    "sipo_bench.config": "sipo_bench.configs.schema",
    "sipo_bench.variants": "sipo_bench.configs.variants",
    "sipo_bench.sweep": "sipo_bench.configs.sweep",
    "sipo_bench.experiment": "sipo_bench.planning.experiment",
    "sipo_bench.taskstages": "sipo_bench.planning.taskstages",
    "sipo_bench.stages": "sipo_bench.execution.stages",
    "sipo_bench.executors": "sipo_bench.execution.executors",
    "sipo_bench.workers": "sipo_bench.execution.workers",
    "sipo_bench.parallel": "sipo_bench.execution.parallel",
    "sipo_bench.runtime": "sipo_bench.execution.runtime",
    "sipo_bench.signals": "sipo_bench.execution.signals",
    "sipo_bench.device": "sipo_bench.execution.device",
    "sipo_bench.integrity": "sipo_bench.execution.integrity",
    "sipo_bench.cache_admin": "sipo_bench.execution.cache_admin",
    "sipo_bench.fsio": "sipo_bench.execution.fsio",
    "sipo_bench.evaluation": "sipo_bench.scoring.evaluation",
    "sipo_bench.pareto": "sipo_bench.scoring.pareto",
    "sipo_bench.stats": "sipo_bench.scoring.stats",
    "sipo_bench.conflicts": "sipo_bench.scoring.conflicts",
    "sipo_bench.extra_scorers": "sipo_bench.scoring.extra_scorers",
    "sipo_bench.report": "sipo_bench.reporting.report",
    "sipo_bench.outdir": "sipo_bench.reporting.outdir",
    "sipo_bench.show": "sipo_bench.reporting.show",
    "sipo_bench.summary_schema": "sipo_bench.reporting.summary_schema",
    "sipo_bench.curves": "sipo_bench.reporting.curves",
    "sipo_bench.curves_callback": "sipo_bench.reporting.curves_callback",
    "sipo_bench.html_report": "sipo_bench.reporting.html_report",
    "sipo_bench.samples": "sipo_bench.reporting.samples",
    "sipo_bench.tracking": "sipo_bench.reporting.tracking",
    "sipo_bench.determinism": "sipo_bench.execution.determinism",
    "sipo_bench.provenance": "sipo_bench.execution.provenance",
}
_OLD_OF = {new: old for old, new in MOVED.items()}

_RUN_CONFIG = ("DEFAULT_TASK", "MAX_SEED", "HOW_NOT_WHAT", "RunConfig", "available_cores", "default_jobs", "load_yaml",
               "make_config", "run_identity", "same_results_config")
_SWEEP_REPORT = ("load_sweep", "sweep_tables", "sweep_md", "sweep_csv", "sweep_figure", "render_sweep", "is_sweep_dir",
                 "sweep_console", "failures")
#: module -> {name: the module it moved to} (0.2: the split of a run's config, planning, running
#: and summarising, of the report into merge/tables/figures, of sweeps into config and report)
MOVED_NAMES: dict[str, dict[str, str]] = {
    "sipo_bench.planning.experiment": {
        **{n: "sipo_bench.configs.run_config" for n in _RUN_CONFIG},
        **{n: "sipo_bench.planning.run" for n in ("default_out", "check_out_dir", "execute", "run_files",
                                                  "plan_failures")},
        **{n: "sipo_bench.reporting.summary" for n in ("package_versions", "summarize", "VOLATILE_METHOD_KEYS",
                                                       "comparable")},
    },
    "sipo_bench.reporting.report": {
        **{n: "sipo_bench.reporting.merge" for n in ("REQUIRED_KEYS", "normalize", "upgrade", "load_summaries",
                                                     "merge")},
        **{n: "sipo_bench.reporting.figures" for n in ("front_figure", "figure_png_bytes", "front_png_bytes",
                                                       "plot_front", "plot_figure")},
        **{n: "sipo_bench.reporting.tables" for n in ("header", "rows", "per_seed_table", "comparison_table",
                                                      "ranking_line", "holm_text", "COMPARISON_TEXT", "COMPUTE_LABELS", "COMPUTE_TEXT",
                                                      "compute_table", "noise_table", "noise_lines", "is_timing_key",
                                                      "extra_table")},
    },
    "sipo_bench.configs.sweep": {
        **{n: "sipo_bench.reporting.sweep_report" for n in _SWEEP_REPORT},
        "plan_sweep": "sipo_bench.planning.experiment",
        "write_sweep": "sipo_bench.planning.run",
    },
}


def moved_attr(module: str, name: str):
    """`module.name` for a name that moved out of `module` (:data:`MOVED_NAMES`), with a
    `DeprecationWarning` naming its new module; `AttributeError` for any other name."""
    new = MOVED_NAMES.get(module, {}).get(name)
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    old = _OLD_OF.get(module, module)
    warnings.warn(f"{old}.{name} is deprecated since sipo-bench 0.2 and will be removed in 0.3: "
                  f"import it from {new} (plugins: sipo_bench.api)", DeprecationWarning, stacklevel=3)
    return getattr(importlib.import_module(new), name)


def current_module(name: str) -> str:
    """The module to import for `name`: its new path if `name` is a 0.1 path, else `name`."""
    return MOVED.get(name, name)


def stable_module(name: str) -> str:
    """The name a cache key uses for module `name`: its 0.1 path if it moved, else `name`."""
    return _OLD_OF.get(name, name)


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the 0.1 module paths of :data:`MOVED` and loads each as its new module."""

    def __init__(self) -> None:
        self.real_specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102 (importlib protocol)
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec) -> ModuleType:
        new = MOVED[spec.name]
        # stacklevel 2 is the frame doing the import: warnings skips importlib's own frames
        warnings.warn(f"{spec.name} is deprecated since sipo-bench 0.2 and will be removed in 0.3: "
                      f"import {new} (plugins: sipo_bench.api)", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self.real_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run (the module is the new one, already executed); importlib has just set
        its `__spec__` to the old path's, so put the module's own spec back."""
        spec = module.__spec__ = self.real_specs[module.__spec__.name]
        module.__package__ = spec.parent  # importlib set the old path's; relative imports need the real one


def install() -> None:
    """Put the finder first on `sys.meta_path` (once)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
