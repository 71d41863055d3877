"""Each preference loss against numbers computed by hand from the formulas of DESIGN.md §3.

Fixed log-probs (β = 0.1) for two pairs:
  pair 0: log π(y_w)=-10, log π(y_l)=-12, log π_ref(y_w)=-11, log π_ref(y_l)=-11
          h(y_w) = 0.1·(−10+11) = 0.1, h(y_l) = 0.1·(−12+11) = −0.1, h_w − h_l = 0.2
  pair 1: log π(y_w)=-5, log π(y_l)=-4, log π_ref(y_w)=-5, log π_ref(y_l)=-5
          h(y_w) = 0, h(y_l) = 0.1, h_w − h_l = −0.1
−log σ(x) = log(1 + e^(−x)).
"""

from __future__ import annotations

import math

import pytest
import torch

from sipo_bench_baselines.losses import (
    DPOLoss, DPOLWLoss, MODPOLoss, PairLogps, SIPOLoss, build_loss, dpo_loss, dpo_lw_loss, modpo_loss, response_nll, sipo_loss,
)

BETA = 0.1
CH = torch.tensor([-10.0, -5.0], dtype=torch.float64)
RJ = torch.tensor([-12.0, -4.0], dtype=torch.float64)
RCH = torch.tensor([-11.0, -5.0], dtype=torch.float64)
RRJ = torch.tensor([-11.0, -5.0], dtype=torch.float64)
H = [0.2, -0.1]  # h(y_w) − h(y_l) per pair, by hand above


def nls(x: float) -> float:
    """−log σ(x), written out."""
    return math.log(1.0 + math.exp(-x))


def close(t: torch.Tensor, expected: list[float]) -> None:
    assert t.shape == (len(expected),)
    for a, b in zip(t.tolist(), expected):
        assert a == pytest.approx(b, abs=1e-9), (t.tolist(), expected)


def test_dpo_by_hand():
    # −log σ(0.2) = log(1 + e^−0.2) = 0.598138869..., −log σ(−0.1) = 0.744396660...
    close(dpo_loss(CH, RJ, RCH, RRJ, BETA), [0.5981388693815918, 0.7443966600735709])
    close(dpo_loss(CH, RJ, RCH, RRJ, BETA), [nls(0.2), nls(-0.1)])
    # β scales the margin: β = 1 gives −log σ(2) and −log σ(−1)
    close(dpo_loss(CH, RJ, RCH, RRJ, 1.0), [nls(2.0), nls(-1.0)])


def test_modpo_two_objectives_by_hand():
    # w = (0.25, 0.75); margins r_2(y_w) − r_2(y_l) = 0.4 and −0.2
    # pair 0: (0.2 − 0.75·0.4)/0.25 = −0.4 ; pair 1: (−0.1 − 0.75·(−0.2))/0.25 = 0.2
    margins = torch.tensor([[0.4], [-0.2]], dtype=torch.float64)
    got = modpo_loss(CH, RJ, RCH, RRJ, BETA, margins, 0.25, [0.75])
    close(got, [nls(-0.4), nls(0.2)])
    close(got, [0.9130152523999526, 0.5981388693815918])


def test_modpo_three_objectives_by_hand():
    # w = (0.5, 0.3, 0.2); margins (0.4, −1.0) and (0.0, 0.5)
    # pair 0: (0.2 − (0.3·0.4 + 0.2·(−1.0)))/0.5 = (0.2 + 0.08)/0.5 = 0.56
    # pair 1: (−0.1 − (0 + 0.2·0.5))/0.5 = −0.4
    margins = torch.tensor([[0.4, -1.0], [0.0, 0.5]], dtype=torch.float64)
    got = modpo_loss(CH, RJ, RCH, RRJ, BETA, margins, 0.5, [0.3, 0.2])
    close(got, [nls(0.56), nls(-0.4)])


def test_modpo_with_zero_margin_weights_is_dpo_scaled():
    # other weights 0: L = −log σ(h/w_1)
    margins = torch.tensor([[5.0], [-5.0]], dtype=torch.float64)
    close(modpo_loss(CH, RJ, RCH, RRJ, BETA, margins, 1.0, [0.0]), [nls(0.2), nls(-0.1)])


def test_modpo_rejects_bad_inputs():
    with pytest.raises(ValueError, match="w_1"):
        modpo_loss(CH, RJ, RCH, RRJ, BETA, torch.zeros(2, 1, dtype=torch.float64), 0.0, [1.0])
    with pytest.raises(ValueError, match="shape"):
        modpo_loss(CH, RJ, RCH, RRJ, BETA, torch.zeros(2, 2, dtype=torch.float64), 0.5, [0.5])


