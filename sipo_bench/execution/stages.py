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
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ..compat import current_module, stable_module

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
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=json_default)


def json_default(o: Any) -> Any:
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
    fn: str  # "package.module:function"; a function object is turned into that (see `fn_ref`)
    config: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, "Stage"] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    version: str = "1"
    tags: Mapping[str, Any] = field(default_factory=dict)  # e.g. method/weight/seed, not hashed
    #: the run mode the stage is keyed under: None (default), or "deterministic" for every stage
    #: planned by a deterministic run (taken from `sipo_bench.execution.determinism.key_mode` when None)
    mode: str | None = None

    def __post_init__(self) -> None:
        if self.mode is None:
            from .determinism import current_key_mode

            self.mode = current_key_mode()
        if callable(self.fn):
            self.fn = fn_ref(self.fn, self.name)
        if not isinstance(self.fn, str) or ":" not in self.fn:
            raise ValueError(f"stage {self.name!r}: fn must be a module-level function or 'module:function', got {self.fn!r}")
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
            if self.mode is not None:  # the default mode's keys are those of every earlier version
                payload["mode"] = self.mode
            self._key = hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:20]
        return self._key

    @property
    def kind(self) -> str:
        """The name up to the first bracket: `dpo[helpful]` -> `dpo`."""
        return self.name.split("[", 1)[0]

    def load_fn(self) -> Callable[["StageContext"], Any]:
        return resolve_fn(self.fn, self.name)

    def __repr__(self) -> str:
        return f"Stage({self.name!r}, key={self.key})"


