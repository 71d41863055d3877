"""Statistics over seeds and prompts (`sipo_bench.scoring.stats`) against answers computed by hand:
t-intervals, the percentile bootstrap, exact sign-flip p-values, paired comparisons, the
prompt bootstrap of HV, and the rule that picks the interval (t up to 20 values)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from sipo_bench.scoring.stats import (bootstrap_ci, bootstrap_interval, comparisons, holm, hv_stats, igd_plus_per_seed,
                                      interval_label, mean_interval, noise_split, paired_comparison, prompt_bootstrap_hv,
                                      sign_flip_p, t_interval)

# Student-t quantiles t_{0.975, df} from a table (not from scipy, which the code uses).
T975 = {2: 4.302652729749464, 3: 3.182446305284263, 9: 2.262157162740992, 19: 2.093024054408263}


# --- t-interval -----------------------------------------------------------------------------------


def test_t_interval_by_hand():
    # [1, 2, 3, 4]: mean 2.5, sd = sqrt(5/3), half = t_{.975,3} * sd / 2
    iv = t_interval([1, 2, 3, 4])
    half = T975[3] * math.sqrt(5 / 3) / 2
    assert iv == {"method": "t", "level": 0.95, "coverage": 0.95, "lo": pytest.approx(2.5 - half, abs=1e-12),
                  "hi": pytest.approx(2.5 + half, abs=1e-12), "n": 4, "df": 3}
    # [0, 1, 5]: mean 2, sd = sqrt(7), half = 4.3027 * sqrt(7) / sqrt(3) = 6.5724: wider than the range
    iv = t_interval([0, 1, 5])
    assert (iv["lo"], iv["hi"]) == (pytest.approx(2 - T975[2] * math.sqrt(7 / 3)), pytest.approx(2 + T975[2] * math.sqrt(7 / 3)))
    assert iv["lo"] < 0 and iv["hi"] > 5


def test_t_interval_other_level_and_degenerate_cases():
    # level 0.5 with 2 values: t_{0.75, 1} = 1 (Cauchy quartile); [1, 3]: sd sqrt(2), half = sqrt(2)/sqrt(2) = 1
    iv = t_interval([1, 3], level=0.5)
    assert (iv["lo"], iv["hi"]) == (pytest.approx(1.0), pytest.approx(3.0)) and iv["level"] == 0.5
    assert t_interval([0.3]) is None and t_interval([]) is None
    iv = t_interval([0.2, 0.2, 0.2])
    assert (iv["lo"], iv["hi"]) == (pytest.approx(0.2), pytest.approx(0.2))
    with pytest.raises(ValueError, match=r"level: expected a number in \(0, 1\), got 95"):
        t_interval([1, 2], level=95)


def test_rule_t_up_to_twenty_values_bootstrap_from_twenty_one():
    rng = np.random.default_rng(1)
    ten, twenty, twenty_one = rng.normal(size=10), rng.normal(size=20), rng.normal(size=21)
    iv10 = mean_interval(ten)
    assert iv10["method"] == "t" and iv10["df"] == 9 and iv10["coverage"] == 0.95
    assert iv10["hi"] - ten.mean() == pytest.approx(T975[9] * np.std(ten, ddof=1) / math.sqrt(10))
    iv20 = mean_interval(twenty)
    assert iv20["method"] == "t" and iv20["hi"] - twenty.mean() == pytest.approx(T975[19] * np.std(twenty, ddof=1) / math.sqrt(20))
    iv21 = mean_interval(twenty_one)
    assert iv21["method"] == "percentile bootstrap" and iv21["n"] == 21 and iv21["resamples"] == 10000
    assert (iv21["lo"], iv21["hi"]) == bootstrap_ci(twenty_one)
    assert mean_interval(ten, paired=True)["method"] == "paired t"
    assert mean_interval([1.0]) is None
    assert interval_label(iv10) == "t 95% CI" and interval_label(iv21) == "percentile bootstrap 95% CI"
    assert interval_label(mean_interval(ten, paired=True)) == "paired t 95% CI"
    assert interval_label({"method": "t", "level": 0.9}) == "t 90% CI" and interval_label(None) == "no interval"


def test_t_interval_covers_where_the_percentile_bootstrap_does_not():
    """The reason for the rule: at 10 values from a normal distribution the 95% t-interval covers
    the mean about 95% of the time and the percentile bootstrap clearly less (about 89%); over
    1000 fixed-seed samples (t covers 932, the bootstrap 891) the gap is far beyond sampling noise."""
    rng = np.random.default_rng(0)
    t_hits = boot_hits = 0
    trials = 1000
    for _ in range(trials):
        v = rng.normal(size=10)
        t, b = t_interval(v), bootstrap_interval(v, n_resamples=2000)
        t_hits += t["lo"] <= 0.0 <= t["hi"]
        boot_hits += b["lo"] <= 0.0 <= b["hi"]
    assert t_hits / trials >= 0.92 and boot_hits / trials <= 0.91 and t_hits - boot_hits >= 25


def test_three_seeds_are_never_a_bootstrap_interval():
    """With 3 values the 95% percentile bootstrap is exactly [min, max]; the rule gives a t-interval."""
    v = [0.019, 0.048, 0.088]
    assert bootstrap_ci(v) == (0.019, 0.088)  # the range: what a "95% bootstrap CI" on 3 seeds would show
    iv = mean_interval(v)
    assert iv["method"] == "t" and iv["lo"] < min(v) and iv["hi"] > max(v)
    hv = hv_stats([{"seed": s, "scores": [x, 1.0]} for s, x in enumerate(v)], {s: [0.0, 0.0] for s in range(3)},
                  [True, True], [0, 1, 2])
    assert hv["interval"]["method"] == "t" and "ci95" not in hv


# --- sign-flip test -------------------------------------------------------------------------------


def test_sign_flip_exact_by_hand():
    # |±1 ±2 ±3| over the 8 patterns: 6 4 2 0 0 2 4 6 -> |sum| >= 6 twice: p = 2/8
    assert sign_flip_p([1, 2, 3]) == {"p": 0.25, "method": "exact", "patterns": 8, "n": 3}
    # the SIPO - MOD per seed: |±.043 ±.012 ±.017| = .072 .048 .038 .014 (each twice); >= .048: 4/8
    assert sign_flip_p([0.043, -0.012, 0.017])["p"] == 0.5
    # five equal positive differences: only all + and all - reach 5: 2/32
    assert sign_flip_p([1, 1, 1, 1, 1])["p"] == 0.0625
    assert sign_flip_p([0.0, 0.0])["p"] == 1.0
    assert sign_flip_p([2.0])["p"] == 1.0  # one pair can never be significant
    assert sign_flip_p([]) is None


def test_sign_flip_matches_brute_force_up_to_16_and_monte_carlo_beyond():
    rng = np.random.default_rng(0)
    d = rng.normal(0.3, 1.0, size=10)
    brute = np.mean([abs(sum(s * x for s, x in zip(signs, d))) >= abs(d.sum()) - 1e-12
                     for signs in itertools.product((-1, 1), repeat=d.size)])
    assert sign_flip_p(d)["p"] == pytest.approx(brute, abs=1e-15)
    assert sign_flip_p(np.ones(16))["patterns"] == 2 ** 16 and sign_flip_p(np.ones(16))["p"] == 2 / 2 ** 16
    mc = sign_flip_p(np.ones(17), draws=2000)
    assert mc["method"] == "monte carlo" and mc["draws"] == 2000 and "patterns" not in mc
    assert mc["p"] == pytest.approx(1 / 2001, abs=2 / 2001)  # true p = 2/2^17 ~ 1.5e-5; never below 1/(1+draws)
    d = rng.normal(0.0, 1.0, size=20)
    exact_like = sign_flip_p(d, draws=200_000)["p"]
    assert sign_flip_p(d)["p"] == pytest.approx(exact_like, abs=0.01)
    assert sign_flip_p(d) == sign_flip_p(d)  # fixed seed: deterministic


# --- paired comparison ----------------------------------------------------------------------------


def test_paired_comparison_by_hand():
    # HV(SIPO) and HV(MOD) per seed whose differences are +0.043, -0.012, +0.017 (issue 11):
    # mean 0.016, sd = sqrt((.027^2 + .028^2 + .001^2) / 2) = 0.0275136, half = 4.3027 * sd / sqrt(3)
    sipo = {"0": 0.075, "1": 0.020, "2": 0.050, "3": 0.4}
    mod = {"0": 0.032, "1": 0.032, "2": 0.033}
    c = paired_comparison(sipo, mod)
    sd = math.sqrt((0.027 ** 2 + 0.028 ** 2 + 0.001 ** 2) / 2)
    half = T975[2] * sd / math.sqrt(3)
    assert c["n"] == 3 and c["seeds"] == ["0", "1", "2"]  # seed 3 is not shared
    assert c["mean"] == pytest.approx(0.016) and c["sd"] == pytest.approx(sd)
    assert c["per_seed"] == {"0": pytest.approx(0.043), "1": pytest.approx(-0.012), "2": pytest.approx(0.017)}
    assert c["interval"]["method"] == "paired t"
    assert (c["interval"]["lo"], c["interval"]["hi"]) == (pytest.approx(0.016 - half), pytest.approx(0.016 + half))
    assert (c["wins"], c["ties"], c["losses"]) == (2, 0, 1)
    assert c["p_value"] == {"p": 0.5, "method": "exact", "patterns": 8, "n": 3}
    assert paired_comparison({"0": 1.0}, {"1": 1.0}) is None


def test_paired_comparison_ties_and_bootstrap_from_twenty_one_pairs():
    a = {str(s): 0.1 * s for s in range(12)}
    b = {str(s): 0.1 * s - (0.01 if s % 3 else 0.0) for s in range(12)}
    c = paired_comparison(a, b)
    assert (c["wins"], c["ties"], c["losses"]) == (8, 4, 0)
    assert c["interval"]["method"] == "paired t" and c["n"] == 12
    big_a = {str(s): 0.1 * s for s in range(21)}
    big_b = {str(s): 0.1 * s - 0.01 * (s % 4) for s in range(21)}
    big = paired_comparison(big_a, big_b)
    assert big["interval"]["method"] == "percentile bootstrap" and big["n"] == 21
    assert (big["interval"]["lo"], big["interval"]["hi"]) == bootstrap_ci([big_a[k] - big_b[k] for k in big_a])
    d = [a[k] - b[k] for k in a]
    assert (c["interval"]["lo"], c["interval"]["hi"]) == (t_interval(d)["lo"], t_interval(d)["hi"])
    # |sum| of 8 equal 0.01's is reached by the all-+ and all-- patterns of the 8 non-zero
    # differences, and the 4 zeros flip freely: p = 2 * 2^4 / 2^12
    assert c["p_value"]["p"] == pytest.approx(2 * 2 ** 4 / 2 ** 12)


def test_comparisons_set_declared_pairs_for_both_references():
    hv = lambda vals: {"mean": float(np.mean(vals)), "per_seed": {str(i): v for i, v in enumerate(vals)}}
    methods = {"sipo": {"status": "ok", "hypervolume": hv([3.0, 2.0]), "hypervolume_floor": hv([1.0, 1.0])},
               "mod": {"status": "ok", "hypervolume": hv([1.0, 1.0]), "hypervolume_floor": hv([1.0, 2.0])},
               "bad": {"status": "failed", "hypervolume": None, "hypervolume_floor": None}}
    comparisons(methods, [("sipo", "mod"), ("bad", "mod"), ("mod", "mod")])
    c = methods["sipo"]["comparisons"]["mod"]
    assert c["hypervolume"]["mean"] == 1.5 and c["hypervolume_floor"]["mean"] == -0.5
    assert (c["hypervolume_floor"]["ties"], c["hypervolume_floor"]["losses"]) == (1, 1)
    assert methods["bad"]["comparisons"]["mod"] == {"hypervolume": None, "hypervolume_floor": None}
    assert "comparisons" not in methods["mod"]


def test_holm_by_hand():
    # sorted .005 .01 .03 .04 -> 4*.005=.02, 3*.01=.03, 2*.03=.06, max(1*.04, .06)=.06; input order kept
    assert holm([0.01, 0.04, 0.03, 0.005]) == [pytest.approx(0.03), pytest.approx(0.06), pytest.approx(0.06),
                                               pytest.approx(0.02)]
    assert holm([0.3]) == [0.3] and holm([]) == [] and holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1
    # the main table's "vs mod, HV vs ref" column (issue 22): SIPO's p 0.0059 is 4th smallest of 6: 3 * 0.0059
    col = [0.001953125, 0.001953125, 0.33984375, 0.01171875, 0.00390625, 0.005859375]
    assert holm(col)[-1] == pytest.approx(3 * 0.005859375) and holm(col)[2] == pytest.approx(0.33984375)
    with pytest.raises(ValueError, match=r"p_values: expected numbers in \[0, 1\], got \[1.5\]"):
        holm([1.5])


def test_comparisons_adjust_p_within_each_baseline_and_indicator():
    hv = lambda vals: {"mean": float(np.mean(vals)), "per_seed": {str(i): v for i, v in enumerate(vals)}}
    base = [0.0] * 5
    methods = {"mod": {"status": "ok", "hypervolume": hv(base), "hypervolume_floor": hv(base)},
               "soups": {"status": "ok", "hypervolume": hv(base), "hypervolume_floor": hv(base)},
               # +1 on all 5 seeds: exact sign-flip p = 2/32; four +1 and one -1: |sum| >= 3 in 12 of 32 patterns
               "a": {"status": "ok", "hypervolume": hv([1.0] * 5), "hypervolume_floor": hv([1.0] * 5)},
               "b": {"status": "ok", "hypervolume": hv([1, 1, 1, 1, -1]), "hypervolume_floor": hv([1.0] * 5)}}
    comparisons(methods, [("a", "mod"), ("b", "mod"), ("a", "soups")])
    a, b = methods["a"]["comparisons"], methods["b"]["comparisons"]
    assert (a["mod"]["hypervolume"]["p_value"]["p"], b["mod"]["hypervolume"]["p_value"]["p"]) == (2 / 32, 12 / 32)
    assert a["mod"]["hypervolume"]["p_holm"] == {"p": pytest.approx(4 / 32), "method": "Holm",
                                                 "family": "hypervolume vs mod", "m": 2}
    assert b["mod"]["hypervolume"]["p_holm"]["p"] == pytest.approx(12 / 32)  # max(1 * 12/32, 4/32)
    assert a["mod"]["hypervolume_floor"]["p_holm"]["p"] == pytest.approx(4 / 32)  # both 2/32: 2 * 2/32
    assert a["soups"]["hypervolume"]["p_holm"] == {"p": pytest.approx(2 / 32), "method": "Holm",
                                                   "family": "hypervolume vs soups", "m": 1}  # alone in its family


def test_igd_plus_per_seed_by_hand_and_its_paired_comparison():
    pts = lambda seed, *xs: [{"w": [1.0, 0.0], "seed": seed, "scores": list(x)} for x in xs]
    methods = {
        # seed 0: the union front is {(1,0), (0,1), (.5,.5)}; seed 1: {(1,1)}
        "a": {"status": "ok", "points": pts(0, (1, 0), (0, 1)) + pts(1, (1, 1))},
        "b": {"status": "ok", "points": pts(0, (0.5, 0.5)) + pts(1, (0, 0))},
        "c": {"status": "failed", "points": pts(0, (2, 2))},  # failed: not in the union front, no IGD+
    }
    igd_plus_per_seed(methods, [True, True])
    # a, seed 0: d+ is 0 to (1,0) and (0,1); to (.5,.5) the nearer of (1,0)/(0,1) is short by .5 on one axis: 0.5 / 3
    # b, seed 0: (.5,.5) is short by .5 of (1,0) and of (0,1), 0 to itself: 1 / 3; seed 1: (0,0) to (1,1): sqrt 2
    a, b = methods["a"]["igd_plus_per_seed"], methods["b"]["igd_plus_per_seed"]
    assert a["per_seed"] == {"0": pytest.approx(1 / 6), "1": 0.0} and a["union_front_points"] == {"0": 3, "1": 1}
    assert b["per_seed"] == {"0": pytest.approx(1 / 3), "1": pytest.approx(math.sqrt(2))}
    assert b["mean"] == pytest.approx((1 / 3 + math.sqrt(2)) / 2) and b["interval"]["method"] == "t"
    assert methods["c"]["igd_plus_per_seed"] is None
    methods["a"]["hypervolume"] = methods["b"]["hypervolume"] = None
    comparisons(methods, [("a", "b")])
    c = methods["a"]["comparisons"]["b"]["igd_plus_per_seed"]
    assert c["per_seed"] == {"0": pytest.approx(-1 / 6), "1": pytest.approx(-math.sqrt(2))}
    assert (c["wins"], c["ties"], c["losses"]) == (2, 0, 0)  # lower IGD+ wins
    assert c["p_value"]["p"] == 0.5 and c["p_holm"]["family"] == "igd_plus_per_seed vs b"


# --- evaluation noise -------------------------------------------------------------------------------


def test_prompt_bootstrap_se_of_a_linear_hv_matches_the_closed_form():
    # One point whose second objective is 1 on every prompt, reference (0, 0): HV = mean(x).
    # The bootstrap SE of a mean is sqrt(sum (x - mean)^2) / n.
    rng = np.random.default_rng(7)
    x = rng.uniform(0.2, 1.0, size=40)
    scores = np.stack([x, np.ones_like(x)], axis=1)
    out = prompt_bootstrap_hv([scores], [0.0, 0.0], [True, True], replicates=20000, seed=1)
    expected = math.sqrt(((x - x.mean()) ** 2).sum()) / x.size
    assert out["se"] == pytest.approx(expected, rel=0.03)
    assert out["hv"] == pytest.approx(x.mean()) and out["n_prompts"] == 40 and out["replicates"] == 20000


def test_prompt_bootstrap_resamples_points_and_reference_coherently():
    # Every point and the per-prompt reference move by the same prompts. With the reference's
    # per-prompt scores equal to the point's minus (0.1, 0.2), every replicate's HV is exactly
    # 0.1 * 0.2: SE 0. Resampling the point and the reference independently would not give 0.
    rng = np.random.default_rng(3)
    pts = rng.uniform(0.3, 0.9, size=(25, 2))
    out = prompt_bootstrap_hv([pts, pts - 0.05], pts - np.array([0.1, 0.2]), [True, True], replicates=300)
    assert out["se"] == pytest.approx(0.0, abs=1e-12) and out["hv"] == pytest.approx(0.02)
    # A constant test set has no evaluation noise either.
    flat = np.tile([0.6, 0.7], (10, 1))
    assert prompt_bootstrap_hv([flat], [0.5, 0.5], [True, True], replicates=50)["se"] == 0.0


def test_prompt_bootstrap_input_errors():
    with pytest.raises(ValueError, match=r"point_scores\[1\]: expected an \(3, 2\) array"):
        prompt_bootstrap_hv([np.zeros((3, 2)), np.zeros((4, 2))], [0, 0], [True, True])
    with pytest.raises(ValueError, match=r"ref: expected 2 values or an \(3, 2\) array"):
        prompt_bootstrap_hv([np.zeros((3, 2))], np.zeros((4, 2)), [True, True])
    with pytest.raises(ValueError, match="replicates: expected an integer >= 2"):
        prompt_bootstrap_hv([np.zeros((3, 2))], [0, 0], [True, True], replicates=1)


def test_noise_split_by_hand():
    # per-seed HV 1 and 3: seed var 2; evaluation SEs 0.5 and 0.5: eval var 0.25, ratio 0.5/sqrt(2) = 0.354 > 1/4
    out = noise_split({"0": 1.0, "1": 3.0}, {"0": 0.5, "1": 0.5})
    assert out["seed_var"] == pytest.approx(2.0) and out["eval_var"] == pytest.approx(0.25)
    assert out["train_var"] == pytest.approx(1.75) and out["ratio"] == pytest.approx(0.5 / math.sqrt(2))
    assert out["advice"] == "add test prompts"
    out = noise_split({"0": 1.0, "1": 3.0}, {"0": 0.1, "1": 0.3})  # rms SE sqrt(0.05) = 0.224; ratio 0.158
    assert out["eval_se"] == pytest.approx(math.sqrt(0.05)) and out["advice"] == "add seeds"
    assert noise_split({"0": 1.0}, {"0": 0.2})["seed_sd"] is None
    assert noise_split({"0": 1.0}, {}) is None


def test_hv_stats_carries_eval_noise():
    pts = [{"seed": 0, "scores": [1.0, 1.0]}, {"seed": 1, "scores": [3.0, 1.0]}]
    hv = hv_stats(pts, {0: [0.0, 0.0], 1: [0.0, 0.0]}, [True, True], [0, 1], eval_se={0: 0.5, 1: 0.5})
    assert hv["per_seed"] == {"0": 1.0, "1": 3.0} and hv["eval_se"] == {"0": 0.5, "1": 0.5}
    assert hv["noise"]["advice"] == "add test prompts"
    assert hv_stats(pts, {0: None, 1: None}, [True, True], [0, 1]) is None


# --- percentile bootstrap ------------------------------------------------------------------------


def enumerate_bootstrap(values, level):
    """Oracle: all n^n ordered resamples, percentile interval by the definition in the docstring."""
    n = len(values)
    means = sorted(sum(c) / n for c in itertools.product(values, repeat=n))
    a = (1 - level) / 2 * len(means)
    lo = next(m for i, m in enumerate(means) if i + 1 >= a - 1e-9)
    hi = next(m for i, m in enumerate(reversed(means)) if i + 1 >= a - 1e-9)
    return lo, hi


def test_bootstrap_needs_two_values():
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([0.3]) is None


def test_bootstrap_constant_values_degenerate_interval():
    assert bootstrap_ci([0.41, 0.41, 0.41]) == (0.41, 0.41)
    assert bootstrap_ci([0.1] * 12) == (0.1, 0.1)  # sampled path too (12 values)


def test_bootstrap_two_values_by_hand():
    # Resample means of {1, 3}: 1 (p 1/4), 2 (p 1/2), 3 (p 1/4). Any level whose tail
    # a = (1 - level)/2 <= 1/4 reaches the extremes -> (1, 3); a tail above 1/4 lands on 2.
    assert bootstrap_ci([1, 3]) == (1.0, 3.0)
    assert bootstrap_ci([3, 1], level=0.5) == (1.0, 3.0)
    assert bootstrap_ci([1, 3], level=0.4) == (2.0, 2.0)


def test_bootstrap_three_values_by_hand():
    # {0, 1, 5}: 27 resamples; sorted means with counts:
    #   0 (1) 1/3 (3) 2/3 (3) 1 (1) 5/3 (3) 2 (6) 7/3 (3) 10/3 (3) 11/3 (3) 5 (1).
    # level 0.5 -> tail 6.75 of 27: from below cum 1,4,7 -> 2/3; from above 1,4,7 -> 10/3.
    # level 0.95 -> tail 0.675 < 1: the extremes (0, 5); with 3 seeds a 95% interval is [min, max].
    lo, hi = bootstrap_ci([0, 1, 5], level=0.5)
    assert (lo, hi) == (pytest.approx(2 / 3), pytest.approx(10 / 3))
    assert bootstrap_ci([0, 1, 5]) == (0.0, 5.0)


@pytest.mark.parametrize("values, level", [([0.2, 0.5, 0.9, 1.7], 0.9), ([3.0, -1.0, 2.5, 0.0, 7.0], 0.8),
                                           ([0.1, 0.4, 0.4, 0.8], 0.95)])
def test_bootstrap_exact_matches_full_enumeration(values, level):
    lo, hi = bootstrap_ci(values, level)
    elo, ehi = enumerate_bootstrap(values, level)
    assert lo == pytest.approx(elo, abs=1e-12) and hi == pytest.approx(ehi, abs=1e-12)
    nlo, nhi = bootstrap_ci([-v for v in values], level)
    assert (nlo, nhi) == (pytest.approx(-hi, abs=1e-12), pytest.approx(-lo, abs=1e-12))


def test_bootstrap_sampled_converges_to_exact():
    rng = np.random.default_rng(3)
    values = rng.normal(size=9).tolist()  # C(17, 9) = 24310 distinct resamples
    exact = bootstrap_ci(values, n_resamples=10**6)  # enumerated
    sampled = bootstrap_ci(values, n_resamples=20000)  # drawn (20000 < 24310)
    assert exact != sampled
    spread = max(values) - min(values)
    assert sampled == (pytest.approx(exact[0], abs=0.02 * spread), pytest.approx(exact[1], abs=0.02 * spread))
    assert bootstrap_ci(values, n_resamples=20000) == sampled  # fixed seed: deterministic


def test_bootstrap_interval_within_range_and_contains_mean():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 10, 30):
        v = rng.uniform(-2, 2, size=n)
        lo, hi = bootstrap_ci(v)
        assert v.min() <= lo <= v.mean() <= hi <= v.max()


def test_bootstrap_bad_level():
    with pytest.raises(ValueError, match="level: expected a number in"):
        bootstrap_ci([1, 2], level=95)
    with pytest.raises(ValueError, match="values: expected finite numbers"):
        bootstrap_ci([1, float("nan")])


def test_bootstrap_interval_names_itself():
    assert bootstrap_interval([1, 3]) == {"method": "percentile bootstrap", "level": 0.95, "coverage": 0.95, "lo": 1.0, "hi": 3.0,
                                          "n": 2, "resamples": "exact"}
