"""Paired comparisons, method variants, evaluation noise and samples per prompt on real (dummy)
runs: numbers in summary.json traced by hand, the tables naming every interval, and one-line
usage errors for bad labels and baselines."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from sipo_bench.reporting import merge
from sipo_bench.scoring import stats
from sipo_bench.cli import main
from sipo_bench.execution.stages import read_jsonl
from sipo_bench.configs.variants import compare_pairs, parse_label, split_labels


def write_yaml(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def run(tmp_path: Path, name: str, yaml_text: str, cache: Path, *extra: str) -> dict:
    out = tmp_path / name
    rc = main(["run", "--config", write_yaml(tmp_path / f"{name}.yaml", yaml_text), "--out", str(out),
               "--cache-dir", str(cache), "--quiet", *extra])
    assert rc == 0
    return json.loads((out / "summary.json").read_text())


def dummy_share(prompt: str, share: float, noise: float, n: int = 10) -> float:
    """The dummy generator's a-share for one prompt, recomputed from its definition."""
    u = (zlib.crc32(prompt.encode()) % 2001) / 1000.0 - 1.0
    return min(max(round(n * (share + noise * u)), 0), n) / n


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    base = tmp_path_factory.mktemp("cmp")
    s = run(base, "noisy", """\
        task: dummy
        task_options: {prompt_noise: 0.3, n_test: 12}
        methods: [dummy, "dummy@strength=1.0", "dummy@strength=0.7,sleep=0"]
        compare_to: dummy
        seeds: [0, 1, 2]
        eval_noise_replicates: 300
        """, base / "cache")
    return {"summary": s, "out": base / "noisy", "base": base}


# --- labels and declarations ----------------------------------------------------------------------


def test_parse_and_split_labels():
    assert parse_label("sipo") == ("sipo", {})
    assert parse_label("sipo@refine=false,rounds=2,base=dpo-soups,alpha=0.1") == (
        "sipo", {"refine": False, "rounds": 2, "base": "dpo-soups", "alpha": 0.1})
    assert split_labels("mod,sipo@base=dpo-soups,rounds=2,dpo-soups") == ["mod", "sipo@base=dpo-soups,rounds=2", "dpo-soups"]
    assert split_labels("all") == ["all"]
    for bad, msg in [("sipo@", "`methods`: expected a method name or a variant"),
                     ("sipo@refine", "`methods`: expected a method name or a variant 'method@field=value[,field=value]', "
                                     "got 'sipo@refine' (no 'field=value' in 'refine')"),
                     ("sipo@a=1,a=2", "`methods`: expected each field once in 'sipo@a=1,a=2', got 'a' twice"),
                     ("sipo@w={x: 1}", "`methods.w`: expected a scalar option value (number, true/false, text), got '{x: 1}'")]:
        with pytest.raises(Exception) as e:
            parse_label(bad)
        assert str(e.value).startswith(msg)


def test_compare_pairs_forms():
    labels = ["sipo", "sipo@base=dpo-soups", "mod", "dpo-soups"]
    assert compare_pairs("mod", labels) == [("sipo", "mod"), ("sipo@base=dpo-soups", "mod"), ("dpo-soups", "mod")]
    assert compare_pairs(["mod", "dpo-soups"], labels)[3:] == [("sipo", "dpo-soups"), ("sipo@base=dpo-soups", "dpo-soups"),
                                                                ("mod", "dpo-soups")]
    assert compare_pairs({"sipo": "mod", "sipo@base=dpo-soups": ["dpo-soups"]}, labels) == [
        ("sipo", "mod"), ("sipo@base=dpo-soups", "dpo-soups")]
    assert compare_pairs(None, labels) == []
    with pytest.raises(Exception, match=r"^`compare_to\[1\]`: unknown method of this run 'mdo'. Did you mean 'mod'\?"):
        compare_pairs(["mod", "mdo"], labels)
    with pytest.raises(Exception, match=r"^`compare_to.mod`: expected a baseline other than the method itself"):
        compare_pairs({"mod": "mod"}, labels)


# --- a real run ---------------------------------------------------------------------------------


def test_variants_are_methods_with_overridden_options(noisy):
    s = noisy["summary"]
    assert list(s["methods"]) == ["dummy", "dummy@strength=1.0", "dummy@strength=0.7,sleep=0"]
    assert s["methods"]["dummy"]["config"]["strength"] == 0.9
    assert s["methods"]["dummy@strength=1.0"]["config"]["strength"] == 1.0
    assert s["methods"]["dummy@strength=0.7,sleep=0"]["config"] == {"strength": 0.7, "sleep": 0, "fail": False}
    # Strength changes the endpoints, so HV vs floor differs from the plain method's.
    assert s["methods"]["dummy@strength=1.0"]["hypervolume_floor"]["mean"] != s["methods"]["dummy"]["hypervolume_floor"]["mean"]


