"""`rewarded-soups` (Ramé et al. 2023): RL fine-tune one LoRA adapter per objective against that
objective's scorer (trl's RLOO, see `sipo_bench_baselines.rl` for why not GRPO), then
interpolate the LoRA deltas as in DPO soups."""

from __future__ import annotations

from sipo_bench.config import to_dict
from sipo_bench.interfaces import FitContext, Method, PolicyFamily

from .common import STAGES, CombinedFamily, lora_tags, task_config
from .configs import RewardedSoupsConfig


class RewardedSoupsMethod(Method):
    name = "rewarded-soups"
    description = "Per-objective RLOO fine-tuning against each scorer, then LoRA weight interpolation."
    config_class = RewardedSoupsConfig

    def fit(self, ctx: FitContext) -> PolicyFamily:
        rl = to_dict(self.config)
        scorers = [[name, dict(options)] for name, options in ctx.task.scorers()]
        stages = [ctx.stage(f"rl[{o.name},seed={ctx.seed}]", f"{STAGES}:rl_stage",
                            {**task_config(ctx), "seed": ctx.seed, "objective": o.name,
                             "higher_is_better": o.higher_is_better, "scorers": scorers, "rl": rl},
                            {"data": ctx.data, "base": ctx.base}, tags=lora_tags(self.config.lora_r))
                  for o in ctx.objectives]
        return CombinedFamily(ctx.base, stages, "soup")
