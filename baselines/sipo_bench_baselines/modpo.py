"""`modpo` (Zhou et al. 2024): one LoRA adapter per grid weight w, trained on the main
objective's pairs with the other objectives' DPO implicit rewards as a margin:

    L = −log σ( (1/w_1)·[ h(y_w) − h(y_l) − Σ_{j≥2} w_j (r_j(y_w) − r_j(y_l)) ] )

for any number k ≥ 2 of objectives. Objective 1 ("main") is `main_objective` or the task's
first objective. r_j is the implicit reward β_dpo·(log π_j − log π_ref) of objective j's
per-objective DPO model (the shared `dpo` stages); the margins are computed once, before
training, and stored as a dataset column.

Where the formula degenerates:
- at a vertex w = e_i the policy *is* objective i's DPO model (the shared `dpo` stage, trained
  with the `dpo` config): for i = main the MODPO loss reduces to plain DPO (w_j = 0, w_1 = 1);
  for i ≠ main 1/w_1 is undefined and, as in the paper, objective i's DPO model stands in;
- off the vertices with w_main = 0 (k ≥ 3, e.g. (0, ½, ½)) the main objective is replaced by the
  first objective (task order) with a positive weight; MODPO is symmetric in this choice.
"""

from __future__ import annotations

from sipo_bench.api import ConfigError, FitContext, Method, PolicyFamily, fmt, is_vertex

from .common import STAGES, PerWeightFamily, lora_tags, task_config
from .configs import MODPOConfig
from .dpo import dpo_stages


def main_for(w: tuple[float, ...], names: list[str], main: str) -> str:
    """The objective whose pairs MODPO trains on at w (see module docstring)."""
    if w[names.index(main)] > 0:
        return main
    return next(n for n, x in zip(names, w) if x > 0)


class MODPOMethod(Method):
    name = "modpo"
    description = "Multi-objective DPO: one model per weight, other objectives' DPO rewards as margins."
    config_class = MODPOConfig

    def fit(self, ctx: FitContext) -> PolicyFamily:
        c = self.config
        names = [o.name for o in ctx.objectives]
        if len(names) < 2:
            raise ConfigError(f"`methods`: modpo needs at least 2 objectives, task {ctx.task.name!r} has {len(names)}")
        main = c.main_objective or names[0]
        if main not in names:
            raise ConfigError(f"`method_options.modpo.main_objective`: expected one of {names}, got {main!r}")
        dpo = dpo_stages(ctx)
        dpo_cfg = ctx.method_config("dpo")

        def plan(w: tuple[float, ...]):
            v = is_vertex(w)
            if v is not None:
                return dpo[names[v]]
            m = main_for(w, names, main)
            others = [(n, x) for n, x in zip(names, w) if n != m and x > 0]
            config = {**task_config(ctx), "seed": ctx.seed, "w": list(w), "main": m,
                      "others": [n for n, _ in others], "w_main": w[names.index(m)], "w_others": [x for _, x in others],
                      "beta": c.beta, "margin_beta": dpo_cfg.beta, "margin_batch_size": c.margin_batch_size,
                      "train": c.training()}
            inputs = {"data": ctx.data, "base": ctx.base, **{f"margin{j}": dpo[n] for j, (n, _) in enumerate(others)}}
            return ctx.stage(f"modpo[w={fmt(w)},seed={ctx.seed}]", f"{STAGES}:modpo_stage", config, inputs,
                             tags=lora_tags(c.lora_r))

        return PerWeightFamily(ctx.base, plan)