def test_points_carry_their_standard_error_over_prompts(noisy):
    s = noisy["summary"]
    data = read_jsonl(next((noisy["base"] / "cache" / "stages").glob("*/test.jsonl")))
    assert len(data) == 12
    pt = next(p for p in s["methods"]["dummy"]["points"] if p["w"] == [0.5, 0.5] and p["seed"] == 1)
    prompts = [f"prompt 1-{i}" for i in range(12)]
    a = np.array([dummy_share(p, 0.5, 0.3) for p in prompts])  # w = (.5,.5): share .5*.9 + .5*.1 = .5
    assert pt["scores"] == [pytest.approx(a.mean()), pytest.approx(1 - a.mean())]
    assert pt["se"] == [pytest.approx(a.std(ddof=1) / math.sqrt(12)), pytest.approx(a.std(ddof=1) / math.sqrt(12))]
    assert pt["n_prompts"] == 12 and a.std() > 0.05


def test_hv_eval_noise_is_a_coherent_prompt_bootstrap(noisy):
    s = noisy["summary"]
    m = s["methods"]["dummy"]
    prompts = [f"prompt 0-{i}" for i in range(12)]
    pts = []
    for w in s["weights"]:
        share = w[0] * 0.9 + w[1] * 0.1
        a = np.array([dummy_share(p, share, 0.3) for p in prompts])
        pts.append(np.stack([a, 1 - a], axis=1))
    base = np.array([dummy_share(p, 0.5, 0.3) for p in prompts])
    expected = stats.prompt_bootstrap_hv(pts, np.stack([base, 1 - base], axis=1), [True, True], replicates=300, seed=0)
    assert m["hypervolume"]["eval_se"]["0"] == pytest.approx(expected["se"], abs=1e-12)
    floor = stats.prompt_bootstrap_hv(pts, [0.0, 0.0], [True, True], replicates=300, seed=0)
    assert m["hypervolume_floor"]["eval_se"]["0"] == pytest.approx(floor["se"], abs=1e-12) and floor["se"] > 0
    assert m["hypervolume_floor"]["per_seed"]["0"] == pytest.approx(floor["hv"])
    n = m["hypervolume_floor"]["noise"]
    se = [m["hypervolume_floor"]["eval_se"][k] for k in ("0", "1", "2")]
    assert n["eval_se"] == pytest.approx(math.sqrt(np.mean(np.square(se))))
    assert n["seed_sd"] == pytest.approx(np.std(list(m["hypervolume_floor"]["per_seed"].values()), ddof=1))
    assert s["evaluation"] == {"test_prompts": {"0": 12, "1": 12, "2": 12}, "samples_per_prompt": 1, "noise_replicates": 300}


def test_paired_comparison_in_summary_and_tables(noisy):
    s, out = noisy["summary"], noisy["out"]
    assert s["compare_to"] == [["dummy@strength=1.0", "dummy"], ["dummy@strength=0.7,sleep=0", "dummy"]]
    assert "comparisons" not in s["methods"]["dummy"]
    c = s["methods"]["dummy@strength=1.0"]["comparisons"]["dummy"]["hypervolume_floor"]
    a = s["methods"]["dummy@strength=1.0"]["hypervolume_floor"]["per_seed"]
    b = s["methods"]["dummy"]["hypervolume_floor"]["per_seed"]
    d = [a[k] - b[k] for k in ("0", "1", "2")]
    assert c["per_seed"] == {k: pytest.approx(x) for k, x in zip(("0", "1", "2"), d)}
    assert c["mean"] == pytest.approx(np.mean(d)) and c["interval"]["method"] == "paired t"
    half = 4.302652729749464 * np.std(d, ddof=1) / math.sqrt(3)
    assert (c["interval"]["lo"], c["interval"]["hi"]) == (pytest.approx(np.mean(d) - half), pytest.approx(np.mean(d) + half))
    assert all(x < 0 for x in d) and (c["wins"], c["ties"], c["losses"]) == (0, 0, 3)
    assert c["p_value"] == {"p": 0.25, "method": "exact", "patterns": 8, "n": 3}  # 2 of 8 patterns reach |sum d|
    table = (out / "table.md").read_text()
    assert "## Paired comparisons" in table
    assert "| method | baseline | ΔHV vs ref [paired t 95% CI] | W/T/L vs ref | p vs ref (sign-flip) |" in table
    row = next(l for l in table.splitlines() if l.startswith("| dummy@strength=1.0 | dummy |"))
    assert f"{np.mean(d):.4f} [{np.mean(d) - half:.4f}, {np.mean(d) + half:.4f}] | 0/0/3 of 3 | 0.2500 (exact, 8 patterns) |" in row
    assert "| p vs ref (sign-flip) | p Holm vs ref |" in table and "| p vs floor (sign-flip) | p Holm vs floor |" in table
    assert "p Holm: the sign-flip p adjusted by Holm's step-down method" in table and "HV vs floor vs dummy: 2" in table
    assert "## HV per seed" in table and "## Evaluation noise" in table and "Test prompts per seed: 12." in table


def test_console_shows_comparisons_and_noise(noisy, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "260")
    assert main(["report", str(noisy["out"])]) == 0
    text = capsys.readouterr().out
    for needle in ("paired comparisons", "0/0/3 of 3", "exact, 8", "evaluation noise of HV", "HV per seed", "t 95% CI"):
        assert needle in text, needle


