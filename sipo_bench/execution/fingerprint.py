"""A kernel fingerprint: the bits of a dozen fixed computations, the operations a training or
decoding stage is made of (matrix products forward and backward, the normalisations, attention,
activations, the loss, an AdamW step, torch's seeded random draws), each hashed on inputs that
numpy draws the same way on every machine.

Two runs whose fingerprints agree ran kernels that give the same bits for these operations; where
they differ, the names of the differing operations say which kernel to look at (a BLAS, an ATen
vector path, the random generator), which a CPU model and a capability string cannot (issue 23:
the deterministic mode gives other bits on an AMD EPYC than on an Intel Xeon). Recorded in
`summary.json` → `provenance.kernel_fingerprint`; `python -m sipo_bench.execution.fingerprint`
prints this machine's under the current environment (set the deterministic mode's variables,
docs/reproducibility.md, before it starts to fingerprint that mode).
"""

from __future__ import annotations

import hashlib
from typing import Any


def _digest(t: Any) -> str:
    return hashlib.sha1(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:12]


def fingerprint(torch: Any, threads: int | None = None) -> dict[str, str]:
    """{operation: 12 hex digits of the sha1 of its float32 output} under this process's kernels,
    with `threads` intra-op threads (None: as set); takes a few milliseconds."""
    import numpy as np

    rng = np.random.default_rng(20261203)

    def arr(*shape: int) -> Any:
        return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))

    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        F = torch.nn.functional
        x, w = arr(64, 96), arr(80, 96)
        q, k, v = arr(2, 4, 24, 16), arr(2, 4, 24, 16), arr(2, 4, 24, 16)
        logits, target = arr(48, 120), torch.from_numpy(rng.integers(0, 120, 48))
        out: dict[str, Any] = {
            "matmul": x @ w.T,
            "linear_batched": F.linear(arr(4, 24, 96), w),
            "softmax": torch.softmax(logits, -1),
            "log_softmax": F.log_softmax(logits, -1),
            "exp_log": torch.log1p(torch.exp(x.clamp(-20, 20))),
            "silu": F.silu(x),
            "rms_norm": x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6),
            "layer_norm": F.layer_norm(x, (96,)),
            "rotary": torch.cat([torch.cos(x * 3.1), torch.sin(x * 0.7)], -1),
            "attention": F.scaled_dot_product_attention(q, k, v, is_causal=True),
            "cross_entropy": F.cross_entropy(logits, target).reshape(1),
            "sum_large": arr(100_003).sum().reshape(1),
        }
        # backward through a linear layer and one AdamW step
        weight = torch.nn.Parameter(w.clone())
        loss = F.silu(F.linear(x, weight)).pow(2).mean()
        loss.backward()
        out["linear_backward"] = weight.grad.clone()
        opt = torch.optim.AdamW([weight], lr=1e-3, weight_decay=0.01)
        opt.step()
        out["adamw_step"] = weight.detach().clone()
        # torch's own seeded draws (weight init, sampling)
        g = torch.Generator().manual_seed(0)
        out["randn"] = torch.randn(4096, generator=g)
        out["normal_init"] = torch.nn.init.normal_(torch.empty(64, 64), std=0.02, generator=g)
        out["multinomial"] = torch.multinomial(torch.softmax(logits, -1), 4, generator=g).float()
        return {name: _digest(t) for name, t in out.items()}
    finally:
        torch.set_num_threads(old)


def differing(a: dict[str, str] | None, b: dict[str, str] | None) -> list[str] | None:
    """The operations whose bits differ between two fingerprints (None when either is missing)."""
    if not a or not b:
        return None
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def short(fp: dict[str, str] | None) -> str | None:
    """One 8-hex digest of a whole fingerprint, for a line of text."""
    if not fp:
        return None
    return hashlib.sha1("".join(f"{k}={fp[k]};" for k in sorted(fp)).encode()).hexdigest()[:8]


if __name__ == "__main__":  # pragma: no cover - a tool for people comparing machines
    import json
    import os

    import torch as _torch

    print(json.dumps({"cpu_capability": _torch.backends.cpu.get_cpu_capability(),
                      "env": {k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")},
                      "kernel_fingerprint": fingerprint(_torch, 1)}, indent=1))
