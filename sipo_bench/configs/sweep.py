"""Sweeps: one run config, many runs, one stage graph, and the multi-run report.

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

The multi-run report is rendered from the points' `summary.json` files only
(:func:`render_sweep`; `sipo-bench report OUT` re-renders it): rows are the methods (and
variants), columns the sweep points; HV with its interval against each reference, and the
paired ΔHV of every declared comparison (`compare_to`) with its interval, wins and p-value.
The plot shows each declared pair's ΔHV against the swept value, with its interval.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..scoring import stats
from .schema import ConfigError, to_dict
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


def _fmt(v: Any) -> str:
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
        texts = [_fmt(v) for v in values]
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
    from ..planning.experiment import make_config

    if not cfg.sweep:
        return []
    paths = list(cfg.sweep)
    short = _short_names(paths)
    base = to_dict(cfg)
    base.pop("sweep")
    points = []
    for combo in itertools.product(*(cfg.sweep[p] for p in paths)):
        values = dict(zip(paths, combo))
        label = ",".join(f"{short[p]}={_fmt(v)}" for p, v in values.items())
        data = copy.deepcopy(base)
        for p, v in values.items():
            _set(data, p, v)
        try:
            config = make_config(data)
        except UsageError as e:
            raise ConfigError(f"`sweep` point {label}: {e}") from None
        points.append(SweepPoint(label, _dirname(label), values, config))
    return points


def plan_sweep(cfg: Any, runtime: Any, plan_run: Callable[[Any, Any], Any]) -> list[SweepPoint]:
    """Expand and plan every sweep point (nothing runs); a bad value is a usage error naming
    the point. Returns [] when `cfg` has no sweep."""
    points = expand(cfg)
    for p in points:
        try:
            p.plan = plan_run(p.config, runtime)
        except UsageError as e:
            raise type(e)(f"`sweep` point {p.label}: {e}") from None
    return points


def write_sweep(cfg: Any, points: list[SweepPoint], outcomes: dict, cache: Any, out: Path,
                failures: dict[str, str], *, run_id: str, t0: float) -> dict:
    """Summarise every point into `OUT/<point>/` (each a report written as one transaction,
    with the tracebacks of its own failed stages), then write `OUT/sweep.json` and the
    multi-run report; returns the sweep index (`sweep.json`). `failures`: `<key>.txt` ->
    traceback of every failed stage of the run."""
    from ..planning.experiment import plan_failures, run_files, summarize
    from ..reporting.summary_schema import SCHEMA_VERSION
    from ..reporting.outdir import write_report
    from ..execution.stages import write_json

    for p in points:
        summary = summarize(p.plan, outcomes, cache, wall_seconds=time.time() - t0, run_id=run_id)
        own = {f"{s.key}.txt" for s in p.plan.stages()}
        files = run_files(p.plan, outcomes, cache, summary)
        write_report(out / p.dirname, summary, {**{k: v for k, v in failures.items() if k in own},
                                                **plan_failures(p.plan)}, files)
    task = points[0].plan.task
    index = {
        "schema_version": SWEEP_SCHEMA, "kind": "sweep", "summary_schema_version": SCHEMA_VERSION,
        "task": task.name,
        "sweep": {k: list(v) for k, v in cfg.sweep.items()},
        "points": [{"label": p.label, "dir": p.dirname, "values": p.values} for p in points],
        "config": to_dict(cfg),
        "run": {"run_id": run_id, "wall_seconds": round(time.time() - t0, 3)},
    }
    render_sweep(out, index)
    write_json(out / "sweep.json", index)  # last: the sweep is complete
    return index


# --- The multi-run report ---------------------------------------------------------------------


def load_sweep(d: Path) -> tuple[dict, list[dict]]:
    """`sweep.json` of `d` and every point's summary (via :func:`report.load_summaries`)."""
    from ..reporting.report import load_summaries

    path = Path(d) / "sweep.json"
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"`{d}`: cannot read sweep.json ({e})") from None
    if not isinstance(index, dict) or index.get("kind") != "sweep" or not isinstance(index.get("points"), list):
        raise UsageError(f"`{d}`: sweep.json is not a sipo-bench sweep index (expected kind 'sweep' and points)")
    return index, load_summaries([Path(d) / p["dir"] for p in index["points"]])


