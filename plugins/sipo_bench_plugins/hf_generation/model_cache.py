"""The models one process holds: base models loaded once per (dir, device, dtype) with their LoRA
adapters attached by name, evicted least-recently-used, released when the runtime closes."""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from . import resolve_model_path


def default_device() -> torch.device:
    """The run's device (`sipo_bench.execution.device`: `$SIPO_BENCH_DEVICE`, else cuda when available)."""
    from sipo_bench.api import torch_device

    return torch_device()


def model_key(path: Any) -> str:
    """Cache key of a local dir (resolved path + mtime of its config, so a rewritten dir
    reloads) or of a hub id (as given)."""
    p = Path(str(path))
    if p.exists():
        p = p.resolve()
        stamp = max((f.stat().st_mtime_ns for f in p.glob("*config.json")), default=0)
        return f"{p}@{stamp}"
    return str(path)


@dataclass
class LoadedBase:
    """One loaded base model and everything hanging off it."""

    path: str
    model: Any  # PreTrainedModel, or PeftModel once an adapter is loaded
    tokenizer: Any
    eos_ids: list[int]
    cache_kw: str  # "cache" (transformers 5) or "past_key_values"
    keeps_logits: bool  # forward accepts `logits_to_keep`
    adapters: dict[str, str] = field(default_factory=dict)  # adapter key -> peft adapter name
    soups: OrderedDict = field(default_factory=OrderedDict)  # (keys, weights) -> adapter name
    plans: dict = field(default_factory=dict)  # tuple of adapter names -> grouped plan or None
    counter: int = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def new_name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


class ModelCache:
    """Process-wide cache of base models (keyed by path) with their adapters (keyed by dir)."""

    max_soups = 8

    def __init__(self) -> None:
        self.bases: dict[tuple, LoadedBase] = {}
        self.lock = threading.RLock()

    def base(self, base_dir: Any, device: torch.device | None = None, dtype: torch.dtype | None = None) -> LoadedBase:
        from sipo_bench.api import inference_dtype

        device = device or default_device()
        dtype = dtype or inference_dtype(device)
        key = (model_key(base_dir), str(device), str(dtype))
        with self.lock:
            if key not in self.bases:
                self.bases[key] = self._load(base_dir, device, dtype)
            return self.bases[key]

    @staticmethod
    def _load(base_dir: Any, device: torch.device, dtype: torch.dtype) -> LoadedBase:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_path, tok_path = resolve_model_path(base_dir, with_tokenizer=True)
        tok = AutoTokenizer.from_pretrained(tok_path)
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device).eval()
        model.requires_grad_(False)
        eos = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        gen_eos = getattr(model.generation_config, "eos_token_id", None)
        eos |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos] if gen_eos is not None else [])
        params = inspect.signature(type(model).forward).parameters
        cache_kw = "cache" if "cache" in params else "past_key_values"
        return LoadedBase(str(model_path), model, tok, sorted(eos), cache_kw, "logits_to_keep" in params)

    def adapter(self, base: LoadedBase, adapter_dir: Any) -> str:
        """Load the peft adapter in `adapter_dir` onto `base` (once); return its name."""
        from peft import PeftModel

        key = model_key(adapter_dir)
        with self.lock:
            if key in base.adapters:
                return base.adapters[key]
            name = base.new_name("a")
            if isinstance(base.model, PeftModel):
                base.model.load_adapter(str(adapter_dir), adapter_name=name, is_trainable=False)
            else:
                base.model = PeftModel.from_pretrained(base.model, str(adapter_dir), adapter_name=name, is_trainable=False)
            base.model.eval()
            base.model.requires_grad_(False)
            base.adapters[key] = name
            return name

    def soup(self, base: LoadedBase, adapters: Sequence[tuple[Any, float]]) -> str | None:
        """Name of an adapter whose delta is exactly Σ w_i ΔW_i (None: the base model)."""
        summed: dict[str, float] = {}  # the same adapter twice: one term with the summed weight
        for a, w in adapters:
            name = self.adapter(base, a)
            summed[name] = summed.get(name, 0.0) + float(w)
        summed = {n: w for n, w in summed.items() if w != 0.0}
        if not summed:
            return None
        names, weights = list(summed), list(summed.values())
        if len(names) == 1 and weights[0] == 1.0:
            return names[0]
        key = (tuple(names), tuple(weights))
        with self.lock:
            if key in base.soups:
                base.soups.move_to_end(key)
                return base.soups[key]
            name = base.new_name("soup")
            base.model.add_weighted_adapter(names, weights, name, combination_type="cat")
            # "cat" folds w_i * scaling_i into A and sets r = lora_alpha = Σ r_i, so the new
            # adapter's scaling must be 1; with use_rslora peft would set sqrt(r): force 1.
            from peft.tuners.lora import LoraLayer

            for m in base.model.modules():
                if isinstance(m, LoraLayer) and name in m.scaling:
                    m.scaling[name] = 1.0
            base.soups[key] = name
            while len(base.soups) > self.max_soups:
                _, old = base.soups.popitem(last=False)
                self._delete(base, old)
            return name

    @staticmethod
    def _delete(base: LoadedBase, name: str) -> None:
        if base.model.active_adapter == name:
            base.model.set_adapter(next(iter(base.adapters.values())))
        base.model.delete_adapter(name)
        for k in [k for k in base.plans if name in k]:
            del base.plans[k]

    def clear(self) -> None:
        with self.lock:
            self.bases.clear()
        import gc

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


MODELS = ModelCache()


def register_release() -> None:
    from sipo_bench.api import on_release

    on_release(MODELS.clear)  # a runtime releasing its heavy objects frees the base models too


register_release()
