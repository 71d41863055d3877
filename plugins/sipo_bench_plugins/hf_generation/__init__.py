"""The transformers generation backend (batched generation, soups, MOD fusion, log-probs).

This module stays torch-free (listing plugins must not import torch): the backend lives in
`.backend` and is registered lazily; the helpers below import it on first call.

Public API (see docs/generation.md):

- `resolve_model_path(base_dir)`: what to pass to `from_pretrained` for a base stage dir
  (`sipo_bench.api.resolve_model_path`: the base stage's layout is a core contract).
- `HFGenerator` (registered as generator `transformers`).
- `sequence_logprobs(base_dir, adapter_dirs, prompts, responses, batch_size=64)` -> (k, n).
- `implicit_rewards(base_dir, adapter_dirs, prompts, responses, beta, ref_adapter=None)` -> (k, n).
- `fuse_logprobs(logps, w, rule="reverse_kl", alpha=None)`: MOD's fusion rules.
"""

from __future__ import annotations

from typing import Any

from sipo_bench.api import Lazy, hookimpl, resolve_model_path  # noqa: F401  (part of this plugin's API since 0.1)

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


@hookimpl
def sipo_bench_register_generators() -> list:
    return [Lazy("transformers", "sipo_bench_plugins.hf_generation.backend:HFGenerator",
                 "transformers + peft: batched generation, exact LoRA soups, MOD fusion, log-probs")]
