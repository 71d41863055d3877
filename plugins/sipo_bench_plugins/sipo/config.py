"""SIPO's config (torch-free: listing plugins imports it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sipo_bench.config import check, field
from sipo_bench_baselines.configs import PreferenceTrainingConfig


@dataclass
class SIPOConfig(PreferenceTrainingConfig):
    """SIPO (Li et al., 2025). The training fields inherited from DPO configure the
    re-alignment; their class defaults are the paper's 7B settings (re-alignment lr 5e-6)."""

    learning_rate: float = field(5e-6, help="Peak learning rate of the re-alignment (paper: 5e-6 at 7B).")
    base: Literal["mod", "dpo-soups"] = field("mod", help="Base MOA method that samples, rewrites and is evaluated (paper: mod).")
    sample_weights: list | None = field(None, help="Weights that sample candidates; default 0.2/0.4/0.6/0.8 for k=2, interior das-dennis points (p=k+1) for k>2.")
    candidates_per_weight: int = field(1, help="Candidates sampled per conflicting prompt and weight.")
    max_prompts: int | None = field(None, help="Use the first N conflicting training prompts (paper: 2,500 on BeaverTails); None = all.")
    sample_greedy: bool = field(False, help="Decode candidates greedily instead of sampling.")
    temperature: float = field(1.0, help="Sampling temperature of candidates, reviews and rewrites.")
    top_p: float = field(1.0, help="Nucleus mass for sampling.")
    max_new_tokens: int = field(64, help="Maximum new tokens of a candidate, review or rewrite.")
    sample_max_length: int | None = field(None, help="Cap on prompt + candidate tokens (released: 512); None = max_new_tokens only.")
    review_max_length: int | None = field(None, help="Cap on review prompt + review tokens (released HelpSteer: 1200).")
    rewrite_max_length: int | None = field(None, help="Cap on rewrite prompt + rewrite tokens (released HelpSteer: 1600).")
    generation_batch_size: int = field(64, help="Prompts per generation batch.")
    refine: bool = field(True, help="Run review + rewrite + combine (SIPO steps 3-5); false samples only.")
    refine_greedy: bool = field(False, help="Decode reviews and rewrites greedily.")
    review_model: str | None = field(None, help="Objective whose model writes the reviews (paper: the correctness DPO model); default: the first objective.")
    filter_scorers: Literal["objectives", "objectives+soups"] = field(
        "objectives", help="Filter rewards: the per-objective implicit rewards, or also the soups at the sample weights (released code).")
    alpha: float = field(0.1, help="Weight α of the NLL term of the re-alignment loss DPO + α·NLL.")
    nll_normalization: Literal["response_tokens", "padded_length"] = field(
        "response_tokens", help="NLL = −log π(y*|x) / n with n = the response's tokens (ours) or the padded length of the "
                                "batch's prompt + response sequences (the released code; its α = 0.1 weighs the NLL less).")
    rounds: int = field(1, help="Self-improvement rounds; round r+1 starts from round r's re-aligned models.")
    scoring_batch_size: int = field(64, help="Batch size of implicit-reward scoring.")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.candidates_per_weight >= 1, "candidates_per_weight", "an integer >= 1", self.candidates_per_weight)
        check(self.rounds >= 1, "rounds", "an integer >= 1", self.rounds)
        check(self.alpha >= 0, "alpha", "a number >= 0", self.alpha)
        check(self.temperature > 0, "temperature", "a number > 0", self.temperature)
        check(0 < self.top_p <= 1, "top_p", "a number in (0, 1]", self.top_p)
        check(self.max_new_tokens >= 1, "max_new_tokens", "an integer >= 1", self.max_new_tokens)
        check(self.generation_batch_size >= 1, "generation_batch_size", "an integer >= 1", self.generation_batch_size)
        check(self.scoring_batch_size >= 1, "scoring_batch_size", "an integer >= 1", self.scoring_batch_size)
        for name in ("sample_max_length", "review_max_length", "rewrite_max_length"):
            value = getattr(self, name)
            if value is not None:
                check(value >= 2, name, "an integer >= 2 or null", value)
        if self.max_prompts is not None:
            check(self.max_prompts >= 1, "max_prompts", "an integer >= 1 or null", self.max_prompts)
        if self.sample_weights is not None:
            check(len(self.sample_weights) > 0, "sample_weights", "a non-empty list of weight vectors", self.sample_weights)
