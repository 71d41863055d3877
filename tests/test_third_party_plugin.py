"""The example third-party package (examples/sipo-bench-example): found through its entry point
with no change to the core (pip-installed into a temp target dir), its scorer through
`extra_scorers`, its ExPO method's planning, stage and end-to-end behaviour on the tiny
synthetic task."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sipo_bench.configs.schema import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sipo-bench-example"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """The example pip-installed into a target dir; the environment that sees it. pip builds in the source
    tree (`build/`, `*.egg-info`), and pytest-xdist may run this module fixture in several workers at once,
    so each install builds from a private copy of the example: two builds in one tree race on `build/`."""
    target = tmp_path_factory.mktemp("example-site")
    source = tmp_path_factory.mktemp("example-src") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


def cli(env: dict, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sipo_bench.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture
def example(monkeypatch):
    """The example's modules imported in this process (from the source tree)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import sipo_bench_example

    return sipo_bench_example


def test_example_package_registers_and_shows_its_options(site):
    listing = cli(site, "plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    plugins = {p["name"]: p for p in json.loads(listing.stdout)}
    assert plugins["example"]["registers"] == {"methods": ["example-expo"], "scorers": ["example-length"]}
    assert plugins["example"]["version"] == "0.2.0" and plugins["example"]["source"] == "entry point"
    show = cli(site, "show", "method", "example-expo")
    assert show.returncode == 0, show.stderr
    assert show.stdout.startswith("method example-expo  (plugin example, sipo_bench_example.expo:ExPOMethod)\n")
    assert "  extrapolation: float = 0.5\n      λ: each endpoint's weight delta is multiplied by 1 + λ" in show.stdout
    assert "  combine: 'soup' | 'fusion' = \"soup\"\n" in show.stdout
    show = cli(site, "show", "scorer", "example-length")
    assert "  unit: 'words' | 'characters' = \"words\"\n" in show.stdout


def test_example_scorer_through_extra_scorers(site, tmp_path):
    import yaml

    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"task": "dummy", "methods": ["dummy"], "extra_scorers": [
        {"name": "example-length"}, {"name": "example-length", "options": {"unit": "characters", "objective": "chars"}}]}))
    out = tmp_path / "out"
    run = cli(site, "run", "--config", str(cfg), "--out", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet")
    assert run.returncode == 0, run.stderr
    s = json.loads((out / "summary.json").read_text())
    # dummy responses are one word of 10 letters (a's then b's) at every weight
    assert [o["name"] for o in s["extra_objectives"]] == ["length", "chars"]
    assert all(not o["higher_is_better"] for o in s["extra_objectives"])
    assert all(p["extra_scores"] == {"length": 1.0, "chars": 10.0} for p in s["methods"]["dummy"]["points"])
    assert "| best length (min; extra) | best chars (min; extra) |" in (out / "table.md").read_text()

    cfg.write_text(yaml.safe_dump({"task": "dummy", "methods": ["dummy"],
                                   "extra_scorers": [{"name": "example-length", "options": {"unit": "lines"}}]}))
    bad = cli(site, "run", "--config", str(cfg), "--out", str(tmp_path / "bad"), "--cache-dir", str(tmp_path / "c"))
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("sipo-bench: error: `extra_scorers[0].options.unit`: expected one of 'words', "
                                  "'characters', got 'lines'")


def test_length_scorer_values(example):
    from sipo_bench_example.length import LengthScorer

    prompts = ["p"] * 3
    responses = [" two words", " ", " one"]
    assert LengthScorer().score(prompts, responses) == {"length": [2.0, 0.0, 1.0]}
    chars = LengthScorer(unit="characters", objective="n")
    assert chars.score(prompts, responses) == {"n": [9.0, 0.0, 3.0]} and chars.directions() == {"n": False}
    with pytest.raises(ConfigError, match=r"`scorer example-length`: `objective`: expected a non-empty objective name"):
        LengthScorer(objective=" ")


@pytest.mark.parametrize("options, message", [
    ({"extrapolation": -1.0}, "`extrapolation`: expected a finite number > -1, got -1.0"),
    ({"extrapolation": -1.0}, "`extrapolation`: expected a finite number > -1, got -1.0"),
    ({"extrapolation": math.nan}, "`extrapolation`: expected a finite number, got nan"),
    ({"combine": "average"}, "`combine`: expected one of 'soup', 'fusion', got 'average'"),
])
def test_expo_config_is_checked(example, options, message):
    from sipo_bench.configs.schema import build
    from sipo_bench_example.expo import ExPOConfig

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(ExPOConfig, options)


class _ModelDummy:
    """The dummy task declared model-based (ExPO trains on a language model's adapters): only
    planned here, never run."""

    from sipo_bench.contract.hookspecs import hookimpl
    from sipo_bench_plugins.dummy import DummyTask

    class Task(DummyTask):
        name = "dummy-model"
        model_based = True

    @staticmethod
    @hookimpl
    def sipo_bench_register_tasks():
        return [_ModelDummy.Task]


def _runtime(example):
    """The dummy plugin (and its model-based variant), the local executor and the example,
    registered directly (pluggy's `register`, the path entry points take), whatever else this
    environment has installed."""
    from sipo_bench.execution import executors
    from sipo_bench.plugin_host.manager import Registries, get_plugin_manager
    from sipo_bench.execution.runtime import Runtime
    from sipo_bench_plugins import dummy

    pm = get_plugin_manager(load_entry_points=False, extra=[dummy, executors, example, _ModelDummy])
    return Runtime(Registries(pm), quiet=True)


def test_expo_plans_on_the_endpoint_methods_stages(example):
    from sipo_bench.configs.run_config import make_config
    from sipo_bench.planning.experiment import plan_run

    plan = plan_run(make_config({"task": "dummy-model", "methods": ["dummy", "example-expo"], "method_options": {
        "dummy": {"strength": 0.8}, "example-expo": {"endpoints": "dummy", "extrapolation": 0.25}}}), _runtime(example))
    stages = plan.stages()
    expo = sorted((s for s in stages if s.kind == "expo"), key=lambda s: s.name)
    assert [s.name for s in expo] == ["expo[a,x1.25,seed=0]", "expo[b,x1.25,seed=0]"]
    assert all(s.fn == "sipo_bench_example.expo:extrapolate_adapter" and s.config == {"factor": 1.25} for s in expo)
    trained = {s.key: s for s in stages if s.kind == "dummy-train"}
    assert len(trained) == 2  # the dummy method's own stages, shared (strength 0.8 from its options)
    assert {s.inputs["adapter"].key for s in expo} == set(trained)
    assert {s.config["strength"] for s in trained.values()} == {0.8}
    mid = next(p for p in plan.methods["example-expo"].points if p.w == (0.5, 0.5))
    assert {s.kind for s in mid.generate.inputs.values()} == {"base", "expo", "data"}


@pytest.mark.parametrize("endpoints, message", [
    ("example-expo", "`method_options.example-expo.endpoints`: expected another method, got 'example-expo'"),
    ("dumy", "`method_options.example-expo.endpoints`: unknown method 'dumy'. Did you mean 'dummy'?"),
])
def test_expo_endpoints_are_checked(example, endpoints, message):
    from sipo_bench.configs.run_config import make_config
    from sipo_bench.planning.experiment import plan_run

    cfg = make_config({"task": "dummy-model", "methods": ["example-expo"], "method_options": {"example-expo": {"endpoints": endpoints}}})
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        plan_run(cfg, _runtime(example))


def test_extrapolate_adapter_scales_the_weight_delta_exactly(example, tmp_path):
    pytest.importorskip("torch")
    from safetensors.torch import load_file

    from sipo_bench.execution.stages import Stage, StageContext
    from sipo_bench_example.expo import extrapolate_adapter
    from tests.tiny_models import make_tiny_lora, make_tiny_model

    base = make_tiny_model(tmp_path / "base", hidden_size=32, intermediate_size=64)
    src = make_tiny_lora(base, tmp_path / "src", seed=3)
    out = tmp_path / "out"
    out.mkdir()
    ctx = StageContext(Stage("expo[x]", extrapolate_adapter, {"factor": 1.5}), out, {"adapter": src}, runtime=None)
    assert extrapolate_adapter(ctx) == {"factor": 1.5, "scaled_tensors": 8}  # 2 layers x q, k, v, o
    old, new = load_file(str(src / "adapter_model.safetensors")), load_file(str(out / "adapter_model.safetensors"))
    assert old.keys() == new.keys()
    for key in (k for k in old if ".lora_A." in k):
        b = key.replace(".lora_A.", ".lora_B.")
        delta_old, delta_new = old[b] @ old[key], new[b] @ new[key]
        assert float((delta_new - 1.5 * delta_old).abs().max()) < 1e-6 and float(delta_old.abs().max()) > 0
        assert (new[key] == old[key]).all()

    config = json.loads((src / "adapter_config.json").read_text())
    (src / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ValueError, match="expected a plain LoRA adapter"):
        extrapolate_adapter(StageContext(ctx.stage, tmp_path, {"adapter": src}, runtime=None))


@pytest.mark.slow
def test_expo_on_the_synthetic_task(site, cache_dir, tmp_path):
    """The installed example end to end with tiny settings (8 test prompts; the SFT and DPO models
    come from the session cache when another test trained them). λ = 0 reproduces `dpo`'s
    vertex points exactly; λ = 0.5 writes adapters whose lora_B are 1.5 x DPO's."""
    pytest.importorskip("torch")
    import yaml
    from safetensors.torch import load_file

    def run(name: str, lam: float) -> tuple[dict, list[dict]]:
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump({"task": "synthetic-hh", "methods": ["dpo", "example-expo"], "max_test_prompts": 8,
                                       "method_options": {"example-expo": {"extrapolation": lam}},
                                       "extra_scorers": [{"name": "example-length"}]}))
        out = tmp_path / name
        proc = cli(site, "run", "--config", str(cfg), "--out", str(out), "--cache-dir", str(cache_dir), "--quiet",
                   timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        evs = [json.loads(line) for line in (out / "logs" / "stages.jsonl").read_text().splitlines()]
        return json.loads((out / "summary.json").read_text()), evs

    same, evs = run("lambda0", 0.0)
    dpo = {tuple(p["w"]): p for p in same["methods"]["dpo"]["points"]}
    expo = {tuple(p["w"]): p for p in same["methods"]["example-expo"]["points"]}
    assert same["methods"]["example-expo"]["status"] == "ok" and len(expo) == 5
    for w in ((1.0, 0.0), (0.0, 1.0)):
        assert expo[w]["scores"] == dpo[w]["scores"] and expo[w]["extra_scores"] == dpo[w]["extra_scores"]
    dpo_keys = {e["key"] for e in evs if e["stage"].startswith("dpo[")}
    assert len(dpo_keys) == 2  # one per objective, shared by dpo and example-expo

    far, evs = run("lambda05", 0.5)
    m = far["methods"]["example-expo"]
    assert m["status"] == "ok" and m["hypervolume"] is not None and len(m["points"]) == 5
    assert all(p["extra_scores"]["length"] >= 0 for p in m["points"])
    by_key = {e["key"]: e["stage"] for e in evs}
    expo_dirs = {name: cache_dir / "stages" / key for key, name in by_key.items() if name.startswith("expo[")}
    dpo_dirs = {name: cache_dir / "stages" / key for key, name in by_key.items() if name.startswith("dpo[")}
    for objective in ("helpful", "harmless"):
        new = load_file(str(expo_dirs[f"expo[{objective},x1.5,seed=0]"] / "adapter_model.safetensors"))
        old = load_file(str(dpo_dirs[f"dpo[{objective},seed=0]"] / "adapter_model.safetensors"))
        for k, v in old.items():
            assert (new[k] == (1.5 * v if ".lora_B." in k else v)).all(), k
    print("example-expo HV (8 test prompts):", m["hypervolume"]["mean"], "dpo-vertex-only:",
          far["methods"]["dpo"]["hypervolume"]["mean"])
