"""Built-in baseline alignment methods: dpo, dpo-soups, mod, modpo, dpo-lw, rewarded-soups.

Registered lazily (listing plugins never imports torch). Public API for other methods:

- `sipo_bench_baselines.dpo.dpo_stages(ctx) -> {objective: Stage}`: the shared per-objective
  DPO adapters (planned with the `dpo` method's config: one cache key, trained once per run).
- `sipo_bench_baselines.trainer.PreferenceTrainer` (trl `DPOTrainer` with a pluggable loss at
  `compute_loss`) and `train_preference_adapter(...)` (one LoRA training run, `ref_adapter_dir`
  for a "base + merged adapter" reference).
- `sipo_bench_baselines.losses`: `dpo_loss`, `modpo_loss`, `dpo_lw_loss`, `sipo_loss` and the
  loss objects `DPOLoss`, `MODPOLoss`, `DPOLWLoss`, `SIPOLoss`.
"""

from __future__ import annotations

from sipo_bench.api import Lazy, hookimpl

__version__ = "0.1.0"
SIPO_BENCH_API = "0.2"  # the sipo_bench.api version this plugin is written for


@hookimpl
def sipo_bench_register_methods() -> list:
    return [
        Lazy("dpo", "sipo_bench_baselines.dpo:DPOMethod", "Per-objective LoRA DPO models (simplex vertices)."),
        Lazy("dpo-soups", "sipo_bench_baselines.soups:DPOSoupsMethod", "Exact interpolation of the per-objective DPO LoRA deltas."),
        Lazy("mod", "sipo_bench_baselines.mod:MODMethod", "Multi-objective decoding over the per-objective DPO models."),
        Lazy("modpo", "sipo_bench_baselines.modpo:MODPOMethod", "MODPO: one model per weight, other objectives' rewards as margins."),
        Lazy("dpo-lw", "sipo_bench_baselines.dpo_lw:DPOLWMethod", "DPO loss weighting: one model per weight, L = Σ w_i DPO_i."),
        Lazy("rewarded-soups", "sipo_bench_baselines.rewarded_soups:RewardedSoupsMethod",
             "RLOO per objective against a reward model learned from the pairs, then LoRA weight interpolation."),
    ]
