"""The one place that decides where torch work runs and in which precision.

A run has a device setting (`device:` in the run config: `auto`, `cpu` or `cuda`). The run
resolves it once (:func:`resolve`), publishes it to its own process and to every worker process
as `$SIPO_BENCH_DEVICE` (:func:`using`; executors forward `SIPO_BENCH_*` variables), and every
piece of code that puts a model or a tensor somewhere asks this module:

- :func:`torch_device` -> `torch.device("cuda")` or `torch.device("cpu")` for this process
  (a local worker sees only its own GPU through `CUDA_VISIBLE_DEVICES`, so "cuda" is device 0);
- :func:`inference_dtype` -> the dtype models are loaded in for generation and scoring:
  bfloat16 on a GPU that supports it (float16 on one that does not), float32 on a CPU;
- :func:`mixed_precision` -> the autocast dtype for training on this device (None on a CPU).

The generation backend, the trainers (DPO family, RLOO), the reward-model scorers and the
synthetic task's SFT take their device and dtype from here, and the tests inject a device by
setting `$SIPO_BENCH_DEVICE` and monkeypatching `torch.cuda` (tests/test_device.py).

Stage planning uses :func:`stage_resources`: what one stage asks of a worker on this run's
device. Nothing here imports torch at import time.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator

from ..errors import UsageError
from .stages import Resources

ENV = "SIPO_BENCH_DEVICE"
DEVICES = ("auto", "cpu", "cuda")
_DRIVER_NODES = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/dxg")  # Linux, WSL


def cuda_device_count() -> int:
    """Visible CUDA devices, asking torch only where a GPU can exist (no driver: 0, no import)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():
        return 0
    if "torch" not in sys.modules and not any(os.path.exists(p) for p in _DRIVER_NODES):
        return 0  # no NVIDIA driver on this machine: skip importing torch just to learn that
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def visible_gpus() -> list[str]:
    """The ids a local executor hands out, one per worker, as `CUDA_VISIBLE_DEVICES`: the
    entries of the current `CUDA_VISIBLE_DEVICES` if set, else 0..n-1."""
    n = cuda_device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        return ids[:n] if n else []
    return [str(i) for i in range(n)]


def resolve(setting: str) -> str:
    """`auto` -> `cuda` when a CUDA device is visible, else `cpu`; `cuda` with none visible
    is a usage error (exit 2 before anything runs)."""
    if setting not in DEVICES:
        raise UsageError(f"`device`: expected one of {', '.join(DEVICES)}, got {setting!r}")
    if setting == "cpu":
        return "cpu"
    n = cuda_device_count()
    if setting == "cuda" and n == 0:
        raise UsageError("`device`: expected a visible CUDA device for `cuda`, got none "
                         "(torch.cuda.is_available() is False or CUDA_VISIBLE_DEVICES is empty)")
    return "cuda" if n else "cpu"


@contextlib.contextmanager
def using(device: str) -> Iterator[None]:
    """Publish `device` as this process's device (and its workers') for the duration."""
    old = os.environ.get(ENV)
    os.environ[ENV] = device
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


def current() -> str:
    """This process's device name: `$SIPO_BENCH_DEVICE`, else `cuda` if torch sees a GPU."""
    name = os.environ.get(ENV)
    if name in ("cpu", "cuda"):
        return name
    return "cuda" if cuda_device_count() else "cpu"


def torch_device() -> Any:
    import torch

    return torch.device(current())


def inference_dtype(device: Any = None) -> Any:
    """bfloat16 on a GPU with bf16 support, float16 on an older GPU, float32 on a CPU."""
    import torch

    dev = torch.device(device) if device is not None else torch_device()
    if dev.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def mixed_precision(device: Any = None) -> Any:
    """Autocast dtype for training on `device`: the inference dtype on a GPU, None on a CPU."""
    import torch

    dev = torch.device(device) if device is not None else torch_device()
    return inference_dtype(dev) if dev.type == "cuda" else None


def stage_resources(device: str, cpu_threads: int | None, *, gpu: bool) -> Resources:
    """What a stage asks of a worker: its CPU threads, and one GPU if it runs a model and the
    run's device is `cuda` (on a CPU run nothing asks for a GPU)."""
    return Resources(cpus=cpu_threads or 1, gpus=1 if (gpu and device == "cuda") else 0)


def take_peak_gpu_gb() -> float | None:
    """Peak GPU memory torch allocated in this process since the last call, in GiB, and reset
    the counter (executors call it after each stage: the stage log's `peak_gpu_gb`); None when
    this process has not used CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    peak = torch.cuda.max_memory_allocated() / 1024 ** 3
    torch.cuda.reset_peak_memory_stats()
    return round(peak, 3)
