"""What a plugin author relies on (docs/architecture.md, "Writing a plugin"): stage functions
passed as function objects, `--plugins-dir` files as an importable package that fresh
processes load again, `FitContext.method(name)` memoised per (name, seed), and
`sipo-bench show`. All on the torch-free dummy task: milliseconds each."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from sipo_bench.cli import main
from sipo_bench.errors import UsageError
from sipo_bench.configs.run_config import make_config
from sipo_bench.planning.experiment import plan_run
from sipo_bench.execution.runtime import Runtime
from sipo_bench.execution.stages import Stage, fn_ref, resolve_fn

from tests import stage_fns


def write_plugin(d: Path, name: str, code: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.py").write_text(textwrap.dedent(code))
    return d


# --- stage functions as objects ---------------------------------------------------------------


def test_fn_ref_of_a_module_function_and_the_same_key_as_its_string():
    assert fn_ref(stage_fns.write) == "tests.stage_fns:write"
    by_object = Stage("s", stage_fns.write, {"v": 1})
    by_string = Stage("s", "tests.stage_fns:write", {"v": 1})
    assert by_object.fn == "tests.stage_fns:write" and by_object.key == by_string.key
    assert by_object.load_fn() is stage_fns.write


def _nested():
    def inner(ctx):
        return None
    return inner


@pytest.mark.parametrize("fn, message", [
    (lambda ctx: None, "is not a module-level function (a lambda or a nested function"),
    (_nested(), "is not a module-level function"),
    (types.FunctionType((lambda ctx: None).__code__, {"__name__": "__main__"}, "main_fn"), "is defined in __main__"),
])
def test_fn_ref_refuses_what_another_process_cannot_import(fn, message):
    if fn.__name__ == "main_fn":
        fn.__module__, fn.__qualname__ = "__main__", "main_fn"
    with pytest.raises(ValueError, match=r"stage 'x': fn .*" + message.replace("(", r"\(")):
        Stage("x", fn, {})


def test_resolve_fn_names_the_stage_and_hints_at_the_plugins_dir():
    with pytest.raises(ImportError, match=r"stage 'x': cannot import stage function 'sipo_bench_local_plugins.gone:f'.*"
                                          r"must load the same plugins dir"):
        resolve_fn("sipo_bench_local_plugins.gone:f", "x")
    with pytest.raises(ImportError, match=r"stage 'y': cannot import stage function 'tests.stage_fns:nope'"):
        resolve_fn("tests.stage_fns:nope", "y")


LOOSE_METHOD = """
    import json
    from sipo_bench.contract.hookspecs import hookimpl
    from sipo_bench_plugins.dummy import DummyFamily, DummyMethod
    from . import loose_helpers  # a sibling file, imported once (also loaded as a plugin)


    def train(ctx):
        \"\"\"This file's own stage function: an a-share set by the config.\"\"\"
        share = loose_helpers.share(ctx.config["objective_index"], ctx.config["strength"])
        (ctx.out / "adapter.json").write_text(json.dumps({"a_share": share}))
        return {"a_share": share, "module": __name__}


    class Loose(DummyMethod):
        name = "loose"

        def fit(self, ctx):
            return DummyFamily(ctx.base, [
                ctx.stage(f"loose-train[{o.name},seed={ctx.seed}]", train,
                          {"objective_index": i, "strength": self.config.strength}, {"base": ctx.base})
                for i, o in enumerate(ctx.objectives)])


    @hookimpl
    def sipo_bench_register_methods():
        return [Loose]
"""

LOOSE_HELPERS = """
    def share(index, strength):
        return strength if index == 0 else 1.0 - strength