def _refs(summaries: list[dict]) -> list[tuple[str, str]]:
    return [("hypervolume", "ref")] + ([("hypervolume_floor", "floor")]
                                       if any(s.get("floor") is not None for s in summaries) else [])


def _methods(summaries: list[dict]) -> list[str]:
    return list(dict.fromkeys(m for s in summaries for m in s["methods"]))


def _pairs(summaries: list[dict]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(tuple(p) for s in summaries for p in s.get("compare_to") or []))


def _cell(d: dict | None, with_counts: bool = False) -> str:
    from ..reporting.text import num

    if not d:
        return "-"
    iv = d.get("interval")
    text = num(d["mean"]) + (f" [{num(iv['lo'])}, {num(iv['hi'])}]" if iv else "")
    if with_counts:
        p, holm = d.get("p_value") or {}, d.get("p_holm")
        text += f" ({d['wins']}/{d['ties']}/{d['losses']}, p {num(p.get('p'))}"
        text += f", p Holm {num(holm['p'])})" if holm else ")"
    return text


def _kind(ds: list[dict | None]) -> str:
    kinds = sorted({stats.interval_label(d.get("interval")) for d in ds if d and d.get("interval")})
    return "" if not kinds else f" [{kinds[0]}]" if len(kinds) == 1 else f" [{' / '.join(kinds)}]"


