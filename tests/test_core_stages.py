"""Cache keys, atomic writes, the stage runner and failure isolation."""

from __future__ import annotations

import json
import os

import pytest

from sipo_bench.execution.executors import run_graph
from sipo_bench.execution.runtime import Runtime
from sipo_bench.execution.stages import Cache, Stage, StageLog, atomic_write_text, walk

FN = "tests.stage_fns:"


def test_key_changes_with_config_and_inputs_not_name():
    a = Stage("a", FN + "write", {"x": 1, "y": [1, 2]})
    assert Stage("renamed", FN + "write", {"y": [1, 2], "x": 1}).key == a.key  # order, name: same
    assert Stage("a", FN + "write", {"x": 2, "y": [1, 2]}).key != a.key
    assert Stage("a", FN + "write", {"x": 1, "y": [2, 1]}).key != a.key
    assert Stage("a", FN + "write", {"x": 1, "y": [1, 2]}, version="2").key != a.key
    assert Stage("a", FN + "other", {"x": 1, "y": [1, 2]}).key != a.key
    b1 = Stage("b", FN + "write", {"z": 0}, {"src": a})
    b2 = Stage("b", FN + "write", {"z": 0}, {"src": Stage("a", FN + "write", {"x": 3, "y": [1, 2]})})
    assert b1.key != b2.key  # upstream change propagates
    assert Stage("b", FN + "write", {"z": 0}, {"src": Stage("a2", FN + "write", {"x": 1, "y": [1, 2]})}).key == b1.key


def test_method_config_key_sensitivity():
    """Changing any field of a method config changes its stage key; unrelated fields do not."""
    from sipo_bench.configs.schema import to_dict
    from sipo_bench_plugins.dummy import DummyMethodConfig

    base = to_dict(DummyMethodConfig())
    k0 = Stage("t", FN + "write", base).key
    for f, v in {"strength": 0.8, "sleep": 0.5, "fail": True}.items():
        assert Stage("t", FN + "write", {**base, f: v}).key != k0, f
    assert Stage("t", FN + "write", dict(base), tags={"method": "other"}).key == k0


def test_walk_dedups_by_key_in_topological_order():
    a = Stage("a", FN + "write", {"v": 1})
    a_again = Stage("a-again", FN + "write", {"v": 1})
    b = Stage("b", FN + "write", {"v": 2}, {"x": a})
    c = Stage("c", FN + "write", {"v": 3}, {"x": a_again, "y": b})
    order = walk([c, b])
    assert [s.key for s in order] == [a.key, b.key, c.key]  # a and a-again are one stage


def test_atomic_write_never_leaves_half_files(tmp_path, monkeypatch):
    p = tmp_path / "f.json"
    atomic_write_text(p, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(p, "new")
    monkeypatch.undo()
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["f.json"]


def test_failed_build_leaves_no_stage(tmp_path):
    cache = Cache(tmp_path)
    s = Stage("s", FN + "write", {"v": 1})
    with pytest.raises(RuntimeError):
        with cache.building(s) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("killed")
    assert not cache.path(s).exists() and not cache.is_done(s)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_runner_caches_and_isolates_failures(tmp_path):
    cache = Cache(tmp_path / "c")
    rt = Runtime(quiet=True)
    a = Stage("a", FN + "write", {"v": 1})
    bad = Stage("bad", FN + "fail", {"v": 2}, {"a": a})
    after_bad = Stage("after", FN + "write", {"v": 3}, {"b": bad})
    indep = Stage("indep", FN + "write", {"v": 4}, {"a": a})
    log = StageLog(tmp_path / "log.jsonl", "r1")
    out = run_graph(walk([after_bad, indep]), cache, rt, log)
    assert out[a.key].status == "done" and out[indep.key].status == "done"
    assert out[bad.key].status == "failed" and "ValueError: planned failure" in out[bad.key].error
    assert "Traceback" in out[bad.key].traceback
    assert out[after_bad.key].status == "skipped"
    assert (cache.path(indep) / "out.txt").read_text() == "4 <- 1"
    assert cache.result(indep) == {"v": 4}
    events = [json.loads(l) for l in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if e["stage"] == "bad"] == ["start", "failed"]
    # rerun: finished stages are skipped, the failed one is retried
    log2 = StageLog(tmp_path / "log.jsonl", "r2")
    out2 = run_graph(walk([after_bad, indep]), cache, rt, log2)
    assert out2[a.key].status == "cached" and out2[indep.key].status == "cached"
    assert [e["event"] for e in log2.events if e["stage"] == "bad"] == ["start", "failed"]