def test_dpo_lw_orientation_and_ties_by_hand():
    w = [0.3, 0.7]
    # pair 0: objective 1 prefers response 0 (+1), objective 2 prefers response 1 (−1: swapped)
    #   0.3·(−log σ(0.2)) + 0.7·(−log σ(−0.2))
    # pair 1: objective 1 tie (0: no term), objective 2 prefers response 0
    #   0.7·(−log σ(−0.1))
    signs = torch.tensor([[1.0, -1.0], [0.0, 1.0]], dtype=torch.float64)
    got = dpo_lw_loss(CH, RJ, RCH, RRJ, BETA, signs, w)
    close(got, [0.3 * nls(0.2) + 0.7 * nls(-0.2), 0.7 * nls(-0.1)])
    # both objectives tie: zero loss; a vertex weight equals plain DPO on that objective's orientation
    close(dpo_lw_loss(CH, RJ, RCH, RRJ, BETA, torch.zeros(2, 2, dtype=torch.float64), w), [0.0, 0.0])
    close(dpo_lw_loss(CH, RJ, RCH, RRJ, BETA, torch.tensor([[1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64), [1.0, 0.0]),
          [nls(0.2), nls(0.1)])


def test_dpo_lw_three_objectives():
    signs = torch.tensor([[1.0, -1.0, 0.0], [-1.0, -1.0, 1.0]], dtype=torch.float64)
    w = [0.5, 0.25, 0.25]
    got = dpo_lw_loss(CH, RJ, RCH, RRJ, BETA, signs, w)
    close(got, [0.5 * nls(0.2) + 0.25 * nls(-0.2), 0.5 * nls(0.1) + 0.25 * nls(0.1) + 0.25 * nls(-0.1)])


def test_sipo_dpo_plus_length_normalised_nll_by_hand():
    # chosen (= y*) has 5 and 2 response tokens: NLL = 10/5 = 2.0 and 5/2 = 2.5
    tokens = torch.tensor([5, 2])
    close(response_nll(CH, tokens), [2.0, 2.5])
    got = sipo_loss(CH, RJ, RCH, RRJ, BETA, tokens, 0.1)
    close(got, [nls(0.2) + 0.1 * 2.0, nls(-0.1) + 0.1 * 2.5])
    # α = 0 is DPO
    close(sipo_loss(CH, RJ, RCH, RRJ, BETA, tokens, 0.0), [nls(0.2), nls(-0.1)])


def test_sipo_nll_normalised_by_padded_length_as_released_by_hand():
    """The released IterativeDPOTrainer divides log π(y*) by the padded width of the batch
    (prompt + response + padding): with widths 40 and 40 (one batch), NLL = 10/40 and 5/40,
    where the response-token normalisation gives 10/5 and 5/2."""
    logps = PairLogps(CH, RJ, RCH, RRJ, torch.tensor([5, 2]), torch.tensor([3, 3]), torch.tensor([40, 40]))
    ours = SIPOLoss(BETA, 0.1)(logps, {})
    released = SIPOLoss(BETA, 0.1, "padded_length")(logps, {})
    close(ours, [nls(0.2) + 0.1 * 10 / 5, nls(-0.1) + 0.1 * 5 / 2])
    close(released, [nls(0.2) + 0.1 * 10 / 40, nls(-0.1) + 0.1 * 5 / 40])
    # the same α weighs the NLL 8x and 20x less here: "α = 0.1" is not one setting across the two
    assert build_loss({"type": "sipo", "beta": 0.1, "alpha": 0.1, "nll_normalization": "padded_length"}) == \
        SIPOLoss(0.1, 0.1, "padded_length")
    with pytest.raises(ValueError, match="`nll_normalization`"):
        SIPOLoss(BETA, 0.1, "prompt")
    with pytest.raises(ValueError, match="padded_length"):
        SIPOLoss(BETA, 0.1, "padded_length")(PairLogps(CH, RJ, RCH, RRJ, torch.tensor([5, 2])), {})


def test_loss_objects_read_their_columns():
    logps = PairLogps(CH, RJ, RCH, RRJ, torch.tensor([5, 2]), torch.tensor([3, 3]))
    close(DPOLoss(BETA)(logps, {}), [nls(0.2), nls(-0.1)])
    m = torch.tensor([[0.4], [-0.2]], dtype=torch.float64)
    close(MODPOLoss(BETA, 0.25, (0.75,))(logps, {"margins": m}), [nls(-0.4), nls(0.2)])
    s = torch.tensor([[1.0, -1.0], [0.0, 1.0]], dtype=torch.float64)
    close(DPOLWLoss(BETA, (0.3, 0.7))(logps, {"signs": s}), [0.3 * nls(0.2) + 0.7 * nls(-0.2), 0.7 * nls(-0.1)])
    close(SIPOLoss(BETA, 0.1)(logps, {}), [nls(0.2) + 0.2, nls(-0.1) + 0.25])
    assert MODPOLoss.columns == ("margins",) and DPOLWLoss.columns == ("signs",)
    assert build_loss({"type": "modpo", "beta": BETA, "w_main": 0.25, "w_others": [0.75]}) == MODPOLoss(BETA, 0.25, (0.75,))
    assert build_loss({"type": "sipo", "beta": 0.2, "alpha": 0.3}) == SIPOLoss(0.2, 0.3)
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss({"type": "ppo", "beta": 0.1})


def test_losses_are_differentiable_in_the_policy_logps():
    ch = CH.clone().requires_grad_(True)
    dpo_loss(ch, RJ, RCH, RRJ, BETA).sum().backward()
    # d/dx −log σ(β(x − c)) = −β·σ(−β(x − c)) < 0: raising log π(y_w) lowers the loss
    assert ch.grad[0].item() == pytest.approx(-BETA * (1 - 1 / (1 + math.exp(-0.2))), abs=1e-12)
