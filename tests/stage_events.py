"""Reading a run's stage log from tests, and timing helpers for tests of concurrent runs."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path


def events(out: Path) -> list[dict]:
    """The events of `OUT/logs/stages.jsonl`; a line being written when the process died is skipped."""
    p = Path(out) / "logs" / "stages.jsonl"
    if not p.is_file():
        return []
    rows = []
    for line in p.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def max_concurrency(intervals: list[tuple[float, float]]) -> int:
    """The most (start, end) intervals open at one time."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1]))
    best = cur = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


def wait_for(pred, timeout: float, what: str, proc: subprocess.Popen | None = None):
    """Poll `pred` until it returns a true value (returned); fail after `timeout` seconds or
    when `proc` ends first."""
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
