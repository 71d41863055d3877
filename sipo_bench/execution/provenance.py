"""Which hardware and kernels made a run's numbers: `summary.json`'s `provenance`.

Floating-point results depend on the CPU's vector unit (torch's CPU capability picks the ATen
kernels), on the BLAS and its reproducibility mode (MKL's conditional numerical reproducibility,
`MKL_CBWR`; oneDNN's ISA cap), on thread counts (the order of reductions) and, on a GPU run, on
the device and its driver. Two summaries that differ here may differ in their last bits, and a
greedy decode or a hard threshold can turn last bits into a different number (issue 23,
docs/reproducibility.md). Recorded for people; never part of a cache key (the deterministic
mode, which pins these settings, is: :mod:`sipo_bench.execution.determinism`).

Collected in the process that summarises the run, which started the stage processes with the
same environment; `threads.torch_intra_op` is what each stage was given (`cpu_threads`).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Any

#: environment variables that choose kernels or thread counts, recorded as set (None: unset)
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OMP_NUM_THREADS",
              "MKL_NUM_THREADS", "CUBLAS_WORKSPACE_CONFIG")
#: what decides the bits, for `hardware_key`: two runs that agree on these ran the same kernels
HARDWARE_FIELDS = ("cpu", "torch_cpu_capability", "blas", "gpu")
NOT_RECORDED = "not recorded"


def cpu_info() -> dict[str, str | None]:
    """The CPU's model name and vendor (/proc/cpuinfo on Linux, else `platform`)."""
    model = vendor = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key in ("model name", "Model", "cpu model") and model is None:
                    model = value
                elif key in ("vendor_id", "CPU implementer") and vendor is None:
                    vendor = value
                if model and vendor:
                    break
    except OSError:
        pass
    return {"model": model or platform.processor() or None, "vendor": vendor, "machine": platform.machine() or None}


def blas_info(torch: Any) -> dict[str, Any]:
    """The BLAS torch was built with, its version and reproducibility mode (from
    `torch.__config__.show()`), and oneDNN's version and ISA cap."""
    shown = torch.__config__.show()
    name = m.group(1).lower() if (m := re.search(r"BLAS_INFO=(\w+)", shown)) else None
    mkl = re.search(r"Math Kernel Library Version ([\w.]+)", shown)
    onednn = re.search(r"MKL-DNN v([\w.]+)", shown)
    info: dict[str, Any] = {"name": name, "version": mkl.group(1) if mkl and name == "mkl" else None}
    if name == "mkl" or torch.backends.mkl.is_available():
        info["mkl_cbwr"] = os.environ.get("MKL_CBWR") or "unset (MKL picks the code path per CPU)"
    info["onednn"] = onednn.group(1) if onednn else None
    info["onednn_max_cpu_isa"] = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return info


def gpu_info(torch: Any) -> list[dict[str, Any]] | None:
    """Name, driver and CUDA version of each visible GPU; None when no GPU is visible."""
    if not torch.cuda.is_available():
        return None
    driver = None
    if shutil.which("nvidia-smi"):
        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=10)
            driver = r.stdout.strip().splitlines()[0].strip() if r.returncode == 0 and r.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            pass
    if driver is None:
        try:
            with open("/proc/driver/nvidia/version", encoding="utf-8") as f:
                driver = m.group(1) if (m := re.search(r"Kernel Module\s+([\d.]+)", f.read())) else None
        except OSError:
            pass
    return [{"name": torch.cuda.get_device_name(i), "driver": driver, "cuda": torch.version.cuda}
            for i in range(torch.cuda.device_count())]


