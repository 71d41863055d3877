"""Trackers: a finished run's curves and HV replayed into TensorBoard (event files its own reader
parses), W&B offline and a local MLflow store (when installed); bad names and missing packages
are usage errors naming the extra; a tracker that fails warns once and changes nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sipo_bench.reporting import tracking  # noqa: E402
from sipo_bench.configs.schema import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def fabricated(tmp_path):
    from test_html_report import with_curves_and_samples

    s, files = with_curves_and_samples(tmp_path)
    s["run"] = {**s["run"], "run_id": "abc123"}
    return s, files


def test_unknown_tracker_is_a_usage_error_naming_the_choices():
    with pytest.raises(ConfigError, match=r"`tracking`: expected one of none, tensorboard, wandb, mlflow, got 'tb'"):
        tracking.check_tracking("tb")
    tracking.check_tracking("none")


def test_missing_package_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'sipo-bench\[mlflow\]'"):
        tracking.check_tracking("mlflow")


def test_cli_exits_2_before_any_stage_runs(tmp_path, capsys):
    from sipo_bench.cli import main

    out = tmp_path / "out"
    assert main(["run", "--task", "synthetic-hh", "--tracking", "nope", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "`tracking`" in capsys.readouterr().err and not out.exists() and not (tmp_path / "cache").exists()


def test_tensorboard_event_files_parse_with_tensorboards_reader(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    s, files = fabricated(tmp_path)
    root = tracking.track_run("tensorboard", s, files, tmp_path / "out", warn=pytest.fail)
    run_dir = root / "tensorboard" / "abc123"
    stage = EventAccumulator(str(run_dir / "dpo_helpful_seed_0_"))
    stage.Reload()
    loss = stage.Scalars("loss")
    assert [e.step for e in loss] == list(range(1, 9))
    assert loss[0].value == pytest.approx(0.55) and loss[-1].value == pytest.approx(0.9)
    assert [e.step for e in stage.Scalars("eval_loss")] == [4, 8]
    assert "rewards/margins" in stage.Tags()["scalars"] and "learning_rate" in stage.Tags()["scalars"]
    tags = json.loads(stage.Tensors("tags/text_summary")[0].tensor_proto.string_val[0].decode())
    assert tags["run_id"] == "abc123" and tags["methods"] == "dpo,dpo-soups" and tags["seed"] == 0
    assert set(tags) >= {"weight", "variant", "stage", "flags"}
    run = EventAccumulator(str(run_dir / "run"))
    run.Reload()
    hv = {t: run.Scalars(t)[0].value for t in run.Tags()["scalars"] if t.startswith("hv/")}
    assert hv["hv/sipo"] == pytest.approx(s["methods"]["sipo"]["hypervolume"]["mean"], rel=1e-6)
    d = s["methods"]["sipo"]["comparisons"]["mod"]["hypervolume"]["mean"]
    assert run.Scalars("delta_hv/sipo vs mod")[0].value == pytest.approx(d, rel=1e-5)


class Failing:
    """A tracker whose writes fail like a full disk."""

    made = 0

    def __init__(self, *a, **kw):
        Failing.made += 1

    def start_group(self, *a):
        pass

    def log(self, *a):
        raise OSError(28, "No space left on device")

    def close(self):
        raise AssertionError("not reached: the tracker was dropped")


def test_a_failing_tracker_warns_once_and_never_fails(tmp_path, monkeypatch):
    s, files = fabricated(tmp_path)
    monkeypatch.setitem(tracking.TRACKERS, "tensorboard", Failing)
    warnings: list[str] = []
    before = json.dumps(s, sort_keys=True)
    tracking.track_run("tensorboard", s, files, tmp_path / "out", warn=warnings.append)
    assert len(warnings) == 1 and "No space left on device" in warnings[0] and "unaffected" in warnings[0]
    assert json.dumps(s, sort_keys=True) == before

    def broken(*a, **kw):
        raise ConnectionError("server down")

    monkeypatch.setitem(tracking.TRACKERS, "tensorboard", broken)
    warnings.clear()
    tracking.track_run("tensorboard", s, files, tmp_path / "out2", warn=warnings.append)
    assert len(warnings) == 1 and "server down" in warnings[0]


def test_wandb_offline_run_is_written(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    s, files = fabricated(tmp_path)
    root = tracking.track_run("wandb", s, files, tmp_path / "out", warn=pytest.fail)
    runs = list((root / "wandb").rglob("*.wandb"))
    assert runs and runs[0].stat().st_size > 0


def test_mlflow_local_store_has_the_metrics(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    s, files = fabricated(tmp_path)
    root = tracking.track_run("mlflow", s, files, tmp_path / "out", warn=pytest.fail)
    client = mlflow.tracking.MlflowClient(f"sqlite:///{(root / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("sipo-bench")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    stage = runs["dpo[helpful,seed=0]"]
    assert stage.data.tags["methods"] == "dpo,dpo-soups" and stage.data.tags["run_id"] == "abc123"
    assert [m.step for m in client.get_metric_history(stage.info.run_id, "loss")] == list(range(1, 9))
