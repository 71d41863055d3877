"""`benchmarks/gpu_check.py` runs on a CPU with the device injected and a tiny model, so the
script a GPU session runs first cannot rot; its checks catch what they are for."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("gpu-check")
    gpu_check = load_script()
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = gpu_check.main(["--device", "cpu", "--size", "tiny", "--work", str(work)])
    return gpu_check, rc, buf.getvalue(), work


@pytest.mark.slow
def test_tiny_cpu_run_passes_every_check(tiny_run):
    _, rc, text, work = tiny_run
    assert rc == 0, text
    assert "methods: dpo ok, dpo-lw ok, dpo-soups ok, mod ok, modpo ok, rewarded-soups ok, sipo ok" in text
    for line in ("training, SFT (full model):", "training, LoRA preference stages", "generation (float32, greedy",
                 "peak GPU memory: n/a (cpu run)", "all checks passed"):
        assert line in text
    summary = json.loads((work / "out" / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["task_base"]["0"]["parameters"] < 100_000


@pytest.mark.slow
def test_checks_catch_failures_and_misplaced_stages(tiny_run, monkeypatch):
    gpu_check, _, _, work = tiny_run
    summary = json.loads((work / "out" / "summary.json").read_text())
    out = work / "out"
    assert gpu_check.check_run(summary, out, "cpu") == []

    bad = copy.deepcopy(summary)
    bad["methods"]["mod"].update(status="failed", error="stage generate[mod,w=0.5/0.5,seed=0]: CUDA error")
    bad["run"]["stages"] = {"total": 70, "done": 68, "failed": 1, "skipped": 1}
    problems = gpu_check.check_run(bad, out, "cpu")
    assert problems[0] == "method mod: failed: stage generate[mod,w=0.5/0.5,seed=0]: CUDA error"
    assert problems[1].startswith("stage graph: 70 stages, 68 ran")

    # asked for cuda: the device is wrong, and every stage that declares a GPU ran without one
    import sipo_bench.execution.device

    monkeypatch.setattr(sipo_bench.execution.device, "cuda_device_count", lambda: 1)
    problems = gpu_check.check_run(summary, out, "cuda")
    assert problems[0] == "device: the run used 'cpu', asked for 'cuda'"
    assert "stage base[seed=0]: declares a GPU but ran without one" in problems
    assert "stage data[seed=0]: declares a GPU but ran without one" not in problems
    assert problems[-1] == "no stage ran on a GPU"


def test_no_cuda_exits_2(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_script().main(["--device", "cuda"]) == 2
    assert "no CUDA device visible" in capsys.readouterr().err
