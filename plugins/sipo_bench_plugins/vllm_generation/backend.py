"""The `vllm` generator: every single-model policy (the base model, base + one LoRA adapter,
or a soup served as one merged LoRA adapter) through `vllm.LLM(..., enable_lora=True)` with
`SamplingParams` and `LoRARequest` (the vLLM 0.33 API, recorded in
tests/fixtures/vllm_signatures.json).

- `combines = ("soup",)`: MOD fusion needs per-token access to k models' log-probs; a run with
  `generator: vllm` evaluates fusion specs on the task's default generator (transformers) and
  says so per point in summary.json. Called with a fusion policy directly, it refuses with a
  one-line error.
- `exclusive_device = True`: the runtime closes every other loaded model (transformers models,
  reward models) before handing this generator out, so the engine's memory profiling sees a
  free device; handing out anything else closes the engine.
- `reserve(max_lora_rank=...)`: the largest adapter or soup rank the run's plan will serve, so
  the engine starts once with a `max_lora_rank` that holds them all.
- Responses follow the response convention (`sipo_bench.contract.responses`); `DecodingConfig.max_length`
  caps each prompt + response (per-prompt `max_tokens`).

vllm is imported on first use only; the request building lives in `.requests` (pure) and the
soup merge in `.merge`.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from sipo_bench.api import DecodingConfig, Generator, ResolvedPolicy, as_response, new_token_budget

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
    combines = ("soup",)
    exclusive_device = True

    def __init__(self) -> None:
        self._llm: Any = None
        self._engine_key: tuple | None = None
        self._max_rank = 0
        self._planned_rank: int | None = None
        self._ids = LoRAIds()
        self._tmp: Path | None = None
        self._merged: dict[str, Path] = {}
        #: (model, max_lora_rank) of every engine started, in order (a rebuild is visible here)
        self.engines_started: list[tuple[str, int]] = []

    def reserve(self, *, max_lora_rank: int | None = None) -> None:
        if max_lora_rank is not None:
            self._planned_rank = max(self._planned_rank or 0, int(max_lora_rank))

    # --- engine and adapters ----------------------------------------------------------------

    def _engine(self, model: str, tokenizer: str, rank: int) -> Any:
        """One engine per process; rebuilt for another base model, or for a LoRA rank above the
        engine's max_lora_rank (fixed when vLLM starts; only when the plan did not say)."""
        vllm = import_vllm()
        kw = engine_kwargs(model, tokenizer, rank, planned_rank=self._planned_rank)
        key = (model, tokenizer)
        if self._llm is None or self._engine_key != key or rank > self._max_rank:
            self._free_engine()
            self._llm = vllm.LLM(**kw)
            self._engine_key, self._max_rank = key, kw["max_lora_rank"]
            self.engines_started.append((model, kw["max_lora_rank"]))
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
        k = copies(decoding, num_return_sequences)
        texts: list[list[str]] = [[""] * num_return_sequences for _ in prompts]
        if decoding.max_length is None:
            budgets = [decoding.max_new_tokens] * len(prompts)
        else:
            tok = llm.get_tokenizer()
            budgets = [new_token_budget(decoding, len(ids)) for ids in tok(list(prompts))["input_ids"]]
        todo = [i for i, b in enumerate(budgets) if b > 0]  # a prompt at the cap gets an empty response
        if todo:
            params = [vllm.SamplingParams(**sampling_kwargs(decoding, num_return_sequences, seed, budgets[i]))
                      for i in todo]
            lora = None
            if adapter:
                from vllm.lora.request import LoRARequest

                lora = LoRARequest(*self._ids.request_args(adapter))
            outputs = llm.generate([prompts[i] for i in todo], params, lora_request=lora, use_tqdm=False)
            for i, out in zip(todo, outputs):
                texts[i] = [as_response(o.text.strip()) for o in out.outputs for _ in range(k)]
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
