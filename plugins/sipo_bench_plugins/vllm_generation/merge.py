"""Merge weighted LoRA adapters into ONE LoRA adapter dir whose delta is exactly
Σ_i w_i ΔW_i (ΔW_i = scaling_i · B_i A_i): the soup as a single adapter vLLM can serve.

This is the construction of peft's `add_weighted_adapter(..., combination_type="cat")`
(A = cat_i(w_i · scaling_i · A_i) along the rank, B = cat_i(B_i), r = Σ r_i, lora_alpha = r so
the new scaling is 1), done on the saved tensors directly, so no base model is loaded (a 7B
base would otherwise be read just to combine a few MB of adapters). Unlike peft, one adapter
with a weight != 1 is merged the same way (peft falls back to "linear" there, which scales A
and B by sqrt(w · scaling) and breaks for negative weights).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Sequence

from .requests import UnsupportedPolicy

A, B = ".lora_A.weight", ".lora_B.weight"


def _load_state(d: Path) -> dict:
    import torch

    if (d / "adapter_model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(d / "adapter_model.safetensors"))
    if (d / "adapter_model.bin").is_file():
        return torch.load(d / "adapter_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{d}: no adapter_model.safetensors or adapter_model.bin")


def _check_config(cfg: dict, d: Path) -> None:
    if cfg.get("peft_type", "LORA") != "LORA":
        raise UnsupportedPolicy(f"vllm backend: {d} is a {cfg.get('peft_type')} adapter; only LoRA adapters can be merged")
    for key in ("use_dora", "modules_to_save", "rank_pattern", "alpha_pattern", "layers_to_transform"):
        if cfg.get(key):
            raise UnsupportedPolicy(f"vllm backend: adapter {d} uses `{key}`, which the soup merge does not support; "
                                    f"use the transformers backend (`generator: transformers`)")


def merge_lora_adapters(adapters: Sequence[tuple[str | Path, float]], out: str | Path) -> Path:
    """Write the merged adapter (adapter_config.json + adapter_model.safetensors) into `out`."""
    import torch
    from safetensors.torch import save_file

    out = Path(out)
    dirs = [Path(a) for a, _ in adapters]
    weights = [float(w) for _, w in adapters]
    configs = [json.loads((d / "adapter_config.json").read_text()) for d in dirs]
    for cfg, d in zip(configs, dirs):
        _check_config(cfg, d)
    states = [_load_state(d) for d in dirs]
    for state, d in zip(states, dirs):
        other = [k for k in state if not (k.endswith(A) or k.endswith(B))]
        if other:
            raise UnsupportedPolicy(f"vllm backend: adapter {d} holds non-LoRA tensors ({other[0]}, ...); "
                                    f"use the transformers backend (`generator: transformers`)")
    ranks = [int(c["r"]) for c in configs]
    scalings = [float(c["lora_alpha"]) / (math.sqrt(r) if c.get("use_rslora") else r) for c, r in zip(configs, ranks)]
    modules = sorted({k[: -len(A)] for s in states for k in s if k.endswith(A)})
    dtype = next(iter(states[0].values())).dtype
    merged = {}
    for m in modules:
        shapes = [(s[m + A].shape[1], s[m + B].shape[0]) for s in states if m + A in s]
        n_in, n_out = shapes[0]
        a_blocks, b_blocks = [], []
        for s, w, sc, r in zip(states, weights, scalings, ranks):
            if m + A in s:
                a_blocks.append(s[m + A].float() * (w * sc))
                b_blocks.append(s[m + B].float())
            else:  # this adapter leaves module m alone: a zero block keeps the rank uniform
                a_blocks.append(torch.zeros(r, n_in))
                b_blocks.append(torch.zeros(n_out, r))
        merged[m + A] = torch.cat(a_blocks, dim=0).to(dtype).contiguous()
        merged[m + B] = torch.cat(b_blocks, dim=1).to(dtype).contiguous()
    targets = [c.get("target_modules") for c in configs]
    if all(isinstance(t, (list, tuple)) for t in targets):
        target_modules = sorted({x for t in targets for x in t})
    elif all(t == targets[0] for t in targets):
        target_modules = targets[0]
    else:
        raise UnsupportedPolicy("vllm backend: adapters with different regex target_modules cannot be merged; "
                                "use the transformers backend (`generator: transformers`)")
    total = sum(ranks)
    cfg = dict(configs[0])
    cfg.update({"r": total, "lora_alpha": total, "use_rslora": False, "target_modules": target_modules,
                "rank_pattern": {}, "alpha_pattern": {}, "lora_dropout": 0.0})
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(merged, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
    (tmp / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    (tmp / "sipo_bench_soup.json").write_text(json.dumps({"adapters": [[str(d) for d in dirs], weights]}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
