"""Statistics over seeds and test prompts: the one home of every interval, paired test and
noise estimate that a run summary or a report shows.

Public API:

- :func:`mean_interval` -- the interval of a mean over seeds, by the project's rule: a
  t-interval below :data:`MIN_BOOTSTRAP` values (so up to 20 seeds), a percentile bootstrap
  from there up (the percentile bootstrap under-covers at small n);
- :func:`t_interval`, :func:`bootstrap_interval`, :func:`bootstrap_ci` -- the two kinds;
- :func:`sign_flip_p` -- exact (or Monte Carlo) sign-flip permutation p-value of paired
  differences;
- :func:`paired_comparison` -- per-seed differences A - B: mean, paired interval, wins / ties
  / losses, p-value;
- :func:`hv_stats` -- HV per seed against that seed's reference point, mean, sd, interval,
  and (when given) the evaluation-noise split;
- :func:`prompt_bootstrap_hv` -- HV's evaluation-noise SE from a bootstrap over test prompts;
- :func:`noise_split` -- evaluation variance vs seed-to-seed variance of HV, and what it implies;
- :func:`union_front_igd_plus` -- the union front of several methods and each one's IGD+;
- :func:`igd_plus_per_seed` -- per seed, the union front of every method's points of that seed
  and each method's IGD+ to it, then the mean over seeds with its interval;
- :func:`holm` -- Holm's step-down adjustment of a family of p-values;
- :func:`comparisons` -- :func:`paired_comparison` for every declared (method, baseline) pair,
  with Holm-adjusted p-values over each family (one baseline, one indicator).

Every interval is a dict that names its method and nominal coverage (`coverage`, and the same
number as `level`), e.g. ``{"method": "t", "level": 0.95, "coverage": 0.95, "lo": .., "hi":
.., "n": 3, "df": 2}``, ``{"method": "paired t", ...}`` for a mean of paired differences, or
``{"method": "percentile bootstrap", "level": 0.95, "coverage": 0.95, "lo": .., "hi": .., "n":
30, "resamples": 10000}``; :func:`interval_label` is how tables name it (`paired t 95% CI`).
With one value there is no interval (``None``). Up to 20 values a percentile bootstrap is not
used: with 3 values every tail of the bootstrap distribution holds at least 1/27 > 2.5%, so a
"95%" bootstrap interval would be the range of the values, and at 10 values it still
under-covers (it uses the n-divisor sd and normal-like tails where Student's t is wider).
"""

from __future__ import annotations

import math
from itertools import combinations_with_replacement
from typing import Any, Mapping, Sequence

import numpy as np

from . import pareto

__all__ = ["MIN_BOOTSTRAP", "LEVEL", "mean_interval", "t_interval", "bootstrap_interval", "bootstrap_ci",
           "interval_label", "sign_flip_p", "paired_comparison", "hv_stats", "prompt_bootstrap_hv", "noise_split",
           "union_front_igd_plus", "igd_plus_per_seed", "comparisons", "holm", "TIE_TOL", "INDICATORS"]

#: the smallest number of values for which a percentile bootstrap interval is reported
#: (up to 20 values the t-interval is the interval)
MIN_BOOTSTRAP = 21
#: nominal coverage of every interval the project reports
LEVEL = 0.95
#: |difference| at or below this is a tie (HVs of the same stages are bit-identical)
TIE_TOL = 1e-12
#: sign patterns enumerated exactly up to this many (2^16: 16 pairs)
MAX_EXACT_PATTERNS = 2 ** 16
#: Monte Carlo draws of sign patterns beyond that
SIGN_FLIP_DRAWS = 100_000


def _values(values: Sequence[float], name: str = "values") -> np.ndarray:
    try:
        v = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a sequence of numbers, got {values!r}") from None
    if not np.isfinite(v).all():
        raise ValueError(f"{name}: expected finite numbers, got {v.tolist()}")
    return v


def _level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < level < 1.0:
        raise ValueError(f"level: expected a number in (0, 1), got {level!r}")
    return float(level)


# --- Intervals of a mean ----------------------------------------------------------------------


def t_interval(values: Sequence[float], level: float = LEVEL, *, paired: bool = False) -> dict | None:
    """Student-t interval of the mean: mean ± t_{1-a/2, n-1} · sd / sqrt(n), with a = 1 - level
    and sd the sample standard deviation (ddof 1). None with fewer than two values; constant
    values give the degenerate interval (mean, mean). `paired`: the values are paired
    differences (per-seed A − B), and the method is named `paired t`."""
    from scipy.stats import t as student_t

    level = _level(level)
    v = _values(values)
    n = v.size
    if n < 2:
        return None
    mean = float(v.mean())
    half = float(student_t.ppf(0.5 + level / 2.0, n - 1)) * float(v.std(ddof=1)) / math.sqrt(n)
    return {"method": "paired t" if paired else "t", "level": level, "coverage": level, "lo": mean - half,
            "hi": mean + half, "n": int(n), "df": int(n - 1)}


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


