"""Preference losses as pure functions of per-sequence log-probabilities (DESIGN.md §3).

Every function takes the *summed response-token* log-probs of the policy and of the reference
for the chosen and the rejected response of each pair (shape `(B,)`), plus the batch extras its
formula needs, and returns the per-pair loss (shape `(B,)`); the trainer averages over pairs.

Notation: h(y) = β·(log π(y|x) − log π_ref(y|x)), σ the logistic function.

- :func:`dpo_loss`     L = −log σ(h(y_w) − h(y_l))
- :func:`modpo_loss`   L = −log σ((1/w_1)·[h(y_w) − h(y_l) − Σ_{j≥2} w_j (r_j(y_w) − r_j(y_l))])
- :func:`dpo_lw_loss`  L = Σ_i w_i · DPO_i, each pair oriented by objective i's own label
- :func:`sipo_loss`    L = DPO + α·NLL, NLL = −log π(y*|x) / n, with n = |y*| (response tokens, ours)
                       or the padded length of the batch's sequences (the released code's)

The loss *objects* at the bottom (:class:`DPOLoss` ...) bind the hyper-parameters, name the
dataset columns they read (`columns`) and are what :class:`~sipo_bench_baselines.trainer.
PreferenceTrainer` calls; the functions stay free of any trainer state so they can be tested
against numbers computed by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class PairLogps:
    """Per-pair summed response log-probs of the policy and the reference, shape `(B,)`.

    `chosen_tokens` / `rejected_tokens` count the response tokens each sum runs over (the
    prompt is never counted); `padded_length` is, per pair, the width of the padded batch the
    pair was scored in (prompt + response + padding, every chosen and rejected sequence of the
    batch padded to one length, as trl's and the released SIPO collators do)."""

    chosen: Tensor
    rejected: Tensor
    ref_chosen: Tensor
    ref_rejected: Tensor
    chosen_tokens: Tensor | None = None
    rejected_tokens: Tensor | None = None
    padded_length: Tensor | None = None


# --- The formulas ---------------------------------------------------------------------------


def implicit_reward_margin(chosen: Tensor, rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float) -> Tensor:
    """h(y_w) − h(y_l) with h(y) = β·(log π(y|x) − log π_ref(y|x))."""
    return beta * ((chosen - ref_chosen) - (rejected - ref_rejected))


def dpo_loss(chosen: Tensor, rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float) -> Tensor:
    """Per-pair DPO loss −log σ(h(y_w) − h(y_l))."""
    return -F.logsigmoid(implicit_reward_margin(chosen, rejected, ref_chosen, ref_rejected, beta))


def modpo_loss(chosen: Tensor, rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float,
               margins: Tensor, w_main: float, w_others: Sequence[float] | Tensor) -> Tensor:
    """Per-pair MODPO loss (Zhou et al. 2024), for any number of objectives k ≥ 2.

    The pairs are oriented by the main objective (objective 1). `margins[b, j]` is
    r_j(y_w) − r_j(y_l) for the j-th *other* objective (shape `(B, k−1)`), r_j the implicit
    reward of objective j's DPO model; `w_others[j]` its weight; `w_main` = w_1 > 0.
    """
    if w_main <= 0:
        raise ValueError(f"MODPO needs a positive weight on the main objective, got w_1={w_main}")
    w = torch.as_tensor(w_others, dtype=margins.dtype, device=margins.device)
    if margins.ndim != 2 or margins.shape[1] != w.numel():
        raise ValueError(f"margins must have shape (B, {w.numel()}), got {tuple(margins.shape)}")
    h = implicit_reward_margin(chosen, rejected, ref_chosen, ref_rejected, beta)
    return -F.logsigmoid((h - margins @ w) / w_main)


def dpo_lw_loss(chosen: Tensor, rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float,
                signs: Tensor, weights: Sequence[float] | Tensor) -> Tensor:
    """Per-pair DPO-LW loss Σ_i w_i · DPO_i.

    "chosen"/"rejected" here are just the pair's first and second response; `signs[b, i]` is +1
    where objective i prefers the first, −1 where it prefers the second (the pair is swapped for
    that term), 0 where objective i has no label (a tie): that term is 0.
    """
    w = torch.as_tensor(weights, dtype=signs.dtype, device=signs.device)
    if signs.ndim != 2 or signs.shape[1] != w.numel():
        raise ValueError(f"signs must have shape (B, {w.numel()}), got {tuple(signs.shape)}")
    h = implicit_reward_margin(chosen, rejected, ref_chosen, ref_rejected, beta)  # (B,)
    per_objective = -F.logsigmoid(signs * h[:, None])  # (B, k): DPO_i on the oriented pair
    per_objective = torch.where(signs != 0, per_objective, torch.zeros_like(per_objective))
    return per_objective @ w


def response_nll(chosen: Tensor, chosen_tokens: Tensor) -> Tensor:
    """−log π(y*|x) / n: the summed response log-prob (response tokens only) divided by
    `chosen_tokens` = n per pair (the number of response tokens, or another normaliser)."""
    return -chosen / chosen_tokens.clamp(min=1).to(chosen.dtype)


def sipo_loss(chosen: Tensor, rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, beta: float,
              chosen_tokens: Tensor, alpha: float) -> Tensor:
    """Per-pair SIPO re-alignment loss DPO + α·NLL on the chosen (Pareto-optimal) response y*,
    the NLL divided by `chosen_tokens` (see :class:`SIPOLoss` for the two normalisations)."""
    return dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta) + alpha * response_nll(chosen, chosen_tokens)


