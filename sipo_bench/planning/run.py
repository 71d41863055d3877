"""Running a run: plan it (:mod:`.experiment`), check OUT and the cache, execute the stage graph,
then write the summary and the report into OUT as one transaction."""

from __future__ import annotations

import datetime as _dt
import time
import uuid
from pathlib import Path
from typing import Any

from ..configs.run_config import RunConfig, same_results_config
from ..configs.sweep import SWEEP_SCHEMA, SweepPoint
from ..configs.schema import to_dict
from ..errors import UsageError
from ..execution.runtime import Runtime
from ..execution.stages import Cache, StageLog, default_cache_dir, walk
from ..reporting.summary import summarize
from .experiment import Plan, plan_run, plan_sweep


def default_out(task: str) -> Path:
    return Path("results") / f"{task}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def check_out_dir(out: Path) -> None:
    """Fail early (usage error) if OUT cannot be written; creates nothing."""
    from ..reporting.outdir import ResultsDir

    ResultsDir(out).check_writable()


def execute(cfg: RunConfig, runtime: Runtime | None = None) -> tuple[dict, Path]:
    """Plan, run and summarise. Returns (summary, out dir).

    Bad input raises `UsageError` before anything is created (OUT, cache dirs); stage
    failures are recorded in the summary instead; a report that cannot be written raises
    `ReportWriteError` with the previous report left intact. A config with a `sweep` plans
    every sweep point, runs the union of their stages once and returns the sweep index
    (`sipo_bench.configs.sweep`). A deterministic run executes in the pinned environment
    (`sipo_bench.execution.determinism`): in this process if torch has not loaded here yet, else every
    stage in a fresh worker process."""
    if not cfg.deterministic:
        return _execute(cfg, runtime)
    from ..execution import determinism

    with determinism.pinned():
        return _execute(cfg, runtime)


def _execute(cfg: RunConfig, runtime: Runtime | None = None) -> tuple[dict, Path]:
    from ..reporting.outdir import ResultsDir

    t0 = time.time()
    runtime = runtime or Runtime(plugins_dir=cfg.plugins_dir, quiet=cfg.quiet)
    points = plan_sweep(cfg, runtime)  # [] without a sweep
    plans = [p.plan for p in points] or [plan_run(cfg, runtime)]
    plan = plans[0]
    out = Path(cfg.out) if cfg.out else default_out(cfg.task)
    results = ResultsDir(out)
    results.check_writable()
    owner = results.owner()
    same_owner = owner is None or same_results_config(owner, to_dict(cfg))
    if not same_owner and not cfg.overwrite:
        raise UsageError(f"`--out`: expected a new directory or the results of this same config, got {str(out)!r} "
                         f"(it holds the results of a run with another config); pass --overwrite to replace them, "
                         f"or choose another --out")
    cache = Cache(cfg.cache_dir or default_cache_dir(), recompute=cfg.no_cache,
                  warn=lambda m: runtime.log(f"[yellow]warning: {m}[/yellow]" if not runtime.quiet else f"warning: {m}"))
    from ..execution.fsio import probe_writable

    why = probe_writable(cache.root)
    if why:
        raise UsageError(f"`--cache-dir`: expected a writable directory, got {str(cache.root)!r} ({why})")
    stages = walk([s for p in plans for s in p.stages()])
    executor = runtime.registries.executors.get(cfg.executor)(**cfg.executor_options)

    # --- from here on, things are created ---
    run_id = uuid.uuid4().hex[:12]
    try:
        cache.clean_tmp()
        cache.record_run(run_id, out, [s.key for s in stages])
    except OSError as e:
        raise UsageError(f"`--cache-dir`: expected a writable directory, got {str(cache.root)!r} ({e.strerror})") from None
    log = StageLog(results.start(run_id, to_dict(cfg), same_owner=same_owner), run_id)
    jobs = cfg.effective_jobs()
    runtime.device, runtime.jobs, runtime.cpu_threads = plan.device, jobs, cfg.cpu_threads
    from ..execution import determinism

    # a deterministic run whose kernels this process can no longer pin runs its stages in workers
    runtime.fresh_processes = cfg.deterministic and determinism.needs_fresh_processes()
    in_process = cfg.executor == "local" and jobs == 1 and not runtime.fresh_processes
    from ..execution.device import using

    with cache.in_use():
        try:
            if cfg.deterministic and in_process and any(not cache.is_done(s) for s in stages):
                determinism.apply_in_process()
            if cfg.cpu_threads is not None and in_process and any(not cache.is_done(s) for s in stages):
                _set_cpu_threads(cfg.cpu_threads)
            runtime.log(f"run {run_id}: task {plan.task.name}, {len(plan.methods)} method(s), {len(cfg.seeds)} seed(s), "
                        f"{len(plan.grid)} weights{f', {len(plans)} sweep points' if points else ''}, {len(stages)} stages (cache {cache.root}; device {plan.device}"
                        + (f", {jobs} jobs)" if cfg.executor == "local" else ")"))
            with using(plan.device), runtime.live():
                with runtime.progress(len(stages), "stages") as overall:
                    outcomes = executor.run(stages, runtime, cache, log, overall)
            runtime.close()
        finally:
            cache.end_run(run_id)
    failures = {f"{s.key}.txt": f"{s.name}\n\n{o.traceback}" for s in stages
                if (o := outcomes.get(s.key)) is not None and o.status == "failed"}
    if points:
        return write_sweep(cfg, points, outcomes, cache, out, failures, run_id=run_id, t0=t0), out
    failures.update(plan_failures(plan))
    summary = summarize(plan, outcomes, cache, wall_seconds=time.time() - t0, run_id=run_id)
    from ..reporting.outdir import write_report

    files = run_files(plan, outcomes, cache, summary)
    write_report(out, summary, failures, files)
    from ..reporting.tracking import track_run

    track_run(cfg.tracking, summary, files, out, log=runtime.log)
    return summary, out


