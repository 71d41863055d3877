"""Wall time of one benchmark run under the local executor vs the Ray executor, in one go.

Each executor runs the same config end to end (`sipo-bench run`, a fresh stage cache each, so
nothing is reused); Ray starts a private instance with `--workers` CPUs on this machine. The
script checks that both runs give the same results (summary.json without timings) and prints
the wall times and their ratio (local / ray: above 1 means Ray was faster), for the whole
command and for the stage graph alone (first to last stage event: without Python and Ray
start-up, which a long benchmark amortises).

    # the default benchmark (embedded synthetic task, every compatible method)
    python benchmarks/ray_vs_local.py
    # seconds: the dummy task with training stages that sleep
    python benchmarks/ray_vs_local.py --task dummy --methods dummy --seeds 0,1,2,3 \
        --method-options '{"dummy": {"sleep": 2}}'

Timings on a machine shared with other work are noisy: run it twice and report both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIPO_BENCH = str(Path(sys.executable).with_name("sipo-bench"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default=None, help="Task (default: the run default, the embedded synthetic task).")
    p.add_argument("--methods", default=None, help="Comma-separated methods (default: all compatible).")
    p.add_argument("--seeds", default=None, help="Comma-separated seeds (default: the run default).")
    p.add_argument("--weights", type=int, default=None, help="Simplex partitions of the weight grid.")
    p.add_argument("--max-test-prompts", type=int, default=None)
    p.add_argument("--max-examples", type=int, default=None)
    p.add_argument("--method-options", default="{}", help="JSON: {method: {field: value}}.")
    p.add_argument("--task-options", default="{}", help="JSON: task options.")
    p.add_argument("--plugins-dir", default=None)
    p.add_argument("--workers", type=int, default=2, help="CPUs of the private Ray instance (default 2).")
    p.add_argument("--local-env", action="append", default=[], metavar="KEY=VALUE",
                   help="Also time the local executor with this environment (a control, e.g. OMP_NUM_THREADS=1, "
                        "the thread count Ray gives a 1-CPU stage); repeatable.")
    p.add_argument("--timeout", type=float, default=3600, help="Seconds allowed per run.")
    p.add_argument("--json", default=None, help="Also write the figures to this JSON file.")
    p.add_argument("--keep", default=None, help="Keep both runs' output and cache under this directory.")
    return p.parse_args(argv)


def run_once(label: str, executor: str, args: argparse.Namespace, work: Path, env: dict | None = None) -> dict:
    config: dict = {"method_options": json.loads(args.method_options), "task_options": json.loads(args.task_options),
                    "executor": executor, "quiet": True}
    if executor == "ray":
        config["executor_options"] = {"num_cpus": args.workers}
    work = work / label
    work.mkdir(parents=True)
    cfg_path = work / "config.yaml"
    cfg_path.write_text(json.dumps(config))  # JSON is YAML
    cmd = [SIPO_BENCH, "run", "--config", str(cfg_path), "--cache-dir", str(work / "cache"), "--out", str(work / "out")]
    for flag, value in (("--task", args.task), ("--methods", args.methods), ("--seeds", args.seeds),
                        ("--weights", args.weights), ("--max-test-prompts", args.max_test_prompts),
                        ("--max-examples", args.max_examples), ("--plugins-dir", args.plugins_dir)):
        if value is not None:
            cmd += [flag, str(value)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    summary_path = work / "out" / "summary.json"
    if not summary_path.is_file():
        sys.exit(f"{label} run wrote no summary (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    summary = json.loads(summary_path.read_text())
    failed = {n: m["error"] for n, m in summary["methods"].items() if m["status"] != "ok"}
    times = [json.loads(line)["time"] for line in (work / "out" / "logs" / "stages.jsonl").open() if line.strip()]
    return {"executor": label, "wall_seconds": round(wall, 2), "run_wall_seconds": summary["run"]["wall_seconds"],
            "graph_seconds": round(max(times) - min(times), 2),
            "stages": summary["run"]["stages"],
            "failed_methods": failed, "summary": summary, "rc": proc.returncode}


def comparable(summary: dict) -> dict:
    """The summary without timings: `experiment.comparable`, the executor's name, and every
    `*seconds` key (stage results may carry their own timings, e.g. the synthetic SFT's)."""
    from sipo_bench.reporting.summary import comparable as _comparable

    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if not str(k).endswith("seconds")}
        return [strip(v) for v in o] if isinstance(o, list) else o

    s = _comparable(summary)
    s.pop("git_commit", None)
    s["config"].pop("executor", None)
    s["config"].pop("executor_options", None)
    return strip(s)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ray-vs-local-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(kv.split("=", 1) for kv in args.local_env)
    try:
        runs = [run_once("local", "local", args, work), run_once("ray", "ray", args, work)]
        if env:  # a control: the local executor with, e.g., the thread count Ray gives a 1-CPU stage
            runs.append(run_once("local+env", "local", args, work, env))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    local, ray = runs[:2]
    same = all(comparable(r["summary"]) == comparable(local["summary"]) for r in runs[1:])
    ratio = local["wall_seconds"] / ray["wall_seconds"]
    graph_ratio = local["graph_seconds"] / max(ray["graph_seconds"], 1e-9)
    task = local["summary"]["task"]
    print(f"task {task}, methods {', '.join(local['summary']['methods'])}, seeds {local['summary']['seeds']}, "
          f"{local['stages']['total']} stages; {os.cpu_count()} CPUs on this machine, Ray with {args.workers} workers")
    print("wall: the whole command; in-run: summary's wall_seconds (planning, Ray start/stop, stages);\n"
          "graph: first to last stage event")
    print(f"{'executor':<10} {'wall s':>8} {'in-run s':>9} {'graph s':>8}  failed methods")
    for r in runs:
        print(f"{r['executor']:<10} {r['wall_seconds']:>8.2f} {r['run_wall_seconds']:>9.2f} {r['graph_seconds']:>8.2f}  "
              f"{', '.join(r['failed_methods']) or '-'}")
    print(f"local / ray wall time: {ratio:.2f}x (graph only: {graph_ratio:.2f}x); same results: {same}")
    if env:
        ctl = runs[2]
        print(f"local+env ({' '.join(args.local_env)}) / ray wall time: {ctl['wall_seconds'] / ray['wall_seconds']:.2f}x "
              f"(graph only: {ctl['graph_seconds'] / max(ray['graph_seconds'], 1e-9):.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
            "task": task, "workers": args.workers, "cpus": os.cpu_count(), "machine": platform.platform(),
            "local_over_ray": round(ratio, 3), "local_over_ray_graph": round(graph_ratio, 3), "same_results": same,
            "runs": [{k: v for k, v in r.items() if k != "summary"} for r in runs]}, indent=2) + "\n")
    return 0 if same and not any(r["failed_methods"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