#: how SIPO's NLL term is normalised: by the chosen response's tokens (ours), or by the padded
#: length of the batch (the released `IterativeDPOTrainer`: `(input_ids != -100).sum(1)` over
#: the padded chosen input ids, i.e. prompt + response + padding, so α = 0.1 there weighs the
#: NLL less than α = 0.1 here, and the weight varies with prompt length and batch padding)
NLL_NORMALIZATIONS = ("response_tokens", "padded_length")


# --- Loss objects the trainer calls ---------------------------------------------------------


class PreferenceLoss:
    """A loss bound to its hyper-parameters. `columns` names the per-pair dataset columns it
    needs as batch extras (float lists of one length, or floats); `__call__` returns the
    per-pair loss."""

    columns: ClassVar[tuple[str, ...]] = ()
    beta: float

    def __call__(self, logps: PairLogps, extras: Mapping[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def margin(self, logps: PairLogps) -> Tensor:
        """h(y_w) − h(y_l), for logging."""
        return implicit_reward_margin(logps.chosen, logps.rejected, logps.ref_chosen, logps.ref_rejected, self.beta)


@dataclass
class DPOLoss(PreferenceLoss):
    beta: float = 0.1

    def __call__(self, logps: PairLogps, extras: Mapping[str, Tensor]) -> Tensor:
        return dpo_loss(logps.chosen, logps.rejected, logps.ref_chosen, logps.ref_rejected, self.beta)


@dataclass
class MODPOLoss(PreferenceLoss):
    """Reads column `margins` (k−1 floats per pair, in the order of `w_others`)."""

    beta: float = 0.1
    w_main: float = 1.0
    w_others: tuple[float, ...] = ()
    columns: ClassVar[tuple[str, ...]] = ("margins",)

    def __call__(self, logps: PairLogps, extras: Mapping[str, Tensor]) -> Tensor:
        return modpo_loss(logps.chosen, logps.rejected, logps.ref_chosen, logps.ref_rejected, self.beta,
                          extras["margins"], self.w_main, self.w_others)


@dataclass
class DPOLWLoss(PreferenceLoss):
    """Reads column `signs` (k values in {+1, −1, 0} per pair, in the order of `weights`)."""

    beta: float = 0.1
    weights: tuple[float, ...] = ()
    columns: ClassVar[tuple[str, ...]] = ("signs",)

    def __call__(self, logps: PairLogps, extras: Mapping[str, Tensor]) -> Tensor:
        return dpo_lw_loss(logps.chosen, logps.rejected, logps.ref_chosen, logps.ref_rejected, self.beta,
                           extras["signs"], self.weights)


@dataclass
class SIPOLoss(PreferenceLoss):
    """DPO + α·NLL on the chosen response. `nll_normalization`: "response_tokens" divides the
    NLL by the chosen response's token count (`PairLogps.chosen_tokens`); "padded_length" by the
    padded batch width (`PairLogps.padded_length`), as the released code does."""

    beta: float = 0.1
    alpha: float = 0.1
    nll_normalization: str = "response_tokens"

    def __post_init__(self) -> None:
        if self.nll_normalization not in NLL_NORMALIZATIONS:
            raise ValueError(f"`nll_normalization`: expected one of {list(NLL_NORMALIZATIONS)}, "
                             f"got {self.nll_normalization!r}")

    def __call__(self, logps: PairLogps, extras: Mapping[str, Tensor]) -> Tensor:
        n = logps.chosen_tokens if self.nll_normalization == "response_tokens" else logps.padded_length
        if n is None:
            raise ValueError(f"SIPO loss ({self.nll_normalization}) needs PairLogps."
                             f"{'chosen_tokens' if self.nll_normalization == 'response_tokens' else 'padded_length'}")
        return sipo_loss(logps.chosen, logps.rejected, logps.ref_chosen, logps.ref_rejected, self.beta, n, self.alpha)


def build_loss(spec: Mapping) -> PreferenceLoss:
    """A loss from a JSON-able spec (what stage configs hold): `{"type": "dpo"|"modpo"|"dpo-lw"|
    "sipo", "beta": ..., ...}`."""
    spec = dict(spec)
    kind = spec.pop("type")
    if kind == "dpo":
        return DPOLoss(**spec)
    if kind == "modpo":
        return MODPOLoss(beta=spec["beta"], w_main=spec["w_main"], w_others=tuple(spec["w_others"]))
    if kind == "dpo-lw":
        return DPOLWLoss(beta=spec["beta"], weights=tuple(spec["weights"]))
    if kind == "sipo":
        return SIPOLoss(**spec)
    raise ValueError(f"unknown loss type {kind!r}; expected dpo, modpo, dpo-lw or sipo")
