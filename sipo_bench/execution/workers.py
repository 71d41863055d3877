"""Worker processes of the local executor (`--jobs N`): each runs one stage at a time, for as
long as the run lasts, and reports back over a pipe.

- Started with the `spawn` start method (a fresh interpreter: never a fork of a process that
  has imported torch or started threads), with its own `CUDA_VISIBLE_DEVICES` (one GPU, or
  none) and `$SIPO_BENCH_DEVICE`, set before anything imports torch.
- Dies with its parent: `prctl(PR_SET_PDEATHSIG, SIGKILL)` on Linux, and a watchdog thread
  that exits when the parent pid changes (any platform), so a SIGKILLed `sipo-bench run`
  leaves no worker behind. Ctrl-C is the parent's business: workers ignore SIGINT and are
  stopped by the parent.
- Keeps one :class:`WorkerRuntime` for its whole life, so a model loaded by one stage (the
  generation backend's base model, a scorer) is reused by the next stage it runs there; the
  runtime releases them before a GPU stage of another kind (:meth:`Runtime.before_stage`).
- Runs `execute_stage` on the shared cache (same keys, same atomic writes as in-process), and
  sends everything the parent shows or records: log lines, progress bars, the outcome.

Protocol (pickled tuples over a `multiprocessing` pipe): parent -> worker
`("run", stage, cache_root, threads)` or `("stop",)`; worker -> parent `("log", text)`,
`("bar", id, total, description)`, `("advance", id, n)`, `("bar-end", id)`,
`("done", key, status, result, seconds, extras)` (extras: `cpu_seconds`, `peak_gpu_gb`),
`("failed", key, error_line, traceback)`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Any, Iterator

from .runtime import Runtime

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCHDOG_SECONDS = 1.0
ADVANCE_EVERY_SECONDS = 0.2  # progress advances are batched: at most ~5 messages per second per bar


# --- inside the worker process ----------------------------------------------------------------


def _die_with_parent(parent_pid: int) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watchdog alone
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="sipo-bench-parent-watchdog", daemon=True).start()


class WorkerRuntime(Runtime):
    """The worker's runtime: plugins and model caches as in-process, but log lines and progress
    bars go to the parent, which owns the console."""

    def __init__(self, conn: Any, plugins_dir: str | None, device: str, send_lock: Any = None):
        super().__init__(plugins_dir=plugins_dir, quiet=False, device=device)
        self._conn = conn
        self._send_lock = send_lock or threading.Lock()
        self._bars = 0

    def send(self, msg: tuple) -> None:
        with self._send_lock:
            self._conn.send(msg)

    def log(self, message: str) -> None:
        self.send(("log", message))

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def progress(self, total: int | None, description: str) -> Iterator[Any]:
        self._bars += 1
        bar = self._bars
        self.send(("bar", bar, total, description))
        pending = [0, time.monotonic()]

        def advance(n: int = 1) -> None:
            pending[0] += n
            now = time.monotonic()
            if now - pending[1] >= ADVANCE_EVERY_SECONDS:
                self.send(("advance", bar, pending[0]))
                pending[0], pending[1] = 0, now

        try:
            yield advance
        finally:
            if pending[0]:
                self.send(("advance", bar, pending[0]))
            self.send(("bar-end", bar))


def worker_main(conn: Any, parent_pid: int, env: dict[str, str], plugins_dir: str | None) -> None:
    """The worker's loop: run stages until told to stop or the pipe closes."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .signals import Terminated, raise_terminated

    # the parent stops a busy worker with SIGTERM: unwind, so the stage's temp dir and lock go
    signal.signal(signal.SIGTERM, raise_terminated)
    os.environ.update(env)  # CUDA_VISIBLE_DEVICES and SIPO_BENCH_DEVICE before torch is imported
    from .determinism import apply_if_flagged

    apply_if_flagged()  # a deterministic run's worker: pinned kernels (inherited) + deterministic algorithms
    from .graph import stage_extras
    from .stages import Cache, error_line, execute_stage, format_exception

    send_lock = threading.Lock()
    runtime: WorkerRuntime | None = None

    def send(msg: tuple) -> None:
        with send_lock:
            conn.send(msg)

    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] != "run":
                break
            _, stage, cache_root, threads, recompute = msg
            if threads:
                _set_threads(int(threads))
            c0 = time.process_time()
            try:
                if runtime is None:  # here, so that a plugin that fails to load fails the stage, with its traceback
                    runtime = WorkerRuntime(conn, plugins_dir, env.get("SIPO_BENCH_DEVICE", "cpu"), send_lock)
                runtime.before_stage(stage)
                # `recompute` (--no-cache): the parent found the stage not done for this run
                status, result, seconds = execute_stage(stage, Cache(cache_root, recompute=recompute), runtime,
                                                        force=recompute)
            except Exception as e:  # the stage's own failure: reported, the worker goes on
                send(("failed", stage.key, error_line(e), format_exception(e)))
            else:
                send(("done", stage.key, status, result, seconds, stage_extras(c0)))
    except Terminated:
        pass  # stopped by the parent; the stage's `finally` blocks have run
    finally:
        if runtime is not None:
            with contextlib.suppress(Exception):
                runtime.close()


def _set_threads(n: int) -> None:
    """torch's intra-op threads for the next stage: set now if torch is loaded, else through
    `OMP_NUM_THREADS`, which torch reads when a stage first imports it (a torch-free stage
    never pays for importing torch)."""
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)


# --- in the parent ----------------------------------------------------------------------------


def describe_exit(exitcode: int | None) -> str:
    """`killed by SIGKILL (...)` / `exited with code 3` for a worker that is gone."""
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (the kernel's out-of-memory killer sends SIGKILL)" if -exitcode == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {exitcode}"


class WorkerProcess:
    """The parent's handle on one worker: its process, pipe, GPU and the stage it runs."""

    def __init__(self, plugins_dir: str | None, gpu: str | None, device: str):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=True)
        self.gpu = gpu
        env = {"CUDA_VISIBLE_DEVICES": gpu if gpu is not None else "",
               "SIPO_BENCH_DEVICE": "cuda" if gpu is not None else "cpu"}
        if device != "cuda":
            env["SIPO_BENCH_DEVICE"] = "cpu"
        self.proc = ctx.Process(target=worker_main, args=(child, os.getpid(), env, plugins_dir),
                                name=f"sipo-bench-worker{'-gpu' + gpu if gpu is not None else ''}", daemon=True)
        self.proc.start()
        child.close()
        self.stage_key: str | None = None
        self.started_at = 0.0
        self.last: Any = None  # the last stage it ran (for model reuse)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def busy(self) -> bool:
        return self.stage_key is not None

    def run(self, stage: Any, cache_root: str, threads: int | None, recompute: bool = False) -> None:
        self.stage_key = stage.key
        self.started_at = time.time()
        self.last = stage
        self.conn.send(("run", stage, cache_root, threads, recompute))

    def stop(self, timeout: float = 10.0) -> None:
        """Ask it to finish, then make sure it is gone."""
        with contextlib.suppress(OSError, BrokenPipeError, ValueError):
            self.conn.send(("stop",))
        self.proc.join(timeout)
        self.kill()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5.0)
        with contextlib.suppress(OSError):
            self.conn.close()
