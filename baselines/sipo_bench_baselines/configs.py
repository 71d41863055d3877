"""Config dataclasses of the baseline methods (torch-free: `sipo-bench ls` imports them).

Class defaults are the paper's 7B settings (LoRA r=64, α=1, q/k/v/o, β=0.1, lr 5e-4, batch
1 × grad-accum 2, max length 512, 3 epochs, cosine, weight decay 0.05, best checkpoint on
validation every quarter epoch); a task's `method_defaults` (e.g. the synthetic task's tiny
model) and the run's `method_options` override them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from sipo_bench.api import MethodConfig, check, field, to_dict

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


def _check_lora(c) -> None:
    check(c.lora_r >= 1, "lora_r", "an integer >= 1", c.lora_r)
    check(c.lora_alpha > 0, "lora_alpha", "a number > 0", c.lora_alpha)
    check(0.0 <= c.lora_dropout < 1.0, "lora_dropout", "a number in [0, 1)", c.lora_dropout)
    check(len(c.target_modules) > 0 and all(isinstance(m, str) and m for m in c.target_modules),
          "target_modules", "a non-empty list of module names", c.target_modules)
    check(c.learning_rate > 0, "learning_rate", "a number > 0", c.learning_rate)
    check(c.weight_decay >= 0, "weight_decay", "a number >= 0", c.weight_decay)
    check(0.0 <= c.warmup_ratio < 1.0, "warmup_ratio", "a number in [0, 1)", c.warmup_ratio)
    check(c.batch_size >= 1, "batch_size", "an integer >= 1", c.batch_size)
    check(c.grad_accum >= 1, "grad_accum", "an integer >= 1", c.grad_accum)


@dataclass
class LoRATrainingConfig(MethodConfig):
    """The LoRA adapter and precision fields every training method shares (paper: r=64,
    alpha=1, dropout 0 on q/k/v/o)."""

    lora_r: int = field(64, help="LoRA rank.")
    lora_alpha: float = field(1.0, help="LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = field(0.0, help="LoRA dropout.")
    target_modules: list = field(list(ATTENTION), help="Module names that get LoRA adapters.")
    gradient_checkpointing: bool = field(False, help="Trade compute for memory (large models).")
    bf16: bool = field(False, help="Train in bfloat16 mixed precision (GPU).")


@dataclass
class PreferenceTrainingConfig(LoRATrainingConfig):
    """LoRA preference training with :class:`~sipo_bench_baselines.trainer.PreferenceTrainer`."""

    beta: float = field(0.1, help="KL strength β of the implicit reward h(y) = β·(log π − log π_ref).")
    learning_rate: float = field(5e-4, help="Peak AdamW learning rate.")
    epochs: float = field(3.0, help="Epochs over the training pairs.")
    batch_size: int = field(1, help="Pairs per device batch.")
    grad_accum: int = field(2, help="Gradient accumulation steps.")
    max_length: int = field(512, help="Maximum tokens of prompt + response (BOS and EOS included); see long_pairs.")
    long_pairs: Literal["truncate", "drop"] = field(
        "truncate", help="A pair with a sequence over max_length: 'truncate' cuts it at the end (trl's default); "
                         "'drop' leaves the pair out of training and validation (the released SIPO code's filter).")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = field(
        "cosine", help="Learning-rate schedule (transformers `lr_scheduler_type`).")
    warmup_ratio: float = field(0.0, help="Share of the steps spent warming up the learning rate.")
    weight_decay: float = field(0.05, help="AdamW weight decay.")
    eval_every: float = field(0.25, help="Evaluate on the validation pairs every this fraction of an epoch (0: never).")
    load_best: bool = field(True, help="Keep the checkpoint with the lowest validation loss (needs eval_every > 0).")
    max_pairs: int | None = field(None, help="Cap on training pairs per model (smoke runs); None = all.")

    def __post_init__(self) -> None:
        check(self.beta > 0, "beta", "a number > 0", self.beta)
        check(self.epochs > 0, "epochs", "a number > 0", self.epochs)
        check(self.max_length >= 8, "max_length", "an integer >= 8", self.max_length)
        check(0.0 <= self.eval_every <= 1.0, "eval_every", "a fraction of an epoch in [0, 1]", self.eval_every)
        check(not self.load_best or self.eval_every > 0, "load_best",
              "false when eval_every is 0 (there is no validation checkpoint to keep)", self.load_best)
        if self.max_pairs is not None:
            check(self.max_pairs >= 1, "max_pairs", "an integer >= 1 or null", self.max_pairs)
        _check_lora(self)

    def training(self) -> dict:
        """The options a training stage needs (everything except β, which goes to the loss)."""
        d = to_dict(self)
        return {f.name: d[f.name] for f in dataclasses.fields(PreferenceTrainingConfig) if f.name != "beta"}


@dataclass
class SFTConfig(LoRATrainingConfig):
    """Supervised fine-tuning of a pretrained causal LM into a task's base policy: a LoRA on the
    task's SFT rows (loss on the response tokens only), merged into the weights. Defaults: the
    recipe of the released SIPO / modpo `scripts/sft` (LoRA r=16, alpha=32, dropout 0.05 on
    q/k/v/o; lr 1e-4, cosine, weight decay 0.05, 3 epochs, max length 512, per-device batch 4 x
    grad-accum 2 (on 8 GPUs there), best checkpoint on validation every quarter epoch)."""

    lora_r: int = field(16, help="LoRA rank.")
    lora_alpha: float = field(32.0, help="LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = field(0.05, help="LoRA dropout.")
    learning_rate: float = field(1e-4, help="Peak AdamW learning rate.")
    epochs: float = field(3.0, help="Epochs over the SFT rows.")
    batch_size: int = field(4, help="Rows per device batch.")
    grad_accum: int = field(2, help="Gradient accumulation steps.")
    max_length: int = field(512, help="Maximum tokens of prompt + response (longer rows are cut at the end).")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = field("cosine", help="Learning-rate schedule.")
    warmup_ratio: float = field(0.0, help="Share of the steps spent warming up the learning rate.")
    weight_decay: float = field(0.05, help="AdamW weight decay.")
    eval_every: float = field(0.25, help="Evaluate on the validation rows every this fraction of an epoch (0: never).")
    load_best: bool = field(True, help="Keep the checkpoint with the lowest validation loss (needs eval_every > 0).")
    max_rows: int | None = field(None, help="Cap on SFT rows (smoke runs); None = all.")

    def __post_init__(self) -> None:
        _check_lora(self)
        check(self.epochs > 0, "epochs", "a number > 0", self.epochs)
        check(self.max_length >= 8, "max_length", "an integer >= 8", self.max_length)
        check(0.0 <= self.eval_every <= 1.0, "eval_every", "a fraction of an epoch in [0, 1]", self.eval_every)
        if self.max_rows is not None:
            check(self.max_rows >= 1, "max_rows", "an integer >= 1 or null", self.max_rows)


@dataclass
class DPOConfig(PreferenceTrainingConfig):
    """Per-objective DPO: one LoRA adapter per objective on that objective's labels."""


