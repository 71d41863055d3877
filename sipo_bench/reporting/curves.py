"""Training curves: the `curves.json` a training stage keeps, the warning flags read off it, and
the run's index of them (summary.json `training`).

A training stage (DPO, MODPO, DPO-LW, SFT, RLOO, reward model, SIPO re-alignment) that runs a
transformers / trl trainer adds :class:`sipo_bench.reporting.curves_callback.CurvesCallback`; at the end
of training it writes `curves.json` into the stage's artefacts (cached and resumed with them):

    {"format": 1, "trainer": "PreferenceTrainer",
     "train": [{"step": 1, "loss": ..., "rewards/margins": ..., "learning_rate": ..., ...}, ...],
     "eval": [{"step": 4, "eval_loss": ..., ...}, ...],
     "other": [...],           # summary and probe logs (train_runtime, probe_loss, ...)
     "selection": {"load_best": true, "metric": "eval_loss", "greater_is_better": false,
                   "selected_step": 8, "global_step": 12},
     "extra": {"initial_val_loss": ...}}

Non-finite logged values are written as null (JSON has no NaN); a stage with a non-finite loss
fails anyway (the divergence guard). This module does not import transformers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

CURVES = "curves.json"
FORMAT = 1

#: the flags a stage can get, and what they say (table.md, console and HTML print these)
FLAGS = {
    "loss_rose": "final training loss above the first (mean of the last fifth of steps vs the first fifth)",
    "val_never_improved": "validation never improved",
    "selected_first": "the selected checkpoint is the first evaluated",
}


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def write_curves(out: Path | str, logs: Iterable[Mapping[str, Any]], *, trainer: str | None = None,
                 selection: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> Path:
    """Write `out/curves.json` from a trainer's log entries (each with its `step`)."""
    train, evals, other = [], [], []
    for entry in logs:
        row = {k: _finite(v) for k, v in entry.items()}
        if any(k.startswith("eval_") for k in row):
            evals.append(row)
        elif "train_runtime" in row or any(k.startswith("probe_") for k in row):
            other.append(row)
        else:
            train.append(row)
    record = {"format": FORMAT, "trainer": trainer, "train": train, "eval": evals, "other": other,
              "selection": dict(selection or {}), "extra": {k: _finite(v) for k, v in (extra or {}).items()}}
    path = Path(out) / CURVES
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def read_curves(stage_dir: Path | str) -> dict | None:
    """The curves of a finished stage dir, or None when it kept none."""
    p = Path(stage_dir) / CURVES
    if not p.is_file():
        return None
    try:
        record = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise RuntimeError(f"cache: {p} is damaged ({e}); run `sipo-bench cache verify`") from None
    return record if isinstance(record, dict) else None


