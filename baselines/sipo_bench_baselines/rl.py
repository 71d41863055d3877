"""RL fine-tuning of one LoRA adapter against one objective's scorer (rewarded soups).

We use trl's `RLOOTrainer` (REINFORCE with a leave-one-out baseline, Ahmadian et al. 2024)
rather than GRPO, because:
- its KL penalty is folded into the *reward* (r − β·KL(π‖π_ref) per sequence), the RLHF
  objective of the PPO runs in Ramé et al. 2023; staying close to the shared SFT start is what
  makes the per-objective weights interpolable;
- its baseline is unbiased and the advantages are not divided by the group's reward std, so a
  near-tied group of oracle scores is not blown up into a full-size update (GRPO's default);
- like GRPO it needs no value model (PPO's critic doubles the cost), which keeps it CPU-sized.

The reference is the base model with the adapter disabled (trl's PEFT path); outputs go under
`out` only; generation and training are seeded.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from sipo_bench.api import torch_device

from .divergence import DivergenceGuard, check_finite_parameters
from .trainer import ProgressCallback, load_base, lora_config


def train_rloo_adapter(out: Path, base_dir: Path | str, prompts: Sequence[str], format_prompt: Callable[[str], str],
                       reward: Callable[[list[str], list[str]], list[float]], rl: Mapping[str, Any], seed: int, *,
                       higher_is_better: bool = True, progress: Callable[..., Any] | None = None,
                       log: Callable[[str], None] | None = None) -> dict:
    """Train a LoRA adapter with RLOO to maximise `reward(raw_prompts, responses)` (negated for
    a lower-is-better objective) and save it at the root of `out`. Returns metrics: mean reward
    of the first and last steps' rollouts, the budget (prompts per step x samples per prompt x
    steps = rollouts), seconds."""
    from datasets import Dataset
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import RLOOConfig, RLOOTrainer

    from sipo_bench.api import CurvesCallback

    t0 = time.time()
    out = Path(out)
    prompts = list(prompts)
    if rl.get("max_prompts"):
        prompts = prompts[: int(rl["max_prompts"])]
    if not prompts:
        raise ValueError("no training prompts")
    set_seed(seed)
    model, tok = load_base(base_dir, torch.bfloat16 if rl.get("bf16") else torch.float32)
    tok.padding_side = "left"
    sign = 1.0 if higher_is_better else -1.0

    def reward_fn(prompts: list[str], completions: list[str], raw_prompt: list[str], **_: Any) -> list[float]:
        responses = [c.strip() if isinstance(c, str) else str(c) for c in completions]
        return [sign * float(x) for x in reward(list(raw_prompt), responses)]

    reward_fn.__name__ = "objective_reward"
    batch, accum, gens = int(rl["batch_size"]), int(rl["grad_accum"]), int(rl["num_generations"])
    steps = int(rl["max_steps"]) if rl.get("max_steps") else max(
        1, math.ceil(len(prompts) * gens * float(rl["epochs"]) / (batch * accum)))
    work = out / "_trainer"
    args = RLOOConfig(
        output_dir=str(work), seed=seed, data_seed=seed, learning_rate=float(rl["learning_rate"]), max_steps=steps,
        per_device_train_batch_size=batch, gradient_accumulation_steps=accum, num_generations=gens,
        max_completion_length=int(rl["max_new_tokens"]), temperature=float(rl["temperature"]), top_p=1.0,
        beta=float(rl["kl_beta"]), lr_scheduler_type=str(rl["lr_scheduler"]), warmup_steps=float(rl["warmup_ratio"]),
        weight_decay=float(rl["weight_decay"]), gradient_checkpointing=bool(rl["gradient_checkpointing"]),
        bf16=bool(rl.get("bf16")), report_to="none", logging_steps=1, disable_tqdm=True, save_strategy="no",
        use_cpu=torch_device().type != "cuda", dataloader_num_workers=0, log_completions=False,
        logging_nan_inf_filter=False,  # a NaN loss must reach the divergence guard
    )
    guard = DivergenceGuard({"learning_rate": rl["learning_rate"]}, what="RLOO training")
    dataset = Dataset.from_list([{"prompt": format_prompt(p), "raw_prompt": p} for p in prompts])
    with contextlib.ExitStack() as stack:
        callbacks: list = [guard, CurvesCallback(out, "RLOOTrainer")]
        if progress is not None:
            callbacks.append(ProgressCallback(stack.enter_context(progress(steps, f"rloo {out.name}"))))
        trainer = RLOOTrainer(model=model, reward_funcs=reward_fn, args=args, train_dataset=dataset,
                              processing_class=tok, peft_config=lora_config(rl), callbacks=callbacks)
        trainer.remove_callback(PrinterCallback)
        result = trainer.train()
    check_finite_parameters(trainer.model, knobs=guard.knobs, what=guard.what)  # the model about to be saved
    trainer.model.save_pretrained(str(out))
    shutil.rmtree(work, ignore_errors=True)
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    k = max(1, len(rewards) // 4)
    metrics = {
        "algorithm": "rloo", "steps": int(result.global_step), "n_prompts": len(prompts),
        # the budget: prompts per step x samples per prompt x steps = rollouts
        "prompts_per_step": batch * accum // gens, "samples_per_prompt": gens,
        "rollouts": int(result.global_step) * batch * accum,
        "first_reward": sign * rewards[0] if rewards else None, "last_reward": sign * rewards[-1] if rewards else None,
        "early_mean_reward": sign * sum(rewards[:k]) / k if rewards else None,
        "late_mean_reward": sign * sum(rewards[-k:]) / k if rewards else None,
        "seconds": round(time.time() - t0, 3),
    }
    if log:
        log(f"{len(prompts)} prompts, {metrics['steps']} steps, reward {metrics['early_mean_reward']} -> "
            f"{metrics['late_mean_reward']} in {metrics['seconds']:.1f}s")
    return metrics
