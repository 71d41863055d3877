"""Deterministic mode (issue 23): the pinned kernels reach every stage process before torch
loads, the mode is part of every stage's cache key, and a deterministic config run twice gives
identical summaries whatever kernels the calling shell or process would pick."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from sipo_bench.execution import determinism
from sipo_bench.cli import main
from sipo_bench.configs.run_config import make_config
from sipo_bench.planning.experiment import plan_run
from sipo_bench.reporting.summary import comparable
from sipo_bench.execution.runtime import Runtime

PROBE = textwrap.dedent('''
    """A dummy method with one more stage that reports what its process sees."""
    from sipo_bench.api import hookimpl
    from sipo_bench_plugins.dummy import DummyFamily, DummyMethod

    KEYS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "CUBLAS_WORKSPACE_CONFIG")


    def probe_stage(ctx):
        import os

        import torch

        return {"env": {k: os.environ.get(k) for k in KEYS}, "pid": os.getpid(),
                "capability": torch.backends.cpu.get_cpu_capability(),
                "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                "threads": torch.get_num_threads()}


    class ProbeFamily(DummyFamily):
        def __init__(self, base, adapters, probe):
            super().__init__(base, adapters)
            self.probe = probe

        def extra_stages(self):
            return {"probe": self.probe}


    class ProbeMethod(DummyMethod):
        name = "probe"

        def fit(self, ctx):
            family = super().fit(ctx)
            return ProbeFamily(family.base, family.adapters,
                               ctx.stage(f"probe[seed={ctx.seed}]", probe_stage, {"seed": ctx.seed}, {}))


    @hookimpl
    def sipo_bench_register_methods():
        return [ProbeMethod]
''')


@pytest.fixture
def plugins(tmp_path):
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "probe.py").write_text(PROBE)
    return d


def probe_of(out) -> dict:
    return json.loads((out / "summary.json").read_text())["methods"]["probe"]["extra"]["0"]["probe"]


def test_the_pinned_kernels_reach_the_stage_process(tmp_path, plugins):
    """Called in a process that imported torch with its own kernels (this test process): the
    stage runs in a fresh worker with the pinned environment and deterministic algorithms, and
    this process's environment is as it was afterwards."""
    pytest.importorskip("torch")
    import torch

    before = {k: os.environ.get(k) for k in (*determinism.PINNED_ENV, determinism.FLAG_ENV)}
    out = tmp_path / "det"
    assert main(["run", "--task", "dummy", "--methods", "probe", "--plugins-dir", str(plugins), "--jobs", "1",
                 "--deterministic", "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet"]) == 0
    p = probe_of(out)
    assert p["env"] == determinism.PINNED_ENV
    assert p["pid"] != os.getpid() and p["deterministic_algorithms"] is True and p["threads"] == 1
    assert p["capability"] == "DEFAULT"
    assert {k: os.environ.get(k) for k in before} == before and not torch.are_deterministic_algorithms_enabled()
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["deterministic"] is True and s["provenance"]["deterministic"] is True
    assert s["provenance"]["torch_cpu_capability"] == "DEFAULT"  # the stages' view, not this process's
    assert "deterministic mode" in (out / "table.md").read_text()
    # the default mode in the same process: its own kernels, in this process
    out2 = tmp_path / "default"
    assert main(["run", "--task", "dummy", "--methods", "probe", "--plugins-dir", str(plugins), "--jobs", "1",
                 "--out", str(out2), "--cache-dir", str(tmp_path / "c"), "--quiet"]) == 0
    assert probe_of(out2)["pid"] == os.getpid() and probe_of(out2)["deterministic_algorithms"] is False


def test_a_fresh_cli_process_pins_itself_before_torch_loads(tmp_path, plugins):
    """`sipo-bench run --deterministic --jobs 1` from a shell that asks for other kernels: the
    stages run in the CLI process itself, pinned."""
    pytest.importorskip("torch")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "OMP_NUM_THREADS": "2"}
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "sipo_bench.cli", "run", "--task", "dummy", "--methods", "probe",
                        "--plugins-dir", str(plugins), "--jobs", "1", "--deterministic", "--out", str(out),
                        "--cache-dir", str(tmp_path / "c"), "--quiet"], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    p = probe_of(out)
    assert p["env"] == determinism.PINNED_ENV and p["capability"] == "DEFAULT" and p["deterministic_algorithms"]


def test_the_mode_is_part_of_every_stage_key():
    runtime = Runtime(quiet=True)
    base = {"task": "dummy", "methods": ["dummy"], "seeds": [0]}
    default = {s.name: s.key for s in plan_run(make_config(base), runtime).stages()}
    det = {s.name: s.key for s in plan_run(make_config({**base, "deterministic": True}), runtime).stages()}
    assert set(default) == set(det) and len(default) > 3
    assert all(default[n] != det[n] for n in default)
    again = {s.name: s.key for s in plan_run(make_config(base), runtime).stages()}
    assert again == default  # planning a deterministic run leaves the default mode's keys alone


def test_the_default_mode_keeps_the_keys_of_earlier_versions():
    """No mode, no change: the key payload of a default-mode stage is what it always was, so the
    caches (and committed results) of earlier versions stay valid."""
    import hashlib

    from sipo_bench.execution.stages import Stage, canonical_json

    s = Stage("x", "tests.stage_fns:write", {"v": 1})
    payload = {"fn": s.fn, "version": "1", "config": {"v": 1}, "inputs": {}}
    assert s.mode is None and s.key == hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:20]


def test_deterministic_mode_rejects_what_it_cannot_pin(tmp_path, capsys):
    for flags, message in ((["--executor", "ray"], "`executor`: expected local in deterministic mode"),):
        assert main(["run", "--task", "dummy", "--methods", "dummy", "--deterministic", *flags,
                     "--out", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "c.yaml").write_text("task: dummy\nmethods: [dummy]\ndeterministic: true\ncpu_threads: 2\n")
    assert main(["run", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "y")]) == 2
    assert "`cpu_threads`: expected 1 in deterministic mode" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.slow
def test_same_deterministic_config_twice_gives_identical_summaries(tmp_path):
    """The synthetic task at a tiny size, deterministic, run twice from fresh processes whose
    shells ask for different kernels (the bits two CPUs would give), each in its own cache:
    every number of the two summaries is the same."""
    pytest.importorskip("torch")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: synthetic-hh\nmethods: [dpo-soups]\nweights: 1\nmax_test_prompts: 16\n"
                   "eval_noise_replicates: 0\ndeterministic: true\n"
                   "task_options: {sft_examples: 200, review_examples: 40, rewrite_examples: 40, sft_epochs: 1,\n"
                   "  eval_samples: 1, hidden_size: 32, intermediate_size: 64, train_pairs: 128, val_pairs: 16,\n"
                   "  n_val_prompts: 8, n_test: 16, eval_max_new_tokens: 24}\n"
                   "method_options: {dpo: {max_pairs: 64}}\n")
    summaries = []
    for i, kernels in enumerate(({"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}, {})):
        out = tmp_path / f"out{i}"
        env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
        r = subprocess.run([sys.executable, "-m", "sipo_bench.cli", "run", "--config", str(cfg), "--out", str(out),
                            "--cache-dir", str(tmp_path / f"cache{i}"), "--jobs", "1", "--quiet"],
                           env={**env, **kernels}, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        summaries.append(json.loads((out / "summary.json").read_text()))
    a, b = (comparable(s) for s in summaries)
    a.pop("git_commit", None), b.pop("git_commit", None)
    assert a == b
    assert summaries[0]["provenance"]["torch_cpu_capability"] == "DEFAULT"
