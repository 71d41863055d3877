"""Experiment trackers: the run's training curves and HV sent to TensorBoard, W&B or MLflow.

`tracking: tensorboard | wandb | mlflow | none` (RunConfig, default none). When the run has
written its report, :func:`track_run` replays what it recorded into the tracker, offline:

- every training stage's `curves.json` (the per-step logs of its trainer, its evaluations and
  the selected step), tagged with the run id, the methods that use the stage, its seed, its
  weight and the methods' variants;
- the run-level metrics: mean HV per method (and per seed), and each paired comparison's ΔHV.

Why a replay and not transformers' `report_to`: training stages run in worker processes (or on
Ray nodes) and are cached; `report_to` would need a live tracker run in every worker and would
log nothing for a stage taken from the cache, so a resumed run would show holes. The replay
runs once, in the main process, from the same files the report uses, so the tracker shows
exactly what summary.json references, cached or not. It never changes a number (the report is
written before it starts) and a tracker that fails (full disk, server down) warns once and is
dropped: the run still exits as it would have.

Files: `OUT/tracking/tensorboard/<run_id>/...` (event files), `OUT/tracking/wandb/` (an
offline W&B run; `wandb sync` uploads it), `OUT/tracking/mlflow.db` (a local MLflow store;
`mlflow ui --backend-store-uri sqlite:///OUT/tracking/mlflow.db`).
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any, Callable, Mapping

from ..configs.schema import ConfigError

#: tracker name -> (the package it needs, the extra that installs it)
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}
NAMES = ("none", *PACKAGES)


def check_tracking(name: Any) -> None:
    """A usage error (exit 2) for an unknown tracker or one whose package is not installed."""
    if name not in NAMES:
        raise ConfigError(f"`tracking`: expected one of {', '.join(NAMES)}, got {name!r}")
    if name != "none":
        package, extra = PACKAGES[name]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"`tracking`: {name} needs the package {package!r}, which is not installed; "
                              f"install it with pip install 'sipo-bench[{extra}]'")


def _tag(text: str) -> str:
    """A metric name every tracker accepts (letters, digits, _ - . / and spaces)."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", text)


# --- The trackers ---------------------------------------------------------------------------