def bootstrap_interval(values: Sequence[float], level: float = LEVEL, n_resamples: int = 10000,
                       seed: int = 0) -> dict | None:
    """Percentile bootstrap interval of the mean of `values`; None with fewer than two values.

    With a = (1 - level) / 2, `lo` is the smallest mean m with P(mean* <= m) >= a and `hi` the
    largest m with P(mean* >= m) >= a, over the bootstrap distribution of the mean (resamples
    of size n with replacement). So negating the values negates and swaps the interval.

    The distribution is enumerated exactly (every distinct resample, weighted by its
    multinomial probability) when there are at most `n_resamples` distinct resamples, i.e.
    C(2n-1, n) <= n_resamples: up to 8 values at the default (`resamples: "exact"`). Above
    that, `n_resamples` resamples are drawn with a fixed `seed` (`resamples: n_resamples`), so
    the interval is deterministic either way. Constant values give the degenerate interval
    (v, v); the interval always lies in [min(values), max(values)].
    """
    level = _level(level)
    if isinstance(n_resamples, bool) or int(n_resamples) < 1:
        raise ValueError(f"n_resamples: expected an integer >= 1, got {n_resamples!r}")
    v = _values(values)
    if v.size < 2:
        return None
    a = (1.0 - level) / 2.0
    exact = math.comb(2 * v.size - 1, v.size) <= n_resamples
    if exact:
        means, p = _exact_bootstrap(v)
    else:
        rng = np.random.default_rng(seed)
        means = v[rng.integers(0, v.size, size=(int(n_resamples), v.size))].mean(axis=1)
        p = np.full(means.size, 1.0 / means.size)
    lo = _lower_quantile(means, p, a)
    hi = -_lower_quantile(-means, p, a)
    vmin, vmax = float(v.min()), float(v.max())
    return {"method": "percentile bootstrap", "level": level, "coverage": level, "lo": min(max(lo, vmin), vmax),
            "hi": min(max(hi, vmin), vmax), "n": int(v.size), "resamples": "exact" if exact else int(n_resamples)}


def bootstrap_ci(values: Sequence[float], level: float = LEVEL, n_resamples: int = 10000,
                 seed: int = 0) -> tuple[float, float] | None:
    """(lo, hi) of :func:`bootstrap_interval`, or None with fewer than two values."""
    iv = bootstrap_interval(values, level, n_resamples, seed)
    return None if iv is None else (iv["lo"], iv["hi"])


def mean_interval(values: Sequence[float], level: float = LEVEL, min_bootstrap: int = MIN_BOOTSTRAP, *,
                  paired: bool = False) -> dict | None:
    """The interval the project reports for a mean over seeds (or, `paired`, over paired
    differences): :func:`t_interval` below `min_bootstrap` values (up to 20 by default),
    :func:`bootstrap_interval` from there up; None with fewer than two values."""
    v = _values(values)
    if v.size < 2:
        return None
    return bootstrap_interval(v, level) if v.size >= min_bootstrap else t_interval(v, level, paired=paired)


def interval_label(iv: Mapping[str, Any] | None) -> str:
    """How a table names an interval: `t 95% CI`, `paired t 95% CI` or `percentile bootstrap
    95% CI` (method, then nominal coverage)."""
    if not iv:
        return "no interval"
    level = float(iv.get("coverage", iv.get("level", LEVEL))) * 100
    pct = f"{level:.0f}" if abs(level - round(level)) < 1e-9 else f"{level:g}"
    return f"{iv.get('method')} {pct}% CI"


# --- Paired comparison --------------------------------------------------------------------------


