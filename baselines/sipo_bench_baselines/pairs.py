"""Preference pairs of the baseline methods from a task's data stage (torch-free): rows of a
split, pairs oriented by one objective's label (DPO, MODPO, reward models), and pairs with one
orientation sign per objective (DPO-LW). See :mod:`sipo_bench_baselines.stages` for the rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from sipo_bench.api import StageContext, read_jsonl


def task_of(ctx: StageContext):
    """The task a baseline stage trains on (its config's `task` and `task_options`)."""
    return ctx.runtime.task(ctx.config["task"], ctx.config["task_options"])


def split_rows(data_dir: Path, split: str) -> list[dict]:
    """The rows of a data stage's `<split>.jsonl` (none if the split is absent)."""
    p = Path(data_dir) / f"{split}.jsonl"
    return read_jsonl(p) if p.is_file() else []


def _label(row: Mapping[str, Any], objective: str) -> int | None:
    labels = row.get("labels") or {}
    if objective not in labels:
        raise KeyError(f"pair has no label for objective {objective!r} (labels: {sorted(labels)})")
    v = labels[objective]
    if v is None:
        return None
    if v not in (0, 1):
        raise ValueError(f"label of objective {objective!r} must be 0, 1 or null, got {v!r}")
    return int(v)


def dpo_pairs(rows: Sequence[Mapping[str, Any]], objective: str, format_prompt) -> list[dict]:
    """Pairs oriented by `objective`'s label; ties dropped."""
    out = []
    for r in rows:
        lab = _label(r, objective)
        if lab is None:
            continue
        out.append({"prompt": format_prompt(r["prompt"]), "chosen": r["responses"][lab],
                    "rejected": r["responses"][1 - lab]})
    return out


def lw_pairs(rows: Sequence[Mapping[str, Any]], objectives: Sequence[str], weights: Sequence[float],
             format_prompt) -> list[dict]:
    """Pairs in stored order with one orientation sign per objective (DPO-LW)."""
    out = []
    for r in rows:
        signs = [0.0 if (lab := _label(r, o)) is None else (1.0 if lab == 0 else -1.0) for o in objectives]
        if all(s == 0.0 or w == 0.0 for s, w in zip(signs, weights)):
            continue
        out.append({"prompt": format_prompt(r["prompt"]), "chosen": r["responses"][0], "rejected": r["responses"][1],
                    "signs": signs})
    return out
