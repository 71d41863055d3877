"""SIPO's combine and filter rules on hand-made reward tables."""

import numpy as np

from sipo_bench_plugins.sipo.selection import (best_per_prompt, dominates_both, is_conflicting, keep_rewrite,
                                               precision_recall, true_dominance)


def test_conflicting():
    objs = ["help", "harm"]
    assert is_conflicting({"help": 0, "harm": 1}, objs)
    assert not is_conflicting({"help": 1, "harm": 1}, objs)
    assert not is_conflicting({"help": 0, "harm": None}, objs)  # a tie labels nothing
    assert is_conflicting({"a": 0, "b": 0, "c": 1}, ["a", "b", "c"])


def test_combine_rule():
    original = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    rewrite = np.array([
        [2.0, 2.0],  # better on all -> keep rewrite
        [0.5, 1.5],  # better on one -> keep rewrite
        [1.0, 1.0],  # equal on all -> <= on every one -> keep original
        [1.0, 0.5],  # equal and worse -> keep original
        [0.0, 0.0],  # worse on all -> keep original
    ])
    assert keep_rewrite(original, rewrite).tolist() == [True, True, False, False, False]


def test_filter_rule():
    chosen = np.array([[1.0, 0.0]] * 5)
    rejected = np.array([[0.0, 1.0]] * 5)
    cands = np.array([
        [2.0, 2.0],  # all better -> kept
        [1.0, 2.0],  # ties chosen on objective 1 -> not strictly better -> dropped
        [1.5, 1.0],  # ties rejected on objective 2 -> dropped
        [0.5, 0.5],  # better than neither on everything -> dropped
        [-1.0, -1.0],  # none better
    ])
    assert dominates_both(cands, chosen, rejected).tolist() == [True, False, False, False, False]


def test_best_per_prompt_and_dropped_prompts():
    rewards = np.array([[1.0, 1.0], [3.0, 0.5], [2.0, 2.0], [5.0, 5.0]])
    mask = np.array([True, True, True, False])
    best = best_per_prompt(["p", "p", "q", "r"], rewards, mask)
    assert best == {"p": 1, "q": 2}  # p: sum 3.5 beats 2.0; r has no survivor: dropped


def test_oracle_diagnostics():
    pred = np.array([True, True, False, False])
    truth = np.array([True, False, True, False])
    pr = precision_recall(pred, truth)
    assert pr["precision"] == 0.5 and pr["recall"] == 0.5 and pr["true_positives"] == 1
    assert precision_recall(np.zeros(2, bool), np.zeros(2, bool))["precision"] is None
    # minimised second objective: lower is better
    cand = np.array([[0.9, 0.1]])
    assert true_dominance(cand, np.array([[0.5, 0.5]]), np.array([[0.2, 0.3]]), [True, False]).tolist() == [True]
    assert true_dominance(cand, np.array([[0.5, 0.05]]), np.array([[0.2, 0.3]]), [True, False]).tolist() == [False]


def test_word_similarity_tells_an_echo_from_a_rewrite():
    from sipo_bench_plugins.sipo.selection import NEAR_DUPLICATE, word_similarity

    original = "Mix flour, water and salt, knead for ten minutes, let it rise for an hour and bake it at 220 degrees."
    assert word_similarity(original, original) == 1.0 and word_similarity("", "") == 1.0
    assert word_similarity(original, original.replace("ten", "twelve")) >= NEAR_DUPLICATE  # one word changed
    assert word_similarity(original, "Buy bread at a bakery instead; it is quicker.") < 0.2
    assert word_similarity(original, "") == 0.0


# --- compute-matched controls: the pairs they train on -------------------------------------


def test_original_control_pairs_draw_without_replacement_and_are_seeded():
    from sipo_bench_plugins.sipo.selection import original_control_pairs

    pool = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(10)]
    a = original_control_pairs(pool, 4, np.random.default_rng(3))
    assert len(a) == 4 and len({p["prompt"] for p in a}) == 4 and all(p in pool for p in a)
    assert a == original_control_pairs(pool, 4, np.random.default_rng(3))  # same seed, same draw
    assert original_control_pairs(pool, 25, np.random.default_rng(0)) == pool  # short pool: all of it
    assert original_control_pairs(pool, 0, np.random.default_rng(0)) == []


def _candidate_rows():
    # prompt 0: four distinct candidates; prompt 1: two texts, one repeated; prompt 2: a tie
    texts = {0: ["a", "b", "c", "d"], 1: ["x", "x", "y", "x"], 2: ["t", "u", "t", "u"]}
    return [{"pid": pid, "prompt": f"q{pid}", "candidate": t} for pid, ts in texts.items() for t in ts]


def test_self_control_pairs_choose_the_best_candidate_over_the_two_lowest():
    from sipo_bench_plugins.sipo.selection import self_control_pairs

    rows = _candidate_rows()
    rewards = np.array([[3, 0], [1, 0], [2, 0], [0, 0],   # prompt 0: a > c > b > d
                        [1, 1], [1, 1], [0, 0], [1, 1],   # prompt 1: x > y (x counted once)
                        [1, 0], [0, 1], [1, 0], [0, 1]], float)  # prompt 2: t and u tie
    pairs = self_control_pairs(rows, rewards, 100, np.random.default_rng(0), lambda p: f"<{p}>")
    by = {}
    for p in pairs:
        by.setdefault(p["prompt"], []).append((p["chosen"].strip(), p["rejected"].strip()))  # response convention: " text"
    assert sorted(by["<q0>"]) == [("a", "b"), ("a", "d")]  # the best over the two lowest
    assert by["<q1>"] == [("x", "y")]                     # one distinct loser: one pair
    assert "<q2>" not in by                               # a tie makes no pair
    assert len(pairs) == 3
    # n caps the count; the seeded order decides which prompts, the same for the same seed
    three = self_control_pairs(rows, rewards, 2, np.random.default_rng(5), str)
    assert len(three) == 2 and three == self_control_pairs(rows, rewards, 2, np.random.default_rng(5), str)
    assert self_control_pairs(rows, rewards, 0, np.random.default_rng(0), str) == []
