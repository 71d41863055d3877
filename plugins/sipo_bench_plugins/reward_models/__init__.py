"""Reward-model scorers: beaver-reward, beaver-cost, dpa-rm, hf-classifier.

Registered lazily: listing plugins imports neither torch nor transformers. Every scorer is
batched, loads bf16 on a GPU and fp32 on a CPU, and shares one loaded model per process
between all scorer instances that name the same model (see `loading.py`).
"""

from __future__ import annotations

from sipo_bench.api import Lazy, hookimpl

__version__ = "0.1.0"
SIPO_BENCH_API = "0.2"  # the sipo_bench.api version this plugin is written for


@hookimpl
def sipo_bench_register_scorers() -> list:
    return [
        Lazy("beaver-reward", "sipo_bench_plugins.reward_models.beaver:BeaverRewardScorer",
             "PKU-Alignment/beaver-7b-v1.0-reward (LLaMA + score_head, end score); higher is better."),
        Lazy("beaver-cost", "sipo_bench_plugins.reward_models.beaver:BeaverCostScorer",
             "PKU-Alignment/beaver-7b-v1.0-cost (LLaMA + score_head, end score); LOWER is better."),
        Lazy("dpa-rm", "sipo_bench_plugins.reward_models.classifier:DPARewardScorer",
             "RLHFlow/RewardModel-Mistral-7B-for-DPA-v1: HelpSteer attribute ratings, rescaled (s-10)/20."),
        Lazy("hf-classifier", "sipo_bench_plugins.reward_models.classifier:HFClassifierScorer",
             "Any AutoModelForSequenceClassification reward model, configured by template/heads/scale/direction."),
    ]