def fn_ref(fn: Callable[..., Any], stage: str = "?") -> str:
    """`"module:qualname"` of a stage function, checked to resolve back to it in a fresh
    process: a module-level function (or a static method of a module-level class) of an
    importable module. Functions of `--plugins-dir` files live in `sipo_bench_local_plugins.<stem>`
    (`sipo_bench.plugin_host.localplugins`), which workers import again from the same directory."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname:
        raise ValueError(f"stage {stage!r}: fn must be a function, got {fn!r}")
    if module == "__main__":
        raise ValueError(f"stage {stage!r}: fn {qualname} is defined in __main__, which other processes cannot "
                         "import; move it into a module or a --plugins-dir file")
    if "<" in qualname:  # <locals>, <lambda>
        raise ValueError(f"stage {stage!r}: fn {module}.{qualname} is not a module-level function (a lambda or a "
                         "nested function cannot be imported by name); define it at the top of its module")
    try:
        found = resolve_fn(f"{module}:{qualname}", stage)
    except ImportError as e:
        raise ValueError(str(e)) from None
    if getattr(found, "__qualname__", None) != qualname:  # e.g. a decorator that renamed it
        raise ValueError(f"stage {stage!r}: {module}:{qualname} names {found!r}, not fn {fn!r}")
    return f"{stable_module(module)}:{qualname}"  # the 0.1 path of a moved core module: keys stay


def resolve_fn(ref: str, stage: str = "?") -> Callable[..., Any]:
    """The object `"module:attr.attr"` names; `ImportError` naming the stage when it cannot."""
    module, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(current_module(module))
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        from ..plugin_host.localplugins import PACKAGE

        hint = (f" (a --plugins-dir file: this process must load the same plugins dir, e.g. "
                f"Runtime(plugins_dir=...))" if module.split(".")[0] == PACKAGE else "")
        raise ImportError(f"stage {stage!r}: cannot import stage function {ref!r}: {e}{hint}") from e
    return obj


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


#: version of the `_DONE.json` layout; 1 (no file record) is recomputed, never trusted
MARKER_FORMAT = 2


def _warn_stderr(message: str) -> None:
    import sys

    print(f"sipo-bench: warning: {message}", file=sys.stderr, flush=True)


class Cache:
    """The content-addressed store of finished stages (integrity contract: docs/architecture.md).

    `CACHE/stages/<key>/` is a finished stage: its artefacts, `result.json` (what the stage
    function returned) and `_DONE.json`, the marker written last that records every file the
    stage wrote (size, sha256). A stage counts as done only if its directory still matches that
    record (:mod:`sipo_bench.execution.integrity`); otherwise one warning names the stage and the file
    and the stage is recomputed.

    `recompute=True` (`--no-cache`): stages count as done only once this object built them;
    the new directory replaces the old one atomically, so a concurrent run reading the old one
    is not disturbed. `warn(message)` receives the integrity warnings.
    """

    def __init__(self, root: Path | str, *, recompute: bool = False, warn: Callable[[str], None] | None = None):
        self.root = Path(root)
        self.recompute = recompute
        self.warn = warn or _warn_stderr
        self._verified: dict[str, dict] = {}  # key -> marker, checked by this process
        self._built: set[str] = set()
        self._warned: set[str] = set()

    def with_root(self, root: Path | str) -> "Cache":
        """The same cache settings on another spelling of the root (e.g. resolved)."""
        return Cache(root, recompute=self.recompute, warn=self.warn)

    @property
    def tmp_root(self) -> Path:
        return self.root / "tmp"

    def path(self, stage: Stage | str) -> Path:
        key = stage if isinstance(stage, str) else stage.key
        return self.root / "stages" / key

    # --- integrity ------------------------------------------------------------------------

    def inspect(self, key: str, *, full: bool = False) -> tuple[dict | None, str | None]:
        """(marker, None) for a stage that matches its record, (None, None) for an absent stage,
        (None, problem) for one that must not be trusted. `full` hashes every file."""
        from .integrity import full_check, quick_check, valid_record

        d = self.path(key)
        if not d.exists():
            return None, None
        marker_path = d / DONE
        if not marker_path.is_file():
            return None, f"{DONE} is missing"
        try:
            marker = json.loads(marker_path.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            return None, f"{DONE} is damaged (not valid JSON)"
        if not isinstance(marker, dict):
            return None, f"{DONE} is damaged (a JSON {type(marker).__name__}, not an object)"
        if marker.get("format") is None and "files" not in marker and "key" in marker:
            return None, f"{DONE} was written by an older sipo-bench (no record of the stage's files)"
        if marker.get("format") != MARKER_FORMAT or not valid_record(marker.get("files")):
            return None, f"{DONE} is damaged (no valid record of the stage's files)"
        if marker.get("key") != key:
            return None, f"{DONE} belongs to stage {marker.get('key')!r}"
        if full:
            problem, _ = full_check(d, marker["files"], skip=(DONE,))
        else:
            problem = quick_check(d, marker["files"], skip=(DONE,))
        return (None, problem) if problem else (marker, None)

    def is_valid(self, stage: Stage | str) -> bool:
        """Whether a finished, intact copy of `stage` is in the cache (checked once per process;
        a damaged one is reported with one warning)."""
        key = stage if isinstance(stage, str) else stage.key
        if key in self._verified:
            return True
        marker, problem = self.inspect(key)
        if marker is not None:
            self._verified[key] = marker
            return True
        if problem and key not in self._warned:
            self._warned.add(key)
            name = stage.name if isinstance(stage, Stage) else key
            self.warn(f"cache: stage {name} ({key}) is not trusted: {problem}; it will be recomputed")
        return False

    def is_done(self, stage: Stage | str) -> bool:
        """Whether `stage` may be reused by this run (intact, and built by this run under
        `recompute`)."""
        key = stage if isinstance(stage, str) else stage.key
        if self.recompute and key not in self._built:
            return False
        return self.is_valid(stage)

    def result(self, stage: Stage | str) -> Any:
        """The JSON value the stage function returned (None if it returned nothing)."""
        p = self.path(stage) / RESULT
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except (UnicodeDecodeError, ValueError) as e:
            raise RuntimeError(f"cache: {p} is damaged ({e}); run `sipo-bench cache verify`") from None

    def meta(self, stage: Stage | str) -> dict:
        key = stage if isinstance(stage, str) else stage.key
        if key in self._verified:
            return self._verified[key]
        marker, _ = self.inspect(key)
        return marker or {}

    # --- building -------------------------------------------------------------------------

    @contextlib.contextmanager
    def building(self, stage: Stage, *, replace: bool | None = None) -> Iterator[Path]:
        """Yield a fresh temp dir for `stage`; when the block ends without error, move it into
        place (replacing an untrusted copy, or any copy with `replace`, default `recompute`).
        The builder holds an flock beside its temp dir, so cleaners know it is alive however
        long it runs."""
        replace = self.recompute if replace is None else replace
        from .fsio import held_lock, make_dir, swap_dirs, temp_name

        make_dir(self.tmp_root)
        name = temp_name(stage.key)
        lock = self.tmp_root / f"{name}.lock"
        with held_lock(lock):
            tmp = self.tmp_root / name
            os.mkdir(tmp, 0o777)
            try:
                yield tmp
                final = self.path(stage)
                make_dir(final.parent)
                self._verified.pop(stage.key, None)
                if final.exists() and not replace and self.inspect(stage.key)[0] is not None:
                    pass  # an identical stage finished meanwhile (a concurrent run): keep it
                else:
                    swap_dirs(tmp, final)
                self._built.add(stage.key)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
                with contextlib.suppress(OSError):
                    lock.unlink()

    def seal(self, stage: Stage, tmp: Path, result: Any, seconds: float, compute: Mapping[str, int] | None = None) -> dict:
        """Write `result.json` and then the marker recording every file in `tmp`, all fsync'ed;
        `compute`: the stage's counts (:mod:`sipo_bench.execution.compute`), kept in the marker."""
        from .fsio import fsync_dir
        from .integrity import record_files

        if result is not None:
            _write_durable(tmp / RESULT, json.dumps(result, default=json_default, indent=1))
        marker = {
            "format": MARKER_FORMAT, "name": stage.name, "key": stage.key, "fn": stage.fn,
            "config": stage.config, "inputs": {n: d.key for n, d in stage.inputs.items()},
            "seconds": seconds, "finished": time.time(), "files": record_files(tmp, skip=(DONE,)),
        }
        if compute is not None:
            marker["compute"] = dict(compute)
        for dirpath, _dirs, _files in os.walk(tmp):
            fsync_dir(Path(dirpath))
        _write_durable(tmp / DONE, json.dumps(marker, default=json_default, indent=1))
        fsync_dir(tmp)
        return json.loads(json.dumps(marker, default=json_default))

    # --- temp dirs and run records ---------------------------------------------------------

    def clean_tmp(self) -> list[tuple[Path, int]]:
        """Remove temp dirs of builders that are gone (their flock is free); a live builder's
        dir is never touched, however old. Legacy temp dirs without a lock (sipo-bench before
        file records) go after 6 h. Returns (path, bytes) of what was removed."""
        from .fsio import lock_is_free, owner_alive, tree_size

        removed: list[tuple[Path, int]] = []
        if not self.tmp_root.is_dir():
            return removed
        now = time.time()
        for p in sorted(self.tmp_root.iterdir()):
            with contextlib.suppress(OSError):
                if p.suffix == ".lock":
                    if not (self.tmp_root / p.stem).exists() and lock_is_free(p):
                        p.unlink()
                    continue
                lock = self.tmp_root / f"{p.name}.lock"
                if lock.exists():
                    dead = lock_is_free(lock)
                elif owner_alive(p.name) is not None:
                    dead = not owner_alive(p.name)
                else:
                    dead = now - p.stat().st_mtime > 6 * 3600
                if dead:
                    size = tree_size(p)
                    shutil.rmtree(p, ignore_errors=True)
                    with contextlib.suppress(OSError):
                        lock.unlink()
                    removed.append((p, size))
        return removed

    @property
    def runs_root(self) -> Path:
        return self.root / "runs"

    def record_run(self, run_id: str, out: Path, keys: list[str]) -> None:
        """`CACHE/runs/<run_id>.json`: which stages a run uses and where its results go, so
        `sipo-bench cache gc` can tell referenced stages from garbage."""
        from .fsio import hostname

        atomic_write_text(self.runs_root / f"{run_id}.json", json.dumps({
            "run_id": run_id, "out": str(Path(out).resolve()), "host": hostname(), "pid": os.getpid(),
            "started": time.time(), "keys": sorted(set(keys))}) + "\n")

    def end_run(self, run_id: str) -> None:
        """Mark the run's record finished: from now on only its OUT keeps its stages alive."""
        p = self.runs_root / f"{run_id}.json"
        with contextlib.suppress(OSError, ValueError):
            rec = json.loads(p.read_text())
            rec["ended"] = time.time()
            atomic_write_text(p, json.dumps(rec) + "\n")

    def in_use(self):
        """Held for a run's whole life (shared): `cache gc` (exclusive) waits for no run."""
        from .fsio import held_lock

        return held_lock(self.root / "gc.lock", shared=True)


