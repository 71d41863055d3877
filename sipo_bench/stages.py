"""Stages: the cached, resumable units of work of a run, and their content-addressed cache.

A :class:`Stage` names a function (`"package.module:function"`), a JSON-able config and named
input stages. Its key hashes the function, the config, a version and its inputs' keys, so the
same work planned by two methods is done once, and changing any config field (or any upstream
stage) changes every key downstream.

A finished stage lives in `CACHE/stages/<key>/` with a `_DONE.json` marker written last. The
artefact is built in a temporary directory beside it and renamed into place, so a process
killed at any moment leaves either a complete stage or nothing the next run would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

DONE = "_DONE.json"
RESULT = "result.json"


@dataclass(frozen=True)
class Resources:
    """What one run of a stage asks of a worker (used by distributed executors)."""

    cpus: float = 1
    gpus: float = 0
    memory_gb: float = 0


def canonical_json(obj: Any) -> str:
    """Deterministic JSON for hashing: sorted keys, no whitespace, floats as repr."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, Stage):
        return {"__stage__": o.key}
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    import dataclasses

    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    raise TypeError(f"not JSON-serialisable in a stage config: {type(o).__name__}")


@dataclass(eq=False)
class Stage:
    """One unit of work: `fn(ctx)` writes its artefacts into `ctx.out`.

    `name` is for people (`dpo[helpful]`, `generate[mod,w=0.25/0.75,seed=0]`) and is not part
    of the key; two stages with the same function, config and inputs are the same work.
    """

    name: str
    fn: str
    config: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, "Stage"] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    version: str = "1"
    tags: Mapping[str, Any] = field(default_factory=dict)  # e.g. method/weight/seed, not hashed

    def __post_init__(self) -> None:
        if ":" not in self.fn:
            raise ValueError(f"stage {self.name!r}: fn must be 'module:function', got {self.fn!r}")
        self._key: str | None = None

    @property
    def key(self) -> str:
        if self._key is None:
            payload = {
                "fn": self.fn,
                "version": self.version,
                "config": self.config,
                "inputs": {k: v.key for k, v in sorted(self.inputs.items())},
            }
            self._key = hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:20]
        return self._key

    @property
    def kind(self) -> str:
        """The name up to the first bracket: `dpo[helpful]` -> `dpo`."""
        return self.name.split("[", 1)[0]

    def load_fn(self) -> Callable[["StageContext"], Any]:
        module, _, attr = self.fn.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def __repr__(self) -> str:
        return f"Stage({self.name!r}, key={self.key})"


def walk(stages: list[Stage]) -> list[Stage]:
    """All stages reachable from `stages`, deduplicated by key, in a topological order."""
    order: list[Stage] = []
    seen: set[str] = set()

    def visit(s: Stage) -> None:
        if s.key in seen:
            return
        for dep in s.inputs.values():
            visit(dep)
        seen.add(s.key)
        order.append(s)

    for s in stages:
        visit(s)
    return order


# --- Cache ----------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    env = os.environ.get("SIPO_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "sipo-bench"