"""


@pytest.fixture
def loose_dir(tmp_path):
    d = write_plugin(tmp_path / "plugs", "loose_method", LOOSE_METHOD)
    return write_plugin(d, "loose_helpers", LOOSE_HELPERS)


def test_loose_file_stage_function_runs_without_knowing_the_prefix(loose_dir, tmp_path):
    rt = Runtime(plugins_dir=loose_dir, quiet=True)
    cfg = make_config({"task": "dummy", "methods": ["loose"], "method_options": {"loose": {"strength": 0.8}}})
    plan = plan_run(cfg, rt)
    train = [s for s in plan.stages() if s.kind == "loose-train"]
    assert [s.fn for s in train] == ["sipo_bench_local_plugins.loose_method:train"] * 2
    # the sibling imported by `from . import loose_helpers` is the module registered as a plugin
    assert rt.registries.pm.get_plugin("loose_helpers") is sys.modules["sipo_bench_local_plugins.loose_helpers"]

    out = tmp_path / "out"
    assert main(["run", "--task", "dummy", "--methods", "loose", "--plugins-dir", str(loose_dir), "--out", str(out),
                 "--cache-dir", str(tmp_path / "c"), "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    points = {tuple(p["w"]): p["scores"] for p in s["methods"]["loose"]["points"]}
    assert points[(1.0, 0.0)] == [0.9, 0.1] and points[(0.0, 1.0)] == [0.1, 0.9]  # default strength 0.9


def test_a_fresh_process_with_the_same_plugins_dir_imports_the_stage_function(loose_dir, tmp_path):
    """What a worker (Ray, a parallel local executor) does: rebuild the runtime from the plugins
    dir, unpickle the stage, run it. The module path depends on the file name only."""
    from sipo_bench.execution.executors import run_graph
    from sipo_bench.execution.stages import Cache, StageLog

    rt = Runtime(plugins_dir=loose_dir, quiet=True)
    stages = plan_run(make_config({"task": "dummy", "methods": ["loose"]}), rt).stages()
    cache = Cache(tmp_path / "cache")
    run_graph(stages, cache, rt, StageLog(None, "t"))
    train = next(s for s in stages if s.kind == "loose-train" and s.config["objective_index"] == 0)
    shutil.rmtree(cache.path(train))  # the worker computes it again, from the pickled stage
    (tmp_path / "stage.pkl").write_bytes(pickle.dumps(train))
    code = textwrap.dedent(f"""
        import pickle, sys
        from sipo_bench.execution.runtime import Runtime
        from sipo_bench.execution.stages import Cache, execute_stage
        stage = pickle.loads(open({str(tmp_path / 'stage.pkl')!r}, "rb").read())
        if sys.argv[1] == "without":
            try:
                stage.load_fn()
            except ImportError as e:
                print("ERR", e)
            sys.exit(0)
        rt = Runtime(plugins_dir={str(loose_dir)!r}, quiet=True)
        print("OK", execute_stage(stage, Cache({str(tmp_path / 'cache')!r}), rt)[:2])
    """)
    ok = subprocess.run([sys.executable, "-c", code, "with"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "OK ('done', {'a_share': 0.9, 'module': 'sipo_bench_local_plugins.loose_method'})" in ok.stdout
    bad = subprocess.run([sys.executable, "-c", code, "without"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "ERR stage 'loose-train[a,seed=0]': cannot import stage function 'sipo_bench_local_plugins.loose_method:train'" in bad.stdout
    assert "this process must load the same plugins dir" in bad.stdout


def test_reloading_a_plugins_dir_reads_edited_files(tmp_path):
    d = write_plugin(tmp_path / "p", "obj", """
        from sipo_bench.contract.hookspecs import hookimpl
        from sipo_bench.contract.interfaces import Objective
        @hookimpl
        def sipo_bench_register_objectives():
            return [Objective("first")]
    """)
    assert "first" in Runtime(plugins_dir=d).registries.objectives
    (d / "obj.py").write_text((d / "obj.py").read_text().replace('"first"', '"second"'))
    names = Runtime(plugins_dir=d).registries.objectives.names()
    assert "second" in names and "first" not in names


# --- FitContext.method ------------------------------------------------------------------------

FAMILY_USERS = """
    from sipo_bench.contract.hookspecs import hookimpl
    from sipo_bench_plugins.dummy import DummyFamily, DummyMethod

    FITS = []


    class Counted(DummyMethod):
        name = "counted"

        def fit(self, ctx):
            FITS.append((ctx.method_name, ctx.seed))
            return super().fit(ctx)


    class User(DummyMethod):
        name = "user1"
        source = "counted"

        def fit(self, ctx):
            family = ctx.method(self.source)
            return DummyFamily(ctx.base, [a for a, _ in family.policy([1.0, 0.0]).adapters])


    class User2(User):
        name = "user2"


    class UsesDummy(User):
        name = "uses-dummy"
        source = "dummy"


    class LoopA(User):
        name = "loop-a"
        source = "loop-b"


    class LoopB(User):
        name = "loop-b"
        source = "loop-a"


    @hookimpl
    def sipo_bench_register_methods():
        return [Counted, User, User2, UsesDummy, LoopA, LoopB]
