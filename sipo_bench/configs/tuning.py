"""One tuning protocol for every method (issue 22): `tune: {method: {field: [values]}}`.

Each tuned method runs as one variant per combination of its values (`modpo@learning_rate=0.01`),
the same number of trials for every method named, all in one run that shares its data, base
model and DPO endpoints, evaluated on the validation prompts (`eval_split: val`, required: a
setting is never chosen on test). The summary's `tuning` lists every trial's validation HV
(against the base policy's reference point, mean over seeds) and names the best: the settings
to copy into a preset's `method_options` for the run that reports test numbers
(`presets/synthetic-tune.yaml`, docs/evaluation.md).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from .schema import ConfigError
from .variants import SEP, parse_label


def _finite(v: Any) -> bool:
    return not isinstance(v, float) or math.isfinite(v)


def check_tune(tune: Any, eval_split: str) -> None:
    """A usage error naming the first bad part of a run's `tune`."""
    if not isinstance(tune, dict):
        raise ConfigError(f"`tune`: expected a mapping {{method: {{field: [values]}}}}, got {tune!r}")
    if not tune:
        return
    if eval_split != "val":
        raise ConfigError(f"`eval_split`: expected val with `tune` (settings are chosen on validation prompts, never "
                          f"test), got {eval_split!r}")
    trials: dict[str, int] = {}
    for method, space in tune.items():
        if not isinstance(method, str) or not method or SEP in method:
            raise ConfigError(f"`tune`: expected method names as keys, got {method!r}")
        if not isinstance(space, dict) or not space:
            raise ConfigError(f"`tune.{method}`: expected a non-empty mapping of field: [values], got {space!r}")
        n = 1
        for name, values in space.items():
            where = f"tune.{method}.{name}"
            if not isinstance(values, list) or not values:
                raise ConfigError(f"`{where}`: expected a non-empty list of values, got {values!r}")
            for v in values:
                if isinstance(v, (dict, list)) or not _finite(v):
                    raise ConfigError(f"`{where}`: expected finite scalar values, got {v!r}")
            if len(set(map(repr, values))) != len(values):
                raise ConfigError(f"`{where}`: expected distinct values, got {values!r}")
            n *= len(values)
        trials[method] = n
    if len(set(trials.values())) > 1:
        raise ConfigError("`tune`: expected the same number of trials for every method (an equal tuning budget), got "
                          + ", ".join(f"{m}: {n}" for m, n in trials.items()))


def _text(v: Any, where: str) -> str:
    """A value as label text that reads back as the same value (parse_label: YAML scalars)."""
    if isinstance(v, bool):
        text = str(v).lower()
    elif v is None:
        text = "null"
    elif isinstance(v, float):
        text = repr(v)
        if "e" in text and "." not in text.split("e")[0]:  # YAML 1.1 reads 1e-05 as text
            mantissa, exp = text.split("e")
            text = f"{mantissa}.0e{exp if exp[0] in '+-' else '+' + exp}"
    else:
        text = str(v)
    if "," in text or "=" in text or parse_label(f"m@x={text}", where)[1]["x"] != v:
        raise ConfigError(f"`{where}`: expected a value a method label can hold, got {v!r}")
    return text


def trial_labels(method: str, space: dict) -> list[tuple[str, dict]]:
    """`[(variant label, {field: value})]`, one per combination of `space`'s values, in order."""
    names = list(space)
    out = []
    for combo in itertools.product(*(space[n] for n in names)):
        values = dict(zip(names, combo))
        out.append((method + SEP + ",".join(f"{n}={_text(v, f'tune.{method}.{n}')}" for n, v in values.items()), values))
    return out


def expand(labels: list[str], tune: dict) -> list[str]:
    """The run's method labels with every tuned method replaced by its trials."""
    missing = [m for m in tune if m not in labels]
    if missing:
        raise ConfigError(f"`tune.{missing[0]}`: expected a method of the run ({', '.join(labels)}), got {missing[0]!r}")
    out: list[str] = []
    for label in labels:
        out += [t for t, _ in trial_labels(label, tune[label])] if label in tune else [label]
    return list(dict.fromkeys(out))


def _edges(space: dict, values: dict) -> list[str]:
    """The numeric fields whose chosen value is the smallest or largest of their >= 2 trial values."""
    out = []
    for name, options in space.items():
        nums = [v for v in options if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(nums) == len(options) >= 2 and values[name] in (min(nums), max(nums)):
            out.append(f"{name}={values[name]}")
    return out


def tuning_summary(tune: dict, methods: dict) -> dict:
    """Per tuned method: its trials' validation HV vs the reference point (mean over seeds, None
    for a failed trial), the chosen trial (the highest; a failed trial never; ties: the first) and
    a note when the choice is weak: tied trials (all tied: nothing is chosen), or a chosen value at
    the edge of its numeric range (the best may lie beyond: widen the space). `methods`: the
    summary's method entries."""
    out: dict[str, Any] = {}
    for method, space in tune.items():
        trials = []
        for label, values in trial_labels(method, space):
            hv = ((methods.get(label) or {}).get("hypervolume") or {}).get("mean")
            trials.append({"label": label, "values": values, "hv_val": hv})
        ok = [t for t in trials if t["hv_val"] is not None]
        best = max(ok, key=lambda t: t["hv_val"]) if ok else None  # max keeps the first of equal values
        notes = []
        if best is not None:
            tied = [t["label"] for t in ok if t["hv_val"] == best["hv_val"]]
            if len(tied) == len(ok) > 1:
                notes.append("all trials tie: nothing to choose")
                best = None
            elif len(tied) > 1:
                notes.append("tied with " + ", ".join(t for t in tied if t != best["label"]) + " (the first is chosen)")
        elif trials:
            notes.append("every trial failed")
        if best is not None:
            edge = _edges(space, best["values"])
            if edge:
                notes.append(f"chosen at the edge of the search space ({', '.join(edge)}): the best may lie beyond; widen it")
        out[method] = {"trials": trials, "chosen": best["label"] if best else None,
                       "chosen_values": best["values"] if best else None, "note": "; ".join(notes) or None,
                       "criterion": "HV vs ref on the validation prompts, mean over seeds"}
    return out
