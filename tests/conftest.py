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
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("sipo-cache")


@pytest.fixture
def fresh_cache(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def runtime():
    from sipo_bench.runtime import Runtime

    return Runtime(quiet=True)
