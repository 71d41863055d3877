"""The `vllm` generator: every single-model policy (the base model, base + one LoRA adapter,
or a soup served as one merged LoRA adapter) through `vllm.LLM(..., enable_lora=True)` with
`SamplingParams` and `LoRARequest`. MOD fusion needs per-token access to k models' logits and
is refused with a one-line error pointing at the transformers backend.

vllm is imported on first use only; the request building lives in `.requests` (pure) and the
soup merge in `.merge`. Returned texts follow the transformers backend's convention: the
continuation with special tokens skipped, `.strip()`-ed.

NOT RUN ON A GPU in this repository's CI: only the request building, the merge and this glue
(against a stand-in `vllm` module) are tested.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from sipo_bench.interfaces import DecodingConfig, Generator, ResolvedPolicy

from .requests import (LoRAIds, UnsupportedPolicy, adapter_rank, copies, engine_kwargs, plan_policy,
                       sampling_kwargs, soup_key)


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise UnsupportedPolicy("vllm backend: the `vllm` package is not installed (pip install 'sipo-bench[vllm]', "
                                f"needs a CUDA GPU), or use `generator: transformers` ({e})") from None
    return vllm


class VLLMGenerator(Generator):
    name = "vllm"
    description = "vLLM: base, base + one LoRA, or a soup as one merged LoRA; no MOD fusion."

    def __init__(self) -> None:
        self._llm: Any = None
        self._engine_key: tuple | None = None
        self._max_rank = 0
        self._ids = LoRAIds()
        self._tmp: Path | None = None
        self._merged: dict[str, Path] = {}

    # --- engine and adapters ----------------------------------------------------------------

    def _engine(self, model: str, tokenizer: str, rank: int) -> Any:
        """One engine per process; rebuilt for another base model or a LoRA rank above the
        engine's max_lora_rank (fixed when vLLM starts)."""
        vllm = import_vllm()
        kw = engine_kwargs(model, tokenizer, rank)
        key = (model, tokenizer)
        if self._llm is None or self._engine_key != key or kw["max_lora_rank"] > self._max_rank:
            self._free_engine()
            self._llm = vllm.LLM(**kw)
            self._engine_key, self._max_rank = key, kw["max_lora_rank"]
        return self._llm

    def _merged_dir(self, merge: tuple[tuple[str, float], ...]) -> Path:
        key = soup_key(merge)
        if key not in self._merged:
            from .merge import merge_lora_adapters

            if self._tmp is None:
                self._tmp = Path(tempfile.mkdtemp(prefix="sipo-bench-vllm-soups-"))
            self._merged[key] = merge_lora_adapters(merge, self._tmp / key)
        return self._merged[key]

    # --- Generator --------------------------------------------------------------------------

    def generate(self, policy: ResolvedPolicy, prompts: Sequence[str], decoding: DecodingConfig, *,
                 num_return_sequences: int = 1, seed: int = 0, progress: Any = None) -> list[list[str]]:
        plan = plan_policy(policy)
        adapter = plan.adapter if plan.adapter is not None else (str(self._merged_dir(plan.merge)) if plan.merge else None)
        rank = adapter_rank(adapter) if adapter else 0
        llm = self._engine(plan.model, plan.tokenizer, rank)
        vllm = import_vllm()
        params = vllm.SamplingParams(**sampling_kwargs(decoding, num_return_sequences, seed))
        lora = None
        if adapter:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest(*self._ids.request_args(adapter))
        outputs = llm.generate(list(prompts), params, lora_request=lora, use_tqdm=False)
        k = copies(decoding, num_return_sequences)
        texts = [[o.text.strip() for o in out.outputs for _ in range(k)] for out in outputs]
        if progress:
            progress(len(prompts))
        return texts

    def _free_engine(self) -> None:
        if self._llm is not None:
            self._llm = None
            self._engine_key, self._max_rank = None, 0
            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:
                pass

    def close(self) -> None:
        self._free_engine()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._merged.clear()