def run_files(plan: Plan, outcomes: dict, cache: Cache, summary: dict) -> dict[str, bytes]:
    """The run's files beside the report: `curves/<key>.json` of every training stage in
    `summary["training"]` (copies of the cached stages' curves) and `samples.json`."""
    from ..reporting import samples
    from ..reporting.curves import CURVES

    files: dict[str, bytes] = {}
    for key, st in ((summary.get("training") or {}).get("stages") or {}).items():
        p = cache.path(key) / CURVES
        if p.is_file():
            files[st["file"]] = p.read_bytes()
    content = samples.collect(plan, outcomes, cache, plan.config.samples_per_point)
    if content is not None:
        files[samples.SAMPLES] = samples.encode(content)
        summary["samples"] = {"file": samples.SAMPLES, "per_point": content["per_point"], "seed": content["seed"]}
    return files


def plan_failures(plan: Plan) -> dict[str, str]:
    """`logs/failures/` files of a plan's methods that failed while planning."""
    return {f"plan-{n}.txt": f"planning {n}\n\n{m.traceback}" for n, m in plan.methods.items() if m.traceback}


def _set_cpu_threads(n: int) -> None:
    """Limit torch's CPU threads for stages run in this process (no effect on GPU kernels)."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(n)


def write_sweep(cfg: Any, points: list[SweepPoint], outcomes: dict, cache: Any, out: Path,
                failures: dict[str, str], *, run_id: str, t0: float) -> dict:
    """Summarise every point into `OUT/<point>/` (each a report written as one transaction,
    with the tracebacks of its own failed stages), then write `OUT/sweep.json` and the
    multi-run report; returns the sweep index (`sweep.json`). `failures`: `<key>.txt` ->
    traceback of every failed stage of the run."""
    from ..reporting.outdir import write_report
    from ..reporting.summary_schema import SCHEMA_VERSION
    from ..reporting.sweep_report import render_sweep
    from ..execution.stages import write_json

    for p in points:
        summary = summarize(p.plan, outcomes, cache, wall_seconds=time.time() - t0, run_id=run_id)
        own = {f"{s.key}.txt" for s in p.plan.stages()}
        files = run_files(p.plan, outcomes, cache, summary)
        write_report(out / p.dirname, summary, {**{k: v for k, v in failures.items() if k in own},
                                                **plan_failures(p.plan)}, files)
    task = points[0].plan.task
    index = {
        "schema_version": SWEEP_SCHEMA, "kind": "sweep", "summary_schema_version": SCHEMA_VERSION,
        "task": task.name,
        "sweep": {k: list(v) for k, v in cfg.sweep.items()},
        "points": [{"label": p.label, "dir": p.dirname, "values": p.values} for p in points],
        "config": to_dict(cfg),
        "run": {"run_id": run_id, "wall_seconds": round(time.time() - t0, 3)},
    }
    render_sweep(out, index)
    write_json(out / "sweep.json", index)  # last: the sweep is complete
    return index
