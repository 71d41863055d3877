"""`mod`: multi-objective decoding (Shi et al. 2024) over the per-objective DPO adapters.

The backend decodes from the fused next-token score f(w) (`rule` reverse_kl: Σ w_i log π_i;
forward_kl / alpha: −logsumexp forms), greedy or sampled as the run's decoding config says."""

from __future__ import annotations

from sipo_bench.api import FitContext, Method, PolicyFamily

from .common import CombinedFamily
from .configs import MODConfig
from .dpo import dpo_stages


class MODMethod(Method):
    name = "mod"
    description = "Multi-objective decoding: fused next-token scores of the per-objective DPO models."
    config_class = MODConfig
    #: epochs and max_pairs through its DPO endpoints; eval_every and load_best there and in re-alignment
    budget_fields = ("epochs", "max_pairs", "eval_every", "load_best")

    def fit(self, ctx: FitContext) -> PolicyFamily:
        c = self.config
        return CombinedFamily(ctx.base, list(dpo_stages(ctx).values()), "fusion", {"rule": c.rule, "alpha": c.alpha})
