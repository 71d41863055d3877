"""`sipo-bench conflicts`: how much a task's training pairs disagree across objectives."""

from __future__ import annotations

import itertools
from typing import Any

from ..contract.interfaces import TaskData
from ..execution.stages import read_jsonl


def conflict_stats(rows: list[dict], objectives: list[str]) -> dict:
    """Conflict fraction (pairs labelled by every objective whose labels are not all equal) and
    pairwise label agreement between objectives (over pairs both label)."""
    full = [r for r in rows if all(r["labels"].get(o) is not None for o in objectives)]
    conflicting = sum(1 for r in full if len({r["labels"][o] for o in objectives}) > 1)
    agreement = {}
    for a, b in itertools.combinations(objectives, 2):
        both = [r for r in rows if r["labels"].get(a) is not None and r["labels"].get(b) is not None]
        agree = sum(1 for r in both if r["labels"][a] == r["labels"][b])
        agreement[f"{a}~{b}"] = agree / len(both) if both else None
    labelled = {o: sum(1 for r in rows if r["labels"].get(o) is not None) for o in objectives}
    return {"pairs": len(rows), "fully_labelled": len(full),
            "conflict_fraction": conflicting / len(full) if full else None,
            "agreement": agreement, "labelled": labelled}


def conflict_report(args: Any) -> int:
    from ..configs.run_config import load_yaml
    from ..contract.interfaces import FitContext  # noqa: F401  (keeps import graph obvious)
    from ..execution.runtime import Runtime
    from ..execution.stages import Cache, StageLog, default_cache_dir
    from ..planning.taskstages import plan_task_stages
    from ..execution.executors import run_graph
    from ..errors import SipoBenchError

    data = load_yaml(args.config) if args.config else {}
    task_name = args.task or data.get("task") or "synthetic-hh"
    runtime = Runtime(plugins_dir=args.plugins_dir or data.get("plugins_dir"), quiet=True)
    task = runtime.task(task_name, data.get("task_options", {}))
    stage, _ = plan_task_stages(task, args.seed)
    cache = Cache(args.cache_dir or data.get("cache_dir") or default_cache_dir())
    outcome = run_graph([stage], cache, runtime, StageLog(None, "conflicts"))[stage.key]
    if outcome.status == "failed":
        raise SipoBenchError(f"data stage of task {task.name!r} failed: {outcome.error}")
    rows = read_jsonl(TaskData(cache.path(stage)).train)
    stats = conflict_stats(rows, task.objective_names)
    print(f"task {task.name} (seed {args.seed}): {stats['pairs']} training pairs, "
          f"{stats['fully_labelled']} labelled by every objective")
    cf = stats["conflict_fraction"]
    print(f"conflict fraction: {cf:.4f}" if cf is not None else "conflict fraction: n/a")
    for pair, a in stats["agreement"].items():
        print(f"label agreement {pair}: {a:.4f}" if a is not None else f"label agreement {pair}: n/a")
    for o, n in stats["labelled"].items():
        print(f"pairs labelled for {o}: {n}")
    return 0
