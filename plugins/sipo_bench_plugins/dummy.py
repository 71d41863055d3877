"""A tiny, torch-free task / scorer / generator / method set that makes the harness testable
in milliseconds.

The dummy "model" writes responses made of the letters `a` and `b`; the dummy scorer grades
objective `a` as the share of a's and `b` as the share of b's (a perfect trade-off line, plus a
length bonus that the weights shape). The dummy method "trains" one adapter per objective (a
JSON file) and mixes them linearly: a soup over the dummy adapters.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from sipo_bench.api import (DecodingConfig, FitContext, Generator, Method, MethodConfig, Objective, PolicyFamily,
                            PolicySpec, ResolvedPolicy, Scorer, StageContext, Task, TaskConfig, TaskData, check, field,
                            hookimpl, write_jsonl)

__version__ = "0.1.0"
SIPO_BENCH_API = "0.2"  # the sipo_bench.api version this plugin is written for

OBJECTIVES = [Objective("a", True, "share of the letter a"), Objective("b", True, "share of the letter b")]


@dataclass
class DummyTaskConfig(TaskConfig):
    n_test: int = field(4, help="Number of test prompts.")
    length: int = field(10, help="Response length in letters.")
    prompt_noise: float = field(0.0, help="Per-prompt jitter of the a-share (fraction of the length, fixed per "
                                          "prompt text): makes scores vary over prompts and seeds, for noise tests.")

    def __post_init__(self) -> None:
        check(self.n_test >= 1, "n_test", "an integer >= 1", self.n_test)
        check(0.0 <= self.prompt_noise <= 1.0, "prompt_noise", "a number in [0, 1]", self.prompt_noise)


class DummyTask(Task):
    name = "dummy"
    description = "Letters a and b; milliseconds per run; for tests."
    config_class = DummyTaskConfig
    default_generator = "dummy"
    prompt_template = "{prompt}"
    model_based = False

    def objectives(self) -> list[Objective]:
        return list(OBJECTIVES)

    def scorers(self) -> list[tuple[str, dict]]:
        return [("dummy", {})]

    def build_data(self, out: Path, seed: int, ctx: Any) -> dict:
        prompts = [f"prompt {seed}-{i}" for i in range(self.config.n_test)]
        write_jsonl(out / "train.jsonl", [{"prompt": p, "responses": ["aab", "abb"], "labels": {"a": 0, "b": 1}} for p in prompts])
        write_jsonl(out / "val.jsonl", [])
        write_jsonl(out / "test.jsonl", [{"prompt": p} for p in prompts])
        return {"n_test": len(prompts)}

    def build_base(self, data: TaskData, out: Path, seed: int, ctx: Any) -> dict:
        model = {"length": self.config.length, "a_share": 0.5}
        if self.config.prompt_noise:
            model["prompt_noise"] = self.config.prompt_noise
        (out / "model.json").write_text(json.dumps(model))
        return {"a_share": 0.5}

    def floor(self) -> list[float] | None:
        return [0.0, 0.0]


class DummyScorer(Scorer):
    name = "dummy"
    description = "Share of each letter in the response."

    def objectives(self) -> list[str]:
        return ["a", "b"]

    def score(self, prompts: Sequence[str], responses: Sequence[str], progress: Any = None) -> dict[str, list[float]]:
        out = {"a": [], "b": []}
        for r in responses:
            n = max(len(r), 1)
            out["a"].append(r.count("a") / n)
            out["b"].append(r.count("b") / n)
        if progress:
            progress(len(responses))
        return out


class DummyGenerator(Generator):
    name = "dummy"
    description = "Writes a's and b's in the proportion the policy's adapters set."
    uses_accelerator = False  # no model: its stages never ask for a GPU

    def generate(self, policy: ResolvedPolicy, prompts: Sequence[str], decoding: DecodingConfig, *,
                 num_return_sequences: int = 1, seed: int = 0, progress: Any = None) -> list[list[str]]:
        model = json.loads((Path(policy.base) / "model.json").read_text())
        share = model["a_share"]
        if policy.adapters:
            total = sum(w for _, w in policy.adapters)
            share = sum(w * json.loads((Path(a) / "adapter.json").read_text())["a_share"] for a, w in policy.adapters) / total
        n = model["length"]
        jitter = model.get("prompt_noise", 0.0)
        out = []
        for p in prompts:
            u = (zlib.crc32(p.encode()) % 2001) / 1000.0 - 1.0 if jitter else 0.0  # fixed per prompt, in [-1, 1]
            n_a = min(max(round(n * (share + jitter * u)), 0), n)
            out.append(["a" * n_a + "b" * (n - n_a)] * num_return_sequences)
        if progress:
            progress(len(prompts))
        return out


@dataclass
class DummyMethodConfig(MethodConfig):
    strength: float = field(0.9, help="Share of the preferred letter in each endpoint adapter.")
    sleep: float = field(0.0, help="Seconds each training stage sleeps (to test interruption).")
    fail: bool = field(False, help="Raise inside the training stage (to test failure handling).")

    def __post_init__(self) -> None:
        check(0.0 <= self.strength <= 1.0, "strength", "a number in [0, 1]", self.strength)
        check(self.sleep >= 0, "sleep", "a number of seconds >= 0", self.sleep)


def train_dummy_adapter(ctx: StageContext) -> dict:
    cfg = ctx.config
    if cfg["fail"]:
        raise RuntimeError("dummy method asked to fail")
    steps = 10
    with ctx.progress(steps, ctx.stage.name) as advance:
        for _ in range(steps):
            time.sleep(cfg["sleep"] / steps)
            advance()
    share = cfg["strength"] if cfg["objective_index"] == 0 else 1.0 - cfg["strength"]
    (ctx.out / "adapter.json").write_text(json.dumps({"a_share": share}))
    return {"a_share": share}


class DummyFamily(PolicyFamily):
    def __init__(self, base, adapters):
        self.base, self.adapters = base, adapters

    def policy(self, w: Sequence[float]) -> PolicySpec:
        return PolicySpec(self.base, tuple(zip(self.adapters, w)), "soup")


class DummyMethod(Method):
    name = "dummy"
    description = "Linear mix of per-objective dummy adapters (no torch)."
    config_class = DummyMethodConfig
    tasks = ("dummy",)
    needs_model = False

    def trained_on(self, task: Any) -> str | None:
        return None  # it reads no training signal: its adapters are fixed letter mixes

    def fit(self, ctx: FitContext) -> PolicyFamily:
        c = self.config
        adapters = [ctx.stage(f"dummy-train[{o.name},seed={ctx.seed}]", "sipo_bench_plugins.dummy:train_dummy_adapter",
                              {"objective_index": i, "strength": c.strength, "sleep": c.sleep, "fail": c.fail, "seed": ctx.seed},
                              {"base": ctx.base})
                    for i, o in enumerate(ctx.objectives)]
        return DummyFamily(ctx.base, adapters)


@hookimpl
def sipo_bench_register_tasks() -> list:
    return [DummyTask]


@hookimpl
def sipo_bench_register_objectives() -> list:
    return list(OBJECTIVES)


@hookimpl
def sipo_bench_register_scorers() -> list:
    return [DummyScorer]


@hookimpl
def sipo_bench_register_generators() -> list:
    return [DummyGenerator]


@hookimpl
def sipo_bench_register_methods() -> list:
    return [DummyMethod]
