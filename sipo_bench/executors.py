"""The built-in `local` executor: with `jobs` 1, runs stages in this process one after another;
with more, in that many worker processes side by side (:mod:`sipo_bench.parallel`)."""

from __future__ import annotations

import time
from typing import Any

from .hookspecs import hookimpl
from .interfaces import Executor, StageOutcome
from .stages import Cache, Stage, StageLog, error_line, execute_stage, format_exception


def stage_extras(cpu_start: float) -> dict:
    """What the stage log records about the stage that just ran in this process beyond its
    wall time: the CPU time this process spent on it (all its threads; wall time above CPU
    time means the stage waited, e.g. for a CPU other processes held), and the peak GPU memory
    it allocated (on a GPU run). `cpu_start`: `time.process_time()` when the stage started."""
    from .device import take_peak_gpu_gb

    extras = {"cpu_seconds": round(time.process_time() - cpu_start, 3)}
    peak = take_peak_gpu_gb()
    if peak is not None:
        extras["peak_gpu_gb"] = peak
    return extras


def run_graph(stages: list[Stage], cache: Cache, runtime: Any, log: StageLog, overall: Any = None) -> dict[str, StageOutcome]:
    """Run `stages` (topological order) in this process; failures skip only their dependents."""
    outcomes: dict[str, StageOutcome] = {}
    for stage in stages:
        bad = [d for d in stage.inputs.values() if outcomes.get(d.key, StageOutcome("done")).status in ("failed", "skipped")]
        if bad:
            outcomes[stage.key] = StageOutcome("skipped", error=f"input {bad[0].name} failed")
            log.write(stage, "skipped", reason=f"input {bad[0].name} failed")
        elif cache.is_done(stage):
            outcomes[stage.key] = StageOutcome("cached", cache.result(stage), cache.meta(stage).get("seconds", 0.0))
            log.write(stage, "cached")
        else:
            log.write(stage, "start")
            runtime.log(f"stage {stage.name} ...") if runtime.quiet else None
            t0, c0 = time.time(), time.process_time()
            try:
                runtime.before_stage(stage)
                status, result, seconds = execute_stage(stage, cache, runtime)
            except Exception as e:  # recorded, never fatal to unrelated stages
                tb = format_exception(e)
                line = error_line(e)
                outcomes[stage.key] = StageOutcome("failed", seconds=time.time() - t0, error=line, traceback=tb)
                log.write(stage, "failed", error=line, traceback=tb)
                log_stage_failed(runtime, stage, line)
            else:
                outcomes[stage.key] = StageOutcome(status, result, seconds)
                log.write(stage, "done", seconds=seconds, **stage_extras(c0))
        if overall is not None:
            overall()
    return outcomes


class LocalExecutor(Executor):
    name = "local"
    description = ("Runs stages on this machine: in this process with --jobs 1, else side by side in --jobs "
                   "worker processes, one GPU stage per visible GPU (default).")

    def run(self, stages: list[Stage], runtime: Any, cache: Cache | None = None, log: StageLog | None = None,
            overall: Any = None) -> dict[str, StageOutcome]:
        jobs = int(getattr(runtime, "jobs", 1) or 1)
        # `fresh_processes`: even one job runs in a worker (a deterministic run whose kernels this
        # process cannot pin, sipo_bench.determinism)
        if (jobs <= 1 and not getattr(runtime, "fresh_processes", False)) or all(cache.is_done(s) for s in stages):
            return run_graph(stages, cache, runtime, log, overall)
        from .device import visible_gpus
        from .parallel import ParallelRun

        gpus = visible_gpus() if getattr(runtime, "device", "cpu") == "cuda" else []
        return ParallelRun(stages, cache, runtime, log, overall, jobs, gpus, getattr(runtime, "cpu_threads", None)).run()


class StageGraph:
    """The dependency bookkeeping of an executor that runs stages as their inputs finish:
    `stages` (one per key, planning order, which is topological), what each stage still waits
    on, and who waits on it."""

    def __init__(self, stages: list[Stage]):
        self.stages: dict[str, Stage] = {}
        for s in stages:
            self.stages.setdefault(s.key, s)
        self.waiting_on = {k: {d.key for d in s.inputs.values() if d.key in self.stages} for k, s in self.stages.items()}
        self.dependents: dict[str, list[str]] = {}
        for k, deps in self.waiting_on.items():
            for d in deps:
                self.dependents.setdefault(d, []).append(k)

    def initially_ready(self) -> list[str]:
        """Keys of the stages with no input in the graph, in planning order."""
        return [k for k in self.stages if not self.waiting_on[k]]

    def finished(self, key: str) -> list[str]:
        """Record that stage `key` finished (any status); the keys that became ready by it."""
        ready = []
        for k in self.dependents.get(key, ()):
            self.waiting_on[k].discard(key)
            if not self.waiting_on[k]:
                ready.append(k)
        return ready


def log_stage_failed(runtime: Any, stage: Stage, line: str) -> None:
    """The one console line of a failed stage."""
    runtime.log(f"stage {stage.name} failed: {line}" if runtime.quiet else f"[red]stage {stage.name} failed: {line}[/red]")


@hookimpl
def sipo_bench_register_executors() -> list:
    return [LocalExecutor]
