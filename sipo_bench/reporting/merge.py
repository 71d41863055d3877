"""Loading `summary.json` files (checked against the schema, upgraded from older schema
versions) and merging several runs into one summary: :func:`merge` recomputes the indicators
that depend on the set of methods or seeds (HV statistics, the union front, IGD+) with the same
functions as the run. Every renderer first passes a summary through :func:`normalize`, the JSON
encoding `summary.json` is written with, so an in-memory summary and its file render the same."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..execution import provenance
from ..execution import compute
from ..scoring import stats
from ..errors import UsageError
from ..execution.stages import json_default


REQUIRED_KEYS = ("schema_version", "task", "objectives", "methods")


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
