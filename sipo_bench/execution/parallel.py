"""The local executor with `--jobs N > 1`: ready stages run side by side in N worker processes.

The parent walks the graph and owns everything shared: the cache decisions (a stage whose input
failed is skipped, a finished one is taken from the cache), the one ordered stage log, the
console and the progress display. Workers (:mod:`sipo_bench.execution.workers`) only run stages.

Scheduling:

- *Slots.* `jobs` worker slots. On a `cuda` run with G visible GPUs, the first min(jobs, G)
  slots are GPU slots, each owning one device (`CUDA_VISIBLE_DEVICES` of its worker); the rest
  are CPU slots. A stage that asks for a GPU runs in a GPU slot, one stage per device; other
  stages run in CPU slots (in GPU slots only when there are no CPU slots). On a CPU run every
  slot is a CPU slot and GPU requests are ignored, as in-process.
- *Capacity.* Stages ask for `Resources.cpus` threads (the run's `cpu_threads`); at most
  `jobs x cpu_threads` threads run at once, and at most the machine's memory in
  `Resources.memory_gb` (a stage that asks for more than is free waits, unless nothing runs).
- *Order.* Among ready stages, the one heading the longest chain of stages still to run goes
  first (the SFT model before a score), then the planning order; an idle worker prefers a stage
  of the kind and base model it ran last, so it reuses what it loaded.
- *Failures.* A stage that raises fails as in-process. A worker that dies (OOM killer, SIGKILL,
  a crash in native code) fails only the stage it was running, with which signal and which
  stage; its dependents are skipped, the slot gets a fresh worker, the rest goes on.
- *Interruption.* Ctrl-C or an error in the parent stops every worker; a SIGKILLed parent
  takes its workers with it (`PR_SET_PDEATHSIG` and a watchdog), and a rerun resumes from the
  cache as always.
"""

from __future__ import annotations

import contextlib
import os
import time
from multiprocessing.connection import wait
from typing import Any

from .graph import StageGraph, log_stage_failed
from ..contract.interfaces import StageOutcome
from .stages import Cache, Stage, StageLog
from .workers import WorkerProcess, describe_exit

POLL_SECONDS = 0.5


def total_memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    except (ValueError, OSError, AttributeError):
        return float("inf")


class _Slot:
    def __init__(self, gpu: str | None):
        self.gpu = gpu
        self.worker: WorkerProcess | None = None


