"""Indicators against values computed by hand (the arithmetic is in the comments).

Convention: `maximize` is one boolean per objective; a minimised objective is checked by
flipping a column by hand and asserting the indicator does not change.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sipo_bench.scoring.pareto import hypervolume, igd_plus, pareto_front

MAX2 = [True, True]
MAX3 = [True, True, True]

# 2-D, both maximised, reference (0, 0):
#   (1,3) (2,2) (3,1) trade off; (1,1) is dominated by (2,2); (2,2) appears twice;
#   (4,-1) and (-1,5) are non-dominated but lie outside the box (one coordinate worse than ref).
POINTS_2D = [(1, 3), (2, 2), (3, 1), (1, 1), (2, 2), (4, -1), (-1, 5)]
# Staircase over a in [0,1]: height 3; [1,2]: 2; [2,3]: 1  ->  3 + 2 + 1 = 6.
HV_2D = 6.0

# 3-D, all maximised, reference (0,0,0): boxes (2,1,1), (1,2,1), (1,1,2) of volume 2 each;
# every pairwise and the triple intersection is the unit cube. 3*2 - 3*1 + 1 = 4.
# (1,1,1) is dominated (it is the intersection); (3,3,-1) lies outside the box.
POINTS_3D = [(2, 1, 1), (1, 2, 1), (1, 1, 2), (1, 1, 1), (1, 2, 1), (3, 3, -1)]
HV_3D = 4.0


# --- pareto_front -------------------------------------------------------------------------------


def test_front_2d_drops_dominated_keeps_duplicates_and_points_outside_the_box():
    assert pareto_front(POINTS_2D, MAX2) == [0, 1, 2, 4, 5, 6]


def test_front_3d():
    assert pareto_front(POINTS_3D, MAX3) == [0, 1, 2, 4, 5]


def test_front_respects_direction():
    pts = [(1, 1), (2, 2), (3, 3)]
    assert pareto_front(pts, [True, True]) == [2]
    assert pareto_front(pts, [False, False]) == [0]
    assert pareto_front(pts, [True, False]) == [0, 1, 2]  # more a costs more b: a trade-off


def test_front_of_empty_set_and_single_point():
    assert pareto_front([], MAX2) == []
    assert pareto_front(np.zeros((0, 2)), MAX2) == []
    assert pareto_front([(5, 5)], MAX2) == [0]


# --- hypervolume --------------------------------------------------------------------------------


def test_hv_2d_by_hand():
    assert hypervolume(POINTS_2D, (0, 0), MAX2) == pytest.approx(HV_2D, abs=1e-12)
    # Only the trade-off points matter: the same value without the noise.
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (0, 0), MAX2) == pytest.approx(HV_2D, abs=1e-12)


def test_hv_2d_reference_point_shift():
    # ref (1, 1): (1,3) is level with it on a and (3,1) on b, so they enclose nothing; only
    # (2,2) is strictly better on both: (2-1)*(2-1) = 1.
    assert hypervolume(POINTS_2D, (1, 1), MAX2) == pytest.approx(1.0, abs=1e-12)


def test_hv_3d_by_hand():
    assert hypervolume(POINTS_3D, (0, 0, 0), MAX3) == pytest.approx(HV_3D, abs=1e-12)
    assert hypervolume([(1, 1, 1)], (0, 0, 0), MAX3) == pytest.approx(1.0, abs=1e-12)
    assert hypervolume([(2, 3, 4)], (1, 1, 1), MAX3) == pytest.approx(1 * 2 * 3, abs=1e-12)


def test_hv_mixed_directions_2d():
    # a maximised, b minimised (a cost), ref (0, 4). Region of (a_p, b_p) = [0, a_p] x [b_p, 4].
    # a in [0,1]: best b among points with a_p >= a is 1 -> height 3; [1,2]: b 2 -> 2; [2,3]: 1.
    # (2, 3) is dominated by (2, 2) (same a, more cost). HV = 3 + 2 + 1 = 6.
    pts = [(1, 1), (2, 2), (3, 3), (2, 3)]
    assert hypervolume(pts, (0, 4), [True, False]) == pytest.approx(6.0, abs=1e-12)
    assert pareto_front(pts, [True, False]) == [0, 1, 2]
    # Flipping the sign of the minimised column by hand gives the all-maximised problem.
    flipped = [(a, -b) for a, b in pts]
    assert hypervolume(flipped, (0, -4), MAX2) == pytest.approx(6.0, abs=1e-12)


def test_hv_mixed_directions_3d():
    # Third objective minimised with ref 10: c' = 10 - c maps onto POINTS_3D's first three.
    pts = [(2, 1, 9), (1, 2, 9), (1, 1, 8), (1, 1, 9)]
    assert hypervolume(pts, (0, 0, 10), [True, True, False]) == pytest.approx(HV_3D, abs=1e-12)
    assert hypervolume(pts, (0, 0, 10), [True, True, True]) == 0.0  # nothing beats c = 10 upwards


def test_hv_all_minimised():
    # Minimise both, ref (4, 4): (1,3),(2,2),(3,1) mirror the 2-D case -> 6.
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4), [False, False]) == pytest.approx(6.0, abs=1e-12)


def test_hv_empty_and_non_dominating_sets_are_zero():
    assert hypervolume([], (0, 0), MAX2) == 0.0
    assert hypervolume(np.zeros((0, 3)), (0, 0, 0), MAX3) == 0.0
    assert hypervolume([(0, 0)], (0, 0), MAX2) == 0.0  # equal to the reference
    assert hypervolume([(5, 0), (0, 5)], (0, 0), MAX2) == 0.0  # level with it on one objective
    assert hypervolume([(-1, -1), (4, -1)], (0, 0), MAX2) == 0.0  # worse on some objective


def test_hv_duplicates_do_not_add_volume():
    assert hypervolume([(2, 2)] * 5, (0, 0), MAX2) == pytest.approx(4.0, abs=1e-12)


def test_hv_one_objective():
    assert hypervolume([(0.5,), (0.2,)], (0.0,), [True]) == pytest.approx(0.5)
    assert hypervolume([(0.5,), (0.2,)], (1.0,), [False]) == pytest.approx(0.8)


@pytest.mark.parametrize("call, message", [
    (lambda: hypervolume([(1, 2, 3)], (0, 0), MAX2), "points: expected 2 values per point"),
    (lambda: hypervolume([1, 2], (0, 0), MAX2), "points: expected an (n, 2) array"),
    (lambda: hypervolume([(1, 2), (1,)], (0, 0), MAX2), "points: expected an (n, 2) array of numbers"),
    (lambda: hypervolume([(1, float("nan"))], (0, 0), MAX2), "points: expected finite values"),
    (lambda: hypervolume([(1, 2)], (0, 0, 0), MAX2), "ref_point: expected 2 numbers"),
    (lambda: hypervolume([(1, 2)], None, MAX2), "ref_point: expected 2 numbers"),
    (lambda: hypervolume([(1, 2)], (0, float("inf")), MAX2), "ref_point: expected finite numbers"),
    (lambda: hypervolume([(1, 2)], (0, 0), [True]), "points: expected 1 values per point"),
    (lambda: hypervolume([(1, 2)], (0, 0), "max"), "maximize: expected a non-empty sequence of booleans"),
    (lambda: hypervolume([(1, 2)], (0, 0), [1, 0]), "maximize: expected a non-empty sequence of booleans"),
    (lambda: pareto_front([(1, 2)], []), "maximize: expected a non-empty sequence of booleans"),
    (lambda: pareto_front(np.zeros((0, 3)), MAX2), "points: expected 2 values per point"),
    (lambda: igd_plus([(1, 2)], [(1, 2, 3)], MAX2), "reference_front: expected 2 values per point"),
    (lambda: igd_plus([(1, 2)], [], MAX2), "reference_front: expected at least one point"),
])
def test_shape_and_input_errors(call, message):
    with pytest.raises(ValueError) as e:
        call()
    assert message in str(e.value)


# --- IGD+ ---------------------------------------------------------------------------------------


def test_igd_plus_by_hand_maximised():
    # Z = {(0,1), (1,0)}, A = {(0.5,0.5)}. For maximisation d+(z, a) = sqrt(sum max(z_i - a_i, 0)^2):
    # z=(0,1): (0, 0.5) -> 0.5 ; z=(1,0): (0.5, 0) -> 0.5. Mean 0.5 (plain IGD would be sqrt(0.5)).
    Z = [(0, 1), (1, 0)]
    assert igd_plus([(0.5, 0.5)], Z, MAX2) == pytest.approx(0.5, abs=1e-12)
    assert igd_plus(Z, Z, MAX2) == pytest.approx(0.0, abs=1e-12)
    assert igd_plus([(2, 2)], Z, MAX2) == pytest.approx(0.0, abs=1e-12)  # dominates the reference
    # A = {(0, 0)}: z=(0,1) -> 1 ; z=(1,0) -> 1. Adding (1, 0) makes z=(1,0)'s distance 0: (1+0)/2.
    assert igd_plus([(0, 0)], Z, MAX2) == pytest.approx(1.0, abs=1e-12)
    assert igd_plus([(0, 0), (1, 0)], Z, MAX2) == pytest.approx(0.5, abs=1e-12)


def test_igd_plus_by_hand_mixed_directions():
    # a maximised, b minimised. Z = {(3, 2)}, A = {(2, 3)}: a short by 1, b over by 1 -> sqrt(2).
    assert igd_plus([(2, 3)], [(3, 2)], [True, False]) == pytest.approx(math.sqrt(2), abs=1e-12)
    # Z = {(1, 0), (3, 2)}, A = {(2, 1)}: z1 -> (max(1-2,0), max(1-0,0)) = (0, 1) -> 1 ;
    # z2 -> (max(3-2,0), max(1-2,0)) = (1, 0) -> 1. Mean 1. With (3, 2) added: (1 + 0) / 2.
    Z = [(1, 0), (3, 2)]
    assert igd_plus([(2, 1)], Z, [True, False]) == pytest.approx(1.0, abs=1e-12)
    assert igd_plus([(2, 1), (3, 2)], Z, [True, False]) == pytest.approx(0.5, abs=1e-12)


def test_igd_plus_3d_by_hand():
    # Z = {(1,0,0), (0,1,0), (0,0,1)} maximised, A = {(0.5, 0.5, 0.5)}: each z is short by 0.5 on
    # one objective only -> 0.5 each. A = {(0,0,0)}: short by 1 on one objective -> 1 each.
    Z = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    assert igd_plus([(0.5, 0.5, 0.5)], Z, MAX3) == pytest.approx(0.5, abs=1e-12)
    assert igd_plus([(0, 0, 0)], Z, MAX3) == pytest.approx(1.0, abs=1e-12)


def test_igd_plus_empty_set_is_infinite():
    assert igd_plus([], [(0, 1)], MAX2) == math.inf
