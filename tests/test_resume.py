"""SIGKILL a real `sipo-bench run` mid-run; the rerun finishes, skips finished stages and
writes the same summary as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from sipo_bench.reporting.summary import comparable
from stage_events import events

CONFIG = """
task: dummy
seeds: [0, 1]
weights: 4
method_options: {dummy: {sleep: 0.6}}
"""


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sipo_bench.cli", *args]


def test_sigkill_and_resume(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(textwrap.dedent(CONFIG))
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["run", "--config", str(cfg), "--out", str(out), "--cache-dir", str(cache), "--quiet"]
    proc = subprocess.Popen(cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    try:
        while time.time() < deadline:
            done = [e for e in events(out) if e["event"] == "done" and e["stage"].startswith("dummy-train")]
            if len(done) >= 2:
                break
            assert proc.poll() is None, "run ended before it could be killed"
            time.sleep(0.05)
        else:
            raise AssertionError("no training stage finished in time")
        time.sleep(0.3)  # land somewhere inside the next stage
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = events(out)
    run1 = first[0]["run_id"]
    finished = {e["key"] for e in first if e["event"] == "done"}
    started_not_finished = {e["key"] for e in first if e["event"] == "start"} - finished
    assert finished and started_not_finished, "the kill should land between stages' start and done"
    assert not (out / "summary.json").exists()

    rerun = subprocess.run(cli(*args), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    second = [e for e in events(out) if e["run_id"] != run1]
    assert {e["key"] for e in second if e["event"] == "cached"} >= finished
    assert not ({e["key"] for e in second if e["event"] == "start"} & finished), "a finished stage was redone"
    assert started_not_finished <= {e["key"] for e in second if e["event"] == "done"}

    clean_out = tmp_path / "clean"
    clean = subprocess.run(cli("run", "--config", str(cfg), "--out", str(clean_out), "--cache-dir",
                               str(tmp_path / "cache2"), "--quiet"), capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    a = comparable(json.loads((out / "summary.json").read_text()))
    b = comparable(json.loads((clean_out / "summary.json").read_text()))
    assert a == b
    assert (out / "table.md").read_text() == (clean_out / "table.md").read_text()
    leftovers = list((cache / "tmp").iterdir()) if (cache / "tmp").exists() else []
    assert all(not (p / "_DONE.json").exists() for p in leftovers)