@dataclass
class DPOLWConfig(PreferenceTrainingConfig):
    """DPO with loss weighting: one adapter per grid weight, L = Σ_i w_i DPO_i."""


@dataclass
class MODPOConfig(PreferenceTrainingConfig):
    """MODPO: one adapter per grid weight on the main objective's pairs, the other objectives'
    DPO implicit rewards as margins."""

    main_objective: str | None = field(None, help="Objective whose pairs MODPO trains on (default: the task's first).")
    margin_batch_size: int = field(32, help="Batch size of the implicit-reward pass that precomputes the margins.")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.margin_batch_size >= 1, "margin_batch_size", "an integer >= 1", self.margin_batch_size)


@dataclass
class SoupsConfig(MethodConfig):
    """DPO soups reuse the `dpo` method's adapters; nothing of their own to configure."""


@dataclass
class MODConfig(MethodConfig):
    rule: Literal["reverse_kl", "forward_kl", "alpha"] = field(
        "reverse_kl", help="Fusion rule: reverse_kl Σ w_i log π_i; forward_kl / alpha: −logsumexp forms (Shi et al. 2024).")
    alpha: float = field(0.5, help="α of the alpha-divergence rule (ignored by the others).")

    def __post_init__(self) -> None:
        check(self.alpha > 0, "alpha", "a number > 0", self.alpha)


