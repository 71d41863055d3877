"""SIPO's pure decision rules: which pairs feed it, combine, filter, per-prompt selection, the
pairs of its compute-matched controls, and the oracle diagnostics of those decisions. No torch: arrays in, arrays out.

Reward tables are (n, s) arrays: n candidates, s filter scorers (implicit rewards of the
per-objective DPO models, optionally also of soups at the grid weights). Higher is better for
every implicit reward.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from sipo_bench.api import as_response, response_body


def is_conflicting(labels: dict, objectives: Sequence[str]) -> bool:
    """A pair is conflicting when every objective labels it and not all labels agree."""
    vals = [labels.get(o) for o in objectives]
    return all(v is not None for v in vals) and len(set(vals)) > 1


def keep_rewrite(original: np.ndarray, rewrite: np.ndarray) -> np.ndarray:
    """Combine rule: keep the rewrite unless it scores <= the original on EVERY reward.

    original, rewrite: (n, s). Returns a boolean (n,) mask (True = use the rewrite).
    """
    original, rewrite = np.atleast_2d(original), np.atleast_2d(rewrite)
    return ~np.all(rewrite <= original, axis=1)


def dominates_both(candidates: np.ndarray, chosen: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """Filter rule: candidate strictly better than BOTH originals on EVERY reward.

    candidates: (n, s); chosen, rejected: (n, s) (the pair of each candidate's prompt).
    """
    candidates = np.atleast_2d(candidates)
    return np.all(candidates > np.atleast_2d(chosen), axis=1) & np.all(candidates > np.atleast_2d(rejected), axis=1)


def best_per_prompt(prompt_ids: Sequence, rewards: np.ndarray, mask: np.ndarray) -> dict:
    """Among surviving candidates (mask), the index with the highest summed reward per prompt.

    Prompts with no survivor are absent. Ties go to the first candidate.
    """
    best: dict = {}
    sums = np.atleast_2d(rewards).sum(axis=1)
    for i, (pid, ok) in enumerate(zip(prompt_ids, mask)):
        if ok and (pid not in best or sums[i] > sums[best[pid]]):
            best[pid] = i
    return best


def precision_recall(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """Precision and recall of a boolean selection against the oracle's truth."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    tp = int(np.sum(predicted & truth))
    n_pred, n_true = int(predicted.sum()), int(truth.sum())
    return {"selected": n_pred, "truly_dominating": n_true, "true_positives": tp,
            "precision": tp / n_pred if n_pred else None, "recall": tp / n_true if n_true else None}


def true_dominance(candidate: np.ndarray, chosen: np.ndarray, rejected: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Oracle truth: candidate strictly better than both originals on every objective score
    (directions respected)."""
    sign = np.where(np.asarray(maximize, bool), 1.0, -1.0)
    return dominates_both(np.atleast_2d(candidate) * sign, np.atleast_2d(chosen) * sign, np.atleast_2d(rejected) * sign)


#: a rewrite whose words are at least this similar to its candidate's (difflib ratio) is a near
#: duplicate: a rewriter that echoes its input with a word changed
NEAR_DUPLICATE = 0.9


def word_similarity(a: str, b: str) -> float:
    """difflib's similarity ratio of the two texts' word sequences: 1.0 for the same words in the
    same order, 0.0 for no word in common."""
    import difflib

    wa, wb = a.split(), b.split()
    if not wa and not wb:
        return 1.0
    return difflib.SequenceMatcher(None, wa, wb, autojunk=False).ratio()


def original_control_pairs(pool: list[dict], n: int, rng: np.random.Generator) -> list[dict]:
    """Control (a): `n` of the objective's own training pairs, drawn without replacement (all of
    them when the pool is smaller)."""
    idx = rng.permutation(len(pool))[: min(n, len(pool))]
    return [pool[i] for i in sorted(idx)]


def self_control_pairs(rows: list[dict], rewards: np.ndarray, n: int, rng: np.random.Generator,
                       format_prompt) -> list[dict]:
    """Control (b): pairs of the policy's own candidates, without review, rewrite or Pareto
    filter, labelled as SIPO ranks its survivors (the summed filter reward): per prompt, taken in
    a seeded random order, the best candidate is chosen over each of the two lowest-scored
    distinct ones (two pairs a prompt, as SIPO's y* against both originals), until `n` pairs.
    Ties in the summed reward never make a pair; equal texts are one candidate."""
    sums = np.asarray(rewards, float).reshape(len(rows), -1).sum(axis=1)
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_prompt[int(r["pid"])].append(i)
    pairs: list[dict] = []
    for pid in rng.permutation(sorted(by_prompt)):
        seen: dict[str, int] = {}
        for i in by_prompt[int(pid)]:  # equal texts: keep the first (their rewards are equal too)
            seen.setdefault(response_body(rows[i]["candidate"]), i)
        order = sorted(seen.values(), key=lambda i: (-sums[i], i))  # deterministic tie-break: row order
        best = order[0]
        for worse in order[::-1][:2]:
            if len(pairs) == n or not sums[best] > sums[worse]:
                break
            pairs.append({"prompt": format_prompt(rows[best]["prompt"]), "chosen": as_response(rows[best]["candidate"]),
                          "rejected": as_response(rows[worse]["candidate"])})
        if len(pairs) == n:
            break
    return pairs
