"""Sweeps on the dummy task: one config -> one stage graph (shared stages once), one summary per
point identical to a separate run, and a multi-run report (markdown, CSV, PNG) rendered from
the points' summaries."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sipo_bench.configs import sweep
from sipo_bench.reporting import sweep_report
from sipo_bench.cli import main
from sipo_bench.configs.schema import ConfigError
from sipo_bench.configs.run_config import make_config
from sipo_bench.reporting.summary import comparable

SWEEP_YAML = """\
task: dummy
task_options: {prompt_noise: 0.2, n_test: 8}
methods: [dummy, "dummy@strength=1.0"]
compare_to: {"dummy@strength=1.0": dummy}
seeds: [0, 1, 2]
weights: 2
eval_noise_replicates: 50
sweep:
  method_options.dummy.strength: [0.6, 0.8]
"""


def write_yaml(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    base = tmp_path_factory.mktemp("sweep")
    out = base / "out"
    rc = main(["run", "--config", write_yaml(base / "s.yaml", SWEEP_YAML), "--out", str(out),
               "--cache-dir", str(base / "cache"), "--quiet"])
    assert rc == 0
    return {"out": out, "base": base, "cache": base / "cache"}


def test_check_sweep_errors():
    for bad, msg in [
        ({"seeds": [[0], [1]]}, "`sweep.seeds`: expected a path under task_options, method_options, decoding"),
        ({"task_options": [1]}, "`sweep.task_options`: expected a path of the form task_options.<field>"),
        ({"method_options.sipo": [1]}, "`sweep.method_options.sipo`: expected a path of the form method_options.<method>.<field>"),
        ({"max_test_prompts.x": [1]}, "`sweep.max_test_prompts.x`: expected the field max_test_prompts itself"),
        ({"task_options.n_test": []}, "`sweep.task_options.n_test`: expected a non-empty list of values, got []"),
        ({"task_options.n_test": [4, 4]}, "`sweep.task_options.n_test`: expected distinct values, got [4, 4]"),
        ([1], "`sweep`: expected a mapping, got [1] (list)"),
    ]:
        with pytest.raises(ConfigError) as e:
            make_config({"sweep": bad})
        assert str(e.value).startswith(msg), str(e.value)


def test_expand_is_the_product_with_short_labels():
    cfg = make_config({"task": "dummy", "sweep": {"task_options.n_test": [4, 8], "method_options.dummy.strength": [0.5, 1.0],
                                                  "decoding.greedy": [True]}})
    pts = sweep.expand(cfg)
    assert [p.label for p in pts] == ["n_test=4,strength=0.5,greedy=true", "n_test=4,strength=1.0,greedy=true",
                                      "n_test=8,strength=0.5,greedy=true", "n_test=8,strength=1.0,greedy=true"]
    assert pts[1].config.task_options == {"n_test": 4} and pts[1].config.method_options == {"dummy": {"strength": 1.0}}
    assert pts[1].config.sweep == {} and pts[1].values == {"task_options.n_test": 4, "method_options.dummy.strength": 1.0,
                                                            "decoding.greedy": True}
    same_leaf = make_config({"sweep": {"method_options.a.alpha": [0], "method_options.b.alpha": [1]}})
    assert sweep.expand(same_leaf)[0].label == "method_options.a.alpha=0,method_options.b.alpha=1"
    assert sweep.expand(make_config({})) == []


def test_one_graph_shared_stages_run_once(swept):
    events = [json.loads(l) for l in (swept["out"] / "logs" / "stages.jsonl").read_text().splitlines()]
    done = [e for e in events if e.get("event") == "done"]
    keys = [e["key"] for e in done]
    assert len(keys) == len(set(keys))  # every stage ran once
    # The variant's options do not depend on the swept dummy option: its training is shared by both points.
    train = [e for e in done if e["stage"].startswith("dummy-train")]
    assert len(train) == 3 * 2 * 3  # seeds x objectives x {dummy@0.6, dummy@0.8, dummy@strength=1.0}
    index = json.loads((swept["out"] / "sweep.json").read_text())
    assert [p["dir"] for p in index["points"]] == ["strength=0.6", "strength=0.8"]
    assert index["sweep"] == {"method_options.dummy.strength": [0.6, 0.8]}


def test_each_point_equals_a_separate_run(swept, tmp_path):
    cfg = SWEEP_YAML.split("sweep:")[0] + "method_options: {dummy: {strength: 0.8}}\n"
    out = tmp_path / "single"
    assert main(["run", "--config", write_yaml(tmp_path / "one.yaml", cfg), "--out", str(out), "--cache-dir",
                 str(swept["cache"]), "--quiet"]) == 0
    single = json.loads((out / "summary.json").read_text())
    point = json.loads((swept["out"] / "strength=0.8" / "summary.json").read_text())
    a, b = comparable(single), comparable(point)
    a.pop("config"), b.pop("config")
    assert a == b
    assert (out / "table.md").read_text() == (swept["out"] / "strength=0.8" / "table.md").read_text()


def test_sweep_tables_trace_to_the_point_summaries(swept):
    md = (swept["out"] / "sweep.md").read_text()
    s08 = json.loads((swept["out"] / "strength=0.8" / "summary.json").read_text())
    hv = s08["methods"]["dummy"]["hypervolume_floor"]
    c = s08["methods"]["dummy@strength=1.0"]["comparisons"]["dummy"]["hypervolume_floor"]
    assert "## HV vs floor [t 95% CI]" in md and "| method | strength=0.6 | strength=0.8 |" in md
    iv = hv["interval"]
    assert f"{hv['mean']:.4f} [{iv['lo']:.4f}, {iv['hi']:.4f}]" in next(l for l in md.split("## HV vs floor")[1].splitlines()
                                                                       if l.startswith("| dummy |"))
    row = next(l for l in md.split("## paired ΔHV vs floor")[1].splitlines() if l.startswith("| dummy@strength=1.0 − dummy |"))
    iv = c["interval"]
    assert f"{c['mean']:.4f} [{iv['lo']:.4f}, {iv['hi']:.4f}] ({c['wins']}/{c['ties']}/{c['losses']}, p {c['p_value']['p']:.4f}, p Holm {c['p_holm']['p']:.4f})" in row
    rows = (swept["out"] / "sweep.csv").read_text().splitlines()
    assert rows[0].startswith("point,method_options.dummy.strength,quantity,method,baseline,reference,mean,lo,hi,interval")
    line = next(r for r in rows if r.startswith("strength=0.8,0.8,delta_hv,dummy@strength=1.0,dummy,floor,"))
    assert line.split(",")[6] == repr(c["mean"]) and line.split(",")[-3:] == [repr(c["p_value"]["p"]), "exact", repr(c["p_holm"]["p"])]


def test_sweep_plot_has_one_series_per_declared_pair(swept):
    index, summaries = sweep_report.load_sweep(swept["out"])
    fig = sweep_report.sweep_figure(index, summaries)
    assert [ax.get_ylabel() for ax in fig.axes] == ["paired ΔHV vs ref (paired t 95% CI)", "paired ΔHV vs floor (paired t 95% CI)"]
    assert fig.axes[1].get_xlabel() == "method_options.dummy.strength"
    lines = [l for l in fig.axes[1].get_lines() if l.get_gid() == "series:dummy@strength=1.0 − dummy"]
    assert lines
    c = [s["methods"]["dummy@strength=1.0"]["comparisons"]["dummy"]["hypervolume_floor"]["mean"] for s in summaries]
    assert np.allclose(lines[0].get_ydata(), c)
    import matplotlib.image as mpimg

    img = mpimg.imread(str(swept["out"] / "sweep.png"))
    assert img[..., :3].std() > 0.05


def test_report_rerenders_a_sweep_byte_for_byte(swept, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(swept["out"], copy)
    for f in ("sweep.md", "sweep.csv", "strength=0.6/table.md"):
        (copy / f).unlink()
    assert main(["report", str(copy)]) == 0
    for f in ("sweep.md", "sweep.csv", "strength=0.6/table.md"):
        assert (copy / f).read_bytes() == (swept["out"] / f).read_bytes()
    assert "paired ΔHV vs floor" in capsys.readouterr().out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sipo_bench.cli", *args], capture_output=True, text=True, timeout=120)


def test_bad_sweep_value_is_a_usage_error_naming_the_point(tmp_path):
    cfg = write_yaml(tmp_path / "bad.yaml", SWEEP_YAML.replace("[0.6, 0.8]", "[0.6, 2.0]"))
    out = tmp_path / "out"
    proc = run_cli("run", "--config", cfg, "--out", str(out), "--cache-dir", str(tmp_path / "c"))
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("sipo-bench: error: `sweep` point strength=2.0: `method_options.dummy`: `strength`: "
                               "expected a number in [0, 1], got 2.0")
    assert not out.exists()
    proc = run_cli("validate", "--config", write_yaml(tmp_path / "ok.yaml", SWEEP_YAML))
    assert proc.returncode == 0 and "2 sweep points" in proc.stdout


def test_a_failed_method_at_a_sweep_point_exits_1(tmp_path):
    cfg = write_yaml(tmp_path / "f.yaml", """\
        task: dummy
        methods: [dummy, "dummy@fail=true"]
        seeds: [0]
        weights: 1
        eval_noise_replicates: 0
        sweep:
          task_options.n_test: [2, 3]
        """)
    proc = run_cli("run", "--config", cfg, "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"), "--quiet")
    assert proc.returncode == 1
    errors = [l for l in proc.stderr.splitlines() if l.startswith("sipo-bench: sweep point")]
    assert errors == [f"sipo-bench: sweep point n_test={n}: method 'dummy@fail=true' failed: stage dummy-train[b,seed=0]: "
                      f"RuntimeError: dummy method asked to fail (tracebacks in {tmp_path / 'out'}/logs/failures/)"
                      for n in (2, 3)]
    md = (tmp_path / "out" / "sweep.md").read_text()
    assert "| dummy@fail=true | - | - |" in md  # a failed method has no HV at any point
