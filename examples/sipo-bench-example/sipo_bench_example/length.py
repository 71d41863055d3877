"""`example-length`: response length, a lower-is-better objective.

Add it to any task's evaluation without writing a task (run config)::

    extra_scorers:
      - name: example-length
        options: {unit: words}

Every evaluated point then also reports its mean response length; the weights, fronts and
hypervolume stay over the task's own objectives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from sipo_bench.api import Scorer, build, check, field


@dataclass
class LengthOptions:
    """The scorer's options: checked before any stage runs, listed by `sipo-bench show scorer example-length`."""

    unit: Literal["words", "characters"] = field("words", help="Count whitespace-separated words or characters.")
    objective: str = field("length", help="Name the scores are reported under.")

    def __post_init__(self) -> None:
        check(bool(self.objective.strip()), "objective", "a non-empty objective name", self.objective)


class LengthScorer(Scorer):
    name = "example-length"
    description = "Response length in words or characters (lower is better)."
    options_class = LengthOptions

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.cfg = build(LengthOptions, options, f"scorer {self.name}")  # cheap: no model to load

    def objectives(self) -> list[str]:
        return [self.cfg.objective]

    def directions(self) -> dict[str, bool]:
        return {self.cfg.objective: False}  # shorter is better; the scores are never sign-flipped

    def score(self, prompts: Sequence[str], responses: Sequence[str], progress: Any = None) -> dict[str, list[float]]:
        if len(prompts) != len(responses):
            raise ValueError(f"{self.name}: {len(prompts)} prompts but {len(responses)} responses")
        if self.cfg.unit == "words":
            values = [float(len(r.split())) for r in responses]
        else:
            values = [float(len(r.strip())) for r in responses]
        if progress is not None:
            progress(len(responses))
        return {self.cfg.objective: values}
