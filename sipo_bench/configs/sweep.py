"""Sweeps: one run config, many runs, one stage graph.

A run config's `sweep` maps option paths to value lists, e.g.

    sweep:
      task_options.conflict_fraction: [0.0, 0.3, 0.6, 0.9]
      method_options.sipo.alpha: [0.0, 0.1]

Every combination (the Cartesian product, in the order given) is a **sweep point**: the run
config with those values set. `sipo-bench run` plans every point, runs the union of their
stages once (a stage whose key does not depend on a swept option, e.g. a base model that
does not read the conflict fraction, is shared), and writes

    OUT/<point>/summary.json, table.md, points.csv, front.png   one run per point
    OUT/sweep.json                                               the index of the points
    OUT/sweep.md, sweep.csv, sweep.png                           the multi-run report

The config side lives here (what a sweep may vary, expanding it into points); planning every
point is :func:`sipo_bench.planning.experiment.plan_sweep`, writing the points
:func:`sipo_bench.planning.run.write_sweep`, the multi-run report
:mod:`sipo_bench.reporting.sweep_report`.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from .schema import ConfigError, build, to_dict
from ..errors import UsageError

SWEEP_SCHEMA = 1
#: option paths a sweep may set (the first component); seeds, methods and run plumbing are not swept
SWEEPABLE = ("task_options", "method_options", "decoding", "max_test_prompts", "weights", "ref_point", "generator")


@dataclass
class SweepPoint:
    label: str               # `conflict_fraction=0.6`
    dirname: str             # its folder under OUT
    values: dict[str, Any]   # option path -> value
    config: Any              # the RunConfig of this point
    plan: Any = None         # its Plan, once planned


def fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if v is None:
        return "null"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def check_sweep(sweep: Any) -> None:
    """Shape check of `RunConfig.sweep`: `{path: [distinct values]}` with a sweepable path."""
    if not isinstance(sweep, dict):
        raise ConfigError(f"`sweep`: expected a mapping of option path to a list of values, got {sweep!r}")
    for path, values in sweep.items():
        parts = str(path).split(".")
        if not isinstance(path, str) or not all(parts):
            raise ConfigError(f"`sweep.{path}`: expected a dotted option path such as task_options.conflict_fraction")
        if parts[0] not in SWEEPABLE:
            raise ConfigError(f"`sweep.{path}`: expected a path under {', '.join(SWEEPABLE)}, got {parts[0]!r}")
        if ((parts[0] in ("task_options", "decoding") and len(parts) != 2)
                or (parts[0] == "method_options" and len(parts) != 3)):
            want = "method_options.<method>.<field>" if parts[0] == "method_options" else f"{parts[0]}.<field>"
            raise ConfigError(f"`sweep.{path}`: expected a path of the form {want}")
        if parts[0] not in ("task_options", "decoding", "method_options") and len(parts) != 1:
            raise ConfigError(f"`sweep.{path}`: expected the field {parts[0]} itself (no sub-path)")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"`sweep.{path}`: expected a non-empty list of values, got {values!r}")
        texts = [fmt_value(v) for v in values]
        if len(set(texts)) != len(texts):
            raise ConfigError(f"`sweep.{path}`: expected distinct values, got {values!r}")


def _short_names(paths: Sequence[str]) -> dict[str, str]:
    """The last path component, unless two paths share it (then the whole path)."""
    last = [p.rsplit(".", 1)[-1] for p in paths]
    return {p: (l if last.count(l) == 1 else p) for p, l in zip(paths, last)}


def _dirname(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", label) or "point"


def _set(data: dict, path: str, value: Any) -> None:
    node = data
    parts = path.split(".")
    for p in parts[:-1]:
        child = node.get(p)
        node[p] = child = dict(child) if isinstance(child, dict) else {}
        node = child
    node[parts[-1]] = value


def expand(cfg: Any) -> list[SweepPoint]:
    """The sweep points of `cfg` (none without a sweep), each a validated RunConfig."""
    if not cfg.sweep:
        return []
    paths = list(cfg.sweep)
    short = _short_names(paths)
    base = to_dict(cfg)
    base.pop("sweep")
    points = []
    for combo in itertools.product(*(cfg.sweep[p] for p in paths)):
        values = dict(zip(paths, combo))
        label = ",".join(f"{short[p]}={fmt_value(v)}" for p, v in values.items())
        data = copy.deepcopy(base)
        for p, v in values.items():
            _set(data, p, v)
        try:
            config = build(type(cfg), data)
        except UsageError as e:
            raise ConfigError(f"`sweep` point {label}: {e}") from None
        points.append(SweepPoint(label, _dirname(label), values, config))
    return points


__all__ = ["SweepPoint", "check_sweep", "expand", "plan_sweep", "write_sweep", "render_sweep", "load_sweep",
           "sweep_tables", "sweep_md", "sweep_csv", "sweep_figure", "is_sweep_dir", "SWEEPABLE"]


def __getattr__(name: str):  # names that moved to other modules in 0.2 (sipo_bench.compat.MOVED_NAMES)
    from sipo_bench import compat

    return compat.moved_attr(__name__, name)
