"""Reproduce the figures of docs/synthetic_task.md: build the data and base stages of the
synthetic tasks through the stage cache and print what they measured.

    python -m sipo_bench_plugins.synthetic.figures [--tasks synthetic-hh synthetic-cv synthetic-3obj]
        [--seed 0] [--cache-dir DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def run(task_name: str, seed: int, cache_dir: str, options: dict | None = None) -> dict:
    """Run (or load from the cache) the data and base stages; return their results."""
    from sipo_bench.api import Cache, Runtime, StageLog, plan_task_stages, run_graph

    runtime = Runtime(quiet=True)
    task = runtime.task(task_name, options or {})
    data, base = plan_task_stages(task, seed)  # the keys of a run's stages: figures reuse its cache
    cache = Cache(cache_dir)
    t0 = time.time()
    outcomes = run_graph([data, base], cache, runtime, StageLog(None, "figures"))
    for s in (data, base):
        o = outcomes[s.key]
        if o.status == "failed":
            raise SystemExit(f"{task_name}: stage {s.name} failed: {o.error}\n{o.traceback}")
    return {"task": task_name, "seed": seed, "wall_seconds": round(time.time() - t0, 2),
            "data_seconds": round(outcomes[data.key].seconds, 2), "base_seconds": round(outcomes[base.key].seconds, 2),
            "data": outcomes[data.key].result, "base": outcomes[base.key].result,
            "base_dir": str(cache.path(base))}


def table(results: list[dict]) -> str:
    lines = ["| task | conflict fraction | all-high: train responses | all-high: behaviour | all-high: SFT samples "
             "| parse rate | mean scores: behaviour | mean scores: SFT samples | SFT s | held-out loss | refine: improves / all-high after |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        d, b = r["data"], r["base"]
        objs = d["objectives"]
        fmt = lambda m: ", ".join(f"{o} {m[o]:.3f}" for o in objs)  # noqa: E731
        lines.append(
            f"| {r['task']} | {d['conflict_fraction']:.3f} | {d['train_responses']['all_high_rate']:.3f} "
            f"| {b['behaviour']['all_high_rate']:.3f} | {b['samples']['all_high_rate']:.3f} "
            f"| {b['samples']['parse_rate']:.3f} | {fmt(b['behaviour']['mean'])} | {fmt(b['samples']['mean'])} "
            f"| {b['sft_seconds']:.1f} | {b['heldout_loss_before']:.2f} -> {b['heldout_loss_after']:.2f} "
            f"| {b['refine']['rewrite_improves_rate']:.3f} / {b['refine']['all_high_after']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sipo_bench_plugins.synthetic.figures", description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["synthetic-hh", "synthetic-cv", "synthetic-3obj"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=None, help="stage cache (default: the sipo-bench default cache)")
    ap.add_argument("--options", default="{}", help="task options as JSON (default: the task defaults)")
    ap.add_argument("--json", default=None, help="also write every measured number to this JSON file")
    args = ap.parse_args(argv)
    from sipo_bench.api import default_cache_dir

    cache_dir = args.cache_dir or str(default_cache_dir())
    results = [run(t, args.seed, cache_dir, json.loads(args.options)) for t in args.tasks]
    print(table(results))
    for r in results:
        print(f"{r['task']}: data {r['data_seconds']}s, base {r['base_seconds']}s (cached stages report their first run)",
              file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