def sweep_tables(index: dict, summaries: list[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, columns, rows) of every multi-run table: HV per method, and paired ΔHV per
    declared pair, against each reference; one column per sweep point."""
    labels = [p["label"] for p in index["points"]]
    tables = []
    for key, ref in _refs(summaries):
        cells = {m: [s["methods"].get(m, {}).get(key) for s in summaries] for m in _methods(summaries)}
        kind = _kind([d for ds in cells.values() for d in ds])
        tables.append((f"HV vs {ref}{kind}", ["method", *labels], [[m, *[_cell(d) for d in ds]] for m, ds in cells.items()]))
        pairs = _pairs(summaries)
        if pairs:
            diffs = {(m, b): [((s["methods"].get(m, {}).get("comparisons") or {}).get(b) or {}).get(key) for s in summaries]
                     for m, b in pairs}
            kind = _kind([d for ds in diffs.values() for d in ds])
            tables.append((f"paired ΔHV vs {ref}{kind} (wins/ties/losses, sign-flip p, Holm p)", ["method − baseline", *labels],
                           [[f"{m} − {b}", *[_cell(d, True) for d in ds]] for (m, b), ds in diffs.items()]))
    return tables


def sweep_md(index: dict, summaries: list[dict]) -> str:
    from ..reporting.report import ranking_line
    from ..reporting.text import count, md_table, vec

    first = summaries[0]
    seeds = sorted({int(x) for s in summaries for x in s.get("seeds") or []})
    lines = [f"# sipo-bench sweep: {first['task']}", "",
             "- Sweep: " + "; ".join(f"`{k}` = {', '.join(_fmt(v) for v in vs)}" for k, vs in index["sweep"].items())
             + f" ({count(len(index['points']), 'point')}; each point's own report is in its folder).",
             f"- Seeds: {', '.join(str(x) for x in seeds)}; objectives: "
             + ", ".join(f"{o['name']} ({'higher' if o['higher_is_better'] else 'lower'} is better)" for o in first["objectives"]) + ".",
             f"- HV per seed against that seed's reference point ({first.get('ref_point_source')})"
             + (f" and against the floor {vec(first.get('floor'))}" if first.get("floor") is not None else "")
             + f"; mean over seeds with a 95% interval (t 95% CI up to {stats.MIN_BOOTSTRAP - 1} seeds, percentile "
               f"bootstrap 95% CI from {stats.MIN_BOOTSTRAP}).",
             "- Paired ΔHV = HV(method) − HV(baseline) per seed over shared seeds, for each pair `compare_to` declares: "
             "mean [paired t 95% CI up to "
             f"{stats.MIN_BOOTSTRAP - 1} seeds] (wins/ties/losses, two-sided exact sign-flip p, and that p Holm-adjusted "
             "over the point's comparisons against the same baseline on the same indicator).", ""]
    for title, cols, body in sweep_tables(index, summaries):
        lines += [f"## {title}", ""] + md_table(cols, body, 1) + [""]
    ranking = [(p["label"], ranking_line(s)) for p, s in zip(index["points"], summaries)]
    if any(text for _, text in ranking):
        lines += ["## Ranking across references and IGD+", ""]
        lines += [f"- {label}: {text}" for label, text in ranking if text] + [""]
    return "\n".join(lines)


def sweep_csv(index: dict, summaries: list[dict]) -> str:
    """Long format: one row per (point, method or pair, reference)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    paths = list(index["sweep"])
    w.writerow(["point", *paths, "quantity", "method", "baseline", "reference", "mean", "lo", "hi", "interval",
                "level", "n", "wins", "ties", "losses", "p", "p_method", "p_holm"])
    for point, s in zip(index["points"], summaries):
        vals = [_fmt(point["values"][p]) for p in paths]
        for key, ref in _refs(summaries):
            for m, e in s["methods"].items():
                rows = [("hv", m, "", e.get(key))]
                rows += [("delta_hv", m, b, c.get(key)) for b, c in (e.get("comparisons") or {}).items()]
                for quantity, name, b, d in rows:
                    if not d:
                        continue
                    iv, p = d.get("interval") or {}, d.get("p_value") or {}
                    n = d.get("n", len(d.get("per_seed") or {}))
                    w.writerow([point["label"], *vals, quantity, name, b, ref, d["mean"], iv.get("lo", ""), iv.get("hi", ""),
                                iv.get("method", ""), iv.get("level", ""), n, d.get("wins", ""), d.get("ties", ""),
                                d.get("losses", ""), p.get("p", ""), p.get("method", ""),
                                (d.get("p_holm") or {}).get("p", "")])
    return buf.getvalue()


def sweep_figure(index: dict, summaries: list[dict]) -> Any:
    """Paired ΔHV of each declared pair against the swept value, one panel per HV reference,
    error bars = the paired interval. Without declared pairs, each method's HV instead. The x
    axis is the swept value when one numeric option is swept, else the point labels."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    paths = list(index["sweep"])
    numeric = len(paths) == 1 and all(isinstance(p["values"][paths[0]], (int, float)) and
                                      not isinstance(p["values"][paths[0]], bool) for p in index["points"])
    xs = [float(p["values"][paths[0]]) for p in index["points"]] if numeric else list(range(len(index["points"])))
    refs = _refs(summaries)
    pairs = _pairs(summaries)
    series = ([(f"{m} − {b}", lambda s, key, m=m, b=b: ((s["methods"].get(m, {}).get("comparisons") or {}).get(b) or {}).get(key))
               for m, b in pairs] if pairs else
              [(m, lambda s, key, m=m: s["methods"].get(m, {}).get(key)) for m in _methods(summaries)])
    fig = Figure(figsize=(5.2 * len(refs) + 0.4, 4.4), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(refs), squeeze=False).ravel()
    cmap = colormaps["tab10"]
    span = (max(xs) - min(xs)) if len(xs) > 1 else 1.0
    for ax, (key, ref) in zip(axes, refs):
        kinds = set()
        for i, (name, get) in enumerate(series):
            off = (i - (len(series) - 1) / 2) * 0.012 * span  # small dodge so bars do not overlap
            pts = [(x + off, get(s, key)) for x, s in zip(xs, summaries)]
            pts = [(x, d) for x, d in pts if d]
            if not pts:
                continue
            ys = [d["mean"] for _, d in pts]
            lo = [d["mean"] - d["interval"]["lo"] if d.get("interval") else 0.0 for _, d in pts]
            hi = [d["interval"]["hi"] - d["mean"] if d.get("interval") else 0.0 for _, d in pts]
            kinds |= {stats.interval_label(d["interval"]) for _, d in pts if d.get("interval")}
            ax.errorbar([x for x, _ in pts], ys, yerr=[lo, hi], marker="o", capsize=3, color=cmap(i % 10), label=name,
                        gid=f"series:{name}")
        if pairs:
            ax.axhline(0.0, color="0.4", lw=0.9, ls=":")
        what = "paired ΔHV" if pairs else "HV"
        ax.set_ylabel(f"{what} vs {ref}" + (f" ({', '.join(sorted(kinds))})" if kinds else ""))
        ax.set_xlabel(paths[0] if numeric else "sweep point")
        if not numeric:
            ax.set_xticks(xs, [p["label"] for p in index["points"]], rotation=20, ha="right")
        ax.grid(True, alpha=0.25)
    axes[0].legend(frameon=False, fontsize="small")
    n = len({x for s in summaries for x in s.get("seeds") or []})
    fig.suptitle(f"{summaries[0]['task']}: {'paired ΔHV' if pairs else 'HV'} across the sweep ({n} seed{'s' if n != 1 else ''})")
    return fig


def render_sweep(out: Path, index: dict | None = None, *, html: bool = True) -> tuple[dict, list[dict]]:
    """(Re-)write sweep.md, sweep.csv and sweep.png (and with `html` index.html, linking each
    point's page) of the sweep in `out` from its points' summary.json files."""
    from ..execution.fsio import atomic_write_text
    from ..reporting.report import load_summaries, plot_figure

    out = Path(out)
    if index is None:
        index, summaries = load_sweep(out)
    else:
        summaries = load_summaries([out / p["dir"] for p in index["points"]])
    atomic_write_text(out / "sweep.md", sweep_md(index, summaries))
    atomic_write_text(out / "sweep.csv", sweep_csv(index, summaries))
    plot_figure(sweep_figure(index, summaries), out / "sweep.png")
    if html:
        from ..reporting.html_report import render_sweep_html

        atomic_write_text(out / "index.html", render_sweep_html(index, sweep_md(index, summaries),
                                                                (out / "sweep.png").read_bytes()))
    return index, summaries


def is_sweep_dir(d: Path) -> bool:
    return (Path(d) / "sweep.json").is_file() and not (Path(d) / "summary.json").is_file()


__all__ = ["SweepPoint", "check_sweep", "expand", "plan_sweep", "write_sweep", "render_sweep", "load_sweep",
           "sweep_tables", "sweep_md", "sweep_csv", "sweep_figure", "is_sweep_dir", "SWEEPABLE"]


def sweep_console(index: dict, summaries: list[dict]) -> Any:
    """The multi-run tables as rich renderables (what `sipo-bench run`/`report` print)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    for title, cols, body in sweep_tables(index, summaries):
        t = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, collapse_padding=True)
        for i, c in enumerate(cols):
            t.add_column(c, justify="left" if i == 0 else "right")
        for r in body:
            t.add_row(*[Text(c.replace(" [", "\n[").replace(" (", "\n(") if i else c) for i, c in enumerate(r)])
        parts.append(t)
    return Group(*parts)


def failures(index: dict, summaries: list[dict]) -> list[tuple[str, str, str | None]]:
    """(point label, method, error) of every failed method of every point."""
    return [(p["label"], n, m.get("error")) for p, s in zip(index["points"], summaries)
            for n, m in s["methods"].items() if m.get("status") != "ok"]
