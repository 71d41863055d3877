"""Pure request building for the vLLM backend: which model and LoRA adapter a policy needs,
the `SamplingParams` keyword arguments, LoRA request ids and the engine's keyword arguments.

Nothing here imports vllm or torch, so it is tested on machines without either.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from sipo_bench.api import DecodingConfig, ResolvedPolicy, SipoBenchError

#: LoRA ranks vLLM accepts as `max_lora_rank` (vllm 0.33 `vllm.config.lora.MaxLoRARanks`)
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class UnsupportedPolicy(SipoBenchError):
    """A policy the vLLM backend cannot realise (one line, names the alternative)."""


@dataclass(frozen=True)
class VLLMPlan:
    """What to serve for one policy: a base model (+ tokenizer), and either nothing, one LoRA
    adapter dir as is (`adapter`), or adapters to merge into one LoRA first (`merge`)."""

    model: str
    tokenizer: str
    adapter: str | None = None
    merge: tuple[tuple[str, float], ...] = ()


def resolve_base(base: Any) -> tuple[str, str]:
    """(model, tokenizer) of a base stage dir (saved model or pointer.json) or a hub id/path;
    the same resolution as the transformers backend."""
    from sipo_bench.api import resolve_model_path

    return resolve_model_path(base, with_tokenizer=True)


def plan_policy(policy: ResolvedPolicy) -> VLLMPlan:
    """Every single-model policy: the base, base + one LoRA (weight 1), or a soup (any other
    weights / several adapters) served as one merged LoRA. MOD fusion is refused."""
    if policy.combine == "fusion":
        raise UnsupportedPolicy("vllm backend: MOD fusion (combine='fusion') is not supported; "
                                "use the transformers backend (`generator: transformers`)")
    if policy.combine != "soup":
        raise UnsupportedPolicy(f"vllm backend: combine={policy.combine!r} is not supported (only 'soup' and single "
                                f"models); use the transformers backend (`generator: transformers`)")
    model, tok = resolve_base(policy.base)
    adapters = tuple((str(a), float(w)) for a, w in policy.adapters if float(w) != 0.0)
    if not adapters:
        return VLLMPlan(model, tok)
    if len(adapters) == 1 and adapters[0][1] == 1.0:
        return VLLMPlan(model, tok, adapter=adapters[0][0])
    return VLLMPlan(model, tok, merge=adapters)


def sampling_kwargs(decoding: DecodingConfig, num_return_sequences: int, seed: int, max_tokens: int | None = None) -> dict:
    """Keyword arguments of `vllm.SamplingParams`. Greedy decoding is temperature 0 with one
    sequence (n identical greedy copies are replicated by the caller, see `copies`).
    `max_tokens` defaults to `decoding.max_new_tokens` (a prompt's own budget under
    `decoding.max_length` is passed by the caller)."""
    max_tokens = decoding.max_new_tokens if max_tokens is None else max_tokens
    if decoding.greedy:
        return {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": max_tokens,
                "seed": seed, "skip_special_tokens": True}
    return {"n": num_return_sequences, "temperature": decoding.temperature, "top_p": decoding.top_p,
            "max_tokens": max_tokens, "seed": seed, "skip_special_tokens": True}


def copies(decoding: DecodingConfig, num_return_sequences: int) -> int:
    """How many times each returned sequence is repeated to give `num_return_sequences`."""
    return num_return_sequences if decoding.greedy else 1


def adapter_rank(adapter_dir: str | Path) -> int:
    cfg = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    ranks = [int(cfg.get("r", 8))] + [int(v) for v in (cfg.get("rank_pattern") or {}).values()]
    return max(ranks)


def max_lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that holds `rank`."""
    for r in VLLM_LORA_RANKS:
        if r >= rank:
            return r
    raise UnsupportedPolicy(f"vllm backend: a LoRA of rank {rank} exceeds vLLM's largest max_lora_rank "
                            f"{VLLM_LORA_RANKS[-1]}; use the transformers backend (`generator: transformers`)")


class LoRAIds:
    """Stable integer ids of adapter dirs (vLLM identifies a LoRA by its int id)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def request_args(self, adapter_dir: str | Path) -> tuple[str, int, str]:
        """(lora_name, lora_int_id, lora_path) for `vllm.lora.request.LoRARequest`."""
        path = str(Path(adapter_dir).resolve())
        if path not in self._ids:
            self._ids[path] = len(self._ids) + 1  # 0 is reserved by vLLM for "no LoRA"
        return f"adapter{self._ids[path]}", self._ids[path], path


def soup_key(merge: Sequence[tuple[str, float]]) -> str:
    """A name for the merged adapter of these (dir, weight) pairs."""
    payload = json.dumps([[str(Path(a).resolve()), float(w)] for a, w in merge])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


ENV_PREFIX = "SIPO_BENCH_VLLM_"


def engine_kwargs(model: str, tokenizer: str, lora_rank: int, env: Mapping[str, str] | None = None,
                  planned_rank: int | None = None) -> dict:
    """Keyword arguments of `vllm.LLM`. Engine settings come from the environment, since a
    generator is built without options: SIPO_BENCH_VLLM_GPU_MEMORY_UTILIZATION (default 0.85),
    SIPO_BENCH_VLLM_TENSOR_PARALLEL_SIZE (1), SIPO_BENCH_VLLM_MAX_MODEL_LEN (unset: the model's),
    SIPO_BENCH_VLLM_DTYPE (auto), SIPO_BENCH_VLLM_MAX_LORA_RANK (a floor, default 64).
    `max_lora_rank` holds the largest of `lora_rank` (this request), `planned_rank` (the largest
    adapter or soup the run will serve, known from its plan) and the floor, so one engine serves
    the whole run."""
    env = os.environ if env is None else env

    def get(name: str, default: str | None) -> str | None:
        return env.get(ENV_PREFIX + name, default)

    floor = int(get("MAX_LORA_RANK", "64"))
    kw: dict[str, Any] = {
        "model": model, "tokenizer": tokenizer, "enable_lora": True, "max_loras": 1,
        "max_lora_rank": max_lora_rank(max(lora_rank, floor, planned_rank or 0)),
        "gpu_memory_utilization": float(get("GPU_MEMORY_UTILIZATION", "0.85")),
        "tensor_parallel_size": int(get("TENSOR_PARALLEL_SIZE", "1")),
        "dtype": get("DTYPE", "auto"),
    }
    max_len = get("MAX_MODEL_LEN", None)
    if max_len:
        kw["max_model_len"] = int(max_len)
    return kw
