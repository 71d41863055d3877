"""What a Ray worker runs for one stage: the local executor's `execute_stage` on the shared cache.

This module is imported by Ray workers (the task function is pickled by reference), so it
imports nothing heavy. A worker process keeps one `Runtime` per plugin setup, so a model loaded
by one stage is reused by the next stage the same worker runs, as in a local run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from sipo_bench.api import DONE, Cache, Stage, atomic_write_text, error_line, execute_stage, format_exception

#: the run's bookkeeping lives in CACHE/ray/<run id>/: `run.json` (proof that this node sees the
#: driver's cache) and `running/<key>-<pid>.json`, one marker per attempt in progress
RUN_FILE = "run.json"
RUNNING = "running"

_RUNTIMES: dict[tuple, Any] = {}


def run_dir(cache_root: Path | str, run_id: str) -> Path:
    return Path(cache_root) / "ray" / run_id


def _runtime(plugins_dir: str | None, env: dict[str, str]) -> Any:
    key = (plugins_dir, tuple(sorted(env.items())))
    if key not in _RUNTIMES:
        os.environ.update(env)  # e.g. SIPO_BENCH_PLUGINS: load the driver's plugin selection
        from sipo_bench.api import Runtime

        _RUNTIMES[key] = Runtime(plugins_dir=plugins_dir, quiet=True)
    return _RUNTIMES[key]


class CacheNotShared(RuntimeError):
    """The worker's node does not see the driver's cache directory."""


def _visible(paths: list[Path], wait_s: float) -> bool:
    """Whether every path exists, looking again for up to `wait_s` seconds: on NFS a directory
    another node has just renamed into place can take a few seconds to show (attribute cache)."""
    deadline = time.time() + wait_s
    while True:
        if all(p.exists() for p in paths):
            return True
        if time.time() >= deadline:
            return False
        for parent in {p.parent.parent for p in paths}:  # listing a directory refreshes its cache
            with contextlib.suppress(OSError):
                os.listdir(parent)
        time.sleep(0.5)


def _gpu_ids() -> list[str]:
    """The GPUs Ray assigned to this task (none outside a Ray worker)."""
    try:
        import ray

        return [str(g) for g in ray.get_gpu_ids()] if ray.is_initialized() else []
    except Exception:
        return []


def run_stage(stage: Stage, cache_root: str, run_id: str, plugins_dir: str | None, env: dict[str, str],
              wait_s: float = 0.0, recompute: bool = False) -> dict:
    """Run `stage` (inputs done) into the cache at `cache_root`; never raises for the stage's
    own errors: they come back as `{"ok": False, "error", "traceback"}` so Ray does not retry
    them. Losing the process (killed worker, dead node) is what Ray retries. A stage raising
    `SystemExit` and the like comes back the same way (`execute_stage` turns it into
    `StageAborted`). `recompute`: rebuild the stage even if the cache holds it (`--no-cache`)."""
    started = time.time()
    pid, host = os.getpid(), socket.gethostname()
    gpus = _gpu_ids()
    info = {"pid": pid, "host": host, "started": started, "gpus": gpus}
    marker = run_dir(cache_root, run_id) / RUNNING / f"{stage.key}-{pid}.json"
    cache = Cache(cache_root)
    try:
        if not _visible([run_dir(cache_root, run_id) / RUN_FILE], wait_s):
            raise CacheNotShared(
                f"the stage cache {cache_root} is not shared with this node ({host}): every Ray node "
                f"must mount the cache directory at the same path (NFS or another shared filesystem)")
        atomic_write_text(marker, json.dumps(info))
        _visible([cache.path(d) / DONE for d in stage.inputs.values()], wait_s)  # else execute_stage says which
        runtime = _runtime(plugins_dir, env)
        # the run's device for a stage Ray gave a GPU; a CPU stage's worker sees none (Ray sets
        # CUDA_VISIBLE_DEVICES to its GPUs), so it runs on the CPU
        os.environ["SIPO_BENCH_DEVICE"] = env.get("SIPO_BENCH_DEVICE", "cpu") if gpus else "cpu"
        runtime.device = os.environ["SIPO_BENCH_DEVICE"]
        runtime.before_stage(stage)
        status, result, seconds = execute_stage(stage, cache, runtime, force=recompute)
    except Exception as e:  # the stage's own failure: recorded by the driver, not retried
        return {**info, "ok": False, "ended": time.time(), "error": error_line(e), "traceback": format_exception(e)}
    finally:
        try:
            marker.unlink()
        except OSError:
            pass
    return {**info, "ok": True, "ended": time.time(), "status": status, "result": result, "seconds": seconds}
