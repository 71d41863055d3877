"""The report of a run, rendered only from `summary.json`: table.md, points.csv and the console
table (the tables themselves are :mod:`.tables`, the plot :mod:`.figures`, loading and merging
summaries :mod:`.merge`). Every renderer first passes the summary through :func:`.merge.normalize`,
so rendering the in-memory summary at the end of a run and rendering the file later
(`sipo-bench report DIR`) give the same bytes. Nothing here computes a new number.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from . import curves
from ..execution import provenance
from ..scoring import stats
from .merge import normalize
from .tables import (COMPARISON_TEXT, COMPUTE_TEXT, TUNING_TEXT, budget_line, budget_text, split_text, tuning_table, comparison_table, compute_table, direction_text, extra_lines, extra_objective_list,
                     extra_table, has_floor, has_igd_seeds, header, holm_text, hv_intervals, hv_refs, interval_kinds,
                     kind_suffix, label_columns, named_vec, noise_lines, noise_table, per_seed_table, ranking_line, rows)
from .text import count as _count, md_cell as _md_cell, md_table as _md_table, vec as _vec


def _ref_lines(summary: dict) -> list[str]:
    ref = summary.get("ref_point")
    lines = [f"HV reference point: {named_vec(summary, ref) if ref else 'none (no HV)'}; "
             f"source: {summary.get('ref_point_source')}."]
    per_seed = summary.get("ref_points") or {}
    distinct = {json.dumps(v) for v in per_seed.values()}
    if len(per_seed) > 1 and len(distinct) > 1:
        lines.append("Per seed (each seed's HV uses its own): " + "; ".join(
            f"seed {s}: {_vec(v)}" for s, v in per_seed.items()) + ".")
    if has_floor(summary):
        lines.append(f"HV floor: {named_vec(summary, summary['floor'])}; source: {summary.get('floor_source')}.")
    return lines


def provenance_lines(summary: dict, *, old_as_absent: bool = False) -> list[str]:
    """Which hardware and kernels made the numbers, and, for a merged report, one line when
    the runs' hardware differs. `old_as_absent`: a summary that records no provenance at all
    gives no lines (committed tables of older runs re-render byte-identical) instead of
    `not recorded`."""
    runs = [(str(m.get("run_id")), m.get("provenance")) for m in summary.get("merged_from") or []]
    recorded = bool(summary.get("provenance")) or any(p for _, p in runs)
    if old_as_absent and not recorded:
        return []
    differ = provenance.differs_line(runs) if len(runs) > 1 else None
    if differ:
        return [differ]
    return [provenance.summary_line(summary)]


def table_md(summary: dict) -> str:
    """The report as Markdown. Deterministic: the same summary gives the same bytes."""
    s = normalize(summary)
    seeds = s.get("seeds") or []
    objs = ", ".join(f"{o['name']} ({direction_text(o)})" for o in s["objectives"])
    lines = [f"# sipo-bench: {s['task']}", ""]
    if s.get("task_description"):
        lines += [s["task_description"], ""]
    lines += [f"- Objectives: {objs}.",
              f"- Weight grid: {_count(len(s.get('weights') or []), 'point')}; seeds: {', '.join(str(x) for x in seeds) or '-'}.",
              *([budget_text(s)] if budget_text(s) else []),
              *([split_text(s)] if split_text(s) else []),
              "- HV: per seed against that seed's reference point, then the mean over seeds with an interval in "
              f"brackets whose kind the column names: a t 95% CI (mean ± t·sd/√n, Student t with n − 1 df) up to "
              f"{stats.MIN_BOOTSTRAP - 1} seeds, a percentile bootstrap 95% CI from {stats.MIN_BOOTSTRAP} seeds up "
              "(below that it under-covers); none with one seed.",
              "- Points: the mean score over the test prompts (per prompt first the mean over its samples); "
              "their standard errors over prompts are in points.csv and summary.json.",
              f"- IGD+: each method's mean front against the union front of all methods "
              f"({_count(len(s.get('union_front') or []), 'point')}); lower is better. IGD+ per seed: each seed's "
              "points against that seed's union front (of every ok method's points of that seed), then the mean over "
              "seeds with its interval, as for HV.",
              "- front points: non-dominated mean points (mean over seeds per weight); best: over mean points. "
              "Timings are in summary.json and the console, not here, so reruns give the same file.",
              *extra_lines(s), ""]
    if s.get("merged_from"):
        lines += ["Merged from runs: " + ", ".join(
            f"{m.get('run_id')} ({', '.join(m.get('methods') or [])})" for m in s["merged_from"]) + ".", ""]
    lines += _ref_lines(s) + [""]
    prov = provenance_lines(s, old_as_absent=True)
    lines += [*prov, ""] if prov else []
    lines += _md_table(header(s), rows(s), 2 + len(label_columns(s)))
    failed = [(n, m.get("error")) for n, m in s["methods"].items() if m.get("status") != "ok"]
    if failed:
        lines += ["", "## Failed methods", ""]
        lines += [f"- `{n}`: {_md_cell(e or 'no error recorded')}" for n, e in failed]
    cols, body = comparison_table(s)
    if body:
        lines += ["", "## Paired comparisons", "", COMPARISON_TEXT, "", holm_text(s), ""] + _md_table(cols, body, 2)
        if ranking_line(s):
            lines += ["", ranking_line(s)]
        if budget_line(s):
            lines += ["", budget_line(s)]
    cols, body = tuning_table(s)
    if body:
        lines += ["", "## Tuning", "", TUNING_TEXT, ""] + _md_table(cols, body, 2)
    cols, body = compute_table(s)
    if body:
        lines += ["", "## Compute", "", COMPUTE_TEXT, ""] + _md_table(cols, body, 1)
    cols, body = per_seed_table(s)
    if body:
        lines += ["", "## HV per seed", "", f"The values each interval above is computed from (a t-interval is used "
                  f"up to {stats.MIN_BOOTSTRAP - 1} seeds).", ""] + _md_table(cols, body, 2)
    cols, body = noise_table(s)
    if body:
        lines += ["", "## Evaluation noise", ""] + noise_lines(s) + [""] + _md_table(cols, body, 3)
    cols, body = extra_table(s)
    if body:
        lines += ["", "## Extra stage results", ""] + _md_table(cols, body, 3)
    training = curves.training_lines(s)
    if training is not None:  # absent from summaries written before curves were recorded
        lines += ["", "## Training", ""] + training
        cols, body = curves.training_table(s)
        if body:
            lines += [""] + _md_table(cols, body, 3)
    return "\n".join(lines) + "\n"


def points_csv(summary: dict) -> str:
    """One row per (method, w, seed): the weight vector, the mean test scores, their standard
    errors over test prompts (empty when unknown) and the number of prompts, then the extra
    objectives of `extra_scorers` (empty where a point has none)."""
    s = normalize(summary)
    objs = [o["name"] for o in s["objectives"]]
    extra = [o["name"] for o in extra_objective_list(s)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "seed", *[f"w_{o}" for o in objs], *objs, *[f"se_{o}" for o in objs], "n_prompts", *extra])
    for name, m in s["methods"].items():
        for p in m.get("points") or []:
            se = p.get("se") or [""] * len(objs)
            es = p.get("extra_scores") or {}
            w.writerow([name, p["seed"], *p["w"], *p["scores"], *se, p.get("n_prompts", ""),
                        *[es.get(o, "") for o in extra]])
    return buf.getvalue()


def _extra_caption(summary: dict) -> list[str]:
    extra = extra_objective_list(summary)
    return [f"Extra objectives (reported only; HV over {', '.join(summary.get('hv_objectives') or [])}): "
            + ", ".join(o["name"] for o in extra) + "."] if extra else []


def _console_header(summary: dict) -> list[str]:
    hv = [f"HV vs {ref}{kind_suffix(interval_kinds(hv_intervals(summary, key)))}" for key, ref in hv_refs(summary)]
    cols = ["method", *[k.replace("_", " ") for k in label_columns(summary)], "status", *hv]
    cols += ["IGD+ ↓"] + ([f"IGD+ per seed ↓{kind_suffix(interval_kinds(hv_intervals(summary, 'igd_plus_per_seed')))}"]
                         if has_igd_seeds(summary) else [])
    cols += ["front", *[f"best {o['name']} {'↑' if o['higher_is_better'] else '↓'}" for o in summary["objectives"]]]
    cols += [f"best {o['name']} {'↑' if o['higher_is_better'] else '↓'} (extra)" for o in extra_objective_list(summary)]
    return cols + ["time s"]


def console_table(summary: dict) -> Any:
    """A rich renderable: the main table (HV interval under the mean, the reference point and
    its source in the caption), then failed methods' errors and extra stage results."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    s = normalize(summary)
    n_hv = 2 if has_floor(s) else 1
    first_hv = 2 + len(label_columns(s))
    t = Table(title=f"sipo-bench: {s['task']}", caption=" ".join(_ref_lines(s) + _extra_caption(s) + provenance_lines(s)),
              caption_justify="left",
              box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, collapse_padding=True)
    for i, col in enumerate(_console_header(s)):
        t.add_column(col, justify="left" if i < first_hv else "right")
    for r in rows(s, with_time=True):
        cells = [c.replace(" [", "\n[").replace(" (", "\n(") if first_hv <= i < first_hv + n_hv else c
                 for i, c in enumerate(r)]
        t.add_row(*[Text(c) for c in cells])
    parts: list[Any] = [t]
    for n, m in s["methods"].items():
        if m.get("status") != "ok":
            parts.append(Text(f"{n} failed: {m.get('error') or 'no error recorded'}", style="red"))

    def table(title: str, cols: list[str], body: list[list[str]], n_labels: int, caption: str | None = None) -> None:
        if not body:
            return
        e = Table(title=title, caption=caption, caption_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1),
                  pad_edge=False, collapse_padding=True)
        for i, col in enumerate(cols):
            e.add_column(col, justify="left" if i < n_labels else "right")
        for r in body:
            e.add_row(*[Text(c) for c in r])
        parts.append(e)

    table("paired comparisons", *comparison_table(s), 2, " ".join(x for x in (COMPARISON_TEXT, holm_text(s), ranking_line(s), budget_line(s)) if x))
    table("compute", *compute_table(s, with_time=True), 1, COMPUTE_TEXT)
    table("HV per seed", *per_seed_table(s), 2)
    table("evaluation noise of HV", *noise_table(s), 3, " ".join(noise_lines(s)))
    table("extra stage results", *extra_table(s), 3)
    table("flagged training stages", *curves.training_table(s), 3, " ".join(curves.training_lines(s) or []))
    return Group(*parts)


def __getattr__(name: str):  # names that moved to other modules in 0.2 (sipo_bench.compat.MOVED_NAMES)
    from sipo_bench import compat

    return compat.moved_attr(__name__, name)
