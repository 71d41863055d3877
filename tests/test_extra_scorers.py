"""`extra_scorers` on the dummy task: values by hand, reported per point and in the tables with
their direction, HV over the task's objectives only, the task's score stages and keys
untouched, validation before any stage runs (exit 2), a failing extra scorer fails its method."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sipo_bench.cli import main
from sipo_bench.configs.run_config import make_config
from sipo_bench.planning.experiment import plan_run
from sipo_bench.reporting.merge import merge
from sipo_bench.reporting.report import table_md
from sipo_bench.execution.runtime import Runtime

SCORERS = """
    from dataclasses import dataclass
    from typing import Literal
    from sipo_bench.configs.schema import build, check, field
    from sipo_bench.contract.hookspecs import hookimpl
    from sipo_bench.contract.interfaces import Objective, Scorer


    @dataclass
    class CountOptions:
        letter: str = field("a", help="The letter to count.")
        fail: bool = field(False, help="Raise while scoring.")

        def __post_init__(self):
            check(len(self.letter) == 1, "letter", "one character", self.letter)


    class Count(Scorer):
        \"\"\"Count of a letter (lower is better) and the response length (higher is better).\"\"\"
        name = "count"
        description = "letter count and length"
        options_class = CountOptions

        def __init__(self, **options):
            super().__init__(**options)
            self.cfg = build(CountOptions, options, "scorer count")

        def objectives(self):
            return [f"n_{self.cfg.letter}", "length"]

        def directions(self):
            return {f"n_{self.cfg.letter}": False, "length": True}

        def score(self, prompts, responses, progress=None):
            if self.cfg.fail:
                raise RuntimeError("count scorer asked to fail")
            return {f"n_{self.cfg.letter}": [float(r.count(self.cfg.letter)) for r in responses],
                    "length": [float(len(r)) for r in responses]}


    class Mystery(Scorer):
        name = "mystery"
        def objectives(self):
            return ["mystery"]
        def score(self, prompts, responses, progress=None):
            return {"mystery": [0.0] * len(responses)}


    class Registered(Mystery):
        name = "registered"
        def objectives(self):
            return ["fun"]
        def score(self, prompts, responses, progress=None):
            return {"fun": [1.0] * len(responses)}


    @hookimpl
    def sipo_bench_register_scorers():
        return [Count, Mystery, Registered]


    @hookimpl
    def sipo_bench_register_objectives():
        return [Objective("fun", False, "registered here, lower is better")]
