"""`example-expo`: model extrapolation (ExPO) of per-objective models, mixed per preference weight.

ExPO (Zheng et al. 2024, "Weak-to-Strong Extrapolation Expedites Alignment") moves an aligned
model further along the direction alignment took it: θ' = θ_base + (1 + λ)(θ − θ_base). Every
endpoint here is a LoRA adapter of the base model whose weight delta is ΔW = B A · alpha/r, so
extrapolating is exact and cheap: multiply each `lora_B` by (1 + λ), which multiplies ΔW by the
same factor. The result is again a LoRA adapter of the base model, usable by every generation
backend and every combine rule.

How it is built (the pattern to copy):

1. **Reuse another method's models**: `ctx.method(endpoints)` returns that method's policy
   family for this seed, planned with the run's config for it (default `dpo`: the shared
   per-objective DPO adapters, the same stages, with the same cache keys, as the `dpo` method and
   every other method that builds on them, so they are trained once per run). Its policy at the
   simplex vertex of objective i is that objective's model.
2. **A stage of its own**: :func:`extrapolate_adapter`, passed to `ctx.stage` as a function
   object (no `"module:function"` string to keep in sync). Its config holds everything that
   changes its output (the factor); its input is the endpoint adapter stage.
3. **A policy family**: for weights w, a soup Σ w_i ΔW'_i of the extrapolated adapters (or MOD
   decoding over them with `combine: fusion`), described as a `PolicySpec`.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from sipo_bench.api import (ConfigError, FitContext, Method, MethodConfig, PolicyFamily, PolicySpec, Stage,
                            StageContext, check, did_you_mean, field)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
LORA_A = re.compile(r"\.lora_(embedding_)?A\b")
LORA_B = re.compile(r"\.lora_(embedding_)?B\b")


@dataclass
class ExPOConfig(MethodConfig):
    """Options of `example-expo` (`method_options: {example-expo: {...}}` in a run config)."""

    extrapolation: float = field(0.5, help="λ: each endpoint's weight delta is multiplied by 1 + λ "
                                           "(0 = the endpoints themselves; ExPO uses about 0.1 to 0.5).")
    endpoints: str = field("dpo", help="The method whose models are extrapolated: its policy at each simplex "
                                       "vertex must be one adapter of the base model (dpo, modpo, dpo-lw, ...).")
    combine: Literal["soup", "fusion"] = field("soup", help="soup: weight interpolation of the extrapolated deltas; "
                                                            "fusion: MOD decoding over them (reverse-KL rule).")

    def __post_init__(self) -> None:
        check(math.isfinite(self.extrapolation) and self.extrapolation > -1.0, "extrapolation",
              "a finite number > -1", self.extrapolation)
        check(bool(self.endpoints), "endpoints", "a method name", self.endpoints)


def extrapolate_adapter(ctx: StageContext) -> dict:
    """config: factor; inputs: adapter (a LoRA adapter dir). Writes the adapter with every
    `lora_B` (and LoRA-embedding B) tensor multiplied by `factor`, so ΔW becomes factor · ΔW."""
    from safetensors.torch import load_file, save_file

    src, factor = ctx.inputs["adapter"], float(ctx.config["factor"])
    config = json.loads((src / ADAPTER_CONFIG).read_text())
    if config.get("peft_type") != "LORA" or config.get("use_dora") or config.get("modules_to_save"):
        raise ValueError(f"{src}: expected a plain LoRA adapter (no DoRA, no modules_to_save), got "
                         f"peft_type={config.get('peft_type')!r}, use_dora={config.get('use_dora')!r}, "
                         f"modules_to_save={config.get('modules_to_save')!r}")
    tensors = load_file(str(src / ADAPTER_WEIGHTS))
    other = [k for k in tensors if not (LORA_A.search(k) or LORA_B.search(k))]
    if other:
        raise ValueError(f"{src}: tensor {other[0]!r} is neither a LoRA A nor a LoRA B matrix; cannot extrapolate it")
    scaled = {k: (v * factor if LORA_B.search(k) else v).contiguous() for k, v in tensors.items()}
    save_file(scaled, str(ctx.out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    shutil.copyfile(src / ADAPTER_CONFIG, ctx.out / ADAPTER_CONFIG)
    return {"factor": factor, "scaled_tensors": sum(1 for k in tensors if LORA_B.search(k))}


def vertex(k: int, i: int) -> tuple[float, ...]:
    return tuple(1.0 if j == i else 0.0 for j in range(k))


def endpoint_adapter(family: PolicyFamily, base: Stage, k: int, i: int, method: str) -> Stage:
    """The adapter stage of `family`'s model for objective i (its policy at vertex i), checked
    to be one unit-weight adapter of `base`."""
    spec = family.policy(vertex(k, i))
    spec = spec.normalized() if spec is not None else None
    ok = (spec is not None and spec.combine == "soup" and len(spec.adapters) == 1 and spec.adapters[0][1] == 1.0
          and isinstance(spec.adapters[0][0], Stage) and isinstance(spec.base, Stage) and spec.base.key == base.key)
    if not ok:
        raise ConfigError(f"`method_options.example-expo.endpoints`: expected a method whose policy at each simplex "
                          f"vertex is one adapter of the base model, got {method!r} (at {list(vertex(k, i))}: {spec})")
    return spec.adapters[0][0]


class ExPOFamily(PolicyFamily):
    """Σ_i w_i over the extrapolated adapters: a soup, or MOD decoding (`fusion`)."""

    def __init__(self, base: Stage, adapters: dict[str, Stage], combine: str):
        self.base, self.adapters, self.combine = base, adapters, combine

    def policy(self, w: Sequence[float]) -> PolicySpec:
        options = {"rule": "reverse_kl"} if self.combine == "fusion" else {}
        return PolicySpec(self.base, tuple(zip(self.adapters.values(), (float(x) for x in w))), self.combine, options)

    def extra_stages(self) -> dict[str, Stage]:
        """Their `result.json` (factor, tensors scaled) reaches summary.json and table.md."""
        return {f"extrapolate[{name}]": stage for name, stage in self.adapters.items()}


class ExPOMethod(Method):
    name = "example-expo"
    description = "ExPO: another method's per-objective models extrapolated away from the base, then mixed per weight."
    config_class = ExPOConfig

    def fit(self, ctx: FitContext) -> PolicyFamily:
        c: ExPOConfig = self.config
        methods = ctx.runtime.registries.methods
        if c.endpoints == self.name or c.endpoints not in methods:
            raise ConfigError(f"`method_options.{self.name}.endpoints`: " + (
                f"expected another method, got {c.endpoints!r}" if c.endpoints == self.name
                else did_you_mean("method", c.endpoints, methods.names())))
        endpoints = ctx.method(c.endpoints)  # planned once per run and seed, shared with every other user
        k = len(ctx.objectives)
        adapters = {}
        for i, o in enumerate(ctx.objectives):
            source = endpoint_adapter(endpoints, ctx.base, k, i, c.endpoints)
            adapters[o.name] = ctx.stage(f"expo[{o.name},x{1 + c.extrapolation:g},seed={ctx.seed}]", extrapolate_adapter,
                                         {"factor": 1.0 + c.extrapolation}, {"adapter": source})
        return ExPOFamily(ctx.base, adapters, c.combine)