class Cache:
    """The content-addressed store of finished stages."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def path(self, stage: Stage | str) -> Path:
        key = stage if isinstance(stage, str) else stage.key
        return self.root / "stages" / key

    def is_done(self, stage: Stage | str) -> bool:
        return (self.path(stage) / DONE).is_file()

    def result(self, stage: Stage | str) -> Any:
        """The JSON value the stage function returned (None if it returned nothing)."""
        p = self.path(stage) / RESULT
        return json.loads(p.read_text()) if p.is_file() else None

    def meta(self, stage: Stage | str) -> dict:
        return json.loads((self.path(stage) / DONE).read_text())

    def invalidate(self, stage: Stage) -> None:
        p = self.path(stage)
        if p.exists():
            trash = self.root / "tmp" / f"trash-{stage.key}-{os.getpid()}-{time.time_ns()}"
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, trash)
            shutil.rmtree(trash, ignore_errors=True)

    @contextlib.contextmanager
    def building(self, stage: Stage) -> Iterator[Path]:
        """Yield a fresh temp dir for `stage`; on success move it into place atomically."""
        tmp_root = self.root / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{stage.key}-", dir=tmp_root))
        try:
            yield tmp
            final = self.path(stage)
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists() and not (final / DONE).is_file():
                shutil.rmtree(final, ignore_errors=True)  # a torn leftover from a foreign writer
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / DONE).is_file():  # lost a race to an identical stage: keep theirs
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def gc_tmp(self, older_than_s: float = 6 * 3600) -> None:
        """Remove temp dirs left by killed processes."""
        tmp_root = self.root / "tmp"
        if not tmp_root.is_dir():
            return
        now = time.time()
        for p in tmp_root.iterdir():
            with contextlib.suppress(OSError):
                if now - p.stat().st_mtime > older_than_s:
                    shutil.rmtree(p, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temp file and rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_jsonl(path: Path, rows: list[Mapping[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# --- Running one stage ----------------------------------------------------------------------


@dataclass
class StageContext:
    """What a stage function sees: its config, its inputs' artefact dirs, its output dir."""

    stage: Stage
    out: Path
    inputs: dict[str, Path]
    runtime: Any  # sipo_bench.runtime.Runtime: plugin lookups, progress, generator backends
    input_results: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Mapping[str, Any]:
        return self.stage.config

    def progress(self, total: int | None, description: str | None = None):
        """A context manager yielding `advance(n=1)`; a rich bar unless the run is quiet."""
        return self.runtime.progress(total, description or self.stage.name)

    def log(self, message: str) -> None:
        self.runtime.log(f"[{self.stage.name}] {message}")


class StageLog:
    """Append-only JSONL of stage events (`start`, `done`, `cached`, `failed`, `skipped`)."""

    def __init__(self, path: Path | None, run_id: str):
        self.path = Path(path) if path else None
        self.run_id = run_id
        self.events: list[dict] = []

    def write(self, stage: Stage, event: str, **extra: Any) -> None:
        row = {"run_id": self.run_id, "time": time.time(), "event": event, "stage": stage.name,
               "key": stage.key, "pid": os.getpid(), **extra}
        self.events.append(row)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:  # one short line per append: atomic in practice
                f.write(json.dumps(row, default=str) + "\n")
                f.flush()


def execute_stage(stage: Stage, cache: Cache, runtime: Any) -> tuple[str, Any, float]:
    """Run one stage whose inputs are done; return (status, result, seconds).

    status is "done" (computed now) or "cached". Exceptions propagate to the executor.
    """
    if cache.is_done(stage):
        return "cached", cache.result(stage), cache.meta(stage).get("seconds", 0.0)
    for name, dep in stage.inputs.items():
        if not cache.is_done(dep):
            raise RuntimeError(f"input {name!r} ({dep.name}) of {stage.name} is not finished")
    t0 = time.time()
    with cache.building(stage) as tmp:
        ctx = StageContext(
            stage=stage, out=tmp,
            inputs={n: cache.path(d) for n, d in stage.inputs.items()},
            input_results={n: cache.result(d) for n, d in stage.inputs.items()},
            runtime=runtime,
        )
        prepare = getattr(runtime, "before_stage", None)  # device memory for this stage (sipo_bench.runtime)
        if prepare is not None:
            prepare(stage)
        result = stage.load_fn()(ctx)
        seconds = time.time() - t0
        if result is not None:
            (tmp / RESULT).write_text(json.dumps(result, default=_json_default, indent=1))
        (tmp / DONE).write_text(json.dumps({
            "name": stage.name, "key": stage.key, "fn": stage.fn, "config": stage.config,
            "inputs": {n: d.key for n, d in stage.inputs.items()}, "seconds": seconds,
            "finished": time.time(),
        }, default=_json_default, indent=1))
    return "done", result, seconds


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def error_line(exc: BaseException) -> str:
    """The one-line error every executor records for a failed stage: `Type: first line`."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