"""


@pytest.fixture(scope="module")
def plugs(tmp_path_factory):
    d = tmp_path_factory.mktemp("extra-plugs")
    (d / "count_scorer.py").write_text(textwrap.dedent(SCORERS))
    return d


def write_config(path: Path, extra, **more) -> str:
    import yaml

    path.write_text(yaml.safe_dump({"task": "dummy", "methods": ["dummy"], "extra_scorers": extra, **more}))
    return str(path)


def run(plugs: Path, tmp: Path, extra, name: str = "out", cache: Path | None = None, **more) -> tuple[int, Path]:
    out = tmp / name
    code = main(["run", "--config", write_config(tmp / f"{name}.yaml", extra, **more), "--plugins-dir", str(plugs),
                 "--out", str(out), "--cache-dir", str(cache or tmp / "cache"), "--quiet"])
    return code, out


def events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "logs" / "stages.jsonl").read_text().splitlines()]


def test_extra_objectives_are_scored_on_every_point_with_their_direction(plugs, tmp_path):
    code, out = run(plugs, tmp_path, [{"name": "count", "options": {"letter": "b"}}])
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["extra_objectives"] == [
        {"name": "n_b", "higher_is_better": False, "description": "letter count and length", "scorer": "count"},
        {"name": "length", "higher_is_better": True, "description": "letter count and length", "scorer": "count"}]
    assert s["hv_objectives"] == ["a", "b"]
    # dummy responses: 10 letters, a-share = w_a * 0.9 + w_b * 0.1, so round(10 * share) a's, the rest b's
    m = s["methods"]["dummy"]
    by_w = {tuple(p["w"]): p for p in m["points"]}
    assert by_w[(1.0, 0.0)]["extra_scores"] == {"n_b": 1.0, "length": 10.0}
    assert by_w[(0.25, 0.75)]["extra_scores"] == {"n_b": 7.0, "length": 10.0}  # share 0.3: 3 a's, 7 b's
    assert by_w[(0.0, 1.0)]["extra_scores"] == {"n_b": 9.0, "length": 10.0}
    assert all(mp["extra_scores"] == by_w[tuple(mp["w"])]["extra_scores"] for mp in m["mean_points"])
    assert all("extra_scores" in f for f in m["front"])
    assert m["best"] == {"a": 0.9, "b": 0.9, "n_b": 1.0, "length": 10.0}  # n_b: min (lower is better)
    assert s["base_policy"]["extra_scores"] == {"0": {"n_b": 5.0, "length": 10.0}}
    # the HV is over the task's objectives only: the same as a run without extra scorers
    code, plain = run(plugs, tmp_path, [], name="plain")
    p = json.loads((plain / "summary.json").read_text())
    assert code == 0 and m["hypervolume"] == p["methods"]["dummy"]["hypervolume"]
    assert m["front"] != [] and [f["scores"] for f in m["front"]] == [f["scores"] for f in p["methods"]["dummy"]["front"]]
    assert "extra_objectives" not in p and "extra_scores" not in p["methods"]["dummy"]["points"][0]

    table = (out / "table.md").read_text()
    assert ("- Extra objectives (`extra_scorers`, scored on every point; reported only): n_b (lower is better; "
            "scorer count), length (higher is better; scorer count); base policy (mean over seeds): n_b=5.0000, "
            "length=10.0000.") in table
    assert "- The weight grid, fronts, HV and IGD+ cover the task's objectives only: a, b." in table
    assert "| best a (max) | best b (max) | best n_b (min; extra) | best length (max; extra) |" in table
    assert "| 0.9000 | 0.9000 | 1.0000 | 10.0000 |" in table
    rows = list(csv.DictReader(io.StringIO((out / "points.csv").read_text())))
    assert list(rows[0]) == ["method", "seed", "w_a", "w_b", "a", "b", "se_a", "se_b", "n_prompts", "n_b", "length"]
    assert {(r["w_a"], r["n_b"]) for r in rows} == {("0.0", "9.0"), ("0.25", "7.0"), ("0.5", "5.0"), ("0.75", "3.0"), ("1.0", "1.0")}


def test_task_score_stages_keep_their_keys_and_only_extra_scores_run(plugs, tmp_path):
    rt = Runtime(plugins_dir=plugs, quiet=True)
    plain = plan_run(make_config({"task": "dummy", "methods": ["dummy"]}), rt)
    extra = plan_run(make_config({"task": "dummy", "methods": ["dummy"], "extra_scorers": [{"name": "count"}]}), rt)
    plain_keys = {s.key for s in plain.stages()}
    extra_stages = [s for s in extra.stages() if s.key not in plain_keys]
    assert plain_keys <= {s.key for s in extra.stages()}
    assert {s.kind for s in extra_stages} == {"extra-score"} and len(extra_stages) == 6  # 5 weights + the base policy

    cache = tmp_path / "cache"
    assert run(plugs, tmp_path, [], name="first", cache=cache)[0] == 0
    code, out = run(plugs, tmp_path, [{"name": "count"}], name="second", cache=cache)
    assert code == 0
    done = {e["stage"].split("[")[0] for e in events(out) if e["event"] == "done"}
    assert done == {"extra-score"}
    # a different objective selection reuses the same extra-score stages
    code, out = run(plugs, tmp_path, [{"name": "count", "objectives": ["length"]}], name="third", cache=cache)
    assert code == 0 and not [e for e in events(out) if e["event"] == "done"]
    s = json.loads((out / "summary.json").read_text())
    assert [o["name"] for o in s["extra_objectives"]] == ["length"]
    assert s["methods"]["dummy"]["points"][0]["extra_scores"] == {"length": 10.0}


def test_a_failing_extra_scorer_fails_the_method(plugs, tmp_path, capsys):
    code, out = run(plugs, tmp_path, [{"name": "count", "options": {"fail": True}}])
    assert code == 1
    s = json.loads((out / "summary.json").read_text())
    m = s["methods"]["dummy"]
    assert m["status"] == "failed" and m["hypervolume"] is None
    assert m["error"].startswith("stage extra-score[count,dummy,w=") and m["error"].endswith("RuntimeError: count scorer asked to fail")
    assert "method 'dummy' failed" in capsys.readouterr().err


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sipo_bench.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("extra, message", [
    ([{"name": "cont"}], "`extra_scorers[0].name`: unknown scorer 'cont'. Did you mean 'count'? Available: "),
    ([{"options": {}}], "`extra_scorers[0].name`: expected a value (the field is required), got nothing"),
    (["count"], "`extra_scorers[0]`: expected a mapping, got 'count' (str)"),
    ([{"name": "count", "opts": {}}], "`extra_scorers[0].opts`: unknown key 'opts'. Did you mean 'options'?"),
    ([{"name": "count", "options": {"leter": "b"}}], "`extra_scorers[0].options.leter`: unknown key 'leter'. Did you mean 'letter'?"),
    ([{"name": "count", "options": {"letter": "bb"}}], "`extra_scorers[0].options`: `letter`: expected one character, got 'bb'"),
    ([{"name": "count", "objectives": ["lenght"]}], "`extra_scorers[0].objectives[0]`: unknown objective 'lenght'. Did you mean 'length'?"),
    ([{"name": "count", "objectives": []}], "`extra_scorers[0].objectives`: expected at least one of ['n_a', 'length'], got []"),
    ([{"name": "count", "options": {"letter": "b"}, "objectives": ["n_b"]}, {"name": "count", "options": {"letter": "b"}}],
     "`extra_scorers[1]`: objective 'n_b' of scorer 'count' is already added by extra_scorers[0] (select others with `objectives`)"),
    ([{"name": "dummy"}], "`extra_scorers[0]`: objective 'a' of scorer 'dummy' is already an objective of task 'dummy'"),
    ([{"name": "mystery"}], "`extra_scorers[0]`: the direction of objective 'mystery' is unknown: scorer 'mystery' does not declare it"),
])
def test_bad_extra_scorers_exit_2_before_anything_runs(plugs, tmp_path, extra, message):
    out = tmp_path / "out"
    proc = run_cli("run", "--config", write_config(tmp_path / "c.yaml", extra), "--plugins-dir", str(plugs),
                   "--out", str(out), "--cache-dir", str(tmp_path / "cache"))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("sipo-bench: error: " + message), lines[0]
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_direction_from_a_registered_objective(plugs, tmp_path):
    code, out = run(plugs, tmp_path, [{"name": "registered"}])
    s = json.loads((out / "summary.json").read_text())
    assert code == 0 and s["extra_objectives"][0]["higher_is_better"] is False
    assert s["extra_objectives"][0]["description"] == "registered here, lower is better"


def test_merge_unites_extra_objectives(plugs, tmp_path):
    _, a = run(plugs, tmp_path, [{"name": "count", "objectives": ["length"]}], name="a")
    _, b = run(plugs, tmp_path, [{"name": "registered"}], name="b", seeds=[1])
    merged = merge([json.loads((a / "summary.json").read_text()), json.loads((b / "summary.json").read_text())])
    assert [o["name"] for o in merged["extra_objectives"]] == ["length", "fun"]
    assert "| best length (max; extra) | best fun (min; extra) |" in table_md(merged)


def test_extra_scorers_flag(plugs, tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--task", "dummy", "--methods", "dummy", "--extra-scorers", "count", "--plugins-dir", str(plugs),
                 "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert [o["name"] for o in s["extra_objectives"]] == ["n_a", "length"]
    assert s["config"]["extra_scorers"] == [{"name": "count", "options": {}, "objectives": None}]
    by_w = {tuple(p["w"]): p["extra_scores"] for p in s["methods"]["dummy"]["points"]}
    assert by_w[(1.0, 0.0)] == {"n_a": 9.0, "length": 10.0} and by_w[(0.0, 1.0)] == {"n_a": 1.0, "length": 10.0}
