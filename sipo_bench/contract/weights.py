"""Preference-weight grids on the simplex (pymoo's das-dennis reference directions)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..configs.schema import ConfigError

TOL = 1e-6
#: every grid point costs a generate and a score stage per method and seed
MAX_GRID_POINTS = 10_000


def grid_size(k: int, partitions: int) -> int:
    """Points of the das-dennis lattice: C(p + k - 1, k - 1) (computed, not enumerated)."""
    return math.comb(partitions + k - 1, k - 1)


def simplex_grid(k: int, partitions: int) -> list[tuple[float, ...]]:
    """Das-Dennis lattice: every w with entries in {0, 1/p, ..., 1} summing to 1.

    Sorted so that for k=2 the grid runs from objective 2's vertex to objective 1's
    ((0, 1) ... (1, 0)). k=2, p=4 gives the default 5 points including the endpoints.
    """
    if k < 1:
        raise ConfigError(f"`objectives`: expected at least 1, got {k}")
    if partitions < 1:
        raise ConfigError(f"`weights`: expected a number of partitions >= 1, got {partitions}")
    n = grid_size(k, partitions)
    if n > MAX_GRID_POINTS:
        raise ConfigError(f"`weights`: expected a grid of at most {MAX_GRID_POINTS} weight vectors, got {partitions} "
                          f"partitions ({n} vectors over {k} objectives)")
    if k == 1:
        return [(1.0,)]
    from pymoo.util.ref_dirs import get_reference_directions

    dirs = get_reference_directions("das-dennis", k, n_partitions=partitions)
    pts = sorted({tuple(round(float(x), 10) for x in row) for row in np.asarray(dirs)})
    return pts


def validate_weights(weights: Sequence[Sequence[float]], k: int, field: str = "weights") -> list[tuple[float, ...]]:
    """Check an explicit list of weight vectors: length k, non-negative, summing to 1."""
    if len(weights) > MAX_GRID_POINTS:
        raise ConfigError(f"`{field}`: expected at most {MAX_GRID_POINTS} weight vectors, got {len(weights)}")
    out = []
    seen: dict[tuple, int] = {}
    for i, w in enumerate(weights):
        if not isinstance(w, (list, tuple)) or len(w) != k:
            raise ConfigError(f"`{field}[{i}]`: expected a list of {k} weights (one per objective), got {w!r}")
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in w):
            raise ConfigError(f"`{field}[{i}]`: expected numbers, got {w!r}")
        if not all(math.isfinite(x) for x in w):
            raise ConfigError(f"`{field}[{i}]`: expected finite numbers, got {list(w)!r}")
        if any(x < -TOL for x in w) or abs(sum(w) - 1.0) > 1e-4:
            raise ConfigError(f"`{field}[{i}]`: expected non-negative weights summing to 1 (a point on the simplex), got {list(w)!r} (sum {sum(w):.4g})")
        v = tuple(float(max(x, 0.0)) for x in w)
        j = seen.setdefault(tuple(round(x, 6) for x in v), i)
        if j != i:
            raise ConfigError(f"`{field}[{i}]`: expected distinct weight vectors, got {list(w)!r} again "
                              f"(as `{field}[{j}]`)")
        out.append(v)
    if not out:
        raise ConfigError(f"`{field}`: expected at least one weight vector, got an empty list")
    return out


def is_vertex(w: Sequence[float]) -> int | None:
    """Index i if w is the i-th simplex vertex, else None."""
    for i, x in enumerate(w):
        if abs(x - 1.0) < TOL:
            return i
    return None


def fmt(w: Sequence[float]) -> str:
    return "/".join(f"{x:.3g}" for x in w)
