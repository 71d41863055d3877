"""Planning helpers shared by the baseline methods (torch-free)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from sipo_bench.api import FitContext, PolicyFamily, PolicySpec, fmt, is_vertex

STAGES = "sipo_bench_baselines.stages"


def task_config(ctx: FitContext) -> dict:
    """What identifies the task in a method stage's config: its name, version and the options
    method stages read (`Task.stage_config("method")`; the data and the base model are inputs,
    so their options reach the key through the inputs' keys)."""
    return ctx.task.stage_config("method")


def lora_tags(rank: int) -> dict:
    """Tags of a stage that saves a LoRA adapter of this rank (not part of its key): the run
    plan sizes single-model backends (a vLLM engine's max_lora_rank) from them."""
    return {"lora_rank": int(rank)}


class VertexFamily(PolicyFamily):
    """One adapter per objective, answering only the simplex vertices (per-objective DPO)."""

    def __init__(self, base: Any, adapters: Sequence[Any]):
        self.base, self.adapters = base, list(adapters)

    def policy(self, w: Sequence[float]) -> PolicySpec | None:
        i = is_vertex(w)
        return None if i is None else PolicySpec(self.base, ((self.adapters[i], 1.0),), "soup")


class CombinedFamily(PolicyFamily):
    """Σ_i w_i over per-objective adapters: a weight soup ("soup") or MOD decoding ("fusion").
    `extra`: stages whose results go to summary.json (e.g. reward-model accuracy)."""

    def __init__(self, base: Any, adapters: Sequence[Any], combine: str = "soup", options: dict | None = None,
                 extra: dict | None = None):
        self.base, self.adapters, self.combine, self.options = base, list(adapters), combine, dict(options or {})
        self._extra = dict(extra or {})

    def extra_stages(self) -> dict:
        return dict(self._extra)

    def policy(self, w: Sequence[float]) -> PolicySpec:
        if len(w) != len(self.adapters):
            raise ValueError(f"expected {len(self.adapters)} weights (one per objective), got {list(w)}")
        return PolicySpec(self.base, tuple(zip(self.adapters, (float(x) for x in w))), self.combine, self.options)


class PerWeightFamily(PolicyFamily):
    """One model per weight vector, planned lazily: `plan(w)` returns the adapter stage."""

    def __init__(self, base: Any, plan: Callable[[tuple[float, ...]], Any]):
        self.base, self.plan = base, plan
        self._planned: dict[str, Any] = {}

    def policy(self, w: Sequence[float]) -> PolicySpec:
        key = fmt(w)
        if key not in self._planned:
            self._planned[key] = self.plan(tuple(float(x) for x in w))
        return PolicySpec(self.base, ((self._planned[key], 1.0),), "soup")
