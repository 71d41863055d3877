"""Sample responses of a run: what each policy says at each weight, with its scores.

`OUT/samples.json` holds, for the run's first seed, the first `samples_per_point` test prompts'
first response of every evaluated point (every method at every grid weight, and the base
policy), read from the finished `score` stages (their `scores.jsonl`), so it costs no model
call and cannot change a number:

    {"per_point": 4, "seed": 0, "objectives": ["helpful", "harmless"],
     "points": [{"method": "dpo-soups", "w": [0.5, 0.5], "seed": 0,
                 "samples": [{"prompt_index": 0, "prompt": ..., "response": ...,
                              "scores": {"helpful": ..., "harmless": ...}}, ...]}, ...]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLES = "samples.json"


def point_samples(score_dir: Path, objectives: list[str], n: int) -> list[dict]:
    """The first response of each of the first `n` prompts of a finished score stage."""
    out: list[dict] = []
    seen: set[Any] = set()
    p = Path(score_dir) / "scores.jsonl"
    if not p.is_file():
        return out
    with open(p) as f:
        for i, line in enumerate(f):
            if len(out) >= n:
                break
            if not line.strip():
                continue
            row = json.loads(line)
            idx = row.get("prompt_index", i)
            if idx in seen:
                continue
            seen.add(idx)
            out.append({"prompt_index": idx, "prompt": row.get("prompt"), "response": row.get("response"),
                        "scores": {o: row.get(o) for o in objectives}})
    return out


def collect(plan: Any, outcomes: dict, cache: Any, n: int) -> dict | None:
    """The content of `samples.json` for a planned, executed run; None when `n` is 0."""
    if n <= 0:
        return None
    seeds = list(plan.config.seeds)
    seed = seeds[0]
    objectives = [o.name for o in plan.task.objectives()]
    points = []

    def ok(stage: Any) -> bool:
        o = outcomes.get(stage.key)
        return o is not None and o.status in ("done", "cached")

    evaluated = [plan.reference[seed]] + [p for m in plan.methods.values() for p in m.points if p.seed == seed]
    for p in evaluated:
        if ok(p.score):
            points.append({"method": p.label, "w": list(p.w) if p.w is not None else None, "seed": p.seed,
                           "samples": point_samples(cache.path(p.score), objectives, n)})
    return {"per_point": n, "seed": seed, "objectives": objectives, "points": points}


def encode(samples: dict) -> bytes:
    return (json.dumps(samples, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
