"""SIPO's config (torch-free: listing plugins imports it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sipo_bench.api import check, field
from sipo_bench_baselines.configs import PreferenceTrainingConfig


@dataclass
class SIPOConfig(PreferenceTrainingConfig):
    """SIPO (Li et al., 2025). Class defaults follow the released pipeline (zyttt-coder/SIPO):
    greedy candidates, reviews and rewrites; the filter of `select_sample.py` (per-objective
    implicit rewards + soups at the sample weights); re-alignment at lr 5e-6 for 3 epochs with
    the best checkpoint on the objective's original validation pairs every quarter epoch.

    SIPO trains only in re-alignment: its budget is `realign_learning_rate` and
    `realign_epochs`; the other training fields inherited from DPO (batch size, schedule, LoRA,
    `eval_every`, `load_best`, ...) configure it too."""

    # set from realign_learning_rate / realign_epochs in __post_init__ (not options of their own)
    learning_rate: float = field(5e-6, init=False, help="Set by `realign_learning_rate`.")
    epochs: float = field(3.0, init=False, help="Set by `realign_epochs`.")
    realign_learning_rate: float = field(5e-6, help="Peak learning rate of the re-alignment (paper: 5e-6 at 7B).")
    realign_epochs: float = field(3.0, help="Epochs of the re-alignment over the new pairs (released: 3).")
    base: Literal["mod", "dpo-soups"] = field("mod", help="Base MOA method that samples, rewrites and is evaluated (paper: mod).")
    sample_weights: list | None = field(None, help="Weights that sample candidates; default 0.2/0.4/0.6/0.8 for k=2, interior das-dennis points (p=k+1) for k>2.")
    candidates_per_weight: int = field(1, help="Candidates per conflicting prompt and weight (more than 1 needs sample_greedy: false).")
    max_prompts: int | None = field(None, help="Use the first N conflicting training prompts (paper: 2,500 on BeaverTails); None = all.")
    sample_greedy: bool = field(True, help="Decode candidates greedily (released `mod.py`: do_sample=False); false samples.")
    temperature: float = field(1.0, help="Sampling temperature of candidates, reviews and rewrites (when not greedy).")
    top_p: float = field(1.0, help="Nucleus mass for sampling.")
    max_new_tokens: int = field(64, help="Maximum new tokens of a candidate, review or rewrite.")
    sample_max_length: int | None = field(None, help="Cap on prompt + candidate tokens (released: 512); None = max_new_tokens only.")
    review_max_length: int | None = field(None, help="Cap on review prompt + review tokens (released HelpSteer: 1200).")
    rewrite_max_length: int | None = field(None, help="Cap on rewrite prompt + rewrite tokens (released HelpSteer: 1600).")
    generation_batch_size: int = field(64, help="Prompts per generation batch.")
    refine: bool = field(True, help="Run review + rewrite + combine (SIPO steps 3-5); false samples only.")
    refine_greedy: bool = field(True, help="Decode reviews and rewrites greedily (released); false samples.")
    review_model: str | None = field(None, help="Objective whose model writes the reviews (paper: the correctness DPO model); default: the first objective.")
    filter_scorers: Literal["objectives", "objectives+soups"] = field(
        "objectives+soups", help="Filter rewards: the per-objective implicit rewards, plus (released code) the soups' at the sample weights.")
    alpha: float = field(0.1, help="Weight α of the NLL term of the re-alignment loss DPO + α·NLL.")
    nll_normalization: Literal["response_tokens", "padded_length"] = field(
        "response_tokens", help="NLL = −log π(y*|x) / n with n = the response's tokens (ours) or the padded length of the "
                                "batch's prompt + response sequences (the released code; its α = 0.1 weighs the NLL less).")
    rounds: int = field(1, help="Self-improvement rounds; round r+1 starts from round r's re-aligned models.")
    control: Literal["none", "original-pairs", "self-pairs"] = field(
        "none", help="A compute-matched control instead of SIPO's pairs, trained like SIPO's re-alignment (the same "
                     "endpoints, loss, epochs, validation and selection) on as many pairs per objective as SIPO's "
                     "filter kept: 'original-pairs' draws them from the objective's own training pairs (extra "
                     "training, no new data); 'self-pairs' builds them from the policy's candidates without review, "
                     "rewrite or Pareto filter, labelled by the filter rewards (new data, no SIPO selection).")
    scoring_batch_size: int = field(64, help="Batch size of implicit-reward scoring.")

    def __post_init__(self) -> None:
        check(self.realign_learning_rate > 0, "realign_learning_rate", "a number > 0", self.realign_learning_rate)
        check(self.realign_epochs > 0, "realign_epochs", "a number > 0", self.realign_epochs)
        self.learning_rate, self.epochs = self.realign_learning_rate, self.realign_epochs
        super().__post_init__()
        check(self.candidates_per_weight >= 1, "candidates_per_weight", "an integer >= 1", self.candidates_per_weight)
        check(self.candidates_per_weight == 1 or not self.sample_greedy, "candidates_per_weight",
              "1 with greedy candidates (sample_greedy: true decodes the same candidate every time)",
              self.candidates_per_weight)
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

    def variant(self) -> str:
        """The options that make this SIPO variant, in one line for result tables."""
        dec = lambda greedy: "greedy" if greedy else f"sampled (T={self.temperature:g})"  # noqa: E731
        parts = [f"on {self.base}", f"candidates {dec(self.sample_greedy)}",
                 f"review+rewrite {dec(self.refine_greedy)}" if self.refine else "no refine",
                 f"filter {self.filter_scorers}", f"{self.rounds} round{'s' if self.rounds > 1 else ''}",
                 f"α={self.alpha:g}",
                 f"realign {self.realign_epochs:g} ep @ lr {self.realign_learning_rate:g}"
                 + (" (best on val)" if self.load_best else "")]
        if self.control != "none":
            parts.insert(0, f"CONTROL {self.control} (SIPO's pair count, not its pairs)")
        return ", ".join(parts)
