"""What every executor shares: the dependency bookkeeping of a stage graph run as inputs
finish (:class:`StageGraph`), the console line of a failed stage, and what the stage log
records about a stage beyond its wall time."""

from __future__ import annotations

import time
from typing import Any

from .stages import Stage


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
