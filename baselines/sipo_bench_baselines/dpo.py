"""`dpo`: one LoRA DPO adapter per objective, trained on that objective's labels (ties dropped).

:func:`dpo_stages` is the one place these stages are planned: DPO soups, MOD, MODPO, DPO-LW and
SIPO call it, always with the `dpo` method's resolved config (`ctx.method_config("dpo")`), so
each per-objective DPO model has one cache key and is trained once per run, whichever methods
ask for it.
"""

from __future__ import annotations

from sipo_bench.api import FitContext, Method, PolicyFamily, Stage

from .common import STAGES, VertexFamily, lora_tags, task_config
from .configs import DPOConfig


def dpo_stages(ctx: FitContext) -> dict[str, Stage]:
    """{objective name: its DPO adapter stage} for `ctx.seed`, in the task's objective order.

    The stage dir holds a peft LoRA adapter of the base model (`save_pretrained` layout) and
    `result.json` with the training metrics."""
    cfg: DPOConfig = ctx.method_config("dpo")
    common = {**task_config(ctx), "seed": ctx.seed, "beta": cfg.beta, "train": cfg.training()}
    return {o.name: ctx.stage(f"dpo[{o.name},seed={ctx.seed}]", f"{STAGES}:dpo_stage", {**common, "objective": o.name},
                              {"data": ctx.data, "base": ctx.base}, tags=lora_tags(cfg.lora_r))
            for o in ctx.objectives}


class DPOMethod(Method):
    name = "dpo"
    description = "Per-objective LoRA DPO models (the simplex vertices; endpoints of soups, MOD, SIPO)."
    config_class = DPOConfig

    def fit(self, ctx: FitContext) -> PolicyFamily:
        return VertexFamily(ctx.base, list(dpo_stages(ctx).values()))
