"""`summary.json` of a run, computed from its plan and its stages' outcomes only: per method the
front, HV with its intervals, compute, training curves; the paired comparisons; provenance."""

from __future__ import annotations

import datetime as _dt
import math
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__, provenance
from ..configs.schema import to_dict
from ..execution import compute
from ..execution.stages import Cache, Stage, walk
from ..planning.experiment import Plan
from ..scoring import extra_scorers, stats
from ..scoring.indicators import method_indicators
from .summary_schema import SCHEMA_VERSION


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"sipo-bench": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft", "datasets", "pymoo", "pluggy", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _seconds_by_kind(stages: list[Stage], outcomes: dict) -> dict[str, float]:
    acc: dict[str, float] = {}
    for s in walk(stages):
        o = outcomes.get(s.key)
        if o is not None:
            acc[s.kind] = acc.get(s.kind, 0.0) + float(o.seconds or 0.0)
    return {k: round(v, 3) for k, v in sorted(acc.items())}


def _provenance(plan: Plan) -> dict:
    """Where the stages ran: this process's, or, for a deterministic run whose stages ran in
    fresh processes (torch loaded here with other kernels), a fresh process's view."""
    from ..execution import determinism

    cfg = plan.config
    args = (plan.device, cfg.cpu_threads, cfg.deterministic)
    if cfg.deterministic and determinism.needs_fresh_processes():  # torch is loaded here: stages may use it
        return provenance.collect_fresh(*args, uses_torch=True)
    return provenance.collect(*args, uses_torch=bool(plan.task.model_based))