def sign_flip_p(diffs: Sequence[float], *, max_exact: int = MAX_EXACT_PATTERNS, draws: int = SIGN_FLIP_DRAWS,
                seed: int = 0) -> dict | None:
    """Two-sided sign-flip (paired permutation) test of "the differences are symmetric about 0".

    The statistic is |Σ d_i|; under the null every sign pattern s ∈ {-1, 1}^n is equally
    likely. With 2^n <= `max_exact` patterns every pattern is enumerated and
    p = #{s : |Σ s_i d_i| >= |Σ d_i|} / 2^n (`method: "exact"`, `patterns: 2^n`). Beyond,
    `draws` patterns are drawn with a fixed `seed` and p = (1 + #{...}) / (1 + draws)
    (`method: "monte carlo"`, `draws`). Ties in the statistic count as "at least as
    extreme" (up to a relative 1e-9). All-zero differences give p = 1. None for no values.
    """
    d = _values(diffs, "diffs")
    n = d.size
    if n == 0:
        return None
    obs = abs(float(d.sum()))
    tol = 1e-9 * max(float(np.abs(d).sum()), 1e-300)
    if 2 ** n <= max_exact:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1)
        stats = np.abs(signs @ d)
        return {"p": float(np.count_nonzero(stats >= obs - tol)) / 2 ** n, "method": "exact", "patterns": int(2 ** n),
                "n": int(n)}
    if isinstance(draws, bool) or int(draws) < 1:
        raise ValueError(f"draws: expected an integer >= 1, got {draws!r}")
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, int(draws), 8192):
        m = min(8192, int(draws) - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(m, n))
        hits += int(np.count_nonzero(np.abs(signs @ d) >= obs - tol))
    return {"p": (1 + hits) / (1 + int(draws)), "method": "monte carlo", "draws": int(draws), "n": int(n)}


def paired_comparison(a: Mapping[Any, float], b: Mapping[Any, float], level: float = LEVEL, *,
                      higher_is_better: bool = True) -> dict | None:
    """A − B over the keys (seeds) both hold: `{n, seeds, per_seed, mean, interval, wins, ties,
    losses, p_value}`. `interval` follows :func:`mean_interval` (paired t up to 20 pairs,
    percentile bootstrap from 21); a win is a difference > 0 (< 0 when not `higher_is_better`,
    e.g. IGD+), a tie |d| <= 1e-12; `p_value` is :func:`sign_flip_p`. None when no key is shared."""
    shared = [k for k in a if k in b and a[k] is not None and b[k] is not None]
    shared.sort(key=lambda k: (not str(k).lstrip("-").isdigit(), int(k) if str(k).lstrip("-").isdigit() else 0, str(k)))
    if not shared:
        return None
    d = np.array([float(a[k]) - float(b[k]) for k in shared])
    sign = 1.0 if higher_is_better else -1.0
    return {"n": len(shared), "seeds": [str(k) for k in shared],
            "per_seed": {str(k): float(x) for k, x in zip(shared, d)},
            "mean": float(d.mean()), "sd": float(d.std(ddof=1)) if d.size > 1 else None,
            "interval": mean_interval(d, level, paired=True),
            "wins": int(np.count_nonzero(sign * d > TIE_TOL)), "ties": int(np.count_nonzero(np.abs(d) <= TIE_TOL)),
            "losses": int(np.count_nonzero(sign * d < -TIE_TOL)), "p_value": sign_flip_p(d)}


