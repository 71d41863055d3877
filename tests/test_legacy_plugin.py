"""A plugin written against sipo-bench 0.1 keeps working (tests/fixtures/legacy-plugin-0.1: the
0.1 example plugin and a model-free method, frozen in the 0.1 import style): it pip-installs,
lists (as API 0.1), validates, runs end to end, and its old imports warn naming the new paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy-plugin-0.1"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """The fixture pip-installed into a target dir, built from a private copy (xdist workers
    building in one source tree race on its `build/`)."""
    target = tmp_path_factory.mktemp("legacy-site")
    source = tmp_path_factory.mktemp("legacy-src") / LEGACY.name
    shutil.copytree(LEGACY, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


def cli(env: dict, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sipo_bench.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_legacy_plugin_lists_as_api_0_1(site):
    listing = cli(site, "plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    plugins = {p["name"]: p for p in json.loads(listing.stdout)}
    assert plugins["legacy"]["registers"] == {"methods": ["legacy-expo", "legacy-mix"], "scorers": ["legacy-length"]}
    assert plugins["legacy"]["api"] == "0.1" and plugins["legacy"]["error"] is None
    assert plugins["dummy"]["api"] == "0.2"  # in-tree plugins declare the current API
    show = cli(site, "show", "method", "legacy-expo")
    assert show.returncode == 0, show.stderr
    assert "  extrapolation: float = 0.5\n" in show.stdout


def test_legacy_plugin_validates(site, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"task": "synthetic-hh", "methods": ["legacy-expo"], "seeds": [0]}))
    v = cli(site, "validate", "--config", str(cfg))
    assert v.returncode == 0, v.stderr
    assert v.stdout.startswith("ok: task synthetic-hh, methods legacy-expo, ")


def test_legacy_plugin_runs_end_to_end(site, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"task": "dummy", "methods": ["legacy-mix"], "seeds": [0],
                                   "extra_scorers": [{"name": "legacy-length", "options": {"unit": "characters"}}]}))
    out = tmp_path / "out"
    run = cli(site, "run", "--config", str(cfg), "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet")
    assert run.returncode == 0, run.stderr
    s = json.loads((out / "summary.json").read_text())
    points = s["methods"]["legacy-mix"]["points"]
    assert len(points) >= 2 and all(p["extra_scores"] == {"length": 10.0} for p in points)
    # the weights span the front: the a-share of the endpoints is 0.8 and 0.2 (strength 0.8)
    a = sorted(p["scores"][0] for p in points)  # objective a
    assert a[0] < a[-1]


def test_legacy_imports_warn_naming_the_new_paths(site):
    code = "import sipo_bench_legacy, sipo_bench_legacy.mix, sipo_bench_legacy.expo, sipo_bench_legacy.length"
    out = subprocess.run([sys.executable, "-W", "always::DeprecationWarning", "-c", code], capture_output=True,
                         text=True, env=site, timeout=120)
    assert out.returncode == 0, out.stderr
    for old, new in [("hookspecs", "contract.hookspecs"), ("registry", "plugin_host.registry"),
                     ("config", "configs.schema"), ("interfaces", "contract.interfaces"),
                     ("responses", "contract.responses"), ("weights", "contract.weights"),
                     ("stages", "execution.stages"), ("device", "execution.device")]:
        assert (f"DeprecationWarning: sipo_bench.{old} is deprecated since sipo-bench 0.2 and will be removed in 0.3: "
                f"import sipo_bench.{new} (plugins: sipo_bench.api)") in out.stderr, (old, out.stderr)
    assert "sipo_bench_legacy/mix.py" in out.stderr  # the warning points at the plugin's import line