class TensorBoardTracker:
    """Event files under `root/<run_id>/<stage>` (one writer per stage, `run` for run-level)."""

    def __init__(self, root: Path, run_id: str, run_tags: Mapping[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self._writer_cls = SummaryWriter
        self.dir = Path(root) / "tensorboard" / run_id
        self.writers: dict[str, Any] = {}

    def _writer(self, group: str) -> Any:
        if group not in self.writers:
            self.writers[group] = self._writer_cls(log_dir=str(self.dir / _tag(group).replace("/", "_")))
        return self.writers[group]

    def start_group(self, group: str, tags: Mapping[str, Any]) -> None:
        self._writer(group).add_text("tags", json.dumps(tags, sort_keys=True), 0)

    def log(self, group: str, metrics: Mapping[str, float], step: int) -> None:
        w = self._writer(group)
        for k, v in metrics.items():
            w.add_scalar(_tag(k), v, step)

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


class WandbTracker:
    """One offline W&B run (`WANDB_MODE=offline` unless set), metrics namespaced by stage, each
    stage with its own step axis."""

    def __init__(self, root: Path, run_id: str, run_tags: Mapping[str, Any]):
        import os

        import wandb

        os.environ.setdefault("WANDB_MODE", "offline")
        (Path(root) / "wandb").mkdir(parents=True, exist_ok=True)
        self.wandb = wandb
        self.run = wandb.init(project="sipo-bench", name=run_id, dir=str(Path(root) / "wandb"), config=dict(run_tags),
                              tags=[str(run_tags.get("task", ""))], reinit="create_new")
        self.groups: set[str] = set()

    def start_group(self, group: str, tags: Mapping[str, Any]) -> None:
        g = _tag(group)
        self.run.define_metric(f"{g}/step")
        self.run.define_metric(f"{g}/*", step_metric=f"{g}/step")
        self.run.config.update({f"stage/{g}": dict(tags)}, allow_val_change=True)
        self.groups.add(g)

    def log(self, group: str, metrics: Mapping[str, float], step: int) -> None:
        g = _tag(group)
        self.run.log({f"{g}/step": step, **{f"{g}/{_tag(k)}": v for k, v in metrics.items()}})

    def close(self) -> None:
        self.run.finish()


class MlflowTracker:
    """A local MLflow store (SQLite file `root/mlflow.db`; MLflow 3 retired the plain file
    store): one parent run for the sipo-bench run, one nested run per stage (tagged with its
    methods, seed, weight and variants) and `run` for run-level metrics. Only the client API,
    so no global MLflow state is touched."""

    def __init__(self, root: Path, run_id: str, run_tags: Mapping[str, Any]):
        from mlflow.tracking import MlflowClient

        Path(root).mkdir(parents=True, exist_ok=True)
        self.uri = f"sqlite:///{(Path(root) / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name("sipo-bench")
        self.experiment = exp.experiment_id if exp else self.client.create_experiment("sipo-bench")
        self.parent = self.client.create_run(self.experiment, run_name=run_id,
                                             tags={k: str(v) for k, v in run_tags.items()})
        self.children: dict[str, Any] = {}

    def start_group(self, group: str, tags: Mapping[str, Any]) -> None:
        self.children[group] = self.client.create_run(
            self.experiment, run_name=group,
            tags={"mlflow.parentRunId": self.parent.info.run_id, **{k: str(v) for k, v in tags.items()}})

    def log(self, group: str, metrics: Mapping[str, float], step: int) -> None:
        if group not in self.children:
            self.start_group(group, {})
        rid = self.children[group].info.run_id
        for k, v in metrics.items():
            self.client.log_metric(rid, _tag(k), v, step=step)

    def close(self) -> None:
        for child in self.children.values():
            self.client.set_terminated(child.info.run_id)
        self.client.set_terminated(self.parent.info.run_id)


TRACKERS: dict[str, Callable[..., Any]] = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker,
                                           "mlflow": MlflowTracker}


# --- Replaying a run into a tracker ----------------------------------------------------------


class _Guarded:
    """Calls a tracker; the first exception warns once and turns every later call into a no-op."""

    def __init__(self, name: str, make: Callable[[], Any], warn: Callable[[str], None]):
        self.name, self.warn, self.tracker, self.failed = name, warn, None, False
        self._call(lambda: setattr(self, "tracker", make()))

    def _call(self, fn: Callable[[], Any]) -> None:
        if self.failed:
            return
        try:
            fn()
        except Exception as e:  # a tracker must never fail the run
            self.failed = True
            self.warn(f"tracking: {self.name} failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                      f"the run's results are unaffected, the tracker gets nothing more")

    def __getattr__(self, method: str) -> Callable[..., None]:
        return lambda *a, **kw: self._call(lambda: getattr(self.tracker, method)(*a, **kw))


def _numbers(row: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def track_run(name: str, summary: Mapping[str, Any], files: Mapping[str, bytes], out: Path | str,
              log: Callable[[str], None] | None = None, warn: Callable[[str], None] | None = None) -> Path | None:
    """Send a finished run's curves and HV to tracker `name` (none: nothing). Returns the
    directory the tracker wrote under (`OUT/tracking`), or None."""
    if name in (None, "none"):
        return None
    import sys

    warn = warn or (lambda m: print(f"sipo-bench: warning: {m}", file=sys.stderr, flush=True))
    root = Path(out) / "tracking"
    run = summary.get("run") or {}
    run_id = str(run.get("run_id") or "run")
    run_tags = {"run_id": run_id, "task": summary.get("task"), "seeds": summary.get("seeds")}
    t = _Guarded(name, lambda: TRACKERS[name](root, run_id, run_tags), warn)
    methods = summary.get("methods") or {}
    for key, st in ((summary.get("training") or {}).get("stages") or {}).items():
        data = files.get(st.get("file", ""))
        if data is None:
            continue
        record = json.loads(data)
        labels = st.get("methods") or []
        tags = {"run_id": run_id, "stage": st["stage"], "key": key, "kind": st.get("kind"), "methods": ",".join(labels),
                "seed": st.get("seed"), "weight": st.get("w"),
                "variant": ",".join(str(methods.get(m, {}).get("variant") or "") for m in labels),
                "flags": ",".join(st.get("flags") or [])}
        t.start_group(st["stage"], tags)
        for row in (record.get("train") or []) + (record.get("eval") or []):
            nums = _numbers(row)
            if nums:
                t.log(st["stage"], nums, int(row["step"]))
        sel = (record.get("selection") or {}).get("selected_step")
        if sel is not None:
            t.log(st["stage"], {"selected_step": float(sel)}, int(sel))
    t.start_group("run", run_tags)
    hv: dict[str, float] = {}
    for label, m in methods.items():
        h = m.get("hypervolume") or {}
        if isinstance(h.get("mean"), (int, float)):
            hv[f"hv/{label}"] = float(h["mean"])
        for seed, v in (h.get("per_seed") or {}).items():
            if isinstance(v, (int, float)):
                t.log("run", {f"hv_per_seed/{label}": float(v)}, int(seed))
        for base, c in (m.get("comparisons") or {}).items():
            d = ((c or {}).get("hypervolume") or {}).get("mean") if isinstance(c, dict) else None
            if isinstance(d, (int, float)):
                hv[f"delta_hv/{label} vs {base}"] = float(d)
    if hv:
        t.log("run", hv, 0)
    t.close()
    if log and not t.failed:
        log(f"tracking: {name} files under {root}")
    return root
