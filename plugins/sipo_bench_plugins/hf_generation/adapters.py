"""Running one base model with one or several LoRA adapters: switching adapters, and evaluating k
adapters in one batched forward (`grouped`: the LoRA deltas of every row group in two batched
matmuls per layer; `peft`: peft's mixed-adapter batches; `sequential`: one adapter after another)."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import torch

from .model_cache import LoadedBase


GROUP_MODES = ("grouped", "peft", "sequential")


BASE = None  # an adapter slot that means "the base model, adapters disabled"


@contextlib.contextmanager
def use_adapter(base: LoadedBase, name: str | None) -> Iterator[Any]:
    """The model with only adapter `name` active (None: adapters disabled)."""
    from peft import PeftModel

    model = base.model
    if not isinstance(model, PeftModel):
        if name is not None:
            raise ValueError(f"adapter {name!r} is not loaded")
        yield model
    elif name is None:
        with model.disable_adapter():
            yield model
    else:
        model.set_adapter(name)
        yield model


def grouped_plan(base: LoadedBase, names: tuple[str | None, ...]):
    """For each peft LoRA Linear layer that one of `names` adapts: stacked (k, in, r) A^T and
    (k, r, out) (B·scaling)^T, zero for groups without that adapter (so they get exactly the
    base output). None when some layer or adapter is not a plain LoRA Linear (DoRA, embedding
    LoRA, lora bias, modules_to_save), which the caller handles with peft's own path."""
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    model = base.model
    real = [n for n in names if n is not None]
    for n in real:
        cfg = model.peft_config[n]
        if getattr(cfg, "modules_to_save", None):
            return None
    plan = []
    for m in model.modules():
        if not isinstance(m, LoraLayer) or not any(n in m.lora_A for n in real):
            continue
        if type(m) is not LoraLinear or any(n in m.lora_variant for n in real) or m.merged:
            return None
        r = max(m.lora_A[n].weight.shape[0] for n in real if n in m.lora_A)
        ref = next(m.lora_A[n].weight for n in real if n in m.lora_A)
        d_in, d_out = m.in_features, m.out_features
        at = torch.zeros(len(names), d_in, r, dtype=ref.dtype, device=ref.device)
        bt = torch.zeros(len(names), r, d_out, dtype=ref.dtype, device=ref.device)
        for g, n in enumerate(names):
            if n is None or n not in m.lora_A:
                continue
            if m.lora_B[n].bias is not None:
                return None
            a, b = m.lora_A[n].weight, m.lora_B[n].weight
            at[g, :, : a.shape[0]] = a.T
            bt[g, : a.shape[0], :] = (b * m.scaling[n]).T
        plan.append((m, at, bt))
    return plan


def grouped_hook(at: torch.Tensor, bt: torch.Tensor) -> Callable:
    k = at.shape[0]

    def hook(module, args, kwargs, output):
        x = args[0] if args else kwargs["x"]
        low = torch.bmm(x.reshape(k, -1, x.shape[-1]).to(at.dtype), at)
        if output.dtype == bt.dtype:  # output + low @ bt in one kernel
            return torch.baddbmm(output.reshape(k, -1, output.shape[-1]), low, bt).view(output.shape)
        return output + torch.bmm(low, bt).reshape(output.shape).to(output.dtype)

    return hook


@contextlib.contextmanager
def grouped(base: LoadedBase, names: Sequence[str | None], mode: str = "grouped") -> Iterator[Callable[[int], dict]]:
    """Run k = len(names) row groups in one forward: rows [g*n:(g+1)*n] of a batch of k*n
    rows use adapter names[g] (None: the base model). Yields `extra(n) -> dict` of forward
    kwargs to pass. `mode` "grouped" uses our batched LoRA hook (falling back to "peft" when
    the adapters are not plain LoRA Linear layers); "peft" uses `adapter_names=`."""
    from peft import PeftModel

    names = tuple(names)
    model = base.model
    if all(n is None for n in names):
        with use_adapter(base, None):
            yield lambda n: {}
        return
    if not isinstance(model, PeftModel):
        raise ValueError(f"adapters {names} are not loaded")
    if len(set(names)) == 1:
        with use_adapter(base, names[0]):
            yield lambda n: {}
        return
    plan = None
    if mode == "grouped":
        if names not in base.plans:
            base.plans[names] = grouped_plan(base, names)
        plan = base.plans[names]
    if plan is None:
        labels = ["__base__" if n is None else n for n in names]
        yield lambda n: {"adapter_names": [lab for lab in labels for _ in range(n)]}
        return
    handles = []
    try:
        with model.disable_adapter():
            for m, at, bt in plan:
                handles.append(m.register_forward_hook(grouped_hook(at, bt), with_kwargs=True))
            yield lambda n: {}
    finally:
        for h in handles:
            h.remove()
