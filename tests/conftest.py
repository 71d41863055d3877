"""Shared fixtures. `cache_dir` is one stage cache for the whole session, so expensive
deterministic stages (the tiny SFT model, per-objective DPO) are computed once per test run."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory, worker_id):
    """One stage cache for the whole test run, shared by the pytest-xdist worker processes (the
    cache is safe for concurrent writers: a stage is renamed into place whole, and of two
    processes that build the same stage the second keeps the first's)."""
    if worker_id == "master":  # not under xdist
        return tmp_path_factory.mktemp("sipo-cache")
    shared = tmp_path_factory.getbasetemp().parent / "sipo-cache"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture
def fresh_cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def runtime():
    from sipo_bench.execution.runtime import Runtime

    return Runtime(quiet=True)


@pytest.fixture
def usage_error(tmp_path, capsys):
    """`usage_error(config_yaml)`: `sipo-bench validate` and `sipo-bench run` of that config both
    exit 2 with one line on stderr, before OUT or the cache is created; returns the line."""
    from sipo_bench.cli import main

    def check(text: str) -> str:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(text + "\n")
        assert main(["validate", "--config", str(cfg)]) == 2
        out, cache = tmp_path / "out", tmp_path / "cache"
        assert main(["run", "--config", str(cfg), "--out", str(out), "--cache-dir", str(cache), "--quiet"]) == 2
        assert not out.exists() and not cache.exists()
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 2 and err[0] == err[1] and err[0].startswith("sipo-bench: error: "), err
        return err[0]

    return check
