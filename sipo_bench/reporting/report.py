"""Reports rendered only from `summary.json`: console table, table.md, points.csv, front.png.

Every renderer first passes the summary through the same JSON encoding `summary.json` is
written with (:func:`normalize`), so rendering the in-memory summary at the end of a run and
rendering the file later (`sipo-bench report DIR`) give the same bytes. Nothing here computes
a new number except :func:`merge`, which recomputes the indicators that depend on the set of
methods or seeds (HV statistics, the union front, IGD+) with the same functions as the run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from itertools import combinations
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import curves
from .. import provenance
from ..execution import compute
from ..scoring import stats
from ..errors import UsageError
from ..execution.fsio import atomic_write_bytes
from ..execution.stages import json_default
from .text import count as _count, md_cell as _md_cell, md_table as _md_table, num as _num, vec as _vec

__all__ = ["load_summaries", "merge", "console_table", "table_md", "points_csv",
           "front_figure", "front_png_bytes", "plot_front", "plot_figure", "normalize", "comparison_table",
           "noise_table", "per_seed_table", "upgrade"]

REQUIRED_KEYS = ("schema_version", "task", "objectives", "methods")


# --- Loading and merging --------------------------------------------------------------------


def normalize(summary: dict) -> dict:
    """`summary` exactly as it reads back from `summary.json` (string keys, lists, floats)."""
    return json.loads(json.dumps(summary, default=json_default))


def _load_one(d: Path) -> dict:
    from .summary_schema import SCHEMA_VERSION

    path = d / "summary.json" if not d.is_file() else d
    if not path.is_file():
        what = "a directory without summary.json" if d.is_dir() else "nothing there"
        raise UsageError(f"`{d}`: expected a run directory containing summary.json, got {what}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"`{d}`: cannot read {path.name} ({e})") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"`{d}`: {path.name} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise UsageError(f"`{d}`: expected a JSON object in {path.name}, got {type(data).__name__}")
    from .summary_schema import check_summary

    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise UsageError(f"`{d}`: {path.name} is not a sipo-bench summary (missing key(s) {', '.join(missing)})")
    if not isinstance(data["schema_version"], int) or data["schema_version"] > SCHEMA_VERSION:
        raise UsageError(f"`{d}`: expected summary schema_version <= {SCHEMA_VERSION}, got {data['schema_version']!r} "
                         "(written by a newer sipo-bench?)")
    objectives, methods = data["objectives"], data["methods"]
    if (not isinstance(objectives, list) or not objectives
            or not all(isinstance(o, dict) and "name" in o and "higher_is_better" in o for o in objectives)):
        raise UsageError(f"`{d}`: expected `objectives` in {path.name} to be a list of {{name, higher_is_better}}, got {objectives!r}")
    if not isinstance(methods, dict) or not all(isinstance(m, dict) and "status" in m for m in methods.values()):
        raise UsageError(f"`{d}`: expected `methods` in {path.name} to map method names to entries with a status")
    data = upgrade(data)
    problem = check_summary(data)
    if problem:
        raise UsageError(f"{problem} (in {path})")
    return data


def upgrade(summary: dict) -> dict:
    """An older summary in the current shape, its statistics recomputed from the per-seed
    values it stores, with the functions a run uses today (nothing trained or scored again):

    - schema 1: the HV `ci95` (a percentile bootstrap even on 3 seeds) is dropped;
    - schema 1-2: every HV `interval` follows today's rule (:func:`sipo_bench.scoring.stats.mean_interval`:
      a t-interval up to 20 seeds), and the paired comparisons of `compare_to` are recomputed
      (:func:`sipo_bench.scoring.stats.comparisons`: paired t-interval, sign-flip p, Holm-adjusted p),
      with IGD+ per seed (:func:`sipo_bench.scoring.stats.igd_plus_per_seed`, from the per-seed points).

    `upgraded_from_schema` records the version read."""
    from .summary_schema import SCHEMA_VERSION

    version = summary.get("schema_version", 0)
    if version >= SCHEMA_VERSION:
        return summary
    summary.setdefault("compare_to", [])
    for m in summary["methods"].values():
        if not isinstance(m, dict):
            continue
        for key in stats.HV_KEYS:
            hv = m.get(key)
            if isinstance(hv, dict) and isinstance(hv.get("per_seed"), dict):
                hv.pop("ci95", None)
                hv["interval"] = stats.mean_interval(list(hv["per_seed"].values()))
    methods = {n: m for n, m in summary["methods"].items() if isinstance(m, dict)}
    objectives = summary.get("objectives")
    if isinstance(objectives, list) and all(isinstance(o, dict) and "higher_is_better" in o for o in objectives):
        stats.igd_plus_per_seed(methods, [bool(o["higher_is_better"]) for o in objectives])
    stats.comparisons(methods, [tuple(p) for p in summary["compare_to"]])
    summary["upgraded_from_schema"] = summary.get("upgraded_from_schema", version)
    summary["schema_version"] = SCHEMA_VERSION
    return summary


def load_summaries(dirs: Iterable[str | Path]) -> list[dict]:
    """Read `summary.json` from each run directory (or a path to the file itself).

    A missing, unreadable or malformed summary is a one-line `UsageError` naming the path.
    """
    return [_load_one(Path(d)) for d in dirs]


def _run_label(s: dict) -> str:
    return str((s.get("run") or {}).get("run_id") or "?")


def _same_vector(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b))


def merge(summaries: Sequence[dict]) -> dict:
    """One summary holding every method of `summaries`, for side-by-side reports.

    Rules (docs/evaluation.md, "Merging runs"):
    - same task and the same objectives (names and directions, in order), else `UsageError`;
    - same HV floor, the same reference-point source, and for every seed two runs share the
      same reference point (within 1e-9 relative), else `UsageError`: HVs against different
      reference points are not comparable. Seeds, per-seed reference points, base-policy
      scores and the weight grid are united;
    - methods are united in order of appearance; a method present in several runs (e.g. the
      seed-0 run and the seed-1 run) gets the points of all of them, keyed by (w, seed). Its
      config must be the same in every run, and a (w, seed) point present twice must have the
      same scores, else `UsageError` (a genuine conflict: rerun into one directory, or leave
      one run out). It is `ok` only if it is ok in every run;
    - mean points, fronts, HV statistics (with each seed's evaluation-noise SE carried over),
      the union front, IGD+ and the paired comparisons (the union of the runs' `compare_to`
      pairs whose methods are present) are recomputed over the merged set, with the same
      functions as the run; `merged_from` records every source run;
    - `config`, `versions`, `git_commit` and descriptions are those of the first run.
    """
    from ..scoring.indicators import method_indicators

    if not summaries:
        raise UsageError("`dirs`: expected at least one run directory, got none")
    parts = [normalize(s) for s in summaries]
    first = parts[0]
    out = normalize(first)

    def sig(s: dict) -> list:
        return [(o["name"], bool(o["higher_is_better"])) for o in s["objectives"]]

    ref_points: dict[str, list[float] | None] = {}
    base_scores: dict[str, Any] = {}
    task_data: dict[str, Any] = {}
    task_base: dict[str, Any] = {}
    seeds: set[int] = set()
    weights: list[list[float]] = []
    methods: dict[str, dict] = {}
    merged_from: list[dict] = []
    extra_objectives: dict[str, dict] = {}
    stage_counts: dict[str, int] = {}
    pairs: list[tuple[str, str]] = []
    wall = 0.0
    for s in parts:
        label = _run_label(s)
        if s["task"] != first["task"]:
            raise UsageError(f"cannot merge runs of different tasks: {first['task']!r} (run {_run_label(first)}) "
                             f"and {s['task']!r} (run {label})")
        if sig(s) != sig(first):
            raise UsageError(f"cannot merge runs with different objectives: {sig(first)} (run {_run_label(first)}) "
                             f"and {sig(s)} (run {label})")
        if not _same_vector(s.get("floor"), first.get("floor")):
            raise UsageError(f"cannot merge runs with different HV floors: {first.get('floor')} and {s.get('floor')} (run {label})")
        if s.get("ref_point_source") != first.get("ref_point_source"):
            raise UsageError(f"cannot merge runs with different reference-point sources: {first.get('ref_point_source')!r} "
                             f"and {s.get('ref_point_source')!r} (run {label})")
        for seed, ref in (s.get("ref_points") or {}).items():
            known = ref_points.get(seed)
            if known is not None and ref is not None and not _same_vector(known, ref):
                raise UsageError(f"cannot merge runs whose reference points differ for seed {seed}: {known} and {ref} "
                                 f"(run {label}); rerun with the same task options and test prompts, or set `ref_point`")
            if known is None:
                ref_points[seed] = ref
        for key, acc in (("task_data", task_data), ("task_base", task_base)):
            for seed, v in (s.get(key) or {}).items():
                if acc.get(seed) is None:
                    acc[seed] = v
        for seed, v in ((s.get("base_policy") or {}).get("scores") or {}).items():
            if base_scores.get(seed) is None:
                base_scores[seed] = v
        seeds.update(int(x) for x in s.get("seeds") or [])
        for w in s.get("weights") or []:
            if w not in weights:
                weights.append(w)
        for name, entry in s["methods"].items():
            methods[name] = _merge_method(name, methods.get(name), entry, label) if name in methods else \
                {**entry, "_runs": [label], "_eval_se": _eval_se(entry)}
        for o in s.get("extra_objectives") or []:
            known = extra_objectives.setdefault(o["name"], o)
            if bool(known["higher_is_better"]) != bool(o["higher_is_better"]):
                raise UsageError(f"cannot merge runs whose extra objective {o['name']!r} has opposite directions (run {label})")
        pairs += [tuple(p) for p in s.get("compare_to") or [] if tuple(p) not in pairs]
        run = s.get("run") or {}
        wall += float(run.get("wall_seconds") or 0.0)
        for k, v in (run.get("stages") or {}).items():
            if isinstance(v, int):
                stage_counts[k] = stage_counts.get(k, 0) + v
        merged_from += s.get("merged_from") or [{
            "run_id": run.get("run_id"), "date": run.get("date"), "git_commit": s.get("git_commit"),
            "seeds": s.get("seeds"), "methods": list(s["methods"]),
            **({"provenance": s["provenance"]} if s.get("provenance") else {})}]

    maximize = [bool(o["higher_is_better"]) for o in first["objectives"]]
    seed_list = sorted(seeds)
    refs_by_seed = {int(k): v for k, v in ref_points.items()}
    floor = first.get("floor")
    objectives = [(o["name"], bool(o["higher_is_better"])) for o in first["objectives"]]
    for entry in methods.values():
        entry.pop("_runs", None)
        eval_se = entry.pop("_eval_se", None)
        entry["points"] = list(entry.get("points") or [])
        method_indicators(entry, refs_by_seed, floor, objectives, seed_list, eval_se)
    union_front = stats.union_front_igd_plus(methods, maximize)
    stats.igd_plus_per_seed(methods, maximize)
    pairs = [p for p in pairs if p[0] in methods and p[1] in methods]
    stats.comparisons(methods, pairs)
    valid = [r for r in ref_points.values() if r is not None]
    out.update({
        "weights": weights,
        "seeds": seed_list,
        "ref_point": [sum(c) / len(valid) for c in zip(*valid)] if valid else None,
        "ref_points": dict(sorted(ref_points.items(), key=lambda kv: int(kv[0]))),
        "union_front": union_front,
        "compare_to": [list(p) for p in pairs],
        "base_policy": {**(first.get("base_policy") or {}), "scores": dict(sorted(base_scores.items(), key=lambda kv: int(kv[0])))},
        "task_data": dict(sorted(task_data.items(), key=lambda kv: int(kv[0]))),
        "task_base": dict(sorted(task_base.items(), key=lambda kv: int(kv[0]))),
        "methods": methods,
        "merged_from": merged_from,
        **({"extra_objectives": list(extra_objectives.values()),
            "hv_objectives": [o["name"] for o in first["objectives"]]} if extra_objectives else {}),
        # one machine's provenance only when every run has the same (else per run in merged_from)
        "provenance": first.get("provenance") if len({provenance.hardware_key(m.get("provenance"))
                                                      for m in merged_from}) == 1 else None,
        "run": {"run_id": "merged:" + "+".join(str(m.get("run_id")) for m in merged_from),
                "date": max((str(m.get("date")) for m in merged_from if m.get("date")), default=None),
                "wall_seconds": round(wall, 3), "stages": stage_counts},
    })
    return normalize(out)


def _merge_method(name: str, acc: dict, entry: dict, label: str) -> dict:
    """`acc` (the method as merged so far) with the points of `entry` from run `label`."""
    runs = acc["_runs"]
    if acc.get("config") and entry.get("config") and acc["config"] != entry["config"]:
        diff = sorted(k for k in set(acc["config"]) | set(entry["config"])
                      if acc["config"].get(k) != entry["config"].get(k))
        raise UsageError(f"cannot merge method {name!r}: its config differs between run {runs[0]} and run {label} "
                         f"(field(s) {', '.join(diff)}); merge only runs of the same method config")
    points = {(tuple(p["w"]), p["seed"]): p for p in acc.get("points") or []}
    for p in entry.get("points") or []:
        k = (tuple(p["w"]), p["seed"])
        if k in points and not _same_vector(points[k]["scores"], p["scores"]):
            raise UsageError(f"cannot merge method {name!r}: seed {p['seed']}, w={list(k[0])} has scores "
                             f"{points[k]['scores']} in run {', '.join(runs)} and {p['scores']} in run {label}")
        points.setdefault(k, p)
    se = _eval_se(entry)
    out = {**acc, "points": list(points.values()), "_runs": runs + [label],
           "_eval_se": {k: None if acc["_eval_se"][k] is None and se[k] is None
                        else {**(acc["_eval_se"][k] or {}), **(se[k] or {})} for k in stats.HV_KEYS}}
    if entry.get("status") != "ok" and acc.get("status") == "ok":
        out["status"] = entry.get("status") or "failed"
        out["error"] = f"run {label}: {entry.get('error') or 'failed'}"
    stage_seconds = dict(acc.get("stage_seconds") or {})
    for k, v in (entry.get("stage_seconds") or {}).items():
        stage_seconds[k] = round(stage_seconds.get(k, 0.0) + float(v or 0.0), 3)
    out["stage_seconds"] = stage_seconds
    out["seconds"] = round(float(acc.get("seconds") or 0.0) + float(entry.get("seconds") or 0.0), 3)
    out["compute"] = compute.add(acc.get("compute"), entry.get("compute"))
    out["extra"] = {**(entry.get("extra") or {}), **(acc.get("extra") or {})}
    return out


def _eval_se(entry: dict) -> dict:
    """{HV key: {seed: evaluation-noise SE} or None (not measured)} of a method entry."""
    return {key: (entry.get(key) or {}).get("eval_se") if isinstance(entry.get(key), dict) else None
            for key in stats.HV_KEYS}


# --- Formatting -----------------------------------------------------------------------------


def _named_vec(summary: dict, values: Sequence[float]) -> str:
    return ", ".join(f"{o['name']}={_num(v)}" for o, v in zip(summary["objectives"], values))


def _interval_text(iv: dict | None) -> str:
    return f"[{_num(iv['lo'])}, {_num(iv['hi'])}]" if iv else ""


def _kinds(ivs: Iterable[dict | None]) -> list[str]:
    return sorted({stats.interval_label(iv) for iv in ivs if iv})


def _hv_intervals(summary: dict, key: str) -> list[dict]:
    return [(m.get(key) or {}).get("interval") for m in summary["methods"].values()]


def _kind_suffix(kinds: list[str]) -> str:
    """Header suffix naming the interval: one kind -> ` [95% t]`; several -> each cell names its own."""
    if not kinds:
        return ""
    return f" [{kinds[0]}]" if len(kinds) == 1 else " [interval: kind per cell]"


def _hv_cell(hv: dict | None, n_seeds: int, mixed: bool = False) -> str:
    if not hv:
        return "-"
    text = _num(hv["mean"])
    iv = hv.get("interval")
    if iv:
        text += " " + _interval_text(iv) + (f" ({stats.interval_label(iv)})" if mixed else "")
    n = len(hv.get("per_seed") or {})
    if n and n < n_seeds:
        text += f" ({n}/{n_seeds} seeds)"
    return text


def _direction(o: dict) -> str:
    return "higher is better" if o["higher_is_better"] else "lower is better"


def _extra_objectives(summary: dict) -> list[dict]:
    """Objectives of the run's `extra_scorers`: reported, not in the weights, front or HV."""
    return list(summary.get("extra_objectives") or [])


def _extra_lines(summary: dict) -> list[str]:
    extra = _extra_objectives(summary)
    if not extra:
        return []
    hv = ", ".join(summary.get("hv_objectives") or [o["name"] for o in summary["objectives"]])
    base = [v for v in ((summary.get("base_policy") or {}).get("extra_scores") or {}).values() if v]
    base_text = ("; base policy (mean over seeds): " + ", ".join(
        f"{o['name']}={_num(sum(b[o['name']] for b in base) / len(base))}" for o in extra if all(o["name"] in b for b in base))
        if base else "")
    return ["- Extra objectives (`extra_scorers`, scored on every point; reported only): "
            + ", ".join(f"{o['name']} ({_direction(o)}; scorer {o.get('scorer')})" for o in extra) + base_text + ".",
            f"- The weight grid, fronts, HV and IGD+ cover the task's objectives only: {hv}."]


def _has_floor(summary: dict) -> bool:
    return summary.get("floor") is not None


def _label_columns(summary: dict) -> list[str]:
    """`trained on` / `variant` columns, when any method entry carries them (filled by methods)."""
    return [k for k in ("trained_on", "variant") if any(m.get(k) for m in summary["methods"].values())]


def header(summary: dict, *, with_ref: bool = True) -> list[str]:
    """Column names of table.md's main table: the reference point and the kind and level of
    the interval in each HV header. No timing column: table.md holds only what two runs of
    the same config share."""
    ref = f" {_vec(summary.get('ref_point'))}" if with_ref else ""
    cols = ["method", *[k.replace("_", " ") for k in _label_columns(summary)], "status",
            f"HV vs ref{ref}{_kind_suffix(_kinds(_hv_intervals(summary, 'hypervolume')))}"]
    if _has_floor(summary):
        floor = " " + _vec(summary["floor"]) if with_ref else ""
        cols.append(f"HV vs floor{floor}{_kind_suffix(_kinds(_hv_intervals(summary, 'hypervolume_floor')))}")
    cols += ["IGD+ (lower is better)"]
    if _has_igd_seeds(summary):
        cols.append(f"IGD+ per seed (lower is better){_kind_suffix(_kinds(_hv_intervals(summary, 'igd_plus_per_seed')))}")
    cols += ["front points"]
    cols += [f"best {o['name']} ({'max' if o['higher_is_better'] else 'min'})" for o in summary["objectives"]]
    cols += [f"best {o['name']} ({'max' if o['higher_is_better'] else 'min'}; extra)" for o in _extra_objectives(summary)]
    return cols


def rows(summary: dict, *, with_time: bool = False) -> list[list[str]]:
    """One row of text per method, in the summary's order; '-' where a value is absent.
    `with_time` appends the method's summed stage seconds (console only: it varies by run)."""
    n_seeds = len(summary.get("seeds") or [])
    mixed = {key: len(_kinds(_hv_intervals(summary, key))) > 1 for key in stats.INDICATORS}
    out = []
    for name, m in summary["methods"].items():
        best = m.get("best") or {}
        row = [name, *[str(m.get(k) or "-") for k in _label_columns(summary)], str(m.get("status")),
               _hv_cell(m.get("hypervolume"), n_seeds, mixed["hypervolume"])]
        if _has_floor(summary):
            row.append(_hv_cell(m.get("hypervolume_floor"), n_seeds, mixed["hypervolume_floor"]))
        row += [_num(m.get("igd_plus"))]
        if _has_igd_seeds(summary):
            row.append(_hv_cell(m.get("igd_plus_per_seed"), n_seeds, mixed["igd_plus_per_seed"]))
        row += [str(len(m.get("front") or []))]
        row += [_num(best.get(o["name"])) for o in summary["objectives"] + _extra_objectives(summary)]
        if with_time:
            row.append(_num(m.get("seconds")))
        out.append(row)
    return out


def _has_igd_seeds(summary: dict) -> bool:
    """Whether the summary has IGD+ per seed (schema 3 and upgraded summaries)."""
    return any("igd_plus_per_seed" in m for m in summary["methods"].values())


def _hv_refs(summary: dict) -> list[tuple[str, str]]:
    """(summary key, short name) of each HV reference the summary has."""
    return [("hypervolume", "ref")] + ([("hypervolume_floor", "floor")] if _has_floor(summary) else [])


def per_seed_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Per-seed HVs (one row per method and reference), shown when an HV interval is a
    t-interval (fewer than 10 seeds): the values the interval is computed from."""
    ivs = [iv for key in stats.HV_KEYS for iv in _hv_intervals(summary, key) if iv]
    if not any(iv["method"] == "t" for iv in ivs):
        return [], []
    seeds = [str(x) for x in summary.get("seeds") or []]
    body = []
    for name, m in summary["methods"].items():
        for key, ref in _hv_refs(summary):
            per = (m.get(key) or {}).get("per_seed")
            if per:
                body.append([name, ref, *[_num(per.get(s)) for s in seeds]])
    return ["method", "HV vs", *[f"seed {s}" for s in seeds]], body


def _p_cell(p: dict | None) -> str:
    if not p:
        return "-"
    how = f"exact, {p['patterns']} patterns" if p.get("method") == "exact" else f"Monte Carlo, {p.get('draws')} draws"
    return f"{_num(p['p'])} ({how})"


def _compared(summary: dict) -> list[tuple[str, str, str]]:
    """(indicator key, Δ label, suffix) of each indicator the comparisons cover: HV vs each
    reference, then IGD+ per seed when the summary has it."""
    out = [(key, f"ΔHV vs {ref}", f"vs {ref}") for key, ref in _hv_refs(summary)]
    if any("igd_plus_per_seed" in c for m in summary["methods"].values() for c in (m.get("comparisons") or {}).values()):
        out.append(("igd_plus_per_seed", "ΔIGD+", "IGD+"))
    return out


def comparison_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Paired comparisons: one row per declared (method, baseline) pair; for each HV reference
    (and IGD+ per seed, where a win is a lower IGD+) the mean difference with its paired
    interval, wins/ties/losses out of n, the sign-flip p and the Holm-adjusted p (family: the
    column's comparisons against that baseline)."""
    items = [(name, b, c) for name, m in summary["methods"].items() for b, c in (m.get("comparisons") or {}).items()]
    if not items:
        return [], []
    refs = _compared(summary)
    cols = ["method", "baseline"]
    for key, delta, ref in refs:
        kinds = _kinds((c.get(key) or {}).get("interval") for _, _, c in items)
        cols += [f"{delta}{_kind_suffix(kinds)}", f"W/T/L {ref}", f"p {ref} (sign-flip)", f"p Holm {ref}"]
    body = []
    for name, b, c in items:
        row = [name, b]
        for key, _, _ in refs:
            d = c.get(key)
            if not d:
                row += ["-", "-", "-", "-"]
                continue
            mixed = len(_kinds((x.get(key) or {}).get("interval") for _, _, x in items)) > 1
            iv = d.get("interval")
            cell = _num(d["mean"]) + (" " + _interval_text(iv) if iv else "")
            cell += f" ({stats.interval_label(iv)})" if iv and mixed else ""
            row += [cell, f"{d['wins']}/{d['ties']}/{d['losses']} of {d['n']}", _p_cell(d.get("p_value")),
                    _num((d.get("p_holm") or {}).get("p"))]
        body.append(row)
    return cols, body


def _sign(d: dict | None, higher_is_better: bool) -> str | None:
    """'+' when the method is better than the baseline on average, '−' when worse, '=' on a tie."""
    if not d:
        return None
    mean = float(d["mean"]) * (1.0 if higher_is_better else -1.0)
    return "=" if abs(mean) <= stats.TIE_TOL else "+" if mean > 0 else "−"


def ranking_line(summary: dict) -> str:
    """Whether each comparison's direction (method better or worse than its baseline, by the
    sign of the mean paired difference) is the same against both HV references and by IGD+,
    naming every comparison where it flips and what it depends on. '' without comparisons."""
    refs = _compared(summary)
    items = [(name, b, c) for name, m in summary["methods"].items() for b, c in (m.get("comparisons") or {}).items()]
    if not items or len(refs) < 2:
        return ""
    names = {"hypervolume": "vs ref", "hypervolume_floor": "vs floor", "igd_plus_per_seed": "by IGD+"}
    full = {"hypervolume": "HV vs ref", "hypervolume_floor": "HV vs floor", "igd_plus_per_seed": "IGD+"}
    what = " and ".join([", ".join(full[k] for k, _, _ in refs[:-1]), full[refs[-1][0]]])
    flips, checked = [], 0
    for name, b, c in items:
        signs = {k: _sign(c.get(k), stats.INDICATORS[k]) for k, _, _ in refs}
        signs = {k: v for k, v in signs.items() if v is not None}
        if len(signs) < 2:
            continue
        checked += 1
        if len(set(signs.values())) == 1:
            continue
        hv = {k: signs[k] for k in stats.HV_KEYS if k in signs}
        igd = signs.get("igd_plus_per_seed")
        if len(set(hv.values())) > 1:
            why = "ranking depends on the reference point"
            same = [full[k] for k, v in hv.items() if v == igd]
            why += f" (IGD+ sides with {same[0]})" if igd is not None and same else ""
        else:
            why = "IGD+ disagrees with HV"
        flips.append(f"{name} vs {b}: " + ", ".join(f"{v} {names[k]}" for k, v in signs.items()) + f": {why}")
    if not checked:
        return ""
    head = (f"Ranking across {what} (the sign of each mean paired difference; + = the method is better): ")
    if not flips:
        return head + f"the same in all {checked} comparisons."
    return head + f"the same in {checked - len(flips)} of {checked} comparisons; it flips for " + "; ".join(flips) + "."


def holm_text(summary: dict) -> str:
    """What the `p Holm` columns adjust over: each family's baseline, indicator and size."""
    fams: dict[str, int] = {}
    for m in summary["methods"].values():
        for c in (m.get("comparisons") or {}).values():
            for d in c.values():
                h = (d or {}).get("p_holm")
                if h:
                    fams[h["family"]] = h["m"]
    if not fams:
        return ""
    names = {"hypervolume": "HV vs ref", "hypervolume_floor": "HV vs floor", "igd_plus_per_seed": "IGD+"}

    def label(f: str) -> str:
        key, _, b = f.partition(" vs ")
        return f"{names.get(key, key)} vs {b}: {fams[f]}"

    return ("p Holm: the sign-flip p adjusted by Holm's step-down method within its family, the comparisons of one "
            "column against one baseline (family sizes: " + "; ".join(label(f) for f in fams) + ").")


COMPUTE_LABELS = {"optimizer_steps": "optimizer steps", "tokens_trained": "training tokens",
                  "tokens_generated": "tokens generated", "scorer_calls": "scorer calls"}

COMPUTE_TEXT = (
    "What each method's stages spent, counted by the stages as they ran: optimizer steps and the tokens the training "
    "passes read (a preference pair: its prompt twice and both responses, per epoch), tokens generated (every "
    "generation, training-time and evaluation), texts sent to a scorer. The shared data, SFT model and base-policy "
    "evaluation are left out; a stage several methods use (e.g. the DPO endpoints) counts for each. "
    "\"not recorded\": the summary predates counting, or a stage it needs was cached before counting.")


def compute_table(summary: dict, *, with_time: bool = False) -> tuple[list[str], list[list[str]]]:
    """Per method: the :mod:`sipo_bench.execution.compute` counters of its stages (`not recorded` for a
    summary without them); `with_time` adds their summed stage seconds (console only)."""
    if not summary["methods"]:
        return [], []
    cols = ["method", *COMPUTE_LABELS.values()] + (["stage seconds"] if with_time else [])
    body = []
    for name, m in summary["methods"].items():
        c = m.get("compute")
        row = [name] + [("not recorded" if not c or c.get(f) is None else f"{int(c[f]):,}") for f in compute.FIELDS]
        if with_time:
            row.append(_num(c.get("seconds")) if c else "not recorded")
        body.append(row)
    return cols, body


def noise_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Evaluation noise vs seed-to-seed spread of HV, per method and reference."""
    body = []
    for name, m in summary["methods"].items():
        for key, ref in _hv_refs(summary):
            n = (m.get(key) or {}).get("noise")
            if n:
                share = n["eval_var"] / n["seed_var"] if n.get("seed_var") else None
                body.append([name, ref, n.get("advice") or "-", _num(n.get("seed_sd")), _num(n["eval_se"]),
                             _num(n.get("ratio")), _num(share)])
    if not body:
        return [], []
    return ["method", "HV vs", "to narrow", "seed sd", "eval SE (rms)", "eval SE / seed sd", "eval var / seed var"], body


def noise_lines(summary: dict) -> list[str]:
    """What the evaluation-noise table means, and the verdict over methods."""
    ev = summary.get("evaluation") or {}
    reps = ev.get("noise_replicates")
    n_prompts = sorted({v for v in (ev.get("test_prompts") or {}).values() if v})
    lines = [f"HV's evaluation-noise SE per method and seed: a bootstrap over the test prompts ({reps} replicates; "
             "each replicate resamples the prompts once and applies the same resample to every point of the method "
             "and to the base policy's reference point), reported as the root mean square over seeds. seed sd: the sd "
             "of the per-seed HVs, which contains the evaluation noise. When eval SE / seed sd > 0.25 evaluation "
             "noise is a sizeable share of the spread between seeds: more test prompts narrow the intervals; below, "
             "training variation dominates: more seeds do."]
    if n_prompts:
        lines[0] += f" Test prompts per seed: {', '.join(str(x) for x in n_prompts)}"
        spp = ev.get("samples_per_prompt") or 1
        lines[0] += f" ({spp} samples each)." if spp > 1 else "."
    for key, ref in _hv_refs(summary):
        ratios = [m[key]["noise"]["ratio"] for m in summary["methods"].values()
                  if (m.get(key) or {}).get("noise") and m[key]["noise"].get("ratio") is not None]
        if ratios:
            med = statistics.median(ratios)
            verdict = "add test prompts" if med > 0.25 else "add seeds"
            lines.append(f"HV vs {ref}: eval SE / seed sd has median {_num(med)} over {_count(len(ratios), 'method')} "
                         f"(range {_num(min(ratios))}-{_num(max(ratios))}): {verdict}.")
    return lines


def is_timing_key(key: str) -> bool:
    """Fields that measure time differ between reruns of the same config: kept out of
    table.md (they stay in summary.json and the console)."""
    return key == "seconds" or key.endswith("_seconds")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def extra_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Flat numeric fields of each method's extra stage results, one row per (method, stage,
    field), one column per seed (plus their mean with several seeds). Nested values and text
    are left to summary.json. ([], []) when no method has any."""
    seeds: list[str] = []
    table: dict[tuple[str, str, str], dict[str, float]] = {}
    for name, m in summary["methods"].items():
        for seed, stages in (m.get("extra") or {}).items():
            for stage, result in (stages or {}).items():
                for field, value in (result or {}).items() if isinstance(result, dict) else ():
                    if _is_number(value) and not is_timing_key(field):
                        table.setdefault((name, stage, field), {})[str(seed)] = value
                        if str(seed) not in seeds:
                            seeds.append(str(seed))
    if not table:
        return [], []
    seeds.sort(key=lambda s: (not s.lstrip("-").isdigit(), int(s) if s.lstrip("-").isdigit() else 0, s))
    cols = ["method", "stage", "field", *[f"seed {s}" for s in seeds]] + (["mean"] if len(seeds) > 1 else [])
    out = []
    for (name, stage, field), by_seed in table.items():
        vals = [by_seed.get(s) for s in seeds]
        row = [name, stage, field, *[_num(v) for v in vals]]
        if len(seeds) > 1:
            present = [float(v) for v in vals if v is not None]
            row.append(_num(sum(present) / len(present)))
        out.append(row)
    return cols, out


def _ref_lines(summary: dict) -> list[str]:
    ref = summary.get("ref_point")
    lines = [f"HV reference point: {_named_vec(summary, ref) if ref else 'none (no HV)'}; "
             f"source: {summary.get('ref_point_source')}."]
    per_seed = summary.get("ref_points") or {}
    distinct = {json.dumps(v) for v in per_seed.values()}
    if len(per_seed) > 1 and len(distinct) > 1:
        lines.append("Per seed (each seed's HV uses its own): " + "; ".join(
            f"seed {s}: {_vec(v)}" for s, v in per_seed.items()) + ".")
    if _has_floor(summary):
        lines.append(f"HV floor: {_named_vec(summary, summary['floor'])}; source: {summary.get('floor_source')}.")
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
    objs = ", ".join(f"{o['name']} ({_direction(o)})" for o in s["objectives"])
    lines = [f"# sipo-bench: {s['task']}", ""]
    if s.get("task_description"):
        lines += [s["task_description"], ""]
    lines += [f"- Objectives: {objs}.",
              f"- Weight grid: {_count(len(s.get('weights') or []), 'point')}; seeds: {', '.join(str(x) for x in seeds) or '-'}.",
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
              *_extra_lines(s), ""]
    if s.get("merged_from"):
        lines += ["Merged from runs: " + ", ".join(
            f"{m.get('run_id')} ({', '.join(m.get('methods') or [])})" for m in s["merged_from"]) + ".", ""]
    lines += _ref_lines(s) + [""]
    prov = provenance_lines(s, old_as_absent=True)
    lines += [*prov, ""] if prov else []
    lines += _md_table(header(s), rows(s), 2 + len(_label_columns(s)))
    failed = [(n, m.get("error")) for n, m in s["methods"].items() if m.get("status") != "ok"]
    if failed:
        lines += ["", "## Failed methods", ""]
        lines += [f"- `{n}`: {_md_cell(e or 'no error recorded')}" for n, e in failed]
    cols, body = comparison_table(s)
    if body:
        lines += ["", "## Paired comparisons", "", COMPARISON_TEXT, "", holm_text(s), ""] + _md_table(cols, body, 2)
        if ranking_line(s):
            lines += ["", ranking_line(s)]
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


COMPARISON_TEXT = (
    "ΔHV = HV(method) − HV(baseline) per seed, over the seeds both have (the seeds share data, base "
    f"model and DPO endpoints, so the comparison is paired): the mean with a paired 95% interval (paired t 95% CI, "
    f"Student t on the n per-seed differences, up to {stats.MIN_BOOTSTRAP - 1} pairs; percentile bootstrap 95% CI from "
    f"{stats.MIN_BOOTSTRAP}), wins/ties/losses out of n seeds, "
    "and the two-sided sign-flip permutation p-value (exact over all 2^n sign patterns up to n = 16, Monte Carlo "
    "beyond, the number of draws stated). ΔIGD+ likewise from IGD+ per seed (each seed's points against that "
    "seed's union front); lower IGD+ is better, so a win is ΔIGD+ < 0.")


def points_csv(summary: dict) -> str:
    """One row per (method, w, seed): the weight vector, the mean test scores, their standard
    errors over test prompts (empty when unknown) and the number of prompts, then the extra
    objectives of `extra_scorers` (empty where a point has none)."""
    s = normalize(summary)
    objs = [o["name"] for o in s["objectives"]]
    extra = [o["name"] for o in _extra_objectives(s)]
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
    extra = _extra_objectives(summary)
    return [f"Extra objectives (reported only; HV over {', '.join(summary.get('hv_objectives') or [])}): "
            + ", ".join(o["name"] for o in extra) + "."] if extra else []


def _console_header(summary: dict) -> list[str]:
    hv = [f"HV vs {ref}{_kind_suffix(_kinds(_hv_intervals(summary, key)))}" for key, ref in _hv_refs(summary)]
    cols = ["method", *[k.replace("_", " ") for k in _label_columns(summary)], "status", *hv]
    cols += ["IGD+ ↓"] + ([f"IGD+ per seed ↓{_kind_suffix(_kinds(_hv_intervals(summary, 'igd_plus_per_seed')))}"]
                         if _has_igd_seeds(summary) else [])
    cols += ["front", *[f"best {o['name']} {'↑' if o['higher_is_better'] else '↓'}" for o in summary["objectives"]]]
    cols += [f"best {o['name']} {'↑' if o['higher_is_better'] else '↓'} (extra)" for o in _extra_objectives(summary)]
    return cols + ["time s"]


def console_table(summary: dict) -> Any:
    """A rich renderable: the main table (HV interval under the mean, the reference point and
    its source in the caption), then failed methods' errors and extra stage results."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    s = normalize(summary)
    n_hv = 2 if _has_floor(s) else 1
    first_hv = 2 + len(_label_columns(s))
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

    table("paired comparisons", *comparison_table(s), 2, " ".join(x for x in (COMPARISON_TEXT, holm_text(s), ranking_line(s)) if x))
    table("compute", *compute_table(s, with_time=True), 1, COMPUTE_TEXT)
    table("HV per seed", *per_seed_table(s), 2)
    table("evaluation noise of HV", *noise_table(s), 3, " ".join(noise_lines(s)))
    table("extra stage results", *extra_table(s), 3)
    table("flagged training stages", *curves.training_table(s), 3, " ".join(curves.training_lines(s) or []))
    return Group(*parts)


# --- Plot -------------------------------------------------------------------------------------


def _vertex_only(m: dict) -> bool:
    """True when every evaluated weight is a simplex vertex (e.g. `dpo`'s endpoints): a line
    between such points would suggest policies the method never produced."""
    ws = [p.get("w") for p in m.get("mean_points") or []]
    return bool(ws) and all(w is not None and sorted(w)[:-1] == [0.0] * (len(w) - 1) for w in ws)


def front_figure(summary: dict) -> Any:
    """The matplotlib `Figure` of front.png (no pyplot, so no global state; Agg renders it):
    each method's mean points per weight (filled: on its front, hollow: dominated, x: failed
    method) and, for k = 2, its front line (gid `front:<method>`; none for vertex-only methods);
    pairwise panels for k >= 3; the HV reference point marked; axis labels give directions."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    s = normalize(summary)
    objs = s["objectives"]
    k = len(objs)
    pairs = list(combinations(range(k), 2)) if k >= 2 else [(0, None)]
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    n_methods = len(s["methods"])
    side_legend = ncols == 1  # one panel: legend on the right; several: a row of entries below
    legend_rows = 0 if side_legend else math.ceil((n_methods + 3) / 6)
    fig = Figure(figsize=(5.0 * ncols + (3.2 if side_legend else 0), 4.4 * nrows + 0.3 * legend_rows + 0.4),
                 dpi=110, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    cmap = colormaps["tab10"]
    handles: list[Any] = []
    any_dominated = False
    for idx, (name, m) in enumerate(s["methods"].items()):
        color = cmap(idx % 10)
        ok = m.get("status") == "ok"
        mean = m.get("mean_points") or []
        front = {tuple(p["scores"]) for p in m.get("front") or []}
        line = ok and k == 2 and len(front) >= 2 and not _vertex_only(m)
        for ax, (i, j) in zip(axes, pairs):
            ys_of = (lambda p: p["scores"][j]) if j is not None else (lambda p: idx)
            on = [p for p in mean if tuple(p["scores"]) in front]
            off = [p for p in mean if tuple(p["scores"]) not in front]
            if not ok:
                ax.scatter([p["scores"][i] for p in mean], [ys_of(p) for p in mean], marker="x", color=color, s=45, zorder=3)
                continue
            if line:
                pts = sorted((p["scores"][i], p["scores"][j]) for p in on)
                ax.plot([x for x, _ in pts], [y for _, y in pts], "-", color=color, lw=1.6, alpha=0.85, zorder=2,
                        gid=f"front:{name}")
            ax.scatter([p["scores"][i] for p in on], [ys_of(p) for p in on], color=color, s=38, zorder=3,
                       edgecolors="white", linewidths=0.6)
            if off:
                any_dominated = True
                ax.scatter([p["scores"][i] for p in off], [ys_of(p) for p in off], facecolors="none",
                           edgecolors=color, s=38, zorder=3)
        label = name + ("" if ok else " (failed)")
        handles.append(Line2D([], [], color=color, marker="x" if not ok else "o", lw=1.6 if line else 0, label=label))
    ref = s.get("ref_point")
    source = str(s.get("ref_point_source") or "")
    ref_label = ("HV reference point:\nbase policy (mean over seeds)" if source.startswith("base policy")
                 else f"HV reference point:\n{source}")
    base = [v for v in ((s.get("base_policy") or {}).get("scores") or {}).values() if v is not None]
    base_mean = [sum(c) / len(base) for c in zip(*base)] if base else None
    for ax, (i, j) in zip(axes, pairs):
        if ref is not None:
            if j is None:
                ax.axvline(ref[i], color="black", ls=":", lw=1)
            else:
                ax.axvline(ref[i], color="0.6", ls=":", lw=0.9, zorder=1)
                ax.axhline(ref[j], color="0.6", ls=":", lw=0.9, zorder=1)
                ax.scatter([ref[i]], [ref[j]], marker="*", s=190, color="black", zorder=4)
        if base_mean is not None and not source.startswith("base policy") and j is not None:
            ax.scatter([base_mean[i]], [base_mean[j]], marker="D", s=45, color="0.45", zorder=4)
        ax.set_xlabel(f"{objs[i]['name']} ({_direction(objs[i])})")
        if j is not None:
            ax.set_ylabel(f"{objs[j]['name']} ({_direction(objs[j])})")
        else:
            ax.set_yticks(range(n_methods), list(s["methods"]))
        ax.grid(True, alpha=0.25)
    if ref is not None:
        handles.append(Line2D([], [], color="black", marker="*" if k >= 2 else None, ms=12, lw=0 if k >= 2 else 1,
                              ls=":" if k < 2 else "", label=ref_label))
    if base_mean is not None and not source.startswith("base policy") and k >= 2:
        handles.append(Line2D([], [], color="0.45", marker="D", lw=0, label="base policy (mean over seeds)"))
    if any_dominated:
        handles.append(Line2D([], [], color="0.3", marker="o", mfc="none", lw=0, label="dominated mean point"))
    n = len(s.get("seeds") or [])
    title = f"{s['task']}: mean test scores per preference weight ({n} seed{'s' if n != 1 else ''})"
    if side_legend:
        axes[0].set_title(title, fontsize="medium")
    else:
        fig.suptitle(title)
    if side_legend:
        fig.legend(handles=handles, loc="outside right upper", frameon=False)
    else:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), frameon=False)
    return fig


def figure_png_bytes(fig: Any) -> bytes:
    """A matplotlib `Figure` as PNG bytes, without timestamp metadata (same figure, same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def front_png_bytes(summary: dict) -> bytes:
    """:func:`front_figure` as PNG bytes."""
    return figure_png_bytes(front_figure(summary))


def plot_front(summary: dict, path: Path) -> None:
    """Write :func:`front_figure` as a PNG to `path` atomically."""
    plot_figure(front_figure(summary), path)


def plot_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib `Figure` as a PNG to `path` atomically."""
    atomic_write_bytes(Path(path), figure_png_bytes(fig))
