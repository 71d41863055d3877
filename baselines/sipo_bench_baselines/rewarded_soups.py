"""`rewarded-soups` (Ramé et al. 2023): RL fine-tune one LoRA adapter per objective against a
reward for that objective (trl's RLOO, see `sipo_bench_baselines.rl` for why not GRPO), then
interpolate the LoRA deltas as in DPO soups.

The reward (`reward_source`) is by default a Bradley-Terry reward model learned from the task's
training pairs (`reward-model[objective]`, `sipo_bench_baselines.reward_model`), so the method
sees the same signal as the DPO family; `judge` trains against the task's evaluation scorer and
is said so in `trained_on`."""

from __future__ import annotations

from sipo_bench.api import FitContext, Method, PolicyFamily, Task

from .common import STAGES, CombinedFamily, lora_tags, task_config
from .configs import RewardedSoupsConfig
from .reward_model import reward_model_stages


class RewardedSoupsMethod(Method):
    name = "rewarded-soups"
    description = "Per-objective RLOO against a reward model learned from the pairs, then LoRA weight interpolation."
    config_class = RewardedSoupsConfig
    #: none: its RL `epochs` count prompts, not pairs (and `max_steps` overrides them), and RLOO
    #: has no validation pass to select a checkpoint on
    budget_fields = ()

    def fit(self, ctx: FitContext) -> PolicyFamily:
        c: RewardedSoupsConfig = self.config
        scorers = [[name, dict(options)] for name, options in ctx.task.scorers()]
        rms = reward_model_stages(ctx, c.reward_model()) if c.reward_source == "learned" else {}
        extra: dict = {}
        stages = []
        for o in ctx.objectives:
            inputs = {"data": ctx.data, "base": ctx.base}
            if o.name in rms:
                inputs["reward_model"] = extra[f"reward_model_{o.name}"] = rms[o.name]
            stage = ctx.stage(f"rl[{o.name},seed={ctx.seed}]", f"{STAGES}:rl_stage",
                              {**task_config(ctx), "seed": ctx.seed, "objective": o.name,
                               "higher_is_better": o.higher_is_better, "scorers": scorers,
                               "reward_source": c.reward_source, "rl": c.rl()}, inputs, tags=lora_tags(c.lora_r))
            extra[f"rl_{o.name}"] = stage
            stages.append(stage)
        return CombinedFamily(ctx.base, stages, "soup", extra=extra)

    def trained_on(self, task: Task) -> str:
        return "learned RM (from pair labels)" if self.config.reward_source == "learned" else "evaluation judge"

    def variant(self) -> str | None:
        b = self.config.budget()
        head = (f"RLOO vs {'learned RM' if self.config.reward_source == 'learned' else 'judge'}: "
                f"{b['prompts_per_step']} prompts x {b['samples_per_prompt']} samples")
        if b["steps"]:
            return f"{head} x {b['steps']} steps"
        return f"{head} per step, {self.config.epochs:g} epoch(s) over the training prompts"
