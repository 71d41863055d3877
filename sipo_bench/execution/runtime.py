"""The per-process environment stage functions run in: plugins, progress display, caches of
loaded backends (one generator / scorer instance per process, so a model loads once), and the
run's execution settings (`device`, `jobs`, `cpu_threads`) that executors read."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from ..contract.interfaces import Generator, Scorer, Task
from ..plugin_host.manager import Registries, load

log = logging.getLogger("sipo_bench")

#: functions that free models held in module-level caches (e.g. the generation backend's base
#: models), called by :meth:`Runtime.release`; a plugin adds one with :func:`on_release`
_RELEASE_HOOKS: list[Callable[[], None]] = []


def on_release(fn: Callable[[], None]) -> Callable[[], None]:
    """Register `fn` to run whenever a runtime releases its heavy objects (idempotent)."""
    if fn not in _RELEASE_HOOKS:
        _RELEASE_HOOKS.append(fn)
    return fn


def _free_memory() -> None:
    """Collect garbage and return the GPU memory torch keeps cached (if torch uses CUDA here)."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class Runtime:
    def __init__(self, registries: Registries | None = None, *, plugins_dir: str | Path | None = None,
                 quiet: bool = False, console: Any = None, device: str = "cpu", jobs: int = 1,
                 cpu_threads: int | None = None):
        self.plugins_dir = str(plugins_dir) if plugins_dir else None
        self.registries = registries if registries is not None else load(self.plugins_dir)
        self.quiet = quiet
        #: the run's resolved device ("cpu" or "cuda"), worker processes (jobs) and torch
        #: threads per stage; set by `experiment.execute`, read by executors
        self.device = device
        self.jobs = jobs
        self.cpu_threads = cpu_threads
        self.fresh_processes = False  # run every stage in a worker process, even with one job (determinism)
        self._last_gpu_kind: str | None = None
        self._device_owner: Any = None  # the exclusive backend that last got the device
        self._console = console
        self._progress: Any = None
        self._generators: dict[str, Generator] = {}
        self._scorers: dict[str, Scorer] = {}

    # --- plugins ----------------------------------------------------------------------------

    def task(self, name: str, options: dict | None = None) -> Task:
        from ..configs.schema import build

        cls = self.registries.tasks.get(name)
        return cls(build(cls.config_class, options or {}, f"task_options"))

    def generator(self, name: str) -> Generator:
        if name not in self._generators:
            self._generators[name] = self.registries.generators.get(name)()
        gen = self._generators[name]
        self.release_device(keep=gen)
        return gen

    def scorer(self, name: str, options: dict | None = None) -> Scorer:
        import json

        key = name + json.dumps(options or {}, sort_keys=True)
        if key not in self._scorers:
            self._scorers[key] = self.registries.scorers.get(name)(**(options or {}))
        scorer = self._scorers[key]
        self.release_device(keep=scorer)
        return scorer

    def release_device(self, keep: Any) -> None:
        """Device memory for `keep`, about to be used: a backend that takes most of a device
        when it starts (`Generator.exclusive_device`, e.g. a vLLM engine) gets it free of every
        other loaded model (transformers models, reward models: closed, they reload when next
        used); anything else closes the exclusive backends. Alternating stages of the two kinds
        therefore reload models (see docs/paper_reproduction.md)."""
        exclusive = getattr(keep, "exclusive_device", False)
        if exclusive and self._device_owner is keep:
            return  # handed out again with nothing loaded since: the device is still its own
        others = [x for x in (*self._generators.values(), *self._scorers.values())
                  if x is not keep and (exclusive or getattr(x, "exclusive_device", False))]
        self._device_owner = keep if exclusive else None
        if not others and not exclusive:
            return
        for x in others:
            x.close()
        if exclusive:  # models plugins keep in module-level caches too
            for fn in list(_RELEASE_HOOKS):
                fn()
        _free_memory()

    def close(self) -> None:
        for g in self._generators.values():
            g.close()
        for sc in self._scorers.values():
            sc.close()
        self._generators.clear()
        self._scorers.clear()

    def release(self) -> None:
        """Free every heavy object this process holds (generators, scorers, models cached by
        plugins) and return the GPU memory torch keeps cached."""
        self.close()
        for fn in list(_RELEASE_HOOKS):
            fn()
        _free_memory()

    def before_stage(self, stage: Any) -> None:
        """Called by executors before running `stage` in this process. Stages of one kind in a
        row share what they loaded (the base model of every `generate` stage); before a GPU
        stage of another kind than the last GPU stage here, everything is released so that
        stage has the GPU's memory (a training stage after generation, a reward model after a
        policy). CPU stages keep everything: memory is not the constraint there.

        Whatever the device, an exclusive backend (a vLLM engine) is closed unless the stage
        generates with it, so training and scoring stages, which load models without the
        runtime, never share the device with an engine that took most of it."""
        name = stage.config.get("generator") if hasattr(stage.config, "get") else None
        for gen in self._generators.values():
            if getattr(gen, "exclusive_device", False) and gen.name != name:
                gen.close()
                self._device_owner = None
        if getattr(stage.resources, "gpus", 0) <= 0:
            return
        if self._last_gpu_kind is not None and self._last_gpu_kind != stage.kind:
            self.release()
        self._last_gpu_kind = stage.kind

    # --- display ----------------------------------------------------------------------------

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    def log(self, message: str) -> None:
        if self.quiet:
            print(message, file=sys.stderr, flush=True)
        else:
            self.console.log(message)

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        """Show one rich progress display for the duration (none when quiet)."""
        if self.quiet or self._progress is not None:
            yield
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                                  transient=False)
        try:
            with self._progress:
                yield
        finally:
            self._progress = None

    @contextlib.contextmanager
    def progress(self, total: int | None, description: str) -> Iterator[Any]:
        """Yield `advance(n=1)`; a bar in the live display, a no-op when quiet."""
        if self._progress is None:
            yield lambda n=1: None
            return
        tid = self._progress.add_task(description, total=total)
        try:
            yield lambda n=1: self._progress.advance(tid, n)
        finally:
            self._progress.update(tid, visible=False)
            self._progress.remove_task(tid)
