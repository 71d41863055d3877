"""What every reward-model scorer shares: device/dtype choice, the per-process model cache,
the texts' templates, and the batched length-sorted scoring loop."""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Sequence

from sipo_bench.api import ConfigError

DTYPES = ("auto", "float32", "bfloat16", "float16")


def pick_device(device: str | None) -> str:
    """The scorer's `device` option, else the run's device (`sipo_bench.execution.device`)."""
    if device:
        return device
    from sipo_bench.api import current

    return current()


def pick_dtype(dtype: str, device: str) -> Any:
    """"auto": the run's inference dtype on `device` (bf16 on a GPU, fp32 on a CPU)."""
    import torch

    if dtype == "auto":
        from sipo_bench.api import inference_dtype

        return inference_dtype(device)
    return getattr(torch, dtype)


def model_ref(model: str) -> str:
    p = Path(model).expanduser()
    return str(p.resolve()) if p.exists() else model


class Loaded:
    """A loaded model and its tokenizer (weak-referenceable, so the cache frees it once no
    scorer holds it any more)."""

    __slots__ = ("model", "tokenizer", "info", "__weakref__")

    def __init__(self, model: Any, tokenizer: Any, info: dict | None = None):
        self.model, self.tokenizer, self.info = model, tokenizer, info or {}


_CACHE: "weakref.WeakValueDictionary[tuple, Loaded]" = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


def cached_load(key: tuple, loader: Callable[[], Loaded]) -> Loaded:
    """One load per key (kind, model, device, dtype) per process while any scorer uses it:
    two scorers over the same model (e.g. several objectives, or the same model under two
    option sets) share one copy."""
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is None:
            hit = loader()
            _CACHE[key] = hit
        return hit


def cache_size() -> int:
    return len(_CACHE)


def ensure_pad_token(tokenizer: Any, model: Any | None = None) -> None:
    """Batches need a pad token; models like Mistral/LLaMA ship without one. Use unk, else eos
    (scores are read at the last attention-mask position, so the pad id never matters there)."""
    if tokenizer.pad_token is None:
        if tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        elif tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            raise ConfigError("`model`: expected a tokenizer with a pad, unk or eos token, got none")
    if model is not None and getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def check_template(template: str, name: str = "template") -> None:
    for key in ("{prompt}", "{response}"):
        if key not in template:
            raise ConfigError(f"`{name}`: expected a string containing {key}, got {template!r}")


def fill(template: str, prompt: str, response: str) -> str:
    """`template` with {prompt} and {response} replaced (str.replace, so braces inside the
    texts, or elsewhere in the template, are safe)."""
    return template.replace("{prompt}", prompt).replace("{response}", response)


def last_token_index(attention_mask: Any) -> Any:
    """Index of the last non-padding position of each row (any padding side)."""
    import torch

    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(dim=1)


def batched(texts: Sequence[str], batch_size: int, run: Callable[[list[str]], Any],
            progress: Any = None) -> list[Any]:
    """Run `run` on batches of `texts` sorted by length (less padding) and return the per-text
    results in input order. `run(batch)` returns one row per text."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    out: list[Any] = [None] * len(texts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        rows = run([texts[i] for i in idx])
        for i, row in zip(idx, rows):
            out[i] = row
        if progress:
            progress(len(idx))
    return out


def check_loaded_weights(what: str, path: str, info: dict, *, allowed_missing: Sequence[str] = (),
                         allowed_unexpected: Sequence[str] = (), expected: str = "") -> None:
    """Fail loudly when a checkpoint does not fit the model it was loaded into.

    `info` is `from_pretrained(..., output_loading_info=True)`'s: any missing weight (left at its
    random initialisation), unexpected weight (in the file, used by nothing) or shape mismatch is
    an error naming the keys, except keys matching the regexes in `allowed_missing` /
    `allowed_unexpected` (which the caller handles, e.g. a head bias safe-rlhf zero-fills)."""
    import re

    def bad(keys: Any, allowed: Sequence[str]) -> list[str]:
        return sorted(str(k) for k in (keys or []) if not any(re.search(p, str(k)) for p in allowed))

    def show(keys: list[str]) -> str:
        return ", ".join(keys[:4]) + (f" ... ({len(keys)} in all)" if len(keys) > 4 else "")

    missing = bad(info.get("missing_keys"), allowed_missing)
    unexpected = bad(info.get("unexpected_keys"), allowed_unexpected)
    mismatched = sorted(str(m[0] if isinstance(m, (tuple, list)) else m) for m in info.get("mismatched_keys") or [])
    parts = []
    if missing:
        parts.append(f"weights missing from the checkpoint (left random): {show(missing)}")
    if unexpected:
        parts.append(f"weights in the checkpoint the model does not use: {show(unexpected)}")
    if mismatched:
        parts.append(f"weights of the wrong shape: {show(mismatched)}")
    if parts:
        raise RuntimeError(f"{what} {path}: " + "; ".join(parts) + (f" (expected {expected})" if expected else ""))
