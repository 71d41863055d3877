"""The CLI end to end on the dummy task: bad input (exit 2, one line, nothing in OUT), failing
methods (exit 1, others kept), listing commands."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sipo_bench.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sipo_bench.cli", *args], capture_output=True, text=True, timeout=120)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("sipo-bench: error: ")
    return lines[0]


def write_yaml(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.mark.parametrize("args, pattern", [
    (["--task", "dumy"], "unknown task 'dumy'. Did you mean 'dummy'? Available: "),
    (["--task", "dummy", "--methods", "dumy"], "unknown method 'dumy'. Did you mean 'dummy'? Available: "),
    (["--task", "dummy", "--executor", "lokal"], "unknown executor 'lokal'. Did you mean 'local'?"),
    (["--task", "dummy", "--weights", "0"], "`weights`: expected a number of partitions >= 1, got 0"),
    (["--task", "dummy", "--seeds", "1,1"], "`seeds`: expected distinct seeds, got [1, 1]"),
])
def test_usage_errors(tmp_path, args, pattern):
    out = tmp_path / "out"
    proc = run_cli("run", *args, "--out", str(out), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 2
    assert pattern in one_error_line(proc)
    assert not out.exists()


def test_unknown_scorer_in_task(tmp_path):
    plug = tmp_path / "plugs"
    plug.mkdir()
    (plug / "badtask.py").write_text(textwrap.dedent("""
        from sipo_bench.contract.hookspecs import hookimpl
        from sipo_bench_plugins.dummy import DummyTask
        class BadTask(DummyTask):
            name = "bad-task"
            def scorers(self):
                return [("dumy", {})]
        @hookimpl
        def sipo_bench_register_tasks():
            return [BadTask]
    """))
    out = tmp_path / "out"
    proc = run_cli("run", "--task", "bad-task", "--methods", "dummy", "--plugins-dir", str(plug), "--out", str(out))
    assert proc.returncode == 2
    assert "unknown scorer 'dumy'. Did you mean 'dummy'?" in one_error_line(proc)
    assert not out.exists()


@pytest.mark.parametrize("yaml_text, pattern", [
    ("task: dummy\nseeds: zero\n", "`seeds`: expected a list, got 'zero' (str)"),
    ("task: dummy\nseeds: [0, x]\n", "`seeds[1]`: expected an integer, got 'x'"),
    ("task: dummy\nmethod: [dummy]\n", "`method`: unknown key 'method'. Did you mean 'methods'?"),
    ("task: dummy\ndecoding: {max_new_tokens: many}\n", "`decoding.max_new_tokens`: expected an integer, got 'many'"),
    ("task: dummy\ntask_options: {n_test: 0}\n", "`n_test`: expected an integer >= 1, got 0"),
    ("task: dummy\nmethod_options: {dummy: {strenght: 0.5}}\n", "`method_options.dummy.strenght`: unknown key 'strenght'. Did you mean 'strength'?"),
    ("task: dummy\nmethod_options: {dummy: {strength: 2.0}}\n", "`strength`: expected a number in [0, 1], got 2.0"),
    ("task: dummy\nweights: [[0.5, 0.6]]\n", "`weights[0]`: expected non-negative weights summing to 1 (a point on the simplex), got [0.5, 0.6]"),
    ("task: dummy\nweights: [[1.0]]\n", "`weights[0]`: expected a list of 2 weights (one per objective), got [1.0]"),
    ("task: dummy\nweights: [[1.2, -0.2]]\n", "`weights[0]`: expected non-negative weights"),
    ("[1, 2]\n", "expected a mapping at the top of"),
    ("task: [\n", "is not valid YAML"),
])
def test_bad_yaml(tmp_path, yaml_text, pattern):
    cfg = write_yaml(tmp_path / "c.yaml", yaml_text)
    out = tmp_path / "out"
    for cmd in (["run", "--config", cfg, "--out", str(out)], ["validate", "--config", cfg]):
        proc = run_cli(*cmd)
        assert proc.returncode == 2, proc.stderr
        assert pattern in one_error_line(proc)
    assert not out.exists()


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    proc = run_cli("run", "--task", "dummy", "--out", str(blocker / "sub"), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 2
    assert "`--out`: expected a writable directory" in one_error_line(proc)
    proc = run_cli("run", "--task", "dummy", "--out", str(blocker), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 2 and "(a file)" in one_error_line(proc)
    assert blocker.read_text() == "not a dir"


def test_failing_method_keeps_the_others(tmp_path, capsys):
    """A method plugin that raises: exit 1, its error recorded, the other method's results intact."""
    plug = tmp_path / "plugs"
    plug.mkdir()
    (plug / "twin.py").write_text(textwrap.dedent("""
        from sipo_bench.contract.hookspecs import hookimpl
        from sipo_bench_plugins.dummy import DummyMethod
        class Twin(DummyMethod):
            name = "twin"
        @hookimpl
        def sipo_bench_register_methods():
            return [Twin]
    """))
    cfg = write_yaml(tmp_path / "c.yaml", """
        task: dummy
        methods: [dummy, twin]
        method_options: {twin: {fail: true}}
    """)
    out = tmp_path / "out"
    code = main(["run", "--config", cfg, "--plugins-dir", str(plug), "--out", str(out),
                 "--cache-dir", str(tmp_path / "c"), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    import re

    assert re.search(r"method 'twin' failed: stage dummy-train\[[ab],seed=0\]: RuntimeError: dummy method asked to fail", err)
    s = json.loads((out / "summary.json").read_text())
    assert s["methods"]["twin"]["status"] == "failed"
    assert s["methods"]["dummy"]["status"] == "ok" and s["methods"]["dummy"]["hypervolume"] is not None
    assert len(list((out / "logs" / "failures").iterdir())) == 2  # one per objective's stage
    assert "twin" in (out / "table.md").read_text()


def test_method_that_raises_in_fit(tmp_path, capsys):
    plug = tmp_path / "plugs"
    plug.mkdir()
    (plug / "broken.py").write_text(textwrap.dedent("""
        from sipo_bench.contract.hookspecs import hookimpl
        from sipo_bench.contract.interfaces import Method
        class Broken(Method):
            name = "broken"
            needs_model = False
            def fit(self, ctx):
                raise KeyError("no such adapter")
        @hookimpl
        def sipo_bench_register_methods():
            return [Broken]
    """))
    out = tmp_path / "out"
    code = main(["run", "--task", "dummy", "--methods", "dummy,broken", "--plugins-dir", str(plug),
                 "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet"])
    assert code == 1
    s = json.loads((out / "summary.json").read_text())
    assert s["methods"]["broken"]["status"] == "failed"
    assert "planning failed: KeyError" in s["methods"]["broken"]["error"]
    assert s["methods"]["dummy"]["status"] == "ok"
    # the traceback goes to OUT/logs/failures/, the console gets one line per failure
    tb = (out / "logs" / "failures" / "plan-broken.txt").read_text()
    assert "Traceback" in tb and "KeyError: 'no such adapter'" in tb and ", in fit" in tb
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "method broken failed while planning: KeyError: 'no such adapter'" in err
    assert f"method 'broken' failed: planning failed: KeyError: 'no such adapter' (tracebacks in {out}/logs/failures/)" in err


def test_duplicate_plugin_name_is_usage_error(tmp_path):
    plug = tmp_path / "plugs"
    plug.mkdir()
    (plug / "clash.py").write_text(textwrap.dedent("""
        from sipo_bench.contract.hookspecs import hookimpl
        from sipo_bench_plugins.dummy import DummyTask
        @hookimpl
        def sipo_bench_register_tasks():
            return [DummyTask]
    """))
    out = tmp_path / "out"
    proc = run_cli("run", "--task", "dummy", "--plugins-dir", str(plug), "--out", str(out))
    assert proc.returncode == 2
    assert "plugin 'clash': task name 'dummy' is already registered by the built-in plugin 'dummy'" in one_error_line(proc)
    assert not out.exists()


def test_listing_commands(capsys):
    assert main(["plugins", "--json"]) == 0
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert plugins["dummy"]["registers"]["tasks"] == ["dummy"]
    assert main(["ls", "methods"]) == 0
    assert "dummy" in capsys.readouterr().out
    assert main(["ls", "objectives"]) == 0
    assert capsys.readouterr().out.split()[0:1] != []


def test_run_and_validate_ok(tmp_path, capsys):
    cfg = write_yaml(tmp_path / "c.yaml", "task: dummy\nseeds: [0, 1]\nweights: 2\n")
    assert main(["validate", "--config", cfg]) == 0
    assert "ok: task dummy, methods dummy, 3 weights, 2 seed(s)" in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["run", "--config", cfg, "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["schema_version"] == 3 and s["task"] == "dummy"
    assert s["objectives"] == [{"name": "a", "higher_is_better": True, "description": "share of the letter a"},
                               {"name": "b", "higher_is_better": True, "description": "share of the letter b"}]
    assert s["weights"] == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    assert s["ref_point"] == [0.5, 0.5] and "base policy" in s["ref_point_source"]
    m = s["methods"]["dummy"]
    assert m["trained_on"] is None and m["variant"] is None  # the dummy method trains on nothing
    assert len(m["points"]) == 6 and {p["seed"] for p in m["points"]} == {0, 1}
    # endpoint adapters: strength 0.9 of the preferred letter; mid-point mixes them
    by_w = {tuple(p["w"]): p["scores"] for p in m["mean_points"]}
    assert by_w[(1.0, 0.0)] == pytest.approx([0.9, 0.1]) and by_w[(0.5, 0.5)] == pytest.approx([0.5, 0.5])
    assert m["hypervolume"]["interval"]["method"] == "t" and m["hypervolume_floor"]["mean"] > 0
    for key in ("config", "versions", "git_commit", "run"):
        assert key in s


def test_cache_dir_env_and_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIPO_BENCH_CACHE", str(tmp_path / "envcache"))
    out = tmp_path / "out"
    assert main(["run", "--task", "dummy", "--out", str(out), "--quiet"]) == 0
    assert (tmp_path / "envcache" / "stages").is_dir()

    def statuses():
        rows = [json.loads(l) for l in (out / "logs" / "stages.jsonl").read_text().splitlines()]
        last = rows[-1]["run_id"]
        return {r["event"] for r in rows if r["run_id"] == last}

    assert main(["run", "--task", "dummy", "--out", str(out), "--quiet"]) == 0
    assert statuses() == {"cached"}
    assert main(["run", "--task", "dummy", "--out", str(out), "--quiet", "--no-cache"]) == 0
    assert statuses() == {"start", "done"}


def test_scorer_direction_must_match_objective(tmp_path, capsys):
    plug = tmp_path / "plugs"
    plug.mkdir()
    (plug / "flip.py").write_text(textwrap.dedent("""
        from sipo_bench.contract.hookspecs import hookimpl
        from sipo_bench_plugins.dummy import DummyScorer, DummyTask
        class LowerIsBetterA(DummyScorer):
            name = "flipped"
            def directions(self):
                return {"a": False, "b": True}
        class FlipTask(DummyTask):
            name = "flip-task"
            def scorers(self):
                return [("flipped", {})]
        @hookimpl
        def sipo_bench_register_scorers():
            return [LowerIsBetterA]
        @hookimpl
        def sipo_bench_register_tasks():
            return [FlipTask]
    """))
    out = tmp_path / "out"
    code = main(["run", "--task", "flip-task", "--methods", "dummy", "--plugins-dir", str(plug), "--out", str(out),
                 "--cache-dir", str(tmp_path / "c"), "--quiet"])
    assert code == 1
    s = json.loads((out / "summary.json").read_text())
    assert "scores 'a' as lower is better, but task 'flip-task' declares the opposite" in s["methods"]["dummy"]["error"]
