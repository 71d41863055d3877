"""The synthetic presets of issue 11 validate, and say what they claim: the main table (every
method, 10 seeds, paired vs MOD and soups), the conflict sweep (4 fractions, SIPO vs its own
base) and the ablation (each variant changes only its own options of full SIPO)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipo_bench.cli import main
from sipo_bench.configs.run_config import load_yaml, make_config
from sipo_bench.planning.experiment import plan_run
from sipo_bench.execution.runtime import Runtime
from sipo_bench.planning.experiment import plan_sweep

PRESETS = Path(__file__).resolve().parents[1] / "presets"


def plans(name: str):
    cfg = make_config(load_yaml(PRESETS / name))
    runtime = Runtime(quiet=True)
    points = plan_sweep(cfg, runtime, plan_run)
    return cfg, points, [p.plan for p in points] or [plan_run(cfg, runtime)]


@pytest.mark.parametrize("name", ["synthetic-main.yaml", "synthetic-conflict-sweep.yaml", "synthetic-ablation.yaml"])
def test_preset_validates(name, capsys):
    assert main(["validate", "--config", str(PRESETS / name)]) == 0
    assert capsys.readouterr().out.startswith("ok: task synthetic-hh")


def test_main_preset():
    cfg, points, (plan,) = plans("synthetic-main.yaml")
    assert not points and cfg.seeds == list(range(10)) and plan.task.config.conflict_fraction == 0.6
    controls = {"sipo@control=original-pairs", "sipo@control=self-pairs"}  # SIPO's compute-matched controls
    assert set(plan.methods) == {"dpo", "dpo-lw", "dpo-soups", "mod", "modpo", "rewarded-soups", "sipo"} | controls
    assert ("sipo", "mod") in plan.compare and ("sipo", "dpo-soups") in plan.compare and ("mod", "dpo-soups") in plan.compare
    assert all((c, "sipo") in plan.compare for c in controls)  # SIPO's own gain, at its budget
    assert len(plan.compare) == 8 + 8 + 8


def test_tune_preset():
    """Every tuned method gets the same 4 trials, evaluated on validation prompts."""
    cfg, points, (plan,) = plans("synthetic-tune.yaml")
    assert cfg.eval_split == "val" and cfg.seeds == [0, 1, 2]
    trials = {m: [l for l in plan.methods if l.startswith(m + "@")] for m in cfg.tune}
    assert all(len(t) == 4 for t in trials.values()) and {"mod", "dpo-soups"} <= set(plan.methods)
    gen = next(s for s in plan.reference.values()).generate
    assert gen.config["split"] == "val"


def test_conflict_sweep_preset():
    cfg, points, ps = plans("synthetic-conflict-sweep.yaml")
    assert [p.task.config.conflict_fraction for p in ps] == [0.0, 0.3, 0.6, 0.9]
    assert [p.label for p in points] == ["conflict_fraction=0.0", "conflict_fraction=0.3", "conflict_fraction=0.6",
                                         "conflict_fraction=0.9"]
    plan = ps[0]
    assert plan.compare == [("sipo@base=mod", "mod"), ("sipo@base=dpo-soups", "dpo-soups")]
    assert plan.methods["sipo@base=mod"].config["base"] == "mod"
    assert plan.methods["sipo@base=dpo-soups"].config["base"] == "dpo-soups"
    assert cfg.seeds == list(range(10))


def test_ablation_variants_change_only_their_options():
    cfg, _, (plan,) = plans("synthetic-ablation.yaml")
    full = plan.methods["sipo"].config
    assert (full["sample_greedy"], full["refine_greedy"], full["filter_scorers"], full["rounds"], full["alpha"]) == (
        True, True, "objectives+soups", 1, 0.1)
    assert (full["realign_epochs"], full["realign_learning_rate"]) == (8.0, 5e-3)  # the synthetic budget
    expected = {"sipo@refine=false": {"refine": False}, "sipo@filter_scorers=objectives": {"filter_scorers": "objectives"},
                "sipo@sample_greedy=false,refine_greedy=false": {"sample_greedy": False, "refine_greedy": False},
                "sipo@rounds=2": {"rounds": 2}, "sipo@alpha=0": {"alpha": 0.0}, "sipo@realign_epochs=1,realign_learning_rate=0.0005": {
                    "realign_epochs": 1.0, "realign_learning_rate": 5e-4, "epochs": 1.0, "learning_rate": 5e-4}}
    assert set(plan.methods) == {"sipo", *expected}
    for label, changed in expected.items():
        cfg_v = plan.methods[label].config
        assert {k: v for k, v in cfg_v.items() if full[k] != v} == changed, label
    assert sorted(plan.compare) == sorted((label, "sipo") for label in expected)
    assert cfg.seeds == list(range(10)) and plan.task.config.conflict_fraction == 0.6
