"""What every reward-model scorer shares: device/dtype choice, the per-process model cache,
the texts' templates, and the batched length-sorted scoring loop."""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Sequence

from sipo_bench.config import ConfigError

DTYPES = ("auto", "float32", "bfloat16", "float16")


def pick_device(device: str | None) -> str:
    """The scorer's `device` option, else the run's device (`sipo_bench.device`)."""
    if device:
        return device
    from sipo_bench.device import current

    return current()


def pick_dtype(dtype: str, device: str) -> Any:
    """"auto": the run's inference dtype on `device` (bf16 on a GPU, fp32 on a CPU)."""
    import torch

    if dtype == "auto":
        from sipo_bench.device import inference_dtype

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


def leading_space(response: str) -> str:
    """Generated responses are the text after `ASSISTANT:`; the released SIPO evaluation scores
    the decoded full text, where one space separates `ASSISTANT:` from the response."""
    return response if response[:1].isspace() else " " + response


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
