"""End to end on the synthetic task: every baseline through the CLI, offline, with the tiny-model
defaults of `plugins/sipo_bench_plugins/synthetic/methods.yaml`. Slow (minutes, once per
session; the SFT model comes from the shared session cache)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

pytestmark = pytest.mark.slow

METHODS = ["dpo", "dpo-soups", "mod", "modpo", "dpo-lw", "rewarded-soups"]


@pytest.fixture(scope="module")
def run(cache_dir, tmp_path_factory):
    from sipo_bench.cli import main

    out = tmp_path_factory.mktemp("baselines-e2e") / "out"
    code = main(["run", "--task", "synthetic-hh", "--methods", ",".join(METHODS), "--out", str(out),
                 "--cache-dir", str(cache_dir), "--max-test-prompts", "64", "--quiet"])
    summary = json.loads((out / "summary.json").read_text())
    events = [json.loads(line) for line in (out / "logs" / "stages.jsonl").read_text().splitlines()]
    return code, summary, events


def test_every_baseline_has_a_front_and_hypervolume(run):
    code, summary, _ = run
    for m in METHODS:
        entry = summary["methods"][m]
        assert entry["status"] == "ok", (m, entry["error"])
        assert entry["front"] and entry["hypervolume"] is not None and entry["hypervolume_floor"] is not None, m
    assert code == 0
    assert len(summary["methods"]["dpo"]["points"]) == 2  # only the vertices
    for m in ("dpo-soups", "mod", "modpo", "dpo-lw", "rewarded-soups"):
        assert len(summary["methods"][m]["points"]) == len(summary["weights"]) == 5, m


def test_each_dpo_stage_ran_once(run):
    _, _, events = run
    dpo = [e for e in events if e["stage"].startswith("dpo[")]
    keys = {e["key"] for e in dpo}
    assert len(keys) == 2  # one per objective, shared by dpo, soups, MOD, MODPO and DPO-LW
    for key in keys:
        done = [e for e in dpo if e["key"] == key and e["event"] in ("done", "cached")]
        assert len(done) == 1, done
    assert all(e["event"] != "failed" for e in events)


def test_dpo_endpoints_beat_the_sft_model_on_their_objective(run):
    _, summary, _ = run
    base = summary["base_policy"]["scores"]["0"]
    points = {tuple(p["w"]): p["scores"] for p in summary["methods"]["dpo"]["points"]}
    helpful_end, harmless_end = points[(1.0, 0.0)], points[(0.0, 1.0)]
    print(f"SFT {base}  dpo[helpful] {helpful_end}  dpo[harmless] {harmless_end}")
    assert helpful_end[0] > base[0]
    assert harmless_end[1] > base[1]
