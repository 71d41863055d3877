"""What each stage spent: optimizer steps, tokens trained on, tokens generated, scorer calls.

Code that does the work counts it where it knows it (a trainer knows its steps and the tokens
of its batches, a generation backend the tokens it generated, the scoring code the texts it
sent to a scorer) by calling :func:`count`; :func:`sipo_bench.stages.execute_stage` runs every
stage function inside :func:`metered` and records the totals in the stage's `_DONE.json`
marker (`compute`), beside its seconds. Counting reads what the work produced and never
changes it. Outside a metered stage :func:`count` does nothing.

A stage cached before counting existed has no `compute` in its marker: a total that needs it
is "not recorded", never a silent zero (:func:`total`).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterable, Iterator, Mapping, Sequence

__all__ = ["FIELDS", "add", "count", "count_training", "metered", "total", "trained_tokens"]

#: every counter, in the order tables show them
FIELDS = ("optimizer_steps", "tokens_trained", "tokens_generated", "scorer_calls")

_meter: contextvars.ContextVar[dict | None] = contextvars.ContextVar("sipo_bench_compute_meter", default=None)


def count(field: str, n: int | float) -> None:
    """Add `n` to counter `field` (one of :data:`FIELDS`) of the stage running now."""
    if field not in FIELDS:
        raise ValueError(f"`field`: expected one of {', '.join(FIELDS)}, got {field!r}")
    meter = _meter.get()
    if meter is not None:
        meter[field] = meter.get(field, 0) + int(n)


def count_training(optimizer_steps: int, tokens: int) -> None:
    """What a trainer spent: its optimizer steps and the tokens its training passes read."""
    count("optimizer_steps", optimizer_steps)
    count("tokens_trained", tokens)


@contextlib.contextmanager
def metered() -> Iterator[dict]:
    """A fresh meter for the code run inside; yields its counts ({field: int}, every field)."""
    meter = {f: 0 for f in FIELDS}
    token = _meter.set(meter)
    try:
        yield meter
    finally:
        _meter.reset(token)


def trained_tokens(rows: Iterable[Mapping[str, Any]], weights: Mapping[str, int], epochs: float) -> int:
    """Tokens the policy's training forward passes read: for each row, Σ weight · len(row[column])
    over `weights` (e.g. a preference pair's prompt twice, once with each response), times
    `epochs` (the fraction of passes over the rows the trainer ran)."""
    per_pass = sum(int(w) * len(row[c]) for row in rows for c, w in weights.items() if row.get(c) is not None)
    return int(round(per_pass * float(epochs)))


def total(markers: Sequence[Mapping[str, Any] | None]) -> dict:
    """The sums over stages of their markers' `compute`: `{field: int or None}`, a field None
    when any stage has no record (cached before counting), plus `seconds` (their summed stage
    seconds, a cached stage its original time) and `stages_not_recorded`."""
    missing = sum(1 for m in markers if not (m or {}).get("compute"))
    out: dict[str, Any] = {}
    for f in FIELDS:
        out[f] = None if missing else sum(int(m["compute"].get(f, 0)) for m in markers)
    out["seconds"] = round(sum(float((m or {}).get("seconds") or 0.0) for m in markers), 3)
    out["stages"] = len(markers)
    out["stages_not_recorded"] = missing
    return out


def add(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict | None:
    """Two :func:`total` results summed (merging runs); a field None when either side's is,
    None when either side has no record at all (a summary from before counting)."""
    if not a or not b:
        return None
    out: dict[str, Any] = {f: None if a.get(f) is None or b.get(f) is None else int(a[f]) + int(b[f]) for f in FIELDS}
    out["seconds"] = round(float(a.get("seconds") or 0.0) + float(b.get("seconds") or 0.0), 3)
    out["stages"] = int(a.get("stages") or 0) + int(b.get("stages") or 0)
    out["stages_not_recorded"] = int(a.get("stages_not_recorded") or 0) + int(b.get("stages_not_recorded") or 0)
    return out