HV_KEYS = ("hypervolume", "hypervolume_floor")
#: every per-seed indicator a comparison covers: summary key -> higher is better
INDICATORS = {"hypervolume": True, "hypervolume_floor": True, "igd_plus_per_seed": False}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error control, any dependence): with the m
    p-values sorted ascending p_(1) <= ... <= p_(m), p_adj_(i) = max_{j <= i} min(1, (m - j + 1)
    p_(j)); returned in the input order. Ties keep their input order (the max makes the result
    the same either way)."""
    p = _values(p_values, "p_values")
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"p_values: expected numbers in [0, 1], got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p[i])))
        adj[i] = running
    return adj.tolist()


def comparisons(methods: Mapping[str, dict], pairs: Sequence[Sequence[str]], level: float = LEVEL) -> None:
    """Set `methods[m]["comparisons"] = {baseline: {indicator: paired_comparison or None}}` for
    every declared (m, baseline) pair, comparing the per-seed values of every indicator of
    :data:`INDICATORS` the entries hold (HV vs both references, IGD+ per seed, lower is better);
    a pair whose method or baseline failed gets None values. Methods in no pair get no key.

    Multiplicity: the comparisons against one baseline on one indicator (a column of the
    report's comparison table, e.g. every method vs `mod` on HV vs ref) are one family, and
    each comparison gets `p_holm = {p, method: "Holm", family, m}`, its sign-flip p adjusted
    by :func:`holm` over that family (m comparisons; m = 1 leaves p as it is)."""
    for entry in methods.values():
        entry.pop("comparisons", None)
    families: dict[tuple[str, str], list[dict]] = {}
    for m, b in pairs:
        if m not in methods or b not in methods or m == b:
            continue
        out = {}
        for key, hib in INDICATORS.items():
            if key not in HV_KEYS and key not in methods[m] and key not in methods[b]:
                continue  # a summary from before IGD+ per seed
            hm, hb = methods[m].get(key), methods[b].get(key)
            ok = methods[m].get("status") == "ok" and methods[b].get("status") == "ok"
            out[key] = (paired_comparison(hm["per_seed"], hb["per_seed"], level, higher_is_better=hib)
                        if ok and hm and hb else None)
            if out[key] is not None and out[key].get("p_value"):
                families.setdefault((b, key), []).append(out[key])
        methods[m].setdefault("comparisons", {})[b] = out
    for (b, key), family in families.items():
        for c, adj in zip(family, holm([c["p_value"]["p"] for c in family])):
            c["p_holm"] = {"p": adj, "method": "Holm", "family": f"{key} vs {b}", "m": len(family)}


# --- HV over seeds ------------------------------------------------------------------------------


def noise_split(per_seed: Mapping[str, float], eval_se: Mapping[str, float] | None) -> dict | None:
    """How much of HV's seed-to-seed spread is evaluation noise.

    `seed_sd` is the sample sd of the per-seed HVs (it contains evaluation noise); `eval_se` the
    root mean square of the per-seed evaluation SEs, `eval_var` its square, `train_var` =
    max(seed_var − eval_var, 0) the part left to training. `ratio` = eval_se / seed_sd, and
    `advice`: "add test prompts" when the evaluation SE is over a quarter of the seed sd,
    else "add seeds". None without evaluation SEs; `seed_sd` etc. None with one seed."""
    if not eval_se:
        return None
    se = np.array([float(eval_se[s]) for s in per_seed if s in eval_se and eval_se[s] is not None])
    if se.size == 0:
        return None
    eval_var = float(np.mean(se ** 2))
    vals = np.array([float(per_seed[s]) for s in per_seed])
    out = {"eval_se": math.sqrt(eval_var), "eval_var": eval_var, "seed_sd": None, "seed_var": None, "train_var": None,
           "ratio": None, "advice": None}
    if vals.size > 1:
        seed_var = float(vals.var(ddof=1))
        out.update(seed_sd=math.sqrt(seed_var), seed_var=seed_var, train_var=max(seed_var - eval_var, 0.0))
        if seed_var > 0:
            out["ratio"] = math.sqrt(eval_var) / math.sqrt(seed_var)
            out["advice"] = "add test prompts" if out["ratio"] > 0.25 else "add seeds"
        elif eval_var > 0:
            out["advice"] = "add test prompts"
    return out


def hv_stats(points: Sequence[Mapping[str, Any]], ref_points: Mapping[Any, Sequence[float] | None],
             maximize: Sequence[bool], seeds: Sequence[Any], eval_se: Mapping[Any, float | None] | None = None,
             level: float = LEVEL) -> dict | None:
    """HV of each seed's points (`{"seed", "scores"}` dicts) against that seed's reference
    point: `{mean, per_seed, std, interval}` (+ `eval_se` per seed and `noise` =
    :func:`noise_split` when `eval_se` is given). A seed without a reference point or without
    points is left out; None when no seed is left. `interval` is :func:`mean_interval`."""
    per_seed: dict[str, float] = {}
    for seed in seeds:
        ref = ref_points.get(seed)
        pts = [p["scores"] for p in points if p["seed"] == seed]
        if ref is None or not pts:
            continue
        per_seed[str(seed)] = pareto.hypervolume(pts, ref, maximize)
    if not per_seed:
        return None
    vals = list(per_seed.values())
    out = {"mean": float(np.mean(vals)), "per_seed": per_seed,
           "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None, "interval": mean_interval(vals, level)}
    if eval_se is not None:
        se = {str(s): (None if v is None else float(v)) for s, v in eval_se.items() if str(s) in per_seed}
        out["eval_se"] = se
        out["noise"] = noise_split(per_seed, {s: v for s, v in se.items() if v is not None})
    return out


def prompt_bootstrap_hv(point_scores: Sequence[np.ndarray], ref: Sequence[float] | np.ndarray,
                        maximize: Sequence[bool], *, replicates: int = 500, seed: int = 0) -> dict:
    """Evaluation-noise SE of one method's HV on one seed, from a bootstrap over test prompts.

    `point_scores[j]` is an (n_prompts, k) array: point j's per-prompt scores (the per-prompt
    mean over samples), the same prompts in the same order for every point. `ref` is either a
    fixed k-vector or an (n_prompts, k) array of per-prompt scores (the base policy's, when the
    reference point is its mean test scores). Each replicate draws n_prompts prompt indices
    with replacement *once* and applies them to every point and to a per-prompt reference, so
    the front (and the reference point) move together as they would on another test set of
    the same size; the HV of the resampled means is computed with :func:`pareto.hypervolume`.
    Returns `{se, replicates, n_prompts, hv}` where `se` is the sd (ddof 1) of the replicate
    HVs and `hv` the HV of the full-sample means."""
    if isinstance(replicates, bool) or int(replicates) < 2:
        raise ValueError(f"replicates: expected an integer >= 2, got {replicates!r}")
    if not point_scores:
        raise ValueError("point_scores: expected at least one point, got none")
    k = len(list(maximize))
    arrs = [np.asarray(p, dtype=float) for p in point_scores]
    n = arrs[0].shape[0] if arrs[0].ndim == 2 else -1
    for j, a in enumerate(arrs):
        if a.ndim != 2 or a.shape != (n, k):
            raise ValueError(f"point_scores[{j}]: expected an ({n}, {k}) array (prompts x objectives), got shape {a.shape}")
    if n < 1:
        raise ValueError("point_scores: expected at least one prompt, got none")
    r = np.asarray(ref, dtype=float)
    if r.shape not in ((k,), (n, k)):
        raise ValueError(f"ref: expected {k} values or an ({n}, {k}) array, got shape {r.shape}")
    stacked = np.stack(arrs)  # (points, n, k)
    rng = np.random.default_rng(seed)
    hvs = np.empty(int(replicates))
    for b in range(int(replicates)):
        idx = rng.integers(0, n, size=n)
        means = stacked[:, idx, :].mean(axis=1)
        ref_b = r[idx].mean(axis=0) if r.ndim == 2 else r
        hvs[b] = pareto.hypervolume(means, ref_b, maximize)
    full_ref = r.mean(axis=0) if r.ndim == 2 else r
    return {"se": float(hvs.std(ddof=1)), "replicates": int(replicates), "n_prompts": int(n),
            "hv": pareto.hypervolume(stacked.mean(axis=1), full_ref, maximize)}


# --- Fronts across methods ----------------------------------------------------------------------


def union_front_igd_plus(methods: Mapping[str, dict], maximize: Sequence[bool]) -> list[list[float]]:
    """Set each method's `igd_plus` against the union front (the non-dominated subset of every
    method's mean front, failed methods excluded, exact duplicates once) and return it."""
    union = [list(x) for x in dict.fromkeys(tuple(f["scores"]) for entry in methods.values() for f in entry["front"])]
    if not union:
        return []
    union_front = [union[i] for i in pareto.pareto_front(union, maximize)]
    for entry in methods.values():
        entry["igd_plus"] = (pareto.igd_plus([f["scores"] for f in entry["front"]], union_front, maximize)
                             if entry["front"] else None)
    return union_front