def series(rows: Iterable[Mapping[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) of every row that logged a number under `key`."""
    return [(int(r["step"]), float(r[key])) for r in rows if isinstance(r.get(key), (int, float))
            and not isinstance(r.get(key), bool)]


def loss_key(record: Mapping[str, Any]) -> str | None:
    """The training loss's key (`loss` for every trainer here), or None when none was logged."""
    return "loss" if series(record.get("train") or [], "loss") else None


def eval_key(record: Mapping[str, Any]) -> str:
    metric = (record.get("selection") or {}).get("metric") or "eval_loss"
    return metric if metric.startswith("eval_") else f"eval_{metric}"


def flags(record: Mapping[str, Any]) -> list[str]:
    """Names (keys of :data:`FLAGS`) of what looks wrong with a stage's training:

    - `loss_rose`: the mean logged training loss of the last fifth of the steps is above that of
      the first fifth (one step each with fewer than 8 steps);
    - `val_never_improved`: no evaluation after the first reference is better than it (the
      reference is the validation loss measured before training, `extra.initial_val_loss`,
      when recorded, else the first evaluation);
    - `selected_first`: best-checkpoint selection kept the first evaluated step although later
      ones were evaluated.
    """
    out = []
    loss = [v for _, v in series(record.get("train") or [], "loss")]
    k = max(1, round(len(loss) / 5))  # per-step losses are batch noise: compare the first and last fifths
    if len(loss) >= 2 and sum(loss[-k:]) / k > sum(loss[:k]) / k:
        out.append("loss_rose")
    sel = record.get("selection") or {}
    higher = bool(sel.get("greater_is_better"))
    ev = series(record.get("eval") or [], eval_key(record))
    initial = (record.get("extra") or {}).get("initial_val_loss") if eval_key(record) == "eval_loss" else None
    ref, later = (initial, ev) if isinstance(initial, (int, float)) else (ev[0][1] if ev else None, ev[1:])
    if ref is not None and later and not any((v > ref) if higher else (v < ref) for _, v in later):
        out.append("val_never_improved")
    if sel.get("selected_step") is not None and len(ev) >= 2 and int(sel["selected_step"]) == ev[0][0]:
        out.append("selected_first")
    return out


def flag_text(names: Iterable[str]) -> str:
    return "; ".join(FLAGS.get(n, n) for n in names)


def stage_entry(stage: Any, record: Mapping[str, Any]) -> dict:
    """The summary's description of one stage's curves (the curves themselves stay in the file)."""
    loss = series(record.get("train") or [], "loss")
    ev = series(record.get("eval") or [], eval_key(record))
    cfg = getattr(stage, "config", {}) or {}
    return {
        "stage": stage.name, "kind": stage.kind, "seed": cfg.get("seed"), "w": cfg.get("w"), "file": f"curves/{stage.key}.json",
        "trainer": record.get("trainer"), "steps": (record.get("selection") or {}).get("global_step"),
        "first_loss": loss[0][1] if loss else None, "last_loss": loss[-1][1] if loss else None,
        "evals": len(ev), "selected_step": (record.get("selection") or {}).get("selected_step"),
        "flags": flags(record), "methods": [],
    }


def collect(method_stages: Mapping[str, list[Any]], cache: Any, walk: Any) -> tuple[dict, dict[str, bytes]]:
    """({stage key: entry}, {"curves/<key>.json": bytes}) over every stage upstream of each
    method's own stages (`method_stages`: label -> stages) that kept curves; each entry lists
    the methods that use it (shared stages, e.g. the DPO endpoints, appear once)."""
    index: dict[str, dict] = {}
    files: dict[str, bytes] = {}
    for label, stages in method_stages.items():
        for s in walk(stages):
            if s.key not in index:
                p = Path(cache.path(s)) / CURVES
                if not p.is_file():
                    continue
                record = read_curves(cache.path(s))
                if record is None:
                    continue
                index[s.key] = stage_entry(s, record)
                files[index[s.key]["file"]] = p.read_bytes()
            if label not in index[s.key]["methods"]:
                index[s.key]["methods"].append(label)
    return index, files


def method_flags(summary: Mapping[str, Any], method: str) -> list[tuple[str, list[str]]]:
    """(stage name, flags) of a method's training stages that have flags."""
    stages = (summary.get("training") or {}).get("stages") or {}
    keys = (summary.get("methods", {}).get(method) or {}).get("training") or []
    return [(stages[k]["stage"], stages[k]["flags"]) for k in keys if k in stages and stages[k].get("flags")]


def training_lines(summary: Mapping[str, Any]) -> list[str] | None:
    """The report's sentence about training curves; None for a summary written before they
    were recorded (its report stays as it was)."""
    training = summary.get("training")
    if not isinstance(training, dict):
        return None
    stages = training.get("stages") or {}
    n_flagged = sum(1 for st in stages.values() if st.get("flags"))
    if not stages:
        return ["No stage of this run trained a model with a recorded curve."]
    return [f"{len(stages)} training stage(s) recorded their curves (OUT/curves/<key>.json, shown in index.html); "
            f"{n_flagged} flagged (a flag says: " + "; or ".join(FLAGS.values()) + ")."]


def training_table(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per flagged training stage: stage, methods, flags, first and last loss, the
    selected step. ([], []) when none is flagged or none was recorded."""
    stages = ((summary.get("training") or {}).get("stages") or {}) if isinstance(summary.get("training"), dict) else {}

    def n(x: Any) -> str:
        return "-" if x is None else (str(x) if isinstance(x, int) else f"{float(x):.4f}")

    body = [[st["stage"], ", ".join(st.get("methods") or []), flag_text(st["flags"]), n(st.get("first_loss")),
             n(st.get("last_loss")), n(st.get("selected_step"))] for st in stages.values() if st.get("flags")]
    if not body:
        return [], []
    return ["stage", "methods", "flags", "first loss", "last loss", "selected step"], body
