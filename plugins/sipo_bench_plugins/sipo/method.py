"""`sipo`: plans SIPO's stages (DESIGN.md §3, steps 1-8) and returns the base MOA method's
family over the re-aligned models. Torch-free: the stage functions live in `.stages`.

Per round r and seed:  endpoints(r) = dpo[...] for r = 0, else sipo-realign[...] of round r-1
  sipo-sample[r] -> sipo-review[r] -> sipo-rewrite[r] -> sipo-combine[r] -> sipo-filter[r]
  -> sipo-realign[objective, r] (one per objective)
  (a compute-matched control, `control`, puts sipo-control[r] between filter and re-alignment:
  the filter's pair count, other pairs)
plus sipo-endpoints (oracle diagnostics: how the endpoints moved).
"""

from __future__ import annotations

from sipo_bench.api import ConfigError, FitContext, Method, PolicyFamily, Stage, Task, simplex_grid, validate_weights
from sipo_bench_baselines.common import CombinedFamily, lora_tags, task_config
from sipo_bench_baselines.dpo import dpo_stages

from .config import SIPOConfig

STAGES = "sipo_bench_plugins.sipo.stages"


def default_sample_weights(k: int) -> list[tuple[float, ...]]:
    if k == 2:
        return [(0.2, 0.8), (0.4, 0.6), (0.6, 0.4), (0.8, 0.2)]
    return [w for w in simplex_grid(k, k + 1) if all(x > 0 for x in w)]


def _realign_tags(endpoint: Stage, lora_r: int) -> dict:
    """The re-aligned adapter is saved as endpoint + new delta ("cat"): their ranks add up."""
    rank = endpoint.tags.get("lora_rank")
    return {} if rank is None else lora_tags(rank + lora_r)


