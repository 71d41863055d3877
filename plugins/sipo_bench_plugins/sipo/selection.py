"""SIPO's pure decision rules: which pairs feed it, combine, filter, per-prompt selection, and
the oracle diagnostics of those decisions. No torch: arrays in, arrays out.

Reward tables are (n, s) arrays: n candidates, s filter scorers (implicit rewards of the
per-objective DPO models, optionally also of soups at the grid weights). Higher is better for
every implicit reward.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


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
