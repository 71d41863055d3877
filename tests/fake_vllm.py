"""A fake `vllm` for tests on machines without a GPU: the part of vLLM 0.33's Python API that the
`vllm` generator uses, with vLLM's argument checking, implemented with transformers + peft.

Its interface is vLLM's as recorded from vLLM's source (fixtures/vllm_signatures.json, written by
fixtures/make_vllm_signatures.py): tests/test_vllm_backend.py compares the signatures below with
the recorded ones, and the fake rejects what vLLM rejects (unknown engine or sampling keywords, a
`max_lora_rank` vLLM does not accept, a LoRA above the engine's `max_lora_rank`, `max_tokens` < 1,
LoRA requests without `enable_lora`). It generates for real: greedy or seeded sampling with
`model.generate` on CPU, the adapter of the request applied with peft, and text detokenised as
vLLM does it (the continuation in the context of the prompt, so a first token `▁Sure` reads
" Sure").

`install(monkeypatch)` puts `vllm`, `vllm.lora` and `vllm.lora.request` into `sys.modules`;
`LLM.started` records the keyword arguments of every engine started, and `LLM.on_start` (if
set) is called with them before the engine "allocates" (to check what is resident then).
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

SIGNATURES = json.loads((Path(__file__).parent / "fixtures" / "vllm_signatures.json").read_text())
ENGINE_KEYWORDS = {p[0] for p in SIGNATURES["LLM.__init__"] if p[1] != "VAR_KEYWORD"} | set(SIGNATURES["EngineArgs"])

_SAMPLING_DEFAULTS = {"n": 1, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "seed": None, "max_tokens": 16,
                      "skip_special_tokens": True}


class SamplingParams:
    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(SIGNATURES["SamplingParams"]))
        if unknown:
            raise TypeError(f"SamplingParams got unexpected keyword arguments {unknown}")
        values = {**_SAMPLING_DEFAULTS, **kwargs}
        if values["max_tokens"] is not None and values["max_tokens"] < 1:
            raise ValueError(f"max_tokens must be at least 1, got {values['max_tokens']}.")
        if values["n"] < 1 or values["temperature"] < 0 or not 0 < values["top_p"] <= 1:
            raise ValueError(f"invalid sampling parameters {values}")
        self.__dict__.update(values)
        self.given = dict(kwargs)


class LoRARequest:
    def __init__(self, lora_name: str, lora_int_id: int, lora_path: str = "", base_model_name: str | None = None,
                 load_inplace: bool = False, is_3d_lora_weight: bool = False) -> None:
        if lora_int_id < 1:
            raise ValueError(f"id must be > 0, got {lora_int_id}")
        assert lora_path, "lora_path cannot be empty"
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path
        self.base_model_name, self.load_inplace, self.is_3d_lora_weight = base_model_name, load_inplace, is_3d_lora_weight


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: Any = None
    finish_reason: str | None = None
    lora_request: Any = None


class RequestOutput:
    def __init__(self, request_id: str, prompt: str | None, prompt_token_ids: list[int] | None, prompt_logprobs: Any,
                 outputs: list[CompletionOutput], finished: bool, metrics: Any = None) -> None:
        self.request_id, self.prompt, self.prompt_token_ids = request_id, prompt, prompt_token_ids
        self.prompt_logprobs, self.outputs, self.finished, self.metrics = prompt_logprobs, outputs, finished, metrics


class LLM:
    started: list[dict] = []
    on_start: Callable[[dict], None] | None = None

    def __init__(self, model: str, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - ENGINE_KEYWORDS)
        if unknown:
            raise TypeError(f"LLM.__init__() got unexpected keyword arguments {unknown}")
        rank = kwargs.get("max_lora_rank", 16)
        if rank not in SIGNATURES["MaxLoRARanks"]:
            raise ValueError(f"max_lora_rank: input should be one of {SIGNATURES['MaxLoRARanks']}, got {rank}")
        self.kwargs = {"model": model, **kwargs}
        if LLM.on_start is not None:
            LLM.on_start(self.kwargs)
        LLM.started.append(self.kwargs)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(kwargs.get("tokenizer") or model)
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
        self._loras: dict[int, str] = {}

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None, priority=None,
                 tokenization_kwargs=None, mm_processor_kwargs=None) -> list[RequestOutput]:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        params = sampling_params if isinstance(sampling_params, Sequence) else [sampling_params or SamplingParams()] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        loras = lora_request if isinstance(lora_request, Sequence) else [lora_request] * len(prompts)
        return [self._one(i, p, sp, lr) for i, (p, sp, lr) in enumerate(zip(prompts, params, loras))]

    def _model_for(self, lora: LoRARequest | None):
        from peft import PeftModel

        if lora is None:
            return self.model.disable_adapter() if isinstance(self.model, PeftModel) else _nullcontext(self.model)
        if not self.kwargs.get("enable_lora"):
            raise ValueError(f"LoRA request {lora.lora_name} but LoRA is not enabled")
        cfg = json.loads((Path(lora.lora_path) / "adapter_config.json").read_text())
        if int(cfg["r"]) > self.kwargs.get("max_lora_rank", 16):
            raise ValueError(f"LoRA rank {cfg['r']} is greater than max_lora_rank {self.kwargs.get('max_lora_rank', 16)}.")
        name = f"lora{lora.lora_int_id}"
        if lora.lora_int_id not in self._loras:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(lora.lora_path, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, lora.lora_path, adapter_name=name).eval()
            self._loras[lora.lora_int_id] = lora.lora_path
        self.model.set_adapter(name)
        return _nullcontext(self.model)

    def _one(self, i: int, prompt: str, sp: SamplingParams, lora: LoRARequest | None) -> RequestOutput:
        import torch

        tok = self.tokenizer
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        greedy = sp.temperature == 0.0
        outs = []
        with self._model_for(lora) as model, torch.no_grad():
            for j in range(sp.n):
                if not greedy:
                    torch.manual_seed((sp.seed or 0) * 1000 + j)
                new = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=sp.max_tokens,
                                     do_sample=not greedy, temperature=None if greedy else sp.temperature,
                                     top_p=None if greedy else sp.top_p, top_k=None if greedy else 0,
                                     eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)[0, ids.shape[1]:].tolist()
                head = tok.decode(ids[0].tolist(), skip_special_tokens=sp.skip_special_tokens)
                full = tok.decode(ids[0].tolist() + new, skip_special_tokens=sp.skip_special_tokens)
                outs.append(CompletionOutput(j, full[len(head):], new, finish_reason="stop" if tok.eos_token_id in new else "length"))
        return RequestOutput(str(i), prompt, ids[0].tolist(), None, outs, True)


class _nullcontext:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __enter__(self) -> Any:
        return self.value

    def __exit__(self, *exc: Any) -> None:
        return None


def install(monkeypatch) -> type[LLM]:
    """Make `import vllm` (and `vllm.lora.request`) find this fake; returns its LLM class."""
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams, vllm.RequestOutput, vllm.CompletionOutput = LLM, SamplingParams, RequestOutput, CompletionOutput
    vllm.__version__ = SIGNATURES["vllm"]
    lora_mod, req_mod = types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    req_mod.LoRARequest = LoRARequest
    vllm.lora, lora_mod.request = lora_mod, req_mod
    for name, mod in (("vllm", vllm), ("vllm.lora", lora_mod), ("vllm.lora.request", req_mod)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(LLM, "started", [])
    monkeypatch.setattr(LLM, "on_start", None)
    return LLM
