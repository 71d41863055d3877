"""summary.json records which hardware and kernels made its numbers (issue 23): CPU, torch's
CPU capability, the BLAS and its reproducibility mode, threads, the GPU where one ran; reports
show it, say when merged runs' hardware differs, and older summaries without it still render
(byte-identical tables, `not recorded` on the console)."""

from __future__ import annotations

import copy
import json
import os
import stat

import pytest

from sipo_bench.execution import provenance
from sipo_bench.reporting import report
from sipo_bench.reporting import merge
from sipo_bench.cli import main
from sipo_bench.reporting.summary import comparable


def test_collect_names_cpu_capability_blas_mode_and_threads(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    p = provenance.collect("cpu", cpu_threads=1)
    assert p["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert p["cpu"]["machine"] and (p["cpu"]["model"] or not os.path.exists("/proc/cpuinfo"))
    assert p["threads"]["torch_intra_op"] == 1 and p["threads"]["OMP_NUM_THREADS"] == "3"
    assert p["threads"]["torch_inter_op"] == torch.get_num_interop_threads()
    assert p["env"]["MKL_CBWR"] == "AVX2" and p["gpu"] is None and p["deterministic"] is False
    if p["blas"]["name"] == "mkl":
        assert p["blas"]["mkl_cbwr"] == "AVX2" and p["blas"]["version"]
    monkeypatch.delenv("MKL_CBWR")
    if p["blas"]["name"] == "mkl":
        assert provenance.collect("cpu", 1)["blas"]["mkl_cbwr"].startswith("unset")
    json.dumps(p)  # JSON-able


def test_gpu_name_and_driver_where_one_ran(monkeypatch, tmp_path):
    torch = pytest.importorskip("torch")
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 550.54.15\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H200")
    gpu = provenance.collect("cuda", 1)["gpu"]
    assert gpu == [{"name": "NVIDIA H200", "driver": "550.54.15", "cuda": torch.version.cuda}]
    assert "GPU NVIDIA H200 (driver 550.54.15" in provenance.hardware_key({"gpu": gpu})
    assert provenance.collect("cpu", 1)["gpu"] is None  # a CPU run names no GPU, visible or not


def prov(model: str, capability: str = "AVX512", cbwr: str = "unset (MKL picks the code path per CPU)") -> dict:
    return {"cpu": {"model": model, "vendor": "GenuineIntel", "machine": "x86_64"}, "torch_cpu_capability": capability,
            "blas": {"name": "mkl", "version": "2024.2", "mkl_cbwr": cbwr, "onednn": "3.12.0", "onednn_max_cpu_isa": None},
            "threads": {"torch_intra_op": 1, "torch_inter_op": 2}, "gpu": None, "deterministic": False}


@pytest.fixture(scope="module")
def dummy_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("prov")
    out = base / "run"
    assert main(["run", "--task", "dummy", "--methods", "dummy", "--out", str(out), "--cache-dir", str(base / "c"),
                 "--quiet"]) == 0
    return out


def test_summary_records_provenance_outside_the_cache_key(dummy_run, tmp_path):
    s = json.loads((dummy_run / "summary.json").read_text())
    p = s["provenance"]
    assert p["cpu"]["machine"] and "threads" in p and p["deterministic"] is False
    assert "provenance" not in comparable(s)
    assert "Hardware and kernels: " in (dummy_run / "table.md").read_text()
    # the same run on other hardware: same stage keys (all cached), only the provenance differs
    events = [json.loads(x) for x in (dummy_run / "logs" / "stages.jsonl").read_text().splitlines()]
    keys = {e["key"] for e in events}
    out2 = tmp_path / "again"
    env = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["run", "--task", "dummy", "--methods", "dummy", "--out", str(out2), "--cache-dir",
                     str(dummy_run.parent / "c"), "--quiet"]) == 0
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    events2 = [json.loads(x) for x in (out2 / "logs" / "stages.jsonl").read_text().splitlines()]
    assert {e["key"] for e in events2} == keys and {e["event"] for e in events2} == {"cached"}
    s2 = json.loads((out2 / "summary.json").read_text())
    assert s2["provenance"]["env"]["MKL_CBWR"] == "COMPATIBLE"


def test_old_summaries_render_unchanged_and_say_not_recorded(dummy_run, tmp_path, capsys):
    s = json.loads((dummy_run / "summary.json").read_text())
    old = copy.deepcopy(s)
    del old["provenance"]
    table = report.table_md(old)
    assert "Hardware" not in table  # committed tables of older runs re-render byte-identical
    assert report.table_md(s) != table and provenance.summary_line(s) in report.table_md(s)
    d = tmp_path / "old"
    d.mkdir()
    (d / "summary.json").write_text(json.dumps(old))
    assert main(["report", str(d)]) == 0
    assert "Hardware and kernels: not recorded." in capsys.readouterr().out.replace("\n", " ")
    assert (d / "table.md").read_text() == table


def test_report_over_runs_on_different_hardware_says_so_in_one_line(dummy_run):
    s = json.loads((dummy_run / "summary.json").read_text())
    a, b = copy.deepcopy(s), copy.deepcopy(s)
    a["provenance"], b["provenance"] = prov("AMD EPYC 9755"), prov("Intel Xeon", capability="AVX2", cbwr="AVX2")
    a["run"]["run_id"], b["run"]["run_id"] = "ra", "rb"
    b["methods"] = {"dummy2": b["methods"]["dummy"]}
    merged = merge.merge([a, b])
    lines = [line for line in report.table_md(merged).splitlines() if "differ" in line]
    assert len(lines) == 1 and "run ra: AMD EPYC 9755" in lines[0] and "run rb: Intel Xeon" in lines[0]
    assert "MKL_CBWR AVX2" in lines[0] and merged["provenance"] is None
    same = merge.merge([a, {**copy.deepcopy(b), "provenance": prov("AMD EPYC 9755")}])
    assert same["provenance"] == a["provenance"]
    assert not [line for line in report.table_md(same).splitlines() if "differ" in line]
    # one run recorded, one not: that differs too, and says which
    old = copy.deepcopy(b)
    del old["provenance"]
    line = next(x for x in report.table_md(merge.merge([a, old])).splitlines() if "differ" in x)
    assert "run rb: not recorded" in line


def test_kernel_fingerprint_is_stable_here_and_names_the_operations_that_differ(dummy_run):
    """The fingerprint is the same bits twice in one process and in a fresh one with the same
    environment (so it says nothing about this machine's floating-point bits, only whether two
    runs' kernels agree), and a report over two runs whose fingerprints differ names the
    operations that do."""
    torch = pytest.importorskip("torch")
    from sipo_bench.execution.fingerprint import differing, fingerprint, short

    fp = fingerprint(torch, 1)
    assert fp == fingerprint(torch, 1) and len(fp) >= 12 and all(len(v) == 12 for v in fp.values())
    fresh = provenance.collect_fresh("cpu", cpu_threads=1)
    assert fresh["kernel_fingerprint"] == provenance.collect("cpu", cpu_threads=1)["kernel_fingerprint"]
    assert fresh["libc"] is None or fresh["libc"].startswith(("glibc", "libc"))
    assert differing(fp, dict(fp)) == [] and differing(fp, None) is None
    other = {**fp, "softmax": "0" * 12, "matmul": "1" * 12}
    assert differing(fp, other) == ["matmul", "softmax"] and short(fp) != short(other)
    s = json.loads((dummy_run / "summary.json").read_text())
    a, b = copy.deepcopy(s), copy.deepcopy(s)
    a["provenance"], b["provenance"] = prov("AMD EPYC 9755"), prov("AMD EPYC 9755")
    a["provenance"]["kernel_fingerprint"], b["provenance"]["kernel_fingerprint"] = fp, other
    a["run"]["run_id"], b["run"]["run_id"] = "ra", "rb"
    b["methods"] = {"dummy2": b["methods"]["dummy"]}
    line = next(x for x in report.table_md(merge.merge([a, b])).splitlines() if "differ" in x)
    assert f"kernel fingerprint {short(fp)}" in line and "Kernel fingerprints differ in: matmul, softmax." in line