class SIPOMethod(Method):
    name = "sipo"
    description = "SIPO: sample, review, rewrite, keep Pareto-optimal responses, re-align (Li et al. 2025)."
    config_class = SIPOConfig
    #: epochs and max_pairs through its DPO endpoints; eval_every and load_best there and in re-alignment
    budget_fields = ("epochs", "max_pairs", "eval_every", "load_best")

    def fit(self, ctx: FitContext) -> PolicyFamily:
        c: SIPOConfig = self.config
        objectives = [o.name for o in ctx.objectives]
        k = len(objectives)
        sample_weights = (validate_weights(c.sample_weights, k, "sample_weights") if c.sample_weights is not None
                          else default_sample_weights(k))
        review = c.review_model or objectives[0]
        if review not in objectives:
            raise ConfigError(f"`review_model`: expected one of {', '.join(objectives)}, got {review!r}")
        if c.base == "mod":
            mod = ctx.method_config("mod")
            combine, options = "fusion", {"rule": mod.rule, "alpha": mod.alpha}
        else:
            combine, options = "soup", {}
        dpo = dpo_stages(ctx)
        common = {**task_config(ctx), "seed": ctx.seed, "objectives": objectives, "combine": combine,
                  "options": options}
        gen = {"temperature": c.temperature, "top_p": c.top_p, "max_new_tokens": c.max_new_tokens,
               "batch_size": c.generation_batch_size}
        endpoints = [dpo[o] for o in objectives]
        extra: dict[str, Stage] = {}
        for r in range(c.rounds):
            tag = f"round={r + 1},seed={ctx.seed}"
            ep = {f"adapter{i}": s for i, s in enumerate(endpoints)}
            sample = ctx.stage(f"sipo-sample[{tag}]", f"{STAGES}:sample_stage", {
                **common, "round": r, "sample_weights": [list(w) for w in sample_weights],
                "candidates_per_weight": c.candidates_per_weight, "max_prompts": c.max_prompts,
                "decoding": {**gen, "greedy": c.sample_greedy, "max_length": c.sample_max_length}},
                {"data": ctx.data, "base": ctx.base, **ep})
            candidates = sample
            if c.refine:
                refine_dec = {**gen, "greedy": c.refine_greedy}
                rev = ctx.stage(f"sipo-review[{tag}]", f"{STAGES}:review_stage", {
                    **common, "review_model": review, "decoding": {**refine_dec, "max_length": c.review_max_length}},
                    {"candidates": sample, "base": ctx.base, "reviewer": endpoints[objectives.index(review)]})
                rew = ctx.stage(f"sipo-rewrite[{tag}]", f"{STAGES}:rewrite_stage", {
                    **common, "decoding": {**refine_dec, "max_length": c.rewrite_max_length}},
                    {"reviews": rev, "base": ctx.base, **ep})
                candidates = ctx.stage(f"sipo-combine[{tag}]", f"{STAGES}:combine_stage", {
                    **common, "beta": c.beta, "batch_size": c.scoring_batch_size}, {"rewrites": rew, "base": ctx.base, **ep})
            filt = ctx.stage(f"sipo-filter[{tag}]", f"{STAGES}:filter_stage", {
                **common, "beta": c.beta, "batch_size": c.scoring_batch_size, "filter_scorers": c.filter_scorers,
                "sample_weights": [list(w) for w in sample_weights], "refine": c.refine},
                {"candidates": candidates, "base": ctx.base, **ep})
            extra[f"filter_round{r + 1}"] = filt
            pairs = filt
            if c.control != "none":  # same count of pairs as the filter kept, other data (config.py)
                pairs = ctx.stage(f"sipo-control[{c.control},{tag}]", f"{STAGES}:control_stage", {
                    **common, "round": r, "control": c.control, "beta": c.beta, "batch_size": c.scoring_batch_size,
                    "filter_scorers": c.filter_scorers, "sample_weights": [list(w) for w in sample_weights],
                    "pool_max_pairs": ctx.method_config("dpo").max_pairs},
                    {"filter": filt, "candidates": sample, "data": ctx.data, "base": ctx.base, **ep})
                extra[f"control_round{r + 1}"] = pairs
            train = c.training()
            # `data`: the objective's original validation pairs (eval_every / load_best, as released)
            endpoints = [ctx.stage(f"sipo-realign[{o},{tag}]", f"{STAGES}:realign_stage", {
                **common, "objective": o, "beta": c.beta, "alpha": c.alpha, "nll_normalization": c.nll_normalization,
                "train": train},
                {"pairs": pairs, "base": ctx.base, "endpoint": endpoints[i], "data": ctx.data},
                tags=_realign_tags(endpoints[i], c.lora_r)) for i, o in enumerate(objectives)]
            for o, s in zip(objectives, endpoints):
                extra[f"realign_{o}_round{r + 1}"] = s
        if ctx.task.oracle:
            extra["endpoints"] = ctx.stage(f"sipo-endpoints[seed={ctx.seed}]", f"{STAGES}:endpoints_stage", {
                **common, "decoding": {**gen, "greedy": True}},
                {"data": ctx.data, "base": ctx.base, **{f"before{i}": dpo[o] for i, o in enumerate(objectives)},
                 **{f"after{i}": s for i, s in enumerate(endpoints)}})
        return CombinedFamily(ctx.base, endpoints, combine, options, extra=extra)

    def trained_on(self, task: Task) -> str:
        if self.config.control == "original-pairs":
            return "pair labels (extra training on them at SIPO's pair count)"
        if self.config.control == "self-pairs":
            return "pair labels + self-generated pairs (no review, rewrite or Pareto filter)"
        if self.config.refine:
            skill = getattr(task, "review_skill", None)
            return ("pair labels + self-generated pairs (review/rewrite skill from " + skill + ")" if skill
                    else "pair labels + self-generated pairs (reviewed and rewritten by the policy)")
        return "pair labels + self-generated pairs"

    def variant(self) -> str | None:
        return self.config.variant()
