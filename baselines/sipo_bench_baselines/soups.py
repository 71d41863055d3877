"""`dpo-soups`: θ(w) = base + Σ_i w_i ΔW_i over the per-objective DPO adapters (exact LoRA
delta interpolation by the generation backend, peft `add_weighted_adapter(..., "cat")`)."""

from __future__ import annotations

from sipo_bench.api import FitContext, Method, PolicyFamily

from .common import CombinedFamily
from .configs import SoupsConfig
from .dpo import dpo_stages


class DPOSoupsMethod(Method):
    name = "dpo-soups"
    description = "Weight interpolation of the per-objective DPO LoRA deltas."
    config_class = SoupsConfig
    #: epochs and max_pairs through its DPO endpoints; eval_every and load_best there and in re-alignment
    budget_fields = ("epochs", "max_pairs", "eval_every", "load_best")

    def fit(self, ctx: FitContext) -> PolicyFamily:
        return CombinedFamily(ctx.base, list(dpo_stages(ctx).values()), "soup")
