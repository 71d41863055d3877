"""Pareto fronts and quality indicators, on pymoo, with directions handled at one boundary.

Public API (everything else here is private):

- :func:`pareto_front` -- indices of the non-dominated points;
- :func:`hypervolume` -- volume dominated by a set and bounded by a reference point;
- :func:`igd_plus` -- IGD+ of a set against a reference front (lower is better).

Statistics over seeds and prompts (intervals, paired tests, noise) are in :mod:`sipo_bench.scoring.stats`.

Points are (n, k) arrays in the objectives' own units; ``maximize`` is one boolean per
objective. pymoo minimises, so maximised columns are negated exactly once, in ``_to_min``;
every indicator goes through it and nothing else flips a sign. Inputs are checked first: a
wrong shape, a non-finite score or a non-boolean direction is a ``ValueError`` that names the
argument, what was expected and what came.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["pareto_front", "hypervolume", "igd_plus"]

ArrayLike = Sequence[Sequence[float]] | np.ndarray


# --- Input checks and the one direction boundary ----------------------------------------------


def _directions(maximize: Sequence[bool]) -> np.ndarray:
    items = list(maximize) if not isinstance(maximize, (str, bytes)) else None
    if not items or not all(isinstance(m, (bool, np.bool_)) for m in items):
        raise ValueError(f"maximize: expected a non-empty sequence of booleans (one per objective), got {maximize!r}")
    return np.asarray(items, dtype=bool)


def _as_points(points: ArrayLike, k: int, name: str = "points") -> np.ndarray:
    """`points` as a float (n, k) array; an empty input is the empty (0, k) set."""
    try:
        arr = np.asarray(points, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected an (n, {k}) array of numbers, got {points!r}") from None
    if arr.ndim == 1 and arr.size == 0:
        return np.zeros((0, k))
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected an (n, {k}) array (one row per point), got shape {arr.shape}")
    if arr.shape[1] != k:
        raise ValueError(f"{name}: expected {k} values per point (one per objective), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, got {arr[~np.isfinite(arr).all(axis=1)].tolist()}")
    return arr


def _as_vector(values: Sequence[float], k: int, name: str) -> np.ndarray:
    try:
        vec = np.asarray(values, dtype=float) if values is not None else None
    except (TypeError, ValueError):
        vec = None
    if vec is None or vec.shape != (k,):
        raise ValueError(f"{name}: expected {k} numbers (one per objective), got {values!r}")
    if not np.isfinite(vec).all():
        raise ValueError(f"{name}: expected finite numbers, got {vec.tolist()}")
    return vec


def _to_min(points: np.ndarray, maximize: np.ndarray) -> np.ndarray:
    """The direction boundary: negate maximised columns so that lower is better everywhere."""
    return points * np.where(maximize, -1.0, 1.0)


# --- Indicators ---------------------------------------------------------------------------------


def pareto_front(points: ArrayLike, maximize: Sequence[bool]) -> list[int]:
    """Sorted indices of the non-dominated points (pymoo `NonDominatedSorting`).

    A point is dominated when another is at least as good on every objective and better on
    one. Duplicates of a front point do not dominate each other, so all of them are kept.
    An empty set has an empty front.
    """
    mx = _directions(maximize)
    arr = _as_points(points, mx.size)
    if len(arr) == 0:
        return []
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    front = NonDominatedSorting().do(_to_min(arr, mx), only_non_dominated_front=True)
    return sorted(int(i) for i in front)


def hypervolume(points: ArrayLike, ref_point: Sequence[float], maximize: Sequence[bool]) -> float:
    """Volume of the region dominated by `points` and bounded by `ref_point` (pymoo `HV`).

    Only points strictly better than `ref_point` on every objective enclose any volume; the
    others (dominated by or level with the reference on some objective) contribute nothing.
    An empty set, or one where no point is strictly better than the reference, gives 0.0.
    Dominated points and duplicates change nothing.
    """
    mx = _directions(maximize)
    arr = _as_points(points, mx.size)
    ref = _as_vector(ref_point, mx.size, "ref_point")
    pts, r = _to_min(arr, mx), _to_min(ref[None, :], mx)[0]
    inside = pts[np.all(pts < r, axis=1)]
    if len(inside) == 0:
        return 0.0
    from pymoo.indicators.hv import HV

    return float(HV(ref_point=r)(inside))


def igd_plus(points: ArrayLike, reference_front: ArrayLike, maximize: Sequence[bool]) -> float:
    """IGD+ of `points` against `reference_front` (pymoo `IGDPlus`, no normalisation).

    IGD+ = mean over z in the reference front of min over a in `points` of d+(z, a), where
    d+ = sqrt(sum_i max(a_i - z_i, 0)^2) after converting to minimisation: only the amount by
    which `a` is *worse* than `z` counts. 0 when `points` weakly dominate every reference
    point; lower is better. The reference front is used as given (pass a non-dominated set).
    An empty `points` set is infinitely far: inf. An empty reference front is a ValueError.
    """
    mx = _directions(maximize)
    arr = _as_points(points, mx.size)
    ref = _as_points(reference_front, mx.size, "reference_front")
    if len(ref) == 0:
        raise ValueError("reference_front: expected at least one point, got none")
    if len(arr) == 0:
        return float("inf")
    from pymoo.indicators.igd_plus import IGDPlus

    return float(IGDPlus(_to_min(ref, mx))(_to_min(arr, mx)))
