"""Wall time of the default benchmark, cold (empty cache) and warm (every stage cached),
with the per-stage split of the cold run.

    python benchmarks/end_to_end.py                      # `sipo-bench run` with no options
    python benchmarks/end_to_end.py --args "--task synthetic-cv --methods mod,dpo-soups"

Goals (issue #6): cold <= 10 minutes, warm <= 20 seconds on a 2-core CPU machine.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def run(args: list[str], out: Path, cache: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sipo_bench.cli", "run", *args, "--out", str(out),
                           "--cache-dir", str(cache), "--quiet"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.exit(f"run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--args", default="", help="extra `sipo-bench run` arguments (quoted)")
    ap.add_argument("--keep", help="keep the cache and outputs in this directory")
    ns = ap.parse_args()
    work = Path(ns.keep) if ns.keep else Path(tempfile.mkdtemp(prefix="sipo-e2e-"))
    extra = shlex.split(ns.args)
    cold = run(extra, work / "cold", work / "cache")
    warm = run(extra, work / "warm", work / "cache")
    events = [json.loads(l) for l in (work / "cold" / "logs" / "stages.jsonl").read_text().splitlines()]
    by_kind: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if e["event"] == "done":
            by_kind[e["stage"].split("[")[0]].append(e.get("seconds", 0.0))
    summary = json.loads((work / "cold" / "summary.json").read_text())
    print(f"task {summary['task']}, methods {', '.join(summary['methods'])}, "
          f"{len(summary['weights'])} weights, seeds {summary['seeds']}")
    print(f"{'stage kind':24s} {'count':>5s} {'seconds':>9s} {'share':>6s}")
    total = sum(sum(v) for v in by_kind.values()) or 1.0
    for kind, secs in sorted(by_kind.items(), key=lambda kv: -sum(kv[1])):
        print(f"{kind:24s} {len(secs):5d} {sum(secs):9.1f} {sum(secs) / total:6.1%}")
    print(f"cold: {cold:.1f} s (goal <= 600)   warm: {warm:.1f} s (goal <= 20)   ratio cold/warm {cold / warm:.0f}x")
    failed = [m for m, e in summary["methods"].items() if e["status"] != "ok"]
    if failed:
        print(f"failed methods: {failed}")


if __name__ == "__main__":
    main()