def igd_plus_per_seed(methods: Mapping[str, dict], maximize: Sequence[bool], level: float = LEVEL) -> None:
    """Set each method's `igd_plus_per_seed`: for every seed, the union front of that seed is the
    non-dominated subset of the points (one per weight) of every ok method on that seed, and a
    method's IGD+ on the seed is that of its points against it (:func:`pareto.igd_plus`, lower
    is better); then `{mean, per_seed, std, interval, union_front_points}` over seeds as for HV
    (`interval` by :func:`mean_interval`). Failed methods, and methods without points, get None.
    Paired over seeds like HV, since every seed's union front is shared by all methods."""
    ok = {n: e for n, e in methods.items() if e.get("status") == "ok" and e.get("points")}
    by_seed: dict[str, list[list[float]]] = {}
    for e in ok.values():
        for p in e["points"]:
            by_seed.setdefault(str(p["seed"]), []).append(list(p["scores"]))
    fronts = {}
    for seed, pts in by_seed.items():
        union = [list(x) for x in dict.fromkeys(tuple(x) for x in pts)]
        fronts[seed] = [union[i] for i in pareto.pareto_front(union, maximize)]
    order = sorted(fronts, key=lambda x: (not x.lstrip("-").isdigit(), int(x) if x.lstrip("-").isdigit() else 0, x))
    for name, entry in methods.items():
        if name not in ok:
            entry["igd_plus_per_seed"] = None
            continue
        per_seed = {}
        for seed in order:
            pts = [p["scores"] for p in entry["points"] if str(p["seed"]) == seed]
            if pts:
                per_seed[seed] = pareto.igd_plus(pts, fronts[seed], maximize)
        vals = list(per_seed.values())
        entry["igd_plus_per_seed"] = {
            "mean": float(np.mean(vals)), "per_seed": per_seed, "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
            "interval": mean_interval(vals, level), "union_front_points": {s: len(fronts[s]) for s in per_seed}}