@dataclass
class RewardedSoupsConfig(LoRATrainingConfig):
    """RLOO fine-tuning of one LoRA per objective against a reward for that objective, then a
    soup. The reward is a Bradley-Terry reward model learned from the task's training pairs
    (`reward_source: learned`, the `reward-model[objective]` stage, `rm_*` options) or, only
    when asked, the task's evaluation scorer itself (`judge`, flagged in the results).

    The RL budget is prompts per step x samples per prompt x steps rollouts:
    (batch_size x grad_accum / num_generations) x num_generations x max_steps."""

    reward_source: Literal["learned", "judge"] = field(
        "learned", help="Reward of the RL stage: `learned` = a reward model trained on the task's training pairs "
                        "(what every other method sees: pair labels); `judge` = the task's evaluation scorer itself "
                        "(an oracle on synthetic tasks: a signal no other method gets; flagged as `trained_on`).")
    rm_learning_rate: float = field(5e-4, help="Learned reward model: peak AdamW learning rate (the first-round DPO LoRA's).")
    rm_epochs: float = field(1.0, help="Learned reward model: epochs over the objective's training pairs.")
    rm_batch_size: int = field(8, help="Learned reward model: pairs per batch.")
    rm_max_length: int = field(512, help="Learned reward model: pairs with prompt + response over this many tokens "
                                         "are dropped (trl RewardTrainer).")
    rm_max_pairs: int | None = field(None, help="Learned reward model: cap on training pairs; None = all.")
    rm_lora_r: int = field(64, help="Learned reward model: LoRA rank (the score head is trained in full).")
    rm_lora_alpha: float = field(1.0, help="Learned reward model: LoRA alpha.")
    learning_rate: float = field(1e-5, help="Peak AdamW learning rate.")
    epochs: float = field(1.0, help="Epochs over the training prompts.")
    max_steps: int | None = field(None, help="Stop after this many optimiser steps (overrides epochs).")
    batch_size: int = field(8, help="Completions per device batch (a multiple of num_generations).")
    grad_accum: int = field(1, help="Gradient accumulation steps.")
    num_generations: int = field(4, help="Completions sampled per prompt (RLOO's leave-one-out group).")
    max_new_tokens: int = field(64, help="Maximum tokens of a sampled completion.")
    temperature: float = field(1.0, help="Sampling temperature of the rollouts.")
    kl_beta: float = field(0.05, help="KL penalty β folded into the reward: r − β·KL(π‖π_ref) per sequence.")
    max_prompts: int | None = field(None, help="Cap on distinct training prompts; None = all.")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = field("cosine", help="Learning-rate schedule.")
    warmup_ratio: float = field(0.0, help="Share of the steps spent warming up the learning rate.")
    weight_decay: float = field(0.0, help="AdamW weight decay.")

    def __post_init__(self) -> None:
        _check_lora(self)
        check(self.epochs > 0, "epochs", "a number > 0", self.epochs)
        if self.max_steps is not None:
            check(self.max_steps >= 1, "max_steps", "an integer >= 1 or null", self.max_steps)
        check(self.num_generations >= 2, "num_generations", "an integer >= 2 (RLOO needs a leave-one-out baseline)",
              self.num_generations)
        check(self.batch_size % self.num_generations == 0, "batch_size",
              f"a multiple of num_generations={self.num_generations}", self.batch_size)
        check(self.max_new_tokens >= 1, "max_new_tokens", "an integer >= 1", self.max_new_tokens)
        check(self.temperature > 0, "temperature", "a number > 0", self.temperature)
        check(self.kl_beta >= 0, "kl_beta", "a number >= 0", self.kl_beta)
        if self.max_prompts is not None:
            check(self.max_prompts >= 1, "max_prompts", "an integer >= 1 or null", self.max_prompts)
        check(self.rm_learning_rate > 0, "rm_learning_rate", "a number > 0", self.rm_learning_rate)
        check(self.rm_epochs > 0, "rm_epochs", "a number > 0", self.rm_epochs)
        check(self.rm_batch_size >= 1, "rm_batch_size", "an integer >= 1", self.rm_batch_size)
        check(self.rm_max_length >= 8, "rm_max_length", "an integer >= 8", self.rm_max_length)
        check(self.rm_lora_r >= 1, "rm_lora_r", "an integer >= 1", self.rm_lora_r)
        check(self.rm_lora_alpha > 0, "rm_lora_alpha", "a number > 0", self.rm_lora_alpha)
        if self.rm_max_pairs is not None:
            check(self.rm_max_pairs >= 1, "rm_max_pairs", "an integer >= 1 or null", self.rm_max_pairs)

    def reward_model(self) -> dict:
        """The options of the learned reward model's stage (its cache key holds only these)."""
        return {"learning_rate": self.rm_learning_rate, "epochs": self.rm_epochs, "batch_size": self.rm_batch_size,
                "max_length": self.rm_max_length, "max_pairs": self.rm_max_pairs, "lora_r": self.rm_lora_r,
                "lora_alpha": self.rm_lora_alpha, "lora_dropout": self.lora_dropout,
                "target_modules": list(self.target_modules), "gradient_checkpointing": self.gradient_checkpointing,
                "bf16": self.bf16}

    def rl(self) -> dict:
        """The options of the RL stage (everything but the reward model's)."""
        return {k: v for k, v in to_dict(self).items() if not k.startswith("rm_") and k != "reward_source"}

    def budget(self) -> dict:
        """The RL budget per objective: prompts per step x samples per prompt x steps (None
        steps: set by `epochs` and the number of training prompts, known when the stage runs)."""
        prompts = self.batch_size * self.grad_accum // self.num_generations
        steps = self.max_steps
        return {"prompts_per_step": prompts, "samples_per_prompt": self.num_generations, "steps": steps,
                "rollouts": prompts * self.num_generations * steps if steps else None}
