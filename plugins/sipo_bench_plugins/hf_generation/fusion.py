"""MOD's fusion rules (Shi et al. 2024, "Decoding-time language model alignment with multiple
objectives") as pure functions of per-model log-probabilities.

The rules act on each model's log-probability of the *whole* continuation so far, as the MOD
reference code (srzer/MOD, `FusionModel.greedy_search`) does: for a candidate next token v after
the response prefix y_<t,

    ℓ_i(v) = log π_i(y_<t | x) + log π_i(v | x, y_<t)     (cumulative prefix + next token)

and with preference weights w:

- `reverse_kl`: f = Σ_i w_i ℓ_i
- `forward_kl`: f = −logsumexp_i(−ℓ_i + log w_i)
- `alpha`:      f = −(1/α)·logsumexp_i(−α ℓ_i + log w_i)   (α = 1 is `forward_kl`; α → 0 tends to
  `reverse_kl` when Σ w_i = 1)

Decoding takes argmax f (greedy) or samples from softmax(f / temperature); the fused
log-probability of a response sums log softmax(f)[y_t] over its tokens, with the same prefixes,
so sampling and scoring describe one distribution. For `reverse_kl` the prefix adds the same
constant to every v and cancels in the argmax and the softmax: it is left out.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

RULES = ("reverse_kl", "forward_kl", "alpha")


def check_rule(rule: str, alpha: float | None) -> None:
    """Raise ValueError for an unknown rule or a missing/unusable `alpha`."""
    if rule not in RULES:
        raise ValueError(f"fusion `rule`: expected one of {list(RULES)}, got {rule!r}")
    if rule == "alpha":
        if alpha is None or not math.isfinite(float(alpha)) or float(alpha) == 0.0:
            raise ValueError(f"fusion `alpha`: expected a finite nonzero number for rule 'alpha', got {alpha!r}")


def fuse_logprobs(logps: torch.Tensor, w: Sequence[float] | torch.Tensor, rule: str = "reverse_kl",
                  alpha: float | None = None) -> torch.Tensor:
    """Fused scores from `logps` of shape (k, ..., V) (each model's log-probability of the
    continuation ending in each token v) and weights `w` (length k).

    Models with weight 0 are dropped (so a zero-weight model can never contribute, even with
    log-prob −inf). Negative weights are allowed for `reverse_kl` only (log w_i is undefined
    otherwise). Returns a tensor of shape (..., V), float32 (float64 if `logps` is float64)."""
    check_rule(rule, alpha)
    w = torch.as_tensor(w, dtype=torch.float64)
    if w.ndim != 1 or w.shape[0] != logps.shape[0]:
        raise ValueError(f"fuse_logprobs: expected {logps.shape[0]} weights (one per model), got shape {tuple(w.shape)}")
    keep = w != 0
    if not bool(keep.any()):
        raise ValueError("fuse_logprobs: every weight is zero")
    if rule != "reverse_kl" and bool((w < 0).any()):
        raise ValueError(f"fuse_logprobs: rule {rule!r} needs weights >= 0, got {w.tolist()}")
    idx = keep.nonzero().flatten().to(logps.device)
    lp = logps.index_select(0, idx)
    work = torch.promote_types(lp.dtype, torch.float32)
    lp = lp.to(work)
    wk = w[keep].to(device=lp.device, dtype=work).view(-1, *([1] * (lp.ndim - 1)))
    if rule == "reverse_kl":
        return (wk * lp).sum(0)
    a = 1.0 if rule == "forward_kl" else float(alpha)
    return -torch.logsumexp(-a * lp + wk.log(), dim=0) / a


def fuse_step(next_logps: torch.Tensor, prefix: torch.Tensor | None, w: Sequence[float] | torch.Tensor,
              rule: str = "reverse_kl", alpha: float | None = None) -> torch.Tensor:
    """One decoding step: `next_logps` (k, ..., V) are log π_i(v | x, y_<t), `prefix` (k, ...) the
    models' cumulative log π_i(y_<t | x) of the response so far (None or zeros at the first
    token). Returns f over v, shape (..., V) (see the module docstring)."""
    if prefix is None or rule == "reverse_kl":  # a per-row constant: cancels (module docstring)
        return fuse_logprobs(next_logps, w, rule, alpha)
    return fuse_logprobs(next_logps + prefix.to(next_logps.dtype).unsqueeze(-1), w, rule, alpha)
