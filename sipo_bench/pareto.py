"""Pareto fronts and quality indicators, on pymoo, with directions handled at one boundary.

Points are (n, k) arrays in the objectives' own units; `maximize` is one boolean per
objective. Internally everything is converted to minimisation (negating maximised columns)
exactly once, in `_to_min`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _as_points(points: Sequence[Sequence[float]] | np.ndarray, k: int | None = None) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.size == 0:
        return np.zeros((0, k if k is not None else (arr.shape[-1] if arr.ndim == 2 else 0)))
    if arr.ndim != 2:
        raise ValueError(f"points: expected an (n, k) array, got shape {arr.shape}")
    return arr


def _to_min(points: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    sign = np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)
    if points.shape[1] != sign.size:
        raise ValueError(f"maximize: expected {points.shape[1]} entries (one per objective), got {sign.size}")
    return points * sign


def pareto_front(points, maximize: Sequence[bool]) -> list[int]:
    """Indices of the non-dominated points (duplicates of a front point are all kept)."""
    arr = _as_points(points, len(maximize))
    if len(arr) == 0:
        return []
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    front = NonDominatedSorting().do(_to_min(arr, maximize), only_non_dominated_front=True)
    return sorted(int(i) for i in front)


def hypervolume(points, ref_point: Sequence[float], maximize: Sequence[bool]) -> float:
    """Volume dominated by `points` and bounded by `ref_point`.

    Points that do not strictly dominate the reference point contribute nothing; an empty set,
    or one where no point dominates the reference, has hypervolume 0.
    """
    arr = _as_points(points, len(maximize))
    ref = np.asarray(ref_point, dtype=float)
    if ref.size != len(maximize):
        raise ValueError(f"ref_point: expected {len(maximize)} values, got {ref.size}")
    if len(arr) == 0:
        return 0.0
    pts = _to_min(arr, maximize)
    r = _to_min(ref[None, :], maximize)[0]
    inside = pts[np.all(pts < r, axis=1)]
    if len(inside) == 0:
        return 0.0
    from pymoo.indicators.hv import HV

    return float(HV(ref_point=r)(inside))


def igd_plus(points, reference_front, maximize: Sequence[bool]) -> float:
    """IGD+ of `points` against `reference_front` (lower is better); inf for an empty set."""
    arr = _as_points(points, len(maximize))
    ref = _as_points(reference_front, len(maximize))
    if len(ref) == 0:
        raise ValueError("reference_front: expected at least one point, got none")
    if len(arr) == 0:
        return float("inf")
    from pymoo.indicators.igd_plus import IGDPlus

    return float(IGDPlus(_to_min(ref, maximize))(_to_min(arr, maximize)))


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_resamples: int = 10000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean; None with fewer than two values."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_resamples, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
