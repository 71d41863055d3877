"""SIPO's config and planning without training: the released-pipeline defaults, the
re-alignment budget options, the variant text, what it says it was trained on, and the
settings that cannot act (errors, not no-ops). Milliseconds; no torch except the last test."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from sipo_bench.configs.schema import ConfigError, build
from sipo_bench.contract.interfaces import FitContext, Objective, Task
from sipo_bench.execution.stages import Stage
from sipo_bench.contract.weights import simplex_grid
from sipo_bench_baselines.configs import DPOConfig, MODConfig
from sipo_bench_plugins.sipo.config import SIPOConfig
from sipo_bench_plugins.sipo.method import SIPOMethod

CONFIGS = {"sipo": SIPOConfig, "dpo": DPOConfig, "mod": MODConfig}


class FakeTask(Task):
    name = "fake"

    def objectives(self):
        return [Objective("helpful"), Objective("harmless")]

    def scorers(self):
        return [("oracle", {})]

    def build_data(self, out, seed, ctx):  # pragma: no cover - never run here
        raise NotImplementedError

    def build_base(self, data, out, seed, ctx):  # pragma: no cover
        raise NotImplementedError


def fit(options=None):
    options = options or {}
    data = Stage("data[seed=0]", "x:data", {"seed": 0})
    base = Stage("base[seed=0]", "x:base", {"seed": 0}, {"data": data})

    def config_of(name):
        return build(CONFIGS[name], options.get(name, {}), f"method_options.{name}")

    ctx = FitContext(task=FakeTask(), seed=0, data=data, base=base, weights=simplex_grid(2, 4), runtime=None,
                     method_name="sipo", method_configs=config_of)
    method = SIPOMethod(config_of("sipo"))
    return method, method.fit(ctx), data


def test_class_defaults_follow_the_released_pipeline():
    c = SIPOConfig()
    assert (c.sample_greedy, c.refine_greedy, c.filter_scorers) == (True, True, "objectives+soups")
    assert (c.realign_learning_rate, c.realign_epochs, c.alpha, c.beta) == (5e-6, 3.0, 0.1, 0.1)
    assert (c.eval_every, c.load_best) == (0.25, True)  # best checkpoint on the objective's validation pairs
    # the re-alignment budget is what the re-alignment trainer receives
    t = c.training()
    assert (t["learning_rate"], t["epochs"], t["eval_every"], t["load_best"]) == (5e-6, 3.0, 0.25, True)
    assert c.variant() == ("on mod, candidates greedy, review+rewrite greedy, filter objectives+soups, 1 round, "
                           "α=0.1, realign 3 ep @ lr 5e-06 (best on val)")


def test_synthetic_defaults_size_the_realignment_budget():
    from sipo_bench_plugins.synthetic.task import SyntheticHH

    c = build(SIPOConfig, SyntheticHH().method_defaults("sipo"), "methods.yaml:sipo")
    assert (c.sample_greedy, c.refine_greedy, c.filter_scorers) == (True, True, "objectives+soups")
    t = c.training()
    assert (t["learning_rate"], t["epochs"]) == (c.realign_learning_rate, c.realign_epochs)
    # sized from the validation curve in docs/sipo.md: more than one epoch's 1-6 optimiser steps
    assert c.realign_epochs >= 4 and c.realign_learning_rate >= 1e-3
    assert c.variant().startswith("on mod, candidates greedy, review+rewrite greedy, filter objectives+soups")


def test_variant_names_the_options_that_differ():
    c = build(SIPOConfig, {"sample_greedy": False, "refine": False, "filter_scorers": "objectives", "rounds": 2,
                           "alpha": 0.0, "realign_epochs": 8, "realign_learning_rate": 1e-3, "eval_every": 0,
                           "load_best": False, "base": "dpo-soups", "temperature": 0.7})
    assert c.variant() == ("on dpo-soups, candidates sampled (T=0.7), no refine, filter objectives, 2 rounds, α=0, "
                           "realign 8 ep @ lr 0.001")


def test_trained_on_and_variant_of_the_method():
    method, _, _ = fit()
    # the label says where the task's base policy learned to review and rewrite, or nothing
    assert method.trained_on(FakeTask()) == "pair labels + self-generated pairs (reviewed and rewritten by the policy)"
    from sipo_bench_plugins.lm_task.task import LMTask
    from sipo_bench_plugins.synthetic.task import SyntheticTask
    assert method.trained_on(SyntheticTask()) == (
        "pair labels + self-generated pairs (review/rewrite skill from the SFT corpus)")
    assert "instruct model's own tuning" in method.trained_on(LMTask.__new__(LMTask))
    assert method.variant() == method.config.variant()
    method, _, _ = fit({"sipo": {"refine": False}})
    assert method.trained_on(FakeTask()) == "pair labels + self-generated pairs"


@pytest.mark.parametrize("options,pattern", [
    ({"learning_rate": 1e-3}, r"`method_options\.sipo\.learning_rate`: unknown key .*Did you mean 'realign_learning_rate'"),
    ({"epochs": 2}, r"`method_options\.sipo\.epochs`: unknown key .*Did you mean 'realign_epochs'"),
    ({"realign_epochs": 0}, r"`realign_epochs`: expected a number > 0, got 0"),
    ({"realign_learning_rate": -1}, r"`realign_learning_rate`: expected a number > 0"),
    ({"candidates_per_weight": 2}, r"`candidates_per_weight`: expected 1 with greedy candidates"),
    ({"eval_every": 0}, r"`load_best`: expected false when eval_every is 0"),
])
def test_settings_that_cannot_act_are_errors(options, pattern):
    with pytest.raises(ConfigError, match=pattern) as e:
        build(SIPOConfig, options, "method_options.sipo")
    assert "\n" not in str(e.value)
    # sampled candidates may repeat; no validation needs load_best off
    build(SIPOConfig, {"candidates_per_weight": 2, "sample_greedy": False}, "method_options.sipo")
    build(SIPOConfig, {"eval_every": 0, "load_best": False}, "method_options.sipo")


def test_realignment_is_planned_with_the_objectives_validation_data():
    _, family, data = fit({"sipo": {"realign_epochs": 6, "realign_learning_rate": 2e-3}})
    extra = family.extra_stages()
    for o in ("helpful", "harmless"):
        s = extra[f"realign_{o}_round1"]
        assert s.kind == "sipo-realign" and s.config["objective"] == o
        assert s.inputs["data"].key == data.key  # val.jsonl: the objective's original validation pairs
        t = s.config["train"]
        assert (t["epochs"], t["learning_rate"], t["eval_every"], t["load_best"]) == (6.0, 2e-3, 0.25, True)
    # the budget is part of the re-alignment's key, not of the stages before it
    _, other, _ = fit({"sipo": {"realign_epochs": 7, "realign_learning_rate": 2e-3}})
    assert other.extra_stages()["realign_helpful_round1"].key != extra["realign_helpful_round1"].key
    assert other.extra_stages()["filter_round1"].key == extra["filter_round1"].key


def test_realignment_without_validation_pairs_is_an_error(tmp_path):
    """eval_every > 0 with no validation pairs of the objective fails the stage with one line
    naming the option (on the main branch the validation pairs were never passed: a no-op)."""
    pytest.importorskip("torch")
    from sipo_bench.execution.runtime import Runtime
    from sipo_bench_plugins.sipo.stages import realign_stage

    data = tmp_path / "data"
    data.mkdir()
    (data / "val.jsonl").write_text("")
    (tmp_path / "pairs").mkdir()
    (tmp_path / "pairs" / "pairs.jsonl").write_text(json.dumps({"prompt": "p", "chosen": " a", "rejected": " b"}) + "\n")
    train = SIPOConfig().training()
    ctx = SimpleNamespace(
        config={"task": "synthetic-hh", "task_options": {}, "objective": "helpful", "beta": 0.1, "alpha": 0.1,
                "seed": 0, "train": train},
        inputs={"data": data, "pairs": tmp_path / "pairs", "base": tmp_path / "nobase", "endpoint": tmp_path / "noend"},
        runtime=Runtime(quiet=True), out=tmp_path / "out", log=print)
    with pytest.raises(ValueError, match=r"^`eval_every`: expected validation pairs of objective 'helpful' .* got none"):
        realign_stage(ctx)
