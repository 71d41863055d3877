"""Deterministic mode (`deterministic: true`, `--deterministic`): pinned kernels, so that one
config gives the same summary whatever kernels the CPU would pick (issue 23, docs/reproducibility.md).
Measured: that holds under emulated kernel choices on one machine, but an AMD EPYC and an Intel
Xeon still differ (from the SFT stage on), so something these pins do not cover differs too.

What differs between machines is which kernels run, not the arithmetic they were asked for:
torch picks its vectorised ATen kernels by the CPU's capability (SSE/AVX2/AVX-512), MKL its
GEMM code path by CPU (its conditional numerical reproducibility mode, `MKL_CBWR`), oneDNN by
ISA, and the thread count decides the order of parallel reductions. The mode pins every one of
them to the level every x86-64 CPU has (:data:`PINNED_ENV`), calls
`torch.use_deterministic_algorithms(True)` and, on a GPU, sets cuBLAS's workspace so that its
GEMMs are deterministic.

Kernel choices are read when torch and its libraries load, so these variables must be in the
environment *before* torch is imported in every process that runs a stage:

- the CLI sets them before anything imports torch, and the stages it runs in this process, or
  in worker processes (spawned: fresh interpreters that inherit the environment), run pinned;
- a process that imported torch already with other settings (a library caller, a test) cannot
  be pinned any more: the run then executes every stage in worker processes
  (:func:`needs_fresh_processes`), and restores this process's environment afterwards.

The mode is part of every stage's cache key (:func:`key_mode`): pinned and unpinned results
never mix in the cache. Its cost on the default benchmark is in docs/reproducibility.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from typing import Iterator

#: the kernel settings of the deterministic mode: the baseline every x86-64 CPU supports
PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "default",  # torch's scalar (non-vectorised) ATen kernels
    "MKL_CBWR": "COMPATIBLE",  # MKL's baseline code path (documented as vendor-independent; a run is not: docs/reproducibility.md)
    "ONEDNN_MAX_CPU_ISA": "SSE41",  # oneDNN capped to the same baseline
    "OMP_NUM_THREADS": "1",  # one thread: a fixed order of every reduction
    "MKL_NUM_THREADS": "1",
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # deterministic cuBLAS GEMMs (read by torch on a GPU run)
}
#: set in a deterministic run's environment, so stage processes turn on deterministic algorithms
FLAG_ENV = "SIPO_BENCH_DETERMINISTIC"
#: the stage-key salt of the deterministic mode (Stage.key)
KEY_MODE = "deterministic"

_key_mode: contextvars.ContextVar[str | None] = contextvars.ContextVar("sipo_bench_key_mode", default=None)


def current_key_mode() -> str | None:
    """The mode stages planned now are keyed under (None: the default mode, keys as ever)."""
    return _key_mode.get()


@contextlib.contextmanager
def key_mode(deterministic: bool) -> Iterator[None]:
    """Stages created inside are keyed under the deterministic mode when `deterministic`."""
    token = _key_mode.set(KEY_MODE if deterministic else None)
    try:
        yield
    finally:
        _key_mode.reset(token)


def torch_loaded() -> bool:
    return "torch" in sys.modules


def is_pinned_environment(env: os._Environ | dict | None = None) -> bool:
    env = os.environ if env is None else env
    return all(env.get(k) == v for k, v in PINNED_ENV.items())


def needs_fresh_processes() -> bool:
    """Whether this process must not run a deterministic run's stages: torch is loaded here
    already and the environment it loaded under was not the pinned one."""
    return torch_loaded() and not _PINNED_AT_IMPORT


@contextlib.contextmanager
def pinned() -> Iterator[None]:
    """The pinned environment for the duration of a run. If torch is not loaded yet in this
    process it will load pinned, so the environment stays pinned afterwards (it must keep
    matching what torch read); else this process's environment is restored on exit."""
    global _PINNED_AT_IMPORT
    fresh = not torch_loaded()
    old = {k: os.environ.get(k) for k in (*PINNED_ENV, FLAG_ENV)}
    os.environ.update(PINNED_ENV)
    os.environ[FLAG_ENV] = "1"
    if fresh:
        _PINNED_AT_IMPORT = True
    try:
        yield
    finally:
        if not fresh:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def apply_in_process() -> None:
    """In a process that runs a deterministic run's stages (pinned environment): turn on torch's
    deterministic algorithms. Imports torch."""
    import torch

    torch.use_deterministic_algorithms(True)


def apply_if_flagged() -> None:
    """For stage processes (workers): apply the mode when the run that started them asked for
    it (`$SIPO_BENCH_DETERMINISTIC`)."""
    if os.environ.get(FLAG_ENV) == "1":
        apply_in_process()


#: whether torch in this process loaded (or will load) under the pinned environment: true when
#: the process started pinned (a worker of a deterministic run, or a shell that exported
#: PINNED_ENV) and torch was not loaded before sipo_bench, or after :func:`pinned` set it first
_PINNED_AT_IMPORT = is_pinned_environment() and not torch_loaded()
