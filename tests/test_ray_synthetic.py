"""The `ray` executor on the embedded default task (synthetic-hh) with several methods: the
same summary as the local executor, and stages that overlapped in time. Slow (trains the tiny
SFT and DPO models under Ray)."""

from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'sipo-bench[ray]')")

from sipo_bench.configs.run_config import make_config  # noqa: E402

from sipo_bench.planning.run import execute

from sipo_bench.reporting.summary import comparable
from sipo_bench.execution.runtime import Runtime  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.xdist_group("ray")]

METHODS = ["dpo", "dpo-soups", "mod"]


def _run(data: dict):
    cfg = make_config(data)
    return execute(cfg, Runtime(quiet=True))


def _same(s: dict) -> dict:
    out = comparable(s)
    out.pop("git_commit", None)
    out["config"].pop("executor", None)
    out["config"].pop("executor_options", None)
    return out


def test_synthetic_task_on_ray_equals_local(tmp_path, cache_dir):
    assert not ray.is_initialized()
    common = {"task": "synthetic-hh", "methods": METHODS, "max_test_prompts": 16, "quiet": True}
    local, _ = _run({**common, "out": str(tmp_path / "local"), "cache_dir": str(cache_dir)})
    remote, out = _run({**common, "executor": "ray", "executor_options": {"num_cpus": 2},
                        "out": str(tmp_path / "ray"), "cache_dir": str(tmp_path / "ray-cache")})
    assert not ray.is_initialized()  # the private instance is stopped at the end of the run
    assert all(m["status"] == "ok" for m in remote["methods"].values())
    assert _same(remote) == _same(local)
    done = [json.loads(l) for l in (out / "logs" / "stages.jsonl").read_text().splitlines()]
    done = [e for e in done if e["event"] == "done"]
    assert {e["stage"].split("[")[0] for e in done} >= {"data", "base", "dpo", "generate", "score"}
    spans = sorted((e["started"], e["ended"]) for e in done)
    overlapped = any(b_start < a_end for (a_start, a_end), (b_start, _) in zip(spans, spans[1:]))
    assert overlapped, "independent stages (the two DPO models, the generations) should run side by side"
