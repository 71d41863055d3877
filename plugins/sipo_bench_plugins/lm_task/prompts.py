"""Prompt sets of an LM task: loading (a local JSONL/CSV/Parquet file, a saved dataset or a
`datasets` id + split, with a column map) and the topic-disjoint train/val/test split."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Mapping

from sipo_bench.api import ConfigError

#: the columns a prompt set can map: `prompt` (required), `topic` and `group` (optional: topics
#: are split within each group, so every split gets its share of e.g. harmful requests)
PROMPT_COLUMNS = ("prompt", "topic", "group")

#: prompt sets shipped with the plugin, by name: a config (and so every stage key) names the set,
#: not where this checkout lies, so the cache and the committed results' keys hold on any machine
PROMPT_SETS = {"smollm2-hh": Path(__file__).with_name("prompts") / "smollm2_hh.jsonl"}


def resolve_prompts(source: str) -> str:
    """The file of a shipped prompt set (:data:`PROMPT_SETS`), else `source` as given."""
    return str(PROMPT_SETS[source]) if source in PROMPT_SETS else source


def load_prompts(source: str, split: str, columns: Mapping[str, str], field: str) -> list[dict]:
    """Rows `{"prompt": str, "topic": str}` of `source`; `columns` maps our names to the
    source's (`{"prompt": "question"}`); without a topic column every prompt is its own topic.
    Empty prompts are dropped; duplicates (same text) kept once."""
    from sipo_bench_plugins.paper_tasks.common import load_split, require_columns

    ds = load_split(resolve_prompts(source), split, field=field)
    optional = {}
    for key in ("topic", "group"):
        col = columns.get(key)
        if col is None and key in ds.column_names:
            col = key
        if col is not None:
            optional[key] = col
    prompt_col = columns.get("prompt", "prompt")
    require_columns(ds, [prompt_col, *optional.values()], field, source)
    rows, seen = [], set()
    for ex in ds:
        text = ex[prompt_col]
        if not isinstance(text, str):
            raise ConfigError(f"`{field}`: expected text in column {prompt_col!r}, got {text!r}")
        text = text.strip()
        if not text or text in seen:
            continue
        seen.add(text)
        rows.append({"prompt": text, "topic": str(ex[optional["topic"]]) if "topic" in optional else f"prompt:{text}",
                     "group": str(ex[optional["group"]]) if "group" in optional else ""})
    return rows


def split_by_topic(rows: list[dict], val_fraction: float, test_fraction: float, seed: Any) -> dict[str, list[dict]]:
    """Train/val/test with no topic in two splits. Within each group (the `group` column; one
    group without it), topics (sorted, then shuffled with `seed`) go whole to test until it
    holds >= test_fraction of the group's prompts, then to val, the rest to train. Prompt order
    within a split is the file's. A topic in two groups is an error."""
    groups: dict[str, dict[str, int]] = {}
    group_of: dict[str, str] = {}
    for r in rows:
        g = r.get("group", "")
        if group_of.setdefault(r["topic"], g) != g:
            raise ConfigError(f"`task_options.prompts`: topic {r['topic']!r} is in groups {group_of[r['topic']]!r} "
                              f"and {g!r}; expected one group per topic")
        groups.setdefault(g, {}).setdefault(r["topic"], 0)
        groups[g][r["topic"]] += 1
    where: dict[str, str] = {}
    for g in sorted(groups):
        sizes = groups[g]
        topics = sorted(sizes)
        random.Random(f"lm-task-split-{seed}-{g}").shuffle(topics)
        n = sum(sizes.values())
        filled = {"test": 0, "val": 0}
        for t in topics:
            if filled["test"] < test_fraction * n:
                where[t] = "test"
            elif filled["val"] < val_fraction * n:
                where[t] = "val"
            else:
                where[t] = "train"
            if where[t] in filled:
                filled[where[t]] += sizes[t]
    out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for r in rows:
        out[where[r["topic"]]].append(r)
    return out


def by_topic_round_robin(rows: list[dict]) -> list[dict]:
    """`rows` reordered so that any first N of them spread over every topic: one prompt of each
    topic in turn (topics in order of first appearance, each topic's prompts in file order). A
    cap on a split (`max_train_prompts`, ...) takes the first N of this order, so it keeps the
    split's mix of topics and groups instead of the file's first topics."""
    queues: dict[str, list[dict]] = {}
    for r in rows:
        queues.setdefault(r["topic"], []).append(r)
    out: list[dict] = []
    depth = max((len(q) for q in queues.values()), default=0)
    for i in range(depth):
        out += [q[i] for q in queues.values() if i < len(q)]
    return out
