"""The 0.1 import paths keep working (same module objects, a DeprecationWarning naming the new
path), the core's stage functions keep their 0.1 names (part of every cache key), and
`sipo_bench.api` exports what it lists."""
from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from sipo_bench import api
from sipo_bench.compat import MOVED, MOVED_NAMES, current_module, stable_module
from sipo_bench.execution.stages import Stage, fn_ref, resolve_fn

CORE_STAGE_FNS = ["sipo_bench.taskstages:data_stage", "sipo_bench.taskstages:base_stage",
                  "sipo_bench.evaluation:generate_stage", "sipo_bench.evaluation:score_stage",
                  "sipo_bench.evaluation:hv_noise_stage", "sipo_bench.extra_scorers:extra_score_stage"]


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_is_the_new_module_with_a_warning(old: str) -> None:
    # a fresh interpreter: in this one the old path may already sit in sys.modules (no warning)
    code = (f"import importlib, warnings\nwarnings.simplefilter('error', DeprecationWarning)\n"
            f"new = importlib.import_module({MOVED[old]!r})\n"
            f"try:\n    importlib.import_module({old!r})\nexcept DeprecationWarning as w:\n    print(w)\n"
            f"warnings.simplefilter('ignore')\nold = importlib.import_module({old!r})\n"
            f"assert old is new, (old, new)\nassert old.__spec__.name == {MOVED[old]!r}, old.__spec__\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"{old} is deprecated" in out.stdout and f"import {MOVED[old]}" in out.stdout, out.stdout


def test_from_package_import_old_name() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from sipo_bench import hookspecs, stages  # noqa: F401  (the 0.1 spelling)
    assert stages is importlib.import_module("sipo_bench.execution.stages")
    assert hookspecs.hookimpl is api.hookimpl


@pytest.mark.parametrize("ref", CORE_STAGE_FNS)
def test_core_stage_functions_keep_their_names_without_a_warning(ref: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        fn = resolve_fn(ref)
    assert fn_ref(fn) == ref  # a function object of a moved module is named by its 0.1 path
    assert Stage("s", fn).key == Stage("s", ref).key


def test_name_maps_are_inverse() -> None:
    for old, new in MOVED.items():
        assert current_module(old) == new and stable_module(new) == old
    assert current_module("sipo_bench_plugins.dummy") == stable_module("sipo_bench_plugins.dummy") == "sipo_bench_plugins.dummy"


def test_api_exports_everything_it_lists() -> None:
    assert api.API_VERSION == "0.2"
    missing = [n for n in api.__all__ if not hasattr(api, n)]
    assert not missing


MOVED_NAME_CASES = sorted((m, n) for m, names in MOVED_NAMES.items() for n in names)


@pytest.mark.parametrize("module,name", MOVED_NAME_CASES)
def test_moved_names_resolve_with_a_warning_naming_their_new_module(module: str, name: str) -> None:
    new = MOVED_NAMES[module][name]
    obj = getattr(importlib.import_module(new), name)
    mod = importlib.import_module(module)
    if name in vars(mod):  # still imported there for its own use: no move to announce
        assert getattr(mod, name) is obj
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert getattr(mod, name) is obj
    assert [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)] == [
        f"{stable_module(module)}.{name} is deprecated since sipo-bench 0.2 and will be removed in 0.3: "
        f"import it from {new} (plugins: sipo_bench.api)"]


def test_a_name_that_never_existed_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        importlib.import_module("sipo_bench.reporting.report").nope  # noqa: B018


def test_0_1_spelling_of_a_split_module_imports_its_moved_names() -> None:
    code = ("import warnings\nwarnings.simplefilter('error', DeprecationWarning)\n"
            "try:\n    from sipo_bench.report import load_summaries\nexcept DeprecationWarning as w:\n    print(w)\n"
            "warnings.simplefilter('ignore')\nfrom sipo_bench.report import load_summaries\n"
            "from sipo_bench.reporting.merge import load_summaries as new\nassert load_summaries is new\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "sipo_bench.report is deprecated" in out.stdout, out.stdout


def test_base_model_layout_is_one_function() -> None:
    import sipo_bench_plugins.hf_generation as hf

    assert hf.resolve_model_path is api.resolve_model_path
