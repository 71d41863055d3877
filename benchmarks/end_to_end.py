"""End-to-end wall times of `sipo-bench run`, each a ratio of two runs made in this one
invocation (fresh caches, `sipo-bench run` as a subprocess: Python start-up and worker start-up
are included).

    python benchmarks/end_to_end.py                          # every part below
    python benchmarks/end_to_end.py --parts jobs,warm        # some of them
    python benchmarks/end_to_end.py --args "--seeds 0 --methods dpo,mod" --parts jobs

Parts:
- `jobs`: the cold default benchmark (3 seeds, every method) at `--jobs 1` (in process, one
  stage at a time) and at `--jobs J` (default 2): the speed-up (goal >= 1.6x on 2 cores), the
  same summary check, the per-stage-kind split, and the bounds of any schedule: the critical
  path (the longest chain of stage times through the graph, measured in the `--jobs 1` run)
  and total stage time / J.
- `warm`: the same command again on the `--jobs J` cache (every stage cached).
- `seeds10`: the 10-seed all-method comparison, cold, at `--jobs J` (goal <= 6 minutes).
- `ray`: `--jobs J` against `--executor ray` with J CPUs, same graph (`--args`, default: the
  default benchmark with one seed), fresh caches.

Timings depend on what else runs on the machine: run it on an idle machine, or say how loaded
it was (the script prints the load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def run(args: list[str], out: Path, cache: Path, extra_env: dict | None = None) -> float:
    t0 = time.perf_counter()
    env = {**os.environ, **(extra_env or {})}
    proc = subprocess.run([sys.executable, "-m", "sipo_bench.cli", "run", *args, "--out", str(out),
                           "--cache-dir", str(cache), "--quiet"], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"run failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-3000:]}")
    return seconds


def events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "logs" / "stages.jsonl").read_text().splitlines()]


def stage_seconds(out: Path, field: str = "seconds") -> dict[str, float]:
    """Wall seconds (or `cpu_seconds`) of every stage computed in the run at `out`, by key."""
    return {e["key"]: float(e.get(field, 0.0)) for e in events(out) if e["event"] == "done"}


def cpu_line(out: Path, wall: float) -> str:
    """How much CPU the run's stages got: on a machine shared with other jobs, stages wait for
    a core and their wall time exceeds their CPU time."""
    w, c = sum(stage_seconds(out).values()), sum(stage_seconds(out, "cpu_seconds").values())
    return (f"stages: {w:.1f} s wall, {c:.1f} s CPU ({c / w:.0%} of their wall time on a CPU); "
            f"{c / wall:.2f} cores busy with stages over the run's {wall:.1f} s")


def critical_path(out: Path, cache: Path, field: str = "seconds") -> tuple[float, list[str]]:
    """The longest chain of stage times through the run's graph (inputs from each stage's
    `_DONE.json`), with the names along it."""
    secs = stage_seconds(out, field)
    names = {e["key"]: e["stage"] for e in events(out)}
    inputs = {k: list(json.loads((cache / "stages" / k / "_DONE.json").read_text())["inputs"].values()) for k in secs}
    best: dict[str, tuple[float, list[str]]] = {}

    def longest(k: str) -> tuple[float, list[str]]:
        if k not in best:
            up = max((longest(d) for d in inputs.get(k, []) if d in secs), default=(0.0, []))
            best[k] = (up[0] + secs.get(k, 0.0), up[1] + [names.get(k, k)])
        return best[k]

    return max((longest(k) for k in secs), default=(0.0, []))


def same_results(a: Path, b: Path) -> bool:
    from sipo_bench.reporting.summary import comparable

    def load(p: Path) -> dict:
        s = comparable(json.loads((p / "summary.json").read_text()))
        s.pop("git_commit", None)
        for k in ("executor", "executor_options"):
            s["config"].pop(k, None)
        return s

    return load(a) == load(b)


def split_by_kind(out: Path) -> None:
    by_kind: dict[str, list[float]] = defaultdict(list)
    for e in events(out):
        if e["event"] == "done":
            by_kind[e["stage"].split("[")[0]].append(e.get("seconds", 0.0))
    total = sum(sum(v) for v in by_kind.values()) or 1.0
    print(f"  {'stage kind':24s} {'count':>5s} {'seconds':>9s} {'share':>6s}")
    for kind, secs in sorted(by_kind.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {kind:24s} {len(secs):5d} {sum(secs):9.1f} {sum(secs) / total:6.1%}")


def load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="jobs,warm,seeds10,ray", help="comma-separated: jobs, warm, seeds10, ray")
    ap.add_argument("--args", default="--seeds 0,1,2", help="`sipo-bench run` arguments of the jobs/warm parts")
    ap.add_argument("--ray-args", default="--seeds 0", help="`sipo-bench run` arguments of the ray part")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes of the parallel runs (and Ray's CPUs)")
    ap.add_argument("--keep", help="keep caches and outputs in this directory")
    ns = ap.parse_args()
    parts = [p.strip() for p in ns.parts.split(",") if p.strip()]
    work = Path(ns.keep) if ns.keep else Path(tempfile.mkdtemp(prefix="sipo-e2e-"))
    extra = shlex.split(ns.args)
    j = ns.jobs
    print(f"machine: {len(os.sched_getaffinity(0))} cores available, load average {load()}; work dir {work}")

    if "jobs" in parts or "warm" in parts:
        serial = work / "jobs1"
        t1 = run([*extra, "--jobs", "1"], serial, work / "cache-jobs1") if "jobs" in parts else None
        tj = run([*extra, "--jobs", str(j)], work / f"jobs{j}", work / f"cache-jobs{j}")
        summary = json.loads((work / f"jobs{j}" / "summary.json").read_text())
        print(f"\n[jobs] task {summary['task']}, methods {', '.join(summary['methods'])}, "
              f"{len(summary['weights'])} weights, seeds {summary['seeds']}, {summary['run']['stages']['total']} stages")
        if t1 is not None:
            total = sum(stage_seconds(serial).values())
            total_cpu = sum(stage_seconds(serial, "cpu_seconds").values())
            path, chain = critical_path(serial, work / "cache-jobs1")
            path_cpu, _ = critical_path(serial, work / "cache-jobs1", "cpu_seconds")
            split_by_kind(serial)
            print(f"  stage time in the --jobs 1 run: {total:.1f} s; critical path {path:.1f} s "
                  f"({' -> '.join(chain)})")
            print(f"  bound for --jobs {j}: max(critical path, total / {j}) = {max(path, total / j):.1f} s "
                  f"(in CPU seconds, what an idle machine would take: max({path_cpu:.1f}, {total_cpu / j:.1f}))")
            print(f"  cold --jobs 1: {t1:.1f} s   cold --jobs {j}: {tj:.1f} s   speed-up {t1 / tj:.2f}x "
                  f"(goal >= 1.6x)   same summary: {same_results(serial, work / f'jobs{j}')}")
            print(f"  --jobs 1 {cpu_line(serial, t1)}")
        else:
            print(f"  cold --jobs {j}: {tj:.1f} s")
        print(f"  --jobs {j} {cpu_line(work / f'jobs{j}', tj)}")
        if "warm" in parts:
            tw = run([*extra, "--jobs", str(j)], work / "warm", work / f"cache-jobs{j}")
            print(f"\n[warm] rerun, every stage cached: {tw:.1f} s (cold/warm {tj / tw:.0f}x)")

    if "seeds10" in parts:
        seeds = ",".join(str(s) for s in range(10))
        t10 = run(["--seeds", seeds, "--jobs", str(j)], work / "seeds10", work / "cache-seeds10")
        s10 = json.loads((work / "seeds10" / "summary.json").read_text())
        print(f"\n[seeds10] every method, 10 seeds, cold, --jobs {j}: {t10:.1f} s = {t10 / 60:.1f} min "
              f"(goal <= 6 min); {s10['run']['stages']['total']} stages")
        print(f"  {cpu_line(work / 'seeds10', t10)}")

    if "ray" in parts:
        rargs = shlex.split(ns.ray_args)
        tl = run([*rargs, "--jobs", str(j)], work / "ray-local", work / "cache-ray-local")
        cfg = work / "ray.yaml"
        cfg.write_text(json.dumps({"executor": "ray", "executor_options": {"num_cpus": j}}))
        tr = run([*rargs, "--config", str(cfg)], work / "ray", work / "cache-ray")
        print(f"\n[ray] {' '.join(rargs)}: local --jobs {j}: {tl:.1f} s   ray ({j} CPUs): {tr:.1f} s   "
              f"ray time / local time {tr / tl:.2f}x (above 1: local is faster)   "
              f"same summary: {same_results(work / 'ray-local', work / 'ray')}")
    print(f"\nload average at the end {load()}")


if __name__ == "__main__":
    main()
