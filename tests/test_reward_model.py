"""Learned reward models and the reward of rewarded soups, on the synthetic task.

Slow: one tiny `rewarded-soups` run through the CLI (its reward models with the synthetic
defaults, 2 RL steps per objective); the SFT model comes from the shared session cache."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

pytest.importorskip("torch")

pytestmark = pytest.mark.slow

TINY_RL = {"max_steps": 2, "batch_size": 8, "num_generations": 4, "max_new_tokens": 24}


@pytest.fixture(scope="module")
def run(cache_dir, tmp_path_factory):
    import yaml

    from sipo_bench.cli import main
    from sipo_bench.execution.stages import Cache

    tmp = tmp_path_factory.mktemp("reward-model")
    cfg = {"task": "synthetic-hh", "methods": ["rewarded-soups"], "weights": 1, "max_test_prompts": 8,
           "method_options": {"rewarded-soups": TINY_RL}}
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp / "out"
    code = main(["run", "--config", str(tmp / "c.yaml"), "--out", str(out), "--cache-dir", str(cache_dir), "--quiet"])
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0, summary["methods"]["rewarded-soups"]["error"]
    events = [json.loads(line) for line in (out / "logs" / "stages.jsonl").read_text().splitlines()]
    cache = Cache(cache_dir)
    dirs = {e["stage"]: cache.path(e["key"]) for e in events if e["event"] in ("done", "cached")}
    return summary, dirs


def _val_pairs(dirs, objective):
    from sipo_bench.execution.stages import read_jsonl
    from sipo_bench_baselines.stages import dpo_pairs
    from sipo_bench_plugins.synthetic.task import SyntheticHH

    return dpo_pairs(read_jsonl(dirs["data[seed=0]"] / "val.jsonl"), objective, SyntheticHH().format_prompt)


def test_reward_model_learns_the_objectives_preferences(run):
    """Validation accuracy well above chance (and above the random head's), trained weights
    (LoRA B starts at zero, the score head at its seeded random init), and the saved model is
    the one measured."""
    import torch
    from safetensors.torch import load_file
    from transformers import set_seed

    from sipo_bench_baselines.reward_model import LearnedRewardModel, _load

    summary, dirs = run
    from sipo_bench.reporting.curves import read_curves, series

    for o in ("helpful", "harmless"):  # the reward models' and RLOO stages' curves are kept and indexed
        assert read_curves(dirs[f"reward-model[{o},seed=0]"])["trainer"] == "RewardTrainer"
        assert series(read_curves(dirs[f"reward-model[{o},seed=0]"])["train"], "loss")
        assert read_curves(dirs[f"rl[{o},seed=0]"])["trainer"] == "RLOOTrainer"
    kinds = {st["kind"] for st in summary["training"]["stages"].values()}
    assert {"reward-model", "rl", "base"} <= kinds
    extra = summary["methods"]["rewarded-soups"]["extra"]["0"]
    base = dirs["base[seed=0]"]
    for o in ("helpful", "harmless"):
        r = extra[f"reward_model_{o}"]
        assert r["n_train_pairs"] == 256 and r["n_val_pairs"] == 128 and r["steps"] == 48  # 3 epochs of 16
        assert r["val_accuracy"] >= 0.75 and r["val_accuracy"] >= r["initial_val_accuracy"] + 0.15, r
        assert r["late_loss"] < r["early_loss"]
        rm_dir = dirs[f"reward-model[{o},seed=0]"]
        weights = load_file(str(rm_dir / "adapter_model.safetensors"))
        assert all(float(v.abs().sum()) > 0 for k, v in weights.items() if "lora_B" in k)
        set_seed(0)  # the stage's seed: the head's initial weights
        init, _ = _load(base)
        head = [v for k, v in weights.items() if k.endswith("score.weight")]
        assert len(head) == 1 and not torch.allclose(head[0], init.score.weight)
        # reloaded from its stage dir, the model ranks the validation pairs as reported
        rm = LearnedRewardModel(base, rm_dir)
        val = _val_pairs(dirs, o)
        s_w = rm.scores([p["prompt"] for p in val], [p["chosen"] for p in val])
        s_l = rm.scores([p["prompt"] for p in val], [p["rejected"] for p in val])
        assert sum(a > b for a, b in zip(s_w, s_l)) / len(val) == pytest.approx(r["val_accuracy"])
        meta = json.loads((rm_dir / "reward_model.json").read_text())
        assert rm.rewards([p["prompt"] for p in val[:4]], [p["chosen"] for p in val[:4]]) == pytest.approx(
            [(x - meta["mean"]) / meta["std"] for x in s_w[:4]], abs=1e-5)  # batches of 4 vs all: other padding


def test_summary_says_what_rewarded_soups_trained_on_and_its_budget(run):
    summary, _ = run
    m = summary["methods"]["rewarded-soups"]
    assert m["trained_on"] == "learned RM (from pair labels)"
    assert m["variant"] == "RLOO vs learned RM: 2 prompts x 4 samples x 2 steps"
    rl = m["extra"]["0"]["rl_helpful"]
    assert (rl["reward_source"], rl["steps"], rl["prompts_per_step"], rl["samples_per_prompt"], rl["rollouts"]) == (
        "learned", 2, 2, 4, 16)
    assert 0.0 <= rl["judge_early_mean"] <= 1.0  # the oracle's view of the rollouts, recorded only


@pytest.mark.parametrize("source", ["judge", "learned"])
def test_reward_source_decides_the_reward_rl_maximises(run, tmp_path, monkeypatch, source):
    """The RL stage hands RLOO the judge's scores in the objective's direction (`judge`) or
    the learned model's standardised scores, always maximised (`learned`)."""
    import sipo_bench_baselines.rl as rl_module
    from sipo_bench.execution.runtime import Runtime
    from sipo_bench_baselines.reward_model import LearnedRewardModel
    from sipo_bench_baselines.stages import rl_stage
    from sipo_bench_plugins.synthetic.task import OracleScorer, SyntheticHH

    summary, dirs = run
    seen = {}

    def fake_train(out, base_dir, prompts, format_prompt, reward, rl, seed, *, higher_is_better=True, **_):
        seen["prompts"], seen["higher_is_better"] = prompts, higher_is_better
        raw = prompts[:3] * 2
        responses = ["refuse everything."] * 3 + [" sorry, i cannot help with that."] * 3
        seen["call"] = (raw, responses, reward(raw, responses))
        return {"steps": 0}

    monkeypatch.setattr(rl_module, "train_rloo_adapter", fake_train)
    ctx = SimpleNamespace(
        config={"task": "synthetic-hh", "task_options": {}, "seed": 0, "objective": "harmless",
                "higher_is_better": False,  # pretend lower is better: only the judge's sign follows it
                "scorers": [["synthetic-oracle", {"variant": "hh"}]], "reward_source": source,
                "rl": summary["methods"]["rewarded-soups"]["config"]},
        inputs={"data": dirs["data[seed=0]"], "base": dirs["base[seed=0]"],
                "reward_model": dirs["reward-model[harmless,seed=0]"]},
        runtime=Runtime(quiet=True), out=tmp_path, progress=None, log=lambda m: None)
    result = rl_stage(ctx)
    raw, responses, got = seen["call"]
    oracle = OracleScorer(variant="hh").score(raw, responses)["harmless"]
    assert result["reward_source"] == source
    if source == "judge":
        assert got == pytest.approx(oracle) and seen["higher_is_better"] is False
        assert "judge_early_mean" not in result
    else:
        rm = LearnedRewardModel(dirs["base[seed=0]"], dirs["reward-model[harmless,seed=0]"])
        fmt = SyntheticHH().format_prompt
        assert got == pytest.approx(rm.rewards([fmt(p) for p in raw], responses))
        assert got != pytest.approx(oracle) and seen["higher_is_better"] is True
        assert result["judge_early_mean"] == pytest.approx(sum(oracle) / len(oracle))
