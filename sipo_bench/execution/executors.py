"""The built-in `local` executor: with `jobs` 1, runs stages in this process one after another;
with more, in that many worker processes side by side (:mod:`sipo_bench.execution.parallel`)."""

from __future__ import annotations

import time
from typing import Any

from ..contract.hookspecs import API_VERSION, hookimpl
from ..contract.interfaces import Executor, StageOutcome
from .graph import StageGraph, log_stage_failed, stage_extras  # noqa: F401  (StageGraph: the 0.1 home)
from .stages import Cache, Stage, StageLog, error_line, execute_stage, format_exception


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
        # process cannot pin, sipo_bench.execution.determinism)
        if (jobs <= 1 and not getattr(runtime, "fresh_processes", False)) or all(cache.is_done(s) for s in stages):
            return run_graph(stages, cache, runtime, log, overall)
        from .device import visible_gpus
        from .parallel import ParallelRun

        gpus = visible_gpus() if getattr(runtime, "device", "cpu") == "cuda" else []
        return ParallelRun(stages, cache, runtime, log, overall, jobs, gpus, getattr(runtime, "cpu_threads", None)).run()


SIPO_BENCH_API = API_VERSION  # the built-in executor is written for the current API


@hookimpl
def sipo_bench_register_executors() -> list:
    return [LocalExecutor]