def collect(device: str = "cpu", cpu_threads: int | None = None, deterministic: bool = False, *,
            uses_torch: bool = True) -> dict[str, Any]:
    """The provenance of a run on `device` whose stages used `cpu_threads` torch threads each
    (None: torch's default). Imports torch when `uses_torch` (a run of a model-based task);
    without torch (a model-free task, or torch not installed) only the CPU and the environment."""
    libc = " ".join(x for x in platform.libc_ver() if x) or None  # libm's exp/log/sin come with it
    out: dict[str, Any] = {"cpu": cpu_info(), "os": f"{platform.system()} {platform.release()}".strip(), "libc": libc,
                           "deterministic": bool(deterministic)}
    torch = sys.modules.get("torch")
    if torch is None and uses_torch:
        try:
            import torch
        except ImportError:
            torch = None
    env = {k: os.environ.get(k) for k in KERNEL_ENV}
    if torch is not None:
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        out["blas"] = blas_info(torch)
        out["threads"] = {"torch_intra_op": cpu_threads if cpu_threads is not None else torch.get_num_threads(),
                          "torch_inter_op": torch.get_num_interop_threads(),
                          "OMP_NUM_THREADS": env["OMP_NUM_THREADS"], "MKL_NUM_THREADS": env["MKL_NUM_THREADS"]}
        out["gpu"] = gpu_info(torch) if device == "cuda" else None
        out["deterministic_algorithms"] = bool(torch.are_deterministic_algorithms_enabled()) or bool(deterministic)
        from .fingerprint import fingerprint

        out["kernel_fingerprint"] = fingerprint(torch, cpu_threads)
    else:
        out.update({"torch_cpu_capability": None, "blas": None, "gpu": None,
                    "threads": {"torch_intra_op": cpu_threads, "OMP_NUM_THREADS": env["OMP_NUM_THREADS"],
                                "MKL_NUM_THREADS": env["MKL_NUM_THREADS"]}})
    out["env"] = env
    return out


def collect_fresh(device: str = "cpu", cpu_threads: int | None = None, deterministic: bool = False, *,
                  uses_torch: bool = True) -> dict[str, Any]:
    """:func:`collect` in a fresh interpreter with this process's environment: what a stage
    process started now sees (torch loaded in this process may have read other settings)."""
    import json

    code = ("import json, sys; from sipo_bench.execution.provenance import collect; "
            f"print(json.dumps(collect({device!r}, {cpu_threads!r}, {bool(deterministic)!r}, uses_torch={bool(uses_torch)!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"could not record the provenance in a fresh process: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def hardware_key(prov: dict | None) -> str:
    """One line naming what decides the bits (CPU, capability, BLAS mode, GPU, thread count,
    deterministic mode); `not recorded` for a summary without provenance."""
    if not prov:
        return NOT_RECORDED
    cpu = prov.get("cpu") or {}
    blas = prov.get("blas") or {}
    parts = [f"{cpu.get('model') or '?'} ({cpu.get('vendor') or '?'})",
             f"torch CPU capability {prov.get('torch_cpu_capability') or '?'}"]
    if blas:
        mode = blas.get("mkl_cbwr")
        parts.append(f"BLAS {blas.get('name') or '?'} {blas.get('version') or ''}".rstrip()
                     + (f", MKL_CBWR {mode}" if mode else "")
                     + (f", oneDNN ISA {blas['onednn_max_cpu_isa']}" if blas.get("onednn_max_cpu_isa") else ""))
    threads = prov.get("threads") or {}
    parts.append(f"{threads.get('torch_intra_op', '?')} intra-op thread(s)")
    for g in prov.get("gpu") or []:
        parts.append(f"GPU {g.get('name')} (driver {g.get('driver') or '?'}, CUDA {g.get('cuda') or '?'})")
    if prov.get("deterministic"):
        parts.append("deterministic mode")
    if prov.get("kernel_fingerprint"):
        from .fingerprint import short

        parts.append(f"kernel fingerprint {short(prov['kernel_fingerprint'])}")
    return "; ".join(parts)


def summary_line(summary: dict) -> str:
    """`Hardware and kernels: ...` for one summary (`not recorded` when it has none)."""
    return f"Hardware and kernels: {hardware_key(summary.get('provenance'))}."


def differs_line(provenances: list[tuple[str, dict | None]]) -> str | None:
    """For a report over several runs `[(run label, provenance)]`: one line saying that their
    hardware or kernels differ (so their last bits may), or None when they agree."""
    from .fingerprint import differing

    keys = {label: hardware_key(p) for label, p in provenances}
    if len(set(keys.values())) <= 1:
        return None
    line = ("Hardware or kernels differ between these runs (numbers may differ in their last bits, and more after "
            "greedy decoding and hard thresholds; docs/reproducibility.md): "
            + " | ".join(f"run {label}: {k}" for label, k in keys.items()) + ".")
    (_, p0), *rest = provenances
    ops = {op for _, p in rest for op in (differing((p0 or {}).get("kernel_fingerprint"),
                                                         (p or {}).get("kernel_fingerprint")) or [])}
    if ops:
        line += f" Kernel fingerprints differ in: {', '.join(sorted(ops))}."
    return line
