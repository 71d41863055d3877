"""Loose plugin files (`--plugins-dir DIR`) as an importable package.

Every `DIR/<stem>.py` is imported as the module `sipo_bench_local_plugins.<stem>` of a package
whose search path is `DIR`, so

- a stage function defined in such a file has an ordinary import path: pass the function object
  to `FitContext.stage` / `Stage` and the reference `"sipo_bench_local_plugins.<stem>:<name>"` is
  derived for you (:func:`sipo_bench.execution.stages.fn_ref`); it depends on the file name only, so moving
  the directory keeps the cache keys;
- any process that builds a `Runtime` with the same `plugins_dir` (a Ray worker, a worker of a
  parallel local executor) can import it again: stage functions resolve there as they do in the
  driver;
- files of one directory can share code: `from sipo_bench_local_plugins import helpers` or
  `from . import helpers` (a file imported that way is executed once).

Loading a directory replaces whatever an earlier call loaded under the package (each plugin
manager gets fresh modules, as a file edited between two runs in one process must be re-read).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from pathlib import Path

#: import name of the package that holds the files of `--plugins-dir`
PACKAGE = "sipo_bench_local_plugins"


def module_name(path: str | Path) -> str:
    """The import name of plugin file `path`: `sipo_bench_local_plugins.<stem>`."""
    return f"{PACKAGE}.{Path(path).stem}"


def reset(plugins_dir: str | Path) -> None:
    """Make `sipo_bench_local_plugins` a fresh package searching `plugins_dir` only (modules an
    earlier call loaded under it are dropped, so the files are read again)."""
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    path = [str(Path(plugins_dir).resolve())]
    spec = importlib.machinery.ModuleSpec(PACKAGE, None, is_package=True)
    spec.submodule_search_locations = path
    pkg = types.ModuleType(PACKAGE, "Modules loaded from a sipo-bench --plugins-dir (sipo_bench.plugin_host.localplugins).")
    pkg.__spec__, pkg.__path__, pkg.__package__ = spec, path, PACKAGE
    sys.modules[PACKAGE] = pkg
    importlib.invalidate_caches()


def import_file(path: str | Path) -> types.ModuleType:
    """Import plugin file `path` (inside the directory given to :func:`reset`) as
    `sipo_bench_local_plugins.<stem>`; raises whatever the file raises."""
    return importlib.import_module(module_name(path))
