"""One training budget for every method (issue 22): the run's `budget` reaches every method
config that has its fields (the DPO endpoints, DPO-LW, MODPO, SIPO's re-alignment validation),
and a field a method cannot meet, a value that contradicts it or a bad value is exit 2 naming
the field, before anything runs."""

from __future__ import annotations

import pytest

from sipo_bench.configs.run_config import make_config
from sipo_bench.execution.runtime import Runtime
from sipo_bench.planning.experiment import plan_run

BUDGET = {"epochs": 2, "max_pairs": 64, "eval_every": 0.5, "load_best": True}


def test_the_budget_reaches_every_training_stage():
    cfg = make_config({"task": "synthetic-hh", "methods": ["dpo", "mod", "dpo-soups", "dpo-lw", "modpo", "sipo"],
                       "weights": 2, "budget": BUDGET})
    stages = plan_run(cfg, Runtime(quiet=True)).stages()
    from sipo_bench.execution.stages import walk

    trained = {}
    for s in walk(stages):
        kind = s.name.split("[")[0]
        if "train" in s.config:
            trained.setdefault(kind, []).append(s.config["train"])
    assert {"dpo", "dpo-lw", "modpo", "sipo-realign"} <= set(trained)
    for kind, trains in trained.items():
        for t in trains:
            assert t["eval_every"] == 0.5 and t["load_best"] is True, kind
            assert t["max_pairs"] == 64, kind
            # SIPO's re-alignment epochs are its own (matched by its controls); the rest get the budget's
            assert t["epochs"] == (8 if kind == "sipo-realign" else 2), kind
    # without a budget the synthetic task's defaults stand (its DPO endpoints skip validation)
    plain = plan_run(make_config({"task": "synthetic-hh", "methods": ["dpo"], "weights": 2}), Runtime(quiet=True))
    dpo = next(s for s in walk(plain.stages()) if s.name.startswith("dpo["))
    assert dpo.config["train"]["eval_every"] == 0 and dpo.config["train"]["epochs"] == 1


CASES = [
    ("methods: [dpo, rewarded-soups]\nbudget: {eval_every: 0.25}",
     "`budget.eval_every`: method 'rewarded-soups' cannot meet it (RewardedSoupsMethod meets no budget field); expected a budget every method of the run meets: leave rewarded-soups out"),
    ("methods: [dpo]\nmethod_options: {dpo: {epochs: 3}}\nbudget: {epochs: 2}",
     "`method_options.dpo.epochs`: expected 2 (the run's budget.epochs) or nothing, got 3"),
    ("methods: ['sipo@eval_every=0']\nbudget: {eval_every: 0.25}",
     "`methods[0].eval_every`: expected 0.25 (the run's budget.eval_every) or nothing, got 0"),
    ("methods: [dpo]\nbudget: {eval_every: 2}", "`budget.eval_every`: expected a fraction of an epoch in [0, 1]"),
    ("methods: [dpo]\nbudget: {epochs: .nan}", "`budget.epochs`: expected a number > 0"),
    ("methods: [dpo]\nbudget: {max_pairs: 1.5}", "`budget.max_pairs`: expected an integer >= 1"),
    ("methods: [dpo]\nbudget: {steps: 16}", "`budget.steps`: expected one of epochs, max_pairs, eval_every, load_best"),
    ("methods: [dpo]\nbudget: {load_best: true, eval_every: 0}", "`budget.load_best`: expected false when budget.eval_every is 0"),
    ("methods: [dpo]\nbudget: [epochs]", "`budget`: expected a mapping"),
]


@pytest.mark.parametrize("yaml_text, message", CASES)
def test_a_budget_some_method_cannot_meet_is_a_usage_error(usage_error, yaml_text, message):
    assert message in usage_error("task: synthetic-hh\nweights: 2\n" + yaml_text)


def test_reports_state_the_budget():
    from sipo_bench.reporting.tables import budget_text

    assert budget_text({"config": {}}) == "" and budget_text({}) == ""
    line = budget_text({"config": {"budget": {"epochs": 2, "eval_every": 0.25}}})
    assert line.startswith("- Budget, set for every method") and "epochs 2, eval_every 0.25" in line