def _write_durable(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temp file and rename: readers never see half a file."""
    from .fsio import atomic_write_text as _atomic

    _atomic(Path(path), text)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def write_jsonl(path: Path, rows: list[Mapping[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, default=json_default) + "\n" for r in rows))


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
    runtime: Any  # sipo_bench.execution.runtime.Runtime: plugin lookups, progress, generator backends
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
        self.write_error: OSError | None = None

    def write(self, stage: Stage, event: str, **extra: Any) -> None:
        row = {"run_id": self.run_id, "time": time.time(), "event": event, "stage": stage.name,
               "key": stage.key, "pid": os.getpid(), **extra}
        self.events.append(row)
        if self.path is not None and self.write_error is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a") as f:  # one short line per append: atomic in practice
                    f.write(json.dumps(row, default=str) + "\n")
                    f.flush()
            except OSError as e:  # a full or read-only OUT must not fail the stages themselves;
                self.write_error = e  # writing the report then fails loudly (exit 1)
                _warn_stderr(f"cannot append to the stage log {self.path} ({e.strerror}); events are kept in memory")


class StageAborted(Exception):
    """A stage raised a `BaseException` that is not an interrupt (`SystemExit`, ...): recorded
    as that stage's failure like any exception, so the run goes on and writes its summary."""


def execute_stage(stage: Stage, cache: Cache, runtime: Any, *, force: bool = False) -> tuple[str, Any, float]:
    """Run one stage whose inputs are done; return (status, result, seconds).

    status is "done" (computed now) or "cached"; `force` recomputes a cached stage (a worker
    of a `--no-cache` run). Exceptions propagate to the executor; a `BaseException` other than
    `KeyboardInterrupt` (and so SIGTERM, see `sipo_bench.execution.signals`) becomes :class:`StageAborted`.
    """
    if not force and cache.is_done(stage):
        return "cached", cache.result(stage), cache.meta(stage).get("seconds", 0.0)
    for name, dep in stage.inputs.items():
        if not cache.is_valid(dep):
            raise RuntimeError(f"input {name!r} ({dep.name}) of {stage.name} is not finished")
    t0 = time.time()
    with cache.building(stage, replace=force or cache.recompute) as tmp:
        ctx = StageContext(
            stage=stage, out=tmp,
            inputs={n: cache.path(d) for n, d in stage.inputs.items()},
            input_results={n: cache.result(d) for n, d in stage.inputs.items()},
            runtime=runtime,
        )
        from .compute import metered

        try:
            with metered() as meter:
                result = stage.load_fn()(ctx)
        except (Exception, KeyboardInterrupt):
            raise
        except BaseException as e:  # SystemExit, GeneratorExit, ...: a failure of this stage only
            raise StageAborted(f"{error_line(e)} (raised by the stage function)") from e
        seconds = time.time() - t0
        cache.seal(stage, tmp, result, seconds, compute=meter)
    return "done", result, seconds


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def error_line(exc: BaseException) -> str:
    """The one-line error every executor records for a failed stage: `Type: first line`."""
    if isinstance(exc, StageAborted):
        return str(exc).splitlines()[0]
    return f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