def test_merge_recomputes_comparisons(noisy, tmp_path):
    s = noisy["summary"]
    merged = merge.merge([s])
    assert merged["methods"]["dummy@strength=1.0"]["comparisons"] == merge.normalize(s)["methods"]["dummy@strength=1.0"]["comparisons"]
    assert merged["methods"]["dummy"]["hypervolume_floor"]["eval_se"] == s["methods"]["dummy"]["hypervolume_floor"]["eval_se"]
    only = merge.normalize(s)
    del only["methods"]["dummy"]
    assert "comparisons" not in merge.merge([only])["methods"]["dummy@strength=1.0"]  # its baseline is gone


def test_ten_seeds_get_a_t_interval_and_the_per_seed_table(tmp_path):
    s = run(tmp_path, "ten", """\
        task: dummy
        task_options: {prompt_noise: 0.3, n_test: 6}
        methods: [dummy, "dummy@strength=1.0"]
        compare_to: [dummy]
        seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        weights: 2
        eval_noise_replicates: 0
        """, tmp_path / "cache")
    hv = s["methods"]["dummy"]["hypervolume_floor"]
    assert hv["interval"] == stats.t_interval(list(hv["per_seed"].values()))  # the bootstrap under-covers at 10
    assert hv["interval"]["n"] == 10
    assert "eval_se" not in hv and s["evaluation"]["noise_replicates"] == 0
    c = s["methods"]["dummy@strength=1.0"]["comparisons"]["dummy"]["hypervolume_floor"]
    assert c["interval"]["method"] == "paired t" and c["p_value"]["patterns"] == 1024
    table = (tmp_path / "ten" / "table.md").read_text()
    assert "HV vs floor (0.0000, 0.0000) [t 95% CI]" in table and "## HV per seed" in table
    assert "## Evaluation noise" not in table


def test_samples_per_prompt_averages_within_prompts_first(tmp_path):
    s = run(tmp_path, "spp", """\
        task: dummy
        task_options: {n_test: 5}
        methods: [dummy]
        seeds: [0]
        decoding: {greedy: false, samples_per_prompt: 3}
        """, tmp_path / "cache")
    assert s["evaluation"]["samples_per_prompt"] == 3
    p = s["methods"]["dummy"]["points"][0]
    assert p["n_prompts"] == 5 and p["se"] == [0.0, 0.0]
    gens = [read_jsonl(d / "generations.jsonl") for d in (tmp_path / "cache" / "stages").iterdir()
            if (d / "generations.jsonl").exists()]
    assert gens and all(len(g) == 15 and [r["sample"] for r in g[:3]] == [0, 1, 2] and g[3]["prompt_index"] == 1
                        for g in gens)


# --- usage errors ---------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sipo_bench.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, message", [
    (["--methods", "dummy,dummy@strenght=1"], "`methods[1].strenght`: unknown key 'strenght'. Did you mean 'strength'?"),
    (["--methods", "dummy@strength=2"], "`methods[0]`: `strength`: expected a number in [0, 1], got 2"),
    (["--methods", "dumy@strength=1"], "unknown method 'dumy'. Did you mean 'dummy'?"),
    (["--methods", "dummy@strength"], "`methods[0]`: expected a method name or a variant 'method@field=value[,field=value]', got 'dummy@strength'"),
    (["--methods", "dummy,dummy@strength=1.0", "--compare-to", "dumy"],
     "`compare_to[0]`: unknown method of this run 'dumy'. Did you mean 'dummy'?"),
])
def test_bad_labels_and_baselines_are_one_line_usage_errors(tmp_path, args, message):
    out = tmp_path / "out"
    proc = run_cli("run", "--task", "dummy", *args, "--out", str(out), "--cache-dir", str(tmp_path / "c"))
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert not out.exists()


def test_samples_per_prompt_needs_sampling(tmp_path):
    cfg = write_yaml(tmp_path / "c.yaml", "task: dummy\ndecoding: {samples_per_prompt: 4}\n")
    proc = run_cli("validate", "--config", cfg)
    assert proc.returncode == 2
    assert "`decoding`: `samples_per_prompt`: expected 1 with greedy decoding" in proc.stderr


def test_schema_1_summary_gets_honest_intervals(tmp_path):
    old = {"schema_version": 1, "task": "t", "objectives": [{"name": "a", "higher_is_better": True}],
           "seeds": [0, 1, 2], "methods": {"m": {"status": "ok", "hypervolume": {
               "mean": 2.0, "per_seed": {"0": 0.0, "1": 1.0, "2": 5.0}, "ci95": [0.0, 5.0], "std": 2.6}}}}
    (tmp_path / "summary.json").write_text(json.dumps(old))
    s = merge.load_summaries([tmp_path])[0]
    hv = s["methods"]["m"]["hypervolume"]
    assert "ci95" not in hv and hv["interval"] == stats.t_interval([0.0, 1.0, 5.0])
    assert s["schema_version"] == 3 and s["upgraded_from_schema"] == 1
