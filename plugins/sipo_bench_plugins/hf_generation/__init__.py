"""The transformers generation backend (batched generation, soups, MOD fusion, log-probs).

This module stays torch-free (listing plugins must not import torch): the backend lives in
`.backend` and is registered lazily; the helpers below import it on first call.

Public API (see docs/generation.md):

- `resolve_model_path(base_dir)`: what to pass to `from_pretrained` for a base stage dir.
- `HFGenerator` (registered as generator `transformers`).
- `sequence_logprobs(base_dir, adapter_dirs, prompts, responses, batch_size=64)` -> (k, n).
- `implicit_rewards(base_dir, adapter_dirs, prompts, responses, beta, ref_adapter=None)` -> (k, n).
- `fuse_logprobs(logps, w, rule="reverse_kl", alpha=None)`: MOD's fusion rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sipo_bench.api import Lazy, hookimpl

__version__ = "0.1.0"
SIPO_BENCH_API = "0.2"  # the sipo_bench.api version this plugin is written for

__all__ = ["resolve_model_path", "HFGenerator", "sequence_logprobs", "implicit_rewards", "fuse_logprobs"]

_LAZY = {
    "HFGenerator": "backend",
    "sequence_logprobs": "backend",
    "implicit_rewards": "backend",
    "default_generator": "backend",
    "fuse_logprobs": "fusion",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_model_path(base_dir: Any, with_tokenizer: bool = False):
    """What to pass to `from_pretrained` for a base model.

    `base_dir` is a base stage dir holding either `save_pretrained` files (returned as is) or
    `pointer.json` = `{"model": "<hub id or path>", "tokenizer": "<optional, defaults to model>"}`;
    a string that is not a directory is taken as a hub id / path itself. A relative path in
    the pointer that exists relative to `base_dir` is resolved against it. With
    `with_tokenizer=True`, returns `(model, tokenizer)`."""
    p = Path(str(base_dir))
    if p.is_dir():
        pointer = p / "pointer.json"
        if pointer.exists():
            spec = json.loads(pointer.read_text())
            if not isinstance(spec, dict) or not isinstance(spec.get("model"), str) or not spec["model"]:
                raise ValueError(f"{pointer}: expected {{\"model\": \"<hub id or path>\"}}, got {spec!r}")

            def res(x: str) -> str:
                return str(p / x) if not Path(x).is_absolute() and (p / x).exists() else x

            model = res(spec["model"])
            tok = res(spec.get("tokenizer") or spec["model"])
        elif (p / "config.json").exists():
            model = tok = str(p)
        else:
            raise FileNotFoundError(f"{p}: neither a saved model (config.json) nor pointer.json")
    else:
        model = tok = str(base_dir)
    return (model, tok) if with_tokenizer else model


@hookimpl
def sipo_bench_register_generators() -> list:
    return [Lazy("transformers", "sipo_bench_plugins.hf_generation.backend:HFGenerator",
                 "transformers + peft: batched generation, exact LoRA soups, MOD fusion, log-probs")]
