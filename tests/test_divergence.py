"""Issue 14 item 1: a training stage whose loss, gradient norm or weights become non-finite fails
(exit 1) naming the step and the knob to lower, and nothing of it is cached. Non-finite config
values are usage errors (tests/test_validation.py)."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parent))

from sipo_bench_baselines.divergence import (DivergenceGuard, TrainingDiverged, check_finite_loss,  # noqa: E402
                                             check_finite_parameters)


def state(step: int, total: int) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=total)


def test_guard_checks_logged_loss_and_grad_norm_and_weights():
    guard = DivergenceGuard({"learning_rate": 0.5, "beta": 0.1}, what="DPO training")
    guard.on_log(None, state(3, 10), None, logs={"loss": 0.7, "grad_norm": 1.2, "learning_rate": 0.5})
    with pytest.raises(TrainingDiverged) as e:
        guard.on_log(None, state(3, 10), None, logs={"loss": float("nan")})
    assert str(e.value) == "DPO training diverged at step 3 of 10: loss is nan; lower `learning_rate` (now 0.5) or `beta` (now 0.1)"
    with pytest.raises(TrainingDiverged, match=r"at step 4 of 10: gradient norm is inf;"):
        guard.on_log(None, state(4, 10), None, logs={"loss": 0.7, "grad_norm": float("inf")})
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    guard.on_step_end(None, state(5, 10), None, model=model)  # finite: nothing happens
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged) as e:
        guard.on_step_end(None, state(5, 10), None, model=model)
    assert str(e.value) == ("DPO training diverged at step 5 of 10: non-finite weights in 1.weight; lower "
                            "`learning_rate` (now 0.5) or `beta` (now 0.1)")
    model[1].weight.requires_grad_(False)  # a frozen base weight is not the guard's business by default...
    check_finite_parameters(model)
    with pytest.raises(TrainingDiverged, match="non-finite weights in 1.weight"):  # ...unless asked
        check_finite_parameters(model, trainable_only=False)
    with pytest.raises(TrainingDiverged, match=r"^SFT diverged at step 2: loss is -inf; lower `sft_lr` \(now 1\)$"):
        check_finite_loss(torch.tensor(-math.inf), step=2, knobs={"sft_lr": 1}, what="SFT")


@pytest.mark.slow
def test_preference_trainer_stops_at_the_first_nan_and_saves_nothing(tmp_path):
    from test_baselines_training import TRAIN, pairs
    from tiny_models import make_tiny_model

    from sipo_bench_baselines.losses import DPOLoss
    from sipo_bench_baselines.trainer import train_preference_adapter

    class NaNAfterFirstStep(DPOLoss):  # a loss that blows up once the policy moved
        def __call__(self, logps, extras):
            loss = super().__call__(logps, extras)
            moved = (logps.chosen - logps.ref_chosen).abs().sum() > 0
            return loss * float("nan") if bool(moved) else loss

    base = make_tiny_model(tmp_path / "base", seed=0)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TrainingDiverged) as e:
        train_preference_adapter(out, base, pairs(32), [], NaNAfterFirstStep(0.25), {**TRAIN, "learning_rate": 0.02}, 0)
    assert re.fullmatch(r"NaNAfterFirstStep training diverged at step 2 of 8: (loss is nan|non-finite weights in .+); "
                        r"lower `learning_rate` \(now 0\.02\) or `beta` \(now 0\.25\)", str(e.value)), str(e.value)
    assert not (out / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_rloo_stops_when_rewards_overflow_the_loss(tmp_path):
    from test_baselines_training import QUESTIONS, TEMPLATE
    from tiny_models import make_tiny_model

    from sipo_bench_baselines.rl import train_rloo_adapter

    base = make_tiny_model(tmp_path / "base", seed=0)
    rl = dict(learning_rate=0.01, epochs=1, max_steps=4, batch_size=8, grad_accum=1, num_generations=4, max_new_tokens=8,
              temperature=1.0, kl_beta=0.05, max_prompts=None, lr_scheduler="constant", warmup_ratio=0.0,
              weight_decay=0.0, lora_r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
              gradient_checkpointing=False, bf16=False)
    out = tmp_path / "rl"
    out.mkdir()
    with pytest.raises(TrainingDiverged) as e:
        train_rloo_adapter(out, base, QUESTIONS, TEMPLATE.format, lambda p, r: [(-1) ** i * 3e38 for i in range(len(r))], rl, 0)
    assert re.fullmatch(r"RLOO training diverged at step 1 of 4: .+; lower `learning_rate` \(now 0\.01\)", str(e.value))
    assert not (out / "adapter_model.safetensors").exists()


@pytest.mark.slow
def test_synthetic_sft_with_a_huge_learning_rate_diverges(tmp_path):
    from sipo_bench.contract.interfaces import TaskData
    from sipo_bench_plugins.synthetic.task import SyntheticTask, SyntheticTaskConfig

    t = SyntheticTask(SyntheticTaskConfig(sft_examples=64, review_examples=8, rewrite_examples=8, sft_epochs=2,
                                          sft_lr=1e6, eval_samples=0, train_pairs=64, val_pairs=8, hidden_size=32,
                                          intermediate_size=64))
    (tmp_path / "data").mkdir()
    (tmp_path / "base").mkdir()
    t.build_data(tmp_path / "data", 0, None)
    with pytest.raises(TrainingDiverged) as e:
        t.build_base(TaskData(tmp_path / "data"), tmp_path / "base", 0, None)
    assert re.fullmatch(r"synthetic SFT diverged at step \d+ of 6: .+; lower `task_options\.sft_lr` \(now 1000000\.0\)",
                        str(e.value)), str(e.value)
    assert not (tmp_path / "base" / "model.safetensors").exists()


@pytest.mark.slow
def test_a_finite_but_huge_learning_rate_fails_its_method_and_caches_nothing(tmp_path, cache_dir, capsys):
    """`learning_rate: 1000.0` really diverges on the tiny synthetic model: that method fails
    (exit 1), its stage is not cached, the other method is ok."""
    from sipo_bench.cli import main
    from sipo_bench.execution.stages import Cache

    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: synthetic-hh\nmethods: [dpo, dpo-lw]\nweights: 2\nmax_test_prompts: 8\n"
                   "method_options: {dpo-lw: {learning_rate: 1000.0, max_pairs: 128}}\n")
    out = tmp_path / "out"
    assert main(["run", "--config", str(cfg), "--out", str(out), "--cache-dir", str(cache_dir), "--quiet"]) == 1
    s = json.loads((out / "summary.json").read_text())
    assert s["methods"]["dpo"]["status"] == "ok" and s["methods"]["dpo"]["hypervolume"] is not None
    lw = s["methods"]["dpo-lw"]
    assert lw["status"] == "failed" and lw["hypervolume"] is None
    assert re.fullmatch(r"stage dpo-lw\[w=0\.5/0\.5,seed=0\]: TrainingDiverged: DPO-LW training diverged at step \d+ "
                        r"of 8: .+; lower `learning_rate` \(now 1000\.0\) or `beta` \(now 0\.1\)", lw["error"]), lw["error"]
    [failed] = s["failed_stages"]
    assert not Cache(cache_dir).path(failed["key"]).exists()  # nothing cached for the diverged stage
    assert (out / "logs" / "failures" / f"{failed['key']}.txt").is_file()
    err = capsys.readouterr().err
    assert "method 'dpo-lw' failed: stage dpo-lw[w=0.5/0.5,seed=0]: TrainingDiverged" in err
