"""`dpo-lw` (DPO with loss weighting): one LoRA adapter per grid weight w with
L = Σ_i w_i · DPO_i, each DPO_i on the pairs oriented by objective i's own label (chosen and
rejected swapped where objective i disagrees; a tie contributes 0). At a vertex e_i the loss is
plain DPO on objective i, so the shared `dpo` stage is used there."""

from __future__ import annotations

from sipo_bench.api import FitContext, Method, PolicyFamily, fmt, is_vertex

from .common import STAGES, PerWeightFamily, lora_tags, task_config
from .configs import DPOLWConfig
from .dpo import dpo_stages


class DPOLWMethod(Method):
    name = "dpo-lw"
    description = "DPO loss weighting: one model per weight trained on Σ_i w_i DPO_i."
    config_class = DPOLWConfig

    def fit(self, ctx: FitContext) -> PolicyFamily:
        c = self.config
        names = [o.name for o in ctx.objectives]
        dpo = dpo_stages(ctx)

        def plan(w: tuple[float, ...]):
            v = is_vertex(w)
            if v is not None:
                return dpo[names[v]]
            config = {**task_config(ctx), "seed": ctx.seed, "w": list(w), "objectives": names, "beta": c.beta,
                      "train": c.training()}
            return ctx.stage(f"dpo-lw[w={fmt(w)},seed={ctx.seed}]", f"{STAGES}:dpo_lw_stage", config,
                             {"data": ctx.data, "base": ctx.base}, tags=lora_tags(c.lora_r))

        return PerWeightFamily(ctx.base, plan)