class ParallelRun:
    """One pass over a graph with worker processes (see the module docstring)."""

    def __init__(self, stages: list[Stage], cache: Cache, runtime: Any, log: StageLog, overall: Any,
                 jobs: int, gpus: list[str], cpu_threads: int | None):
        self.cache, self.runtime, self.log = cache, runtime, log
        self.overall = overall or (lambda n=1: None)
        self.jobs = max(1, int(jobs))
        self.cpu_threads = cpu_threads
        self.capacity = float(self.jobs * (cpu_threads or 1))
        self.memory = total_memory_gb()
        self.device = getattr(runtime, "device", "cpu")
        self.gpus = list(gpus) if self.device == "cuda" else []
        self.slots = [_Slot(g) for g in self.gpus[: self.jobs]] + \
                     [_Slot(None) for _ in range(self.jobs - min(self.jobs, len(self.gpus)))]
        self.graph = StageGraph(stages)
        self.stages = self.graph.stages
        self.index = {k: i for i, k in enumerate(self.stages)}
        self.height = self._heights()
        self.ready: list[str] = self.graph.initially_ready()
        self.outcomes: dict[str, StageOutcome] = {}
        self.running: dict[str, WorkerProcess] = {}
        self.stage_bars: dict[str, contextlib.ExitStack] = {}
        self.bars: dict[tuple[int, int], tuple[contextlib.ExitStack, Any]] = {}

    def _heights(self) -> dict[str, int]:
        """Stages on the longest chain from each stage to the end of the graph (itself included)."""
        height: dict[str, int] = {}
        for k in reversed(list(self.stages)):  # planning order is topological: dependents come later
            height[k] = 1 + max((height[d] for d in self.graph.dependents.get(k, ())), default=0)
        return height

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> dict[str, StageOutcome]:
        try:
            while True:
                self._settle()
                self._dispatch()
                if not self.running:
                    if self.ready:  # cannot happen with the slot rules above; never spin
                        for k in list(self.ready):
                            line = f"UnschedulableStage: {self.stages[k].name} found no worker slot"
                            self._finish(self.stages[k], StageOutcome("failed", error=line, traceback=line + "\n"),
                                         "failed", error=line, traceback=line + "\n")
                        continue
                    break
                self._wait()
        except BaseException:
            for slot in self.slots:
                if slot.worker is not None:
                    slot.worker.kill()
            raise
        finally:
            for stack in list(self.stage_bars.values()) + [b[0] for b in self.bars.values()]:
                with contextlib.suppress(Exception):
                    stack.close()
            self._stop_workers()
            with contextlib.suppress(OSError):
                self.cache.clean_tmp()  # a worker that could not unwind (SIGKILL) left its temp dir
        return self.outcomes

    def _stop_workers(self) -> None:
        live = [s.worker for s in self.slots if s.worker is not None]
        for w in live:
            with contextlib.suppress(OSError, BrokenPipeError, ValueError):
                w.conn.send(("stop",))
        deadline = time.time() + 10
        for w in live:
            w.proc.join(max(0.0, deadline - time.time()))
            w.kill()
        for s in self.slots:
            s.worker = None

    # --- ready stages ---------------------------------------------------------------------------

    def _settle(self) -> None:
        """Resolve ready stages that need no worker: skipped (an input failed) or cached, and
        the stages that become ready by that, until only stages to run are left."""
        settled = True
        while settled:
            settled = False
            for key in list(self.ready):
                settled |= self._settle_one(key)

    def _settle_one(self, key: str) -> bool:
        """Skip or take from the cache one ready stage; True if it was settled."""
        stage = self.stages[key]
        bad = [d for d in stage.inputs.values()
               if d.key in self.outcomes and self.outcomes[d.key].status in ("failed", "skipped")]
        if bad:
            self.ready.remove(key)
            self._finish(stage, StageOutcome("skipped", error=f"input {bad[0].name} failed"), "skipped",
                         reason=f"input {bad[0].name} failed")
            return True
        if self.cache.is_done(stage):
            self.ready.remove(key)
            self._finish(stage, StageOutcome("cached", self.cache.result(stage), self.cache.meta(stage).get("seconds", 0.0)),
                         "cached")
            return True
        return False

    def _cpus(self, stage: Stage) -> float:
        return min(float(stage.resources.cpus), self.capacity)

    def _dispatch(self) -> None:
        self.ready.sort(key=lambda k: (-self.height[k], self.index[k]))
        for key in list(self.ready):
            stage = self.stages[key]
            used_cpus = sum(self._cpus(self.stages[k]) for k in self.running)
            used_mem = sum(float(self.stages[k].resources.memory_gb) for k in self.running)
            if self.running and (used_cpus + self._cpus(stage) > self.capacity
                                 or used_mem + float(stage.resources.memory_gb) > self.memory):
                continue
            slot = self._slot_for(stage)
            if slot is None:
                continue
            self.ready.remove(key)
            self._start(stage, slot)

    def _slot_for(self, stage: Stage) -> _Slot | None:
        wants_gpu = bool(self.gpus) and stage.resources.gpus > 0
        has_cpu_slots = any(s.gpu is None for s in self.slots)
        if wants_gpu:
            fits = [s for s in self.slots if s.gpu is not None]
        else:
            fits = [s for s in self.slots if (s.gpu is None) == has_cpu_slots]
        idle = [s for s in fits if s.worker is None or not s.worker.busy]
        if not idle:
            return None
        base = stage.inputs.get("base")

        def affinity(s: _Slot) -> tuple:
            last = s.worker.last if s.worker is not None else None
            last_base = last.inputs.get("base") if last is not None else None
            same_base = base is not None and last_base is not None and last_base.key == base.key
            return (same_base, last is not None and last.kind == stage.kind, s.worker is not None)

        return max(idle, key=affinity)

    def _start(self, stage: Stage, slot: _Slot) -> None:
        if slot.worker is None or not slot.worker.proc.is_alive():
            slot.worker = WorkerProcess(self.runtime.plugins_dir, slot.gpu, self.device)
        w = slot.worker
        threads = int(self._cpus(stage)) if self.cpu_threads is not None else None
        self.running[stage.key] = w
        try:
            w.run(stage, str(self.cache.root), threads, self.cache.recompute)
        except (OSError, ValueError):  # the worker died before it could take the stage
            w.stage_key, w.started_at = stage.key, time.time()
            w.proc.join(1.0)
            self._gone(w)
            return
        where = {"pid": w.pid, **({"gpu": w.gpu} if w.gpu is not None else {})}
        self.log.write(stage, "start", worker=self.slots.index(slot), **where)
        label = f"worker {self.slots.index(slot)}, pid {w.pid}" + (f", GPU {w.gpu}" if w.gpu is not None else "")
        if self.runtime.quiet:
            self.runtime.log(f"stage {stage.name} ... ({label})")
        else:
            stack = contextlib.ExitStack()
            stack.enter_context(self.runtime.progress(None, f"{stage.name} ({label})"))
            self.stage_bars[stage.key] = stack

    # --- messages and deaths --------------------------------------------------------------------

    def _wait(self) -> None:
        live = [s.worker for s in self.slots if s.worker is not None]
        conns = {w.conn: w for w in live}
        sentinels = {w.proc.sentinel: w for w in live}
        ready = wait(list(conns) + list(sentinels), timeout=POLL_SECONDS)
        for obj in ready:
            if obj in conns:
                self._drain(conns[obj])
        for obj in ready:
            if obj in sentinels:
                w = sentinels[obj]
                self._drain(w)  # what it sent before it went
                w.proc.join(1.0)
                self._gone(w)

    def _drain(self, w: WorkerProcess) -> None:
        while True:
            try:
                if not w.conn.poll():
                    return
                msg = w.conn.recv()
            except (EOFError, OSError):
                return
            self._handle(w, msg)

    def _handle(self, w: WorkerProcess, msg: tuple) -> None:
        kind = msg[0]
        if kind == "log":
            self.runtime.log(msg[1])
        elif kind == "bar":
            _, bar, total, description = msg
            stack = contextlib.ExitStack()
            advance = stack.enter_context(self.runtime.progress(total, description))
            self.bars[(w.pid, bar)] = (stack, advance)
        elif kind == "advance":
            entry = self.bars.get((w.pid, msg[1]))
            if entry is not None:
                entry[1](msg[2])
        elif kind == "bar-end":
            entry = self.bars.pop((w.pid, msg[1]), None)
            if entry is not None:
                entry[0].close()
        elif kind == "done":
            _, key, status, result, seconds, extras = msg
            self._release(w, key)
            self._finish(self.stages[key], StageOutcome(status, result, seconds), "done", seconds=seconds, pid=w.pid,
                         **extras)
        elif kind == "failed":
            _, key, line, tb = msg
            self._release(w, key)
            self._fail(self.stages[key], line, tb, pid=w.pid, seconds=time.time() - w.started_at)

    def _release(self, w: WorkerProcess, key: str) -> None:
        self.running.pop(key, None)
        w.stage_key = None
        for bar_key in [b for b in self.bars if b[0] == w.pid]:  # bars the stage left open
            self.bars.pop(bar_key)[0].close()

    def _gone(self, w: WorkerProcess) -> None:
        """A worker process ended: fail the stage it was running, if any; free its slot."""
        how = describe_exit(w.proc.exitcode)
        key = w.stage_key
        for slot in self.slots:
            if slot.worker is w:
                slot.worker = None
        if key is not None:
            self._release(w, key)
            stage = self.stages[key]
            line = f"WorkerDied: the worker process (pid {w.pid}) running stage {stage.name} {how}"
            self._fail(stage, line, line + "\n", pid=w.pid, seconds=time.time() - w.started_at)
        else:
            self.runtime.log(f"an idle worker process (pid {w.pid}) {how}; a new one starts when needed")
        w.kill()

    def _fail(self, stage: Stage, line: str, tb: str, **extra: Any) -> None:
        self._finish(stage, StageOutcome("failed", seconds=extra.get("seconds", 0.0), error=line, traceback=tb),
                     "failed", error=line, traceback=tb, **{k: v for k, v in extra.items() if k != "seconds"})
        log_stage_failed(self.runtime, stage, line)

    def _finish(self, stage: Stage, outcome: StageOutcome, event: str, **extra: Any) -> None:
        self.outcomes[stage.key] = outcome
        self.log.write(stage, event, **extra)
        stack = self.stage_bars.pop(stage.key, None)
        if stack is not None:
            stack.close()
        self.overall()
        self.ready.extend(self.graph.finished(stage.key))
