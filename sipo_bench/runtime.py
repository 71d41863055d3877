"""The per-process environment stage functions run in: plugins, progress display, and caches
of loaded backends (one generator / scorer instance per process, so a model loads once)."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any, Iterator

from .interfaces import Generator, Scorer, Task
from .plugins import Registries, load

log = logging.getLogger("sipo_bench")


class Runtime:
    def __init__(self, registries: Registries | None = None, *, plugins_dir: str | Path | None = None,
                 quiet: bool = False, console: Any = None):
        self.plugins_dir = str(plugins_dir) if plugins_dir else None
        self.registries = registries if registries is not None else load(self.plugins_dir)
        self.quiet = quiet
        self._console = console
        self._progress: Any = None
        self._generators: dict[str, Generator] = {}
        self._scorers: dict[str, Scorer] = {}

    # --- plugins ----------------------------------------------------------------------------

    def task(self, name: str, options: dict | None = None) -> Task:
        from .config import build

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

    def before_stage(self, stage: Any) -> None:
        """Called before a stage runs: an exclusive backend (a vLLM engine) is closed unless the
        stage generates with it, so training and scoring stages, which load models without the
        runtime, never share the device with an engine that took most of it."""
        name = stage.config.get("generator") if hasattr(stage.config, "get") else None
        for gen in self._generators.values():
            if getattr(gen, "exclusive_device", False) and gen.name != name:
                gen.close()

    def release_device(self, keep: Any) -> None:
        """Device memory for `keep`, about to be used: a backend that takes most of a device
        when it starts (`Generator.exclusive_device`, e.g. a vLLM engine) gets it free of every
        other loaded model (transformers models, reward models: closed, they reload when next
        used); anything else closes the exclusive backends. Alternating stages of the two kinds
        therefore reload models (see docs/paper_reproduction.md)."""
        exclusive = getattr(keep, "exclusive_device", False)
        others = [x for x in (*self._generators.values(), *self._scorers.values())
                  if x is not keep and (exclusive or getattr(x, "exclusive_device", False))]
        if not others:
            return
        for x in others:
            x.close()
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def close(self) -> None:
        for g in self._generators.values():
            g.close()
        for sc in self._scorers.values():
            sc.close()
        self._generators.clear()
        self._scorers.clear()

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