"""


@pytest.fixture
def users(tmp_path):
    return Runtime(plugins_dir=write_plugin(tmp_path / "u", "family_users", FAMILY_USERS), quiet=True)


def test_method_family_is_planned_once_per_name_and_seed_and_shared(users):
    mod = sys.modules["sipo_bench_local_plugins.family_users"]
    plan = plan_run(make_config({"task": "dummy", "methods": ["user1", "user2", "counted"], "seeds": [0, 1]}), users)
    assert sorted(mod.FITS) == [("counted", 0), ("counted", 1)]  # fitted as itself, once per seed
    keys = {name: {p.seed: [s.key for s in p.generate.inputs.values() if s.kind == "dummy-train"]
                   for p in mp.points if p.w == (1.0, 0.0)} for name, mp in plan.methods.items()}
    assert keys["user1"] == keys["user2"] == keys["counted"]
    assert keys["user1"][0] != keys["user1"][1]


def test_method_family_uses_the_runs_config_for_that_method(users):
    cfg = {"task": "dummy", "methods": ["uses-dummy"], "method_options": {"dummy": {"strength": 0.7}}}
    plan = plan_run(make_config(cfg), users)
    train = [s for s in plan.stages() if s.kind == "dummy-train"]
    assert {s.config["strength"] for s in train} == {0.7}  # `dummy` is not requested, its options still apply


def test_methods_that_need_each_other_fail_with_the_cycle(users):
    plan = plan_run(make_config({"task": "dummy", "methods": ["loop-a", "user1"]}), users)
    assert plan.methods["loop-a"].error == ("planning failed: RuntimeError: methods need each other's families "
                                            "in a cycle: loop-a -> loop-b -> loop-a")
    assert plan.methods["user1"].error is None and plan.methods["user1"].points


def test_method_of_an_unknown_name_is_a_usage_error(users):
    plan_cfg = make_config({"task": "dummy", "methods": ["user1"], "method_options": {}})
    mod = sys.modules["sipo_bench_local_plugins.family_users"]
    mod.User.source = "dumy"
    try:
        with pytest.raises(UsageError, match=r"unknown method 'dumy'\. Did you mean 'dummy'\?"):
            plan_run(plan_cfg, users)
    finally:
        mod.User.source = "counted"


# --- sipo-bench show ----------------------------------------------------------------------------


def test_show_method_lists_every_option(capsys):
    assert main(["show", "method", "dummy"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == [
        "method dummy  (plugin dummy, sipo_bench_plugins.dummy:DummyMethod)",
        "  Linear mix of per-objective dummy adapters (no torch).",
        "  runs on: dummy; needs a language model: no"]
    assert "options (method_options.dummy):\n  strength: float = 0.9\n      Share of the preferred letter in each endpoint adapter.\n" in out
    assert "  fail: bool = false\n" in out


def test_show_method_with_a_task_gives_that_tasks_defaults(capsys):
    assert main(["show", "method", "dpo", "--task", "synthetic-hh", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    opts = {o["name"]: o for o in info["options"]}
    assert opts["lora_r"] == {"name": "lora_r", "type": "int", "default": "8", "class_default": "64", "help": "LoRA rank."}
    assert opts["max_pairs"]["type"] == "int | None" and opts["max_pairs"]["default"] == "256"
    assert opts["lr_scheduler"]["type"].startswith("'cosine' | 'linear'")
    assert info["defaults_from_task"] == "synthetic-hh" and info["plugin"] == "baselines"


def test_show_task_scorer_executor_objective(capsys):
    assert main(["show", "task", "dummy"]) == 0
    out = capsys.readouterr().out
    assert "  objectives: a (higher is better), b (higher is better)\n  scorers: dummy\n" in out
    assert "  n_test: int = 4\n      Number of test prompts.\n" in out
    assert "  max_examples: int | None = null\n" in out  # inherited from TaskConfig
    assert main(["show", "scorer", "synthetic-oracle"]) == 0
    assert '  variant: str = "all"\n' in capsys.readouterr().out
    assert main(["show", "scorer", "dummy"]) == 0
    assert "options: not declared" in capsys.readouterr().out
    assert main(["show", "executor", "ray", "--json"]) == 0
    opts = {o["name"]: o for o in json.loads(capsys.readouterr().out)["options"]}
    assert opts["max_retries"]["type"] == "int" and opts["max_retries"]["default"] == "3"
    assert main(["show", "objective", "harmlessness"]) == 0
    assert "direction: lower is better" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["method", "dpx"], "sipo-bench: error: unknown method 'dpx'. Did you mean 'dpo'? Available: "),
    (["scorer", "dumy"], "sipo-bench: error: unknown scorer 'dumy'. Did you mean 'dummy'?"),
    (["task", "dummy", "--task", "dummy"], "sipo-bench: error: `--task`: expected only with `show method`"),
])
def test_show_unknown_names_are_usage_errors(args, message, capsys):
    assert main(["show", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)


def test_show_plugins_dir_entries(users, tmp_path, capsys):
    d = tmp_path / "u"
    assert main(["show", "method", "user2", "--plugins-dir", str(d)]) == 0
    assert capsys.readouterr().out.startswith(
        "method user2  (plugin family_users, sipo_bench_local_plugins.family_users:User2)")
