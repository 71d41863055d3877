"""A complete, minimal third-party sipo-bench plugin.

It registers one method, `example-base`: the "do nothing" baseline that answers the base
(SFT) policy at every preference weight, after a cached stage that records what it saw. It
works on any task, because it only uses the task's base model and the run's generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from sipo_bench.config import check, field
from sipo_bench.hookspecs import hookimpl
from sipo_bench.interfaces import FitContext, Method, MethodConfig, PolicyFamily, PolicySpec
from sipo_bench.stages import StageContext

__version__ = "0.1.0"


@dataclass
class ExampleConfig(MethodConfig):
    note: str = field("hello", help="A free-text note written into the method's stage artefact.")
    repeats: int = field(1, help="How many times the note is written (>= 1).")

    def __post_init__(self) -> None:
        check(self.repeats >= 1, "repeats", "an integer >= 1", self.repeats)


def record(ctx: StageContext) -> dict:
    """The method's only stage: writes the note; a real method would train here."""
    text = "\n".join([ctx.config["note"]] * ctx.config["repeats"])
    (ctx.out / "note.txt").write_text(text + "\n")
    return {"lines": ctx.config["repeats"]}


class BaseFamily(PolicyFamily):
    def __init__(self, base, stage):
        self.base, self.stage = base, stage

    def policy(self, w: Sequence[float]) -> PolicySpec:
        return PolicySpec(self.base)

    def extra_stages(self):
        return {"record": self.stage}


class ExampleBase(Method):
    name = "example-base"
    description = "The base policy at every weight (a do-nothing baseline), from a third-party package."
    config_class = ExampleConfig
    needs_model = False  # it only reuses the task's base policy

    def fit(self, ctx: FitContext) -> PolicyFamily:
        c = self.config
        stage = ctx.stage(f"example-record[seed={ctx.seed}]", "sipo_bench_example:record",
                          {"note": c.note, "repeats": c.repeats, "seed": ctx.seed}, {"base": ctx.base})
        return BaseFamily(ctx.base, stage)


@hookimpl
def sipo_bench_register_methods() -> list:
    return [ExampleBase]