def summarize(plan: Plan, outcomes: dict, cache: Cache, *, wall_seconds: float, run_id: str) -> dict:
    cfg, task = plan.config, plan.task
    objectives = task.objectives()
    maximize = [o.higher_is_better for o in objectives]
    k = len(objectives)

    def result(stage: Stage):
        o = outcomes.get(stage.key)
        return o.result if o is not None and o.status in ("done", "cached") else None

    # Reference point: config > task > base policy (per seed).
    ref_points: dict[int, list[float] | None] = {}
    base_scores: dict[int, list[float] | None] = {}
    for seed, ep in plan.reference.items():
        r = result(ep.score)
        base_scores[seed] = r["mean"] if r else None
    if cfg.ref_point is not None:
        source = "config"
        ref_points = {s: [float(x) for x in cfg.ref_point] for s in cfg.seeds}
    elif task.reference_point() is not None:
        source = f"task {task.name}"
        ref_points = {s: [float(x) for x in task.reference_point()] for s in cfg.seeds}
    else:
        source = (f"base policy mean {'validation' if cfg.eval_split == 'val' else 'test'} scores "
                  "(per seed, cached stage)")
        ref_points = dict(base_scores)
    valid_refs = [r for r in ref_points.values() if r is not None]
    floor = task.floor()
    # A seed without a reference point leaves every method without its HV: say why.
    no_ref = [seed for seed in cfg.seeds if ref_points.get(seed) is None]
    no_ref_error = None
    if no_ref:
        causes = [s for s in walk([plan.reference[seed].score for seed in no_ref])
                  if outcomes.get(s.key) is not None and outcomes[s.key].status == "failed"]
        cause = f"stage {causes[0].name}: {outcomes[causes[0].key].error}" if causes else "the base policy was not scored"
        no_ref_error = f"no HV reference point for seed(s) {', '.join(map(str, no_ref))} ({cause})"

    reference_side = {s.key for s in walk([ep.score for ep in plan.reference.values()])}
    data_meta = {seed: result(st) for seed, st in plan.data.items()}
    base_meta = {seed: result(st) for seed, st in plan.base.items()}

    methods: dict[str, Any] = {}
    own_stages: dict[str, list[Stage]] = {}
    for name, mp in plan.methods.items():
        entry: dict[str, Any] = {"status": "ok", "error": mp.error, "trained_on": mp.trained_on,
                                 "variant": mp.variant, "config": mp.config, "points": [],
                                 "front": [], "hypervolume": None, "hypervolume_floor": None, "igd_plus": None}
        failed = [(p, outcomes.get(s.key)) for p in mp.points for s in (p.generate, p.score, *p.extra)]
        failed = [(p, o) for p, o in failed if o is None or o.status in ("failed", "skipped")]
        own = [s for p in mp.points for s in (p.score, *p.extra)] + [x for ex in mp.extra.values() for x in ex.values()]
        own += list(mp.noise.values())
        own_stages[name] = [s for p in mp.points for s in (p.score, *p.extra)] + [x for ex in mp.extra.values() for x in ex.values()]
        upstream = [s for s in walk(own) if outcomes.get(s.key) is not None and outcomes[s.key].status == "failed"]
        if mp.error or failed or upstream:
            entry["status"] = "failed"
            if not entry["error"]:
                own_up = [s for s in upstream if s.key not in reference_side]  # not the base policy's scoring
                first = (own_up or upstream)[0] if upstream else None
                if not own_up and no_ref_error:
                    entry["error"] = no_ref_error
                else:
                    entry["error"] = f"stage {first.name}: {outcomes[first.key].error}" if first else "a stage did not run"
        for p in mp.points:
            r = result(p.score)
            if r is not None:
                if not all(math.isfinite(x) for x in r["mean"]) and entry["status"] == "ok":
                    entry["status"] = "failed"
                    entry["error"] = f"stage {p.score.name}: non-finite mean score {r['mean']}"
                entry["points"].append({"w": list(p.w), "seed": p.seed, "scores": r["mean"], "se": r.get("se"),
                                        "n_prompts": r.get("n"), "generator": p.generator})
        entry["generators"] = sorted({p.generator for p in mp.points})
        if no_ref_error and entry["status"] == "ok":
            entry["status"], entry["error"] = "failed", no_ref_error
        noise = {seed: result(st) for seed, st in mp.noise.items()}
        eval_se = {key: {seed: (r[key] or {}).get("se") for seed, r in noise.items() if r} if noise else None
                   for key in stats.HV_KEYS}
        method_indicators(entry, ref_points, floor, [(o.name, o.higher_is_better) for o in objectives], list(cfg.seeds),
                          eval_se)
        entry["stage_seconds"] = _seconds_by_kind(own, outcomes)
        entry["seconds"] = round(sum(entry["stage_seconds"].values()), 3)
        # what this method's stages spent, shared task stages (data, SFT model, base-policy evaluation) left out
        entry["compute"] = compute.total([cache.meta(s) for s in walk(own) if s.key not in reference_side])
        entry["extra"] = {str(seed): {n: result(st) for n, st in ex.items()} for seed, ex in mp.extra.items() if ex}
        methods[name] = entry

    from ..reporting import curves

    training, _ = curves.collect(own_stages, cache, walk)
    for key, st in training.items():
        for label in st["methods"]:
            methods[label].setdefault("training", []).append(key)
    for entry in methods.values():
        entry.setdefault("training", [])
    union_front = stats.union_front_igd_plus(methods, maximize)
    stats.igd_plus_per_seed(methods, maximize)
    stats.comparisons(methods, plan.compare)

    stages = plan.stages()
    counts: dict[str, int] = {}
    for s in stages:
        st = outcomes[s.key].status if s.key in outcomes else "not run"
        counts[st] = counts.get(st, 0) + 1
    failed_stages = [{"stage": s.name, "key": s.key, "error": outcomes[s.key].error}
                     for s in stages if s.key in outcomes and outcomes[s.key].status == "failed"]
    summary = {
        "schema_version": SCHEMA_VERSION,
        "task": task.name,
        "task_description": task.description,
        "objectives": [{"name": o.name, "higher_is_better": o.higher_is_better, "description": o.description} for o in objectives],
        "weights": [list(w) for w in plan.grid],
        "seeds": list(cfg.seeds),
        "ref_point": np.mean(valid_refs, axis=0).tolist() if valid_refs else None,
        "ref_point_source": source,
        "ref_points": {str(s): r for s, r in ref_points.items()},
        "floor": floor,
        "floor_source": f"task {task.name}" if floor is not None else None,
        "union_front": union_front,
        "compare_to": [list(p) for p in plan.compare],
        "evaluation": {"test_prompts": {str(s): (result(ep.score) or {}).get("n") for s, ep in plan.reference.items()},
                       "samples_per_prompt": cfg.decoding.samples_per_prompt,
                       "noise_replicates": cfg.eval_noise_replicates},
        "base_policy": {"scores": {str(s): v for s, v in base_scores.items()}},
        "task_data": {str(s): v for s, v in data_meta.items()},
        "task_base": {str(s): v for s, v in base_meta.items()},
        "methods": methods,
        "training": {"stages": training, "flags": dict(curves.FLAGS)},
        "failed_stages": failed_stages,
        "generator": plan.generator,
        "device": plan.device,
        # which CPU, kernels, BLAS mode, threads and GPU made these numbers (not in any cache key)
        "provenance": _provenance(plan),
        "config": to_dict(cfg),
        "versions": package_versions(),
        "git_commit": _git_commit(),
        # Everything below differs between two runs of the same config (see `comparable`).
        "run": {"run_id": run_id, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "wall_seconds": round(wall_seconds, 3), "stages": {"total": len(stages), **counts}},
    }
    if cfg.eval_split != "test":  # the points are validation numbers (for tuning), not test ones
        summary["evaluation"]["split"] = cfg.eval_split
    if cfg.tune:
        from ..configs.tuning import tuning_summary

        summary["tuning"] = tuning_summary(cfg.tune, methods)
    extra_scorers.add_to_summary(summary, plan, result)
    return summary


VOLATILE_METHOD_KEYS = ("stage_seconds", "seconds")


def comparable(summary: dict) -> dict:
    """`summary` without what legitimately differs between reruns: timings, run id, date,
    paths of the run (out, cache), the machine's provenance."""
    import copy

    s = copy.deepcopy(summary)
    s.pop("run", None)
    s.pop("provenance", None)  # the machine, not the result
    for m in s.get("methods", {}).values():
        for k in VOLATILE_METHOD_KEYS:
            m.pop(k, None)
    for k in ("out", "cache_dir", "quiet", "no_cache", "cpu_threads", "overwrite", "jobs"):
        s.get("config", {}).pop(k, None)

    def strip(x: Any) -> Any:  # timing fields inside stage results (`seconds`, `sft_seconds`, ...)
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if not (k == "seconds" or k.endswith("_seconds"))}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(s)
