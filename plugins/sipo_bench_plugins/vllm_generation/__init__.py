"""The optional vLLM generation backend (extra `sipo-bench[vllm]`).

Generator `vllm`: the base model, base + one LoRA adapter, or a soup (served as one merged LoRA
adapter written by `.merge`) via `vllm.LLM(enable_lora=True)`; MOD fusion is refused (use the
`transformers` backend). Registered lazily: neither vllm nor torch is imported until used.
Never run on a GPU in this repository's tests (see docs/paper_reproduction.md).
"""

from __future__ import annotations

from sipo_bench.api import Lazy, hookimpl

__version__ = "0.1.0"
SIPO_BENCH_API = "0.2"  # the sipo_bench.api version this plugin is written for


@hookimpl
def sipo_bench_register_generators() -> list:
    return [Lazy("vllm", "sipo_bench_plugins.vllm_generation.backend:VLLMGenerator",
                 "vLLM (extra [vllm]): base, one LoRA, or soups as a merged LoRA; no MOD fusion")]
