"""The synthetic tasks' data: the seed's prompt split, preference pairs drawn from the behaviour
policy and labelled by the oracle, and oracle score summaries of a set of responses. Torch-free;
shared by the task (:mod:`.task`) and the SFT model it trains (:mod:`.model`)."""

from __future__ import annotations

import random
from typing import Sequence

from . import grammar as g


def split_prompts(seed: int, n_test: int, n_val: int) -> tuple[list[str], list[str], list[str]]:
    """(train, val, test) prompts: test, then val, drawn round-robin over the topics in a
    shuffled order, so every topic is held out about equally; the rest is train. Disjoint by
    construction."""
    rng = random.Random(f"synthetic-split-{seed}")
    by_topic: dict[int, list[str]] = {}
    for p, t in g.all_prompts():
        by_topic.setdefault(t, []).append(p)
    for ps in by_topic.values():
        rng.shuffle(ps)
    order = list(by_topic)
    rng.shuffle(order)
    held: list[str] = []
    while len(held) < n_test + n_val:
        held.append(by_topic[order[len(held) % len(order)]].pop())
    test, val = held[:n_test], held[n_test:]
    train = [p for t in sorted(by_topic) for p in sorted(by_topic[t])]
    return train, val, test


def build_pairs(rng: random.Random, prompts: Sequence[str], objectives: Sequence[str], behaviour: g.Behaviour,
                n: int, fraction: float, max_tries: int | None = None) -> tuple[list[dict], dict]:
    """Pairs of behaviour-policy responses labelled by the oracle, mixed the way the paper
    mixes them: pools of conflicting pairs (every objective labels, labels differ) and of
    agreeing pairs (every objective labels the same response), `n` of each at most;
    total = min(pool sizes); int(total * fraction) conflicting + the rest agreeing, shuffled.
    Pairs with a tie on any objective go to neither pool."""
    conflicting: list[dict] = []
    agreeing: list[dict] = []
    ties = tries = 0
    max_tries = max_tries if max_tries is not None else 400 * n
    topics = [g.topic_of(p) for p in prompts]
    while (len(conflicting) < n or len(agreeing) < n) and tries < max_tries:
        tries += 1
        k = rng.randrange(len(prompts))
        p, t = prompts[k], topics[k]
        r = [g.render(g.sample_response(rng, t, behaviour)) for _ in range(2)]
        s = [g.objective_values(g.features(t, x)) for x in r]
        if any(s[0][o] == s[1][o] for o in objectives):
            ties += 1
            continue
        labels = {o: 0 if s[0][o] > s[1][o] else 1 for o in objectives}
        conflict = len(set(labels.values())) > 1
        pool = conflicting if conflict else agreeing
        if len(pool) < n:
            pool.append({"prompt": p, "responses": r, "labels": labels, "conflict": conflict})
    total = min(len(conflicting), len(agreeing))
    n_conf = int(total * fraction)
    rows = conflicting[:n_conf] + agreeing[:total - n_conf]
    rng.shuffle(rows)
    return rows, {"candidates": tries, "ties": ties, "conflicting_pool": len(conflicting),
                  "agreeing_pool": len(agreeing), "total": total}


def all_high(values: dict[str, float], objectives: Sequence[str], threshold: float) -> bool:
    return all(values[o] >= threshold for o in objectives)


def score_summary(prompts: Sequence[str], responses: Sequence[str], objectives: Sequence[str],
                  threshold: float) -> dict:
    """Mean oracle score per objective, all-high rate and parse rate of aligned lists."""
    n = len(responses)
    if n == 0:
        return {"n": 0}
    vals = [g.scores(p, r) for p, r in zip(prompts, responses)]
    return {"n": n,
            "mean": {o: round(sum(v[o] for v in vals) / n, 4) for o in objectives},
            "all_high_rate": round(sum(all_high(v, objectives, threshold) for v in vals) / n, 4),
            "parse_rate": round(sum(g.parses(r) for r in responses) / n, 4)}
