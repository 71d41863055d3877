"""Pareto fronts and quality indicators, on pymoo, with directions handled at one boundary.

Public API (everything else here is private):

- :func:`pareto_front` -- indices of the non-dominated points;
- :func:`hypervolume` -- volume dominated by a set and bounded by a reference point;
- :func:`igd_plus` -- IGD+ of a set against a reference front (lower is better);
- :func:`bootstrap_ci` -- percentile bootstrap interval of a mean.

Points are (n, k) arrays in the objectives' own units; ``maximize`` is one boolean per
objective. pymoo minimises, so maximised columns are negated exactly once, in ``_to_min``;
every indicator goes through it and nothing else flips a sign. Inputs are checked first: a
wrong shape, a non-finite score or a non-boolean direction is a ``ValueError`` that names the
argument, what was expected and what came.
"""

from __future__ import annotations

import math
from itertools import combinations_with_replacement
from typing import Sequence

import numpy as np

__all__ = ["pareto_front", "hypervolume", "igd_plus", "bootstrap_ci"]

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


# --- Uncertainty over seeds ---------------------------------------------------------------------


def _exact_bootstrap(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct resample of `v` (a multiset of n indices) with its probability."""
    n = v.size
    means, weights = [], []
    for combo in combinations_with_replacement(range(n), n):
        counts = np.bincount(combo, minlength=n)
        means.append(float(counts @ v) / n)
        weights.append(math.factorial(n) // math.prod(math.factorial(int(c)) for c in counts))
    return np.asarray(means), np.asarray(weights, dtype=float) / float(n) ** n


def _lower_quantile(x: np.ndarray, p: np.ndarray, q: float) -> float:
    """Smallest x with P(X <= x) >= q (inverse CDF of the discrete distribution (x, p))."""
    order = np.argsort(x, kind="stable")
    cdf = np.cumsum(p[order])
    i = int(np.searchsorted(cdf, q * cdf[-1] * (1 - 1e-12), side="left"))
    return float(x[order][min(i, x.size - 1)])


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_resamples: int = 10000,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of `values`; None with fewer than two values.

    With a = (1 - level) / 2, `lo` is the smallest mean m with P(mean* <= m) >= a and `hi` the
    largest m with P(mean* >= m) >= a, over the bootstrap distribution of the mean (resamples
    of size n with replacement). So negating the values negates and swaps the interval.

    The distribution is enumerated exactly (every distinct resample, weighted by its
    multinomial probability) when there are at most `n_resamples` distinct resamples, i.e.
    C(2n-1, n) <= n_resamples: up to 8 values at the default. Above that, `n_resamples`
    resamples are drawn with a fixed `seed`, so the interval is deterministic either way.
    Constant values give the degenerate interval (v, v); the interval always lies in
    [min(values), max(values)].
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: expected a number in (0, 1), got {level!r}")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples: expected an integer >= 1, got {n_resamples!r}")
    v = np.asarray(values, dtype=float).reshape(-1)
    if not np.isfinite(v).all():
        raise ValueError(f"values: expected finite numbers, got {v.tolist()}")
    if v.size < 2:
        return None
    a = (1.0 - level) / 2.0
    if math.comb(2 * v.size - 1, v.size) <= n_resamples:
        means, p = _exact_bootstrap(v)
    else:
        rng = np.random.default_rng(seed)
        means = v[rng.integers(0, v.size, size=(int(n_resamples), v.size))].mean(axis=1)
        p = np.full(means.size, 1.0 / means.size)
    lo = _lower_quantile(means, p, a)
    hi = -_lower_quantile(-means, p, a)
    vmin, vmax = float(v.min()), float(v.max())
    return min(max(lo, vmin), vmax), min(max(hi, vmin), vmax)
