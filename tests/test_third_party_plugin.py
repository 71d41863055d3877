"""An external package with an entry point in group `sipo_bench` is found and runs with no
change to the core: examples/sipo-bench-example is pip-installed into a temp target dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_example_package_registers_and_runs(tmp_path):
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(target), str(ROOT / "examples" / "sipo-bench-example")],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    listing = subprocess.run([sys.executable, "-m", "sipo_bench.cli", "plugins", "--json"], capture_output=True,
                             text=True, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr
    plugins = {p["name"]: p for p in json.loads(listing.stdout)}
    assert plugins["example"]["registers"] == {"methods": ["example-base"]}
    assert plugins["example"]["version"] == "0.1.0" and plugins["example"]["source"] == "entry point"

    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "sipo_bench.cli", "run", "--task", "dummy", "--methods",
                          "dummy,example-base", "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    s = json.loads((out / "summary.json").read_text())
    m = s["methods"]["example-base"]
    assert m["status"] == "ok"
    # the base policy at every weight: every point equals the reference point
    assert all(p["scores"] == s["ref_point"] for p in m["points"])
    assert m["extra"]["0"]["record"] == {"lines": 1}
