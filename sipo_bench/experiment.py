"""A run: its config, the stage graph it plans, executing it, and `summary.json`.

Planning is cheap and pure: every method's `fit` returns a policy family whose `PolicySpec`s
refer to stages; the runner adds one `generate` and one `score` stage per (method, w, seed),
plus the base policy's own evaluation (the default hypervolume reference point). The executor
runs the deduplicated graph; the summary is computed from the stages' results only.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, pareto, stats
from .config import ConfigError, build, check, field, to_dict
from .errors import UsageError
from .interfaces import DecodingConfig, FitContext, PolicySpec, Task
from .runtime import Runtime
from .stages import Cache, Stage, StageLog, default_cache_dir, walk, write_json
from .variants import check_compare_to, compare_pairs, parse_label
from .weights import fmt, simplex_grid, validate_weights

SCHEMA_VERSION = 2  # 2: intervals name their method and level (`interval`), `comparisons`, evaluation noise
DEFAULT_TASK = "synthetic-hh"


@dataclass
class RunConfig:
    """Everything a run depends on. YAML keys are these fields; CLI flags override them."""

    task: str = field(DEFAULT_TASK, help="Task plugin name (`sipo-bench ls tasks`).")
    task_options: dict = field({}, help="Options of the task's config dataclass.")
    methods: list = field(["all"], help="Method labels: plugin names, variants `name@field=value,field=value` "
                                        "(e.g. sipo@refine=false), or 'all' for every compatible method.")
    method_options: dict = field({}, help="Per-method config overrides: {method: {field: value}}.")
    seeds: list = field([0], help="Seeds; everything seed-dependent is repeated per seed.")
    weights: Any = field(4, help="Simplex partitions (int, das-dennis) or an explicit list of weight vectors.")
    decoding: DecodingConfig = field(DecodingConfig(), help="Evaluation decoding settings.")
    generator: str | None = field(None, help="Generation backend; default: the task's.")
    max_test_prompts: int | None = field(None, help="Evaluate on at most this many test prompts.")
    ref_point: list | None = field(None, help="Override the hypervolume reference point (objective units).")
    executor: str = field("local", help="Executor plugin name.")
    executor_options: dict = field({}, help="Options passed to the executor.")
    out: str | None = field(None, help="Output directory (default results/<task>-<timestamp>).")
    cache_dir: str | None = field(None, help="Stage cache (default $SIPO_BENCH_CACHE or ~/.cache/sipo-bench).")
    no_cache: bool = field(False, help="Recompute every stage of this run.")
    plugins_dir: str | None = field(None, help="Directory of extra plugin *.py files.")
    quiet: bool = field(False, help="Plain log lines instead of progress bars.")
    compare_to: Any = field(None, help="Paired comparisons: a baseline label or a list of them (every other method "
                                       "vs each), or a mapping {method: baseline or [baselines]}.")
    sweep: dict = field({}, help="Sweep: {option path: [values]}, e.g. {task_options.conflict_fraction: [0.0, 0.6]}; "
                                 "one run per combination, shared stages run once (sipo_bench.sweep).")
    eval_noise_replicates: int = field(500, help="Prompt-bootstrap replicates of HV's evaluation-noise SE per method "
                                                 "and seed; 0 = do not measure.")
    cpu_threads: int | None = field(1, help="torch intra-op threads for stages run in this process (1 is fastest for tiny models on a small shared CPU); null = torch's default.")

    def __post_init__(self) -> None:
        check(len(self.methods) > 0, "methods", "at least one method name", self.methods)
        for i, m in enumerate(self.methods):
            check(isinstance(m, str) and bool(m), f"methods[{i}]", "a method name", m)
            parse_label(m, f"methods[{i}]")
        check_compare_to(self.compare_to)
        from .sweep import check_sweep

        check_sweep(self.sweep)
        check(isinstance(self.eval_noise_replicates, int) and (self.eval_noise_replicates == 0 or self.eval_noise_replicates >= 2),
              "eval_noise_replicates", "0 or an integer >= 2", self.eval_noise_replicates)
        check(len(self.seeds) > 0, "seeds", "at least one integer seed", self.seeds)
        for i, s in enumerate(self.seeds):
            check(isinstance(s, int) and not isinstance(s, bool), f"seeds[{i}]", "an integer", s)
        check(len(set(self.seeds)) == len(self.seeds), "seeds", "distinct seeds", self.seeds)
        w = self.weights
        check(isinstance(w, list) or (isinstance(w, int) and not isinstance(w, bool)), "weights",
              "a number of partitions (int) or a list of weight vectors", w)
        if isinstance(w, int):
            check(w >= 1, "weights", "a number of partitions >= 1", w)
        for k, v in self.method_options.items():
            check(isinstance(v, dict), f"method_options.{k}", "a mapping of field: value", v)
        if self.max_test_prompts is not None:
            check(self.max_test_prompts >= 1, "max_test_prompts", "an integer >= 1", self.max_test_prompts)
        if self.cpu_threads is not None:
            check(self.cpu_threads >= 1, "cpu_threads", "an integer >= 1 or null", self.cpu_threads)


def load_yaml(path: str | Path) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"`--config`: expected a YAML file, got {str(p)!r} (not found)")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"`--config`: {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"`--config`: expected a mapping at the top of {p}, got {type(data).__name__}")
    return data


def make_config(data: dict) -> RunConfig:
    return build(RunConfig, data)


# --- Planning -------------------------------------------------------------------------------


@dataclass
class EvalPoint:
    label: str
    w: tuple[float, ...] | None
    seed: int
    generate: Stage
    score: Stage


@dataclass
class MethodPlan:
    name: str
    config: dict
    points: list[EvalPoint]
    extra: dict[int, dict[str, Stage]]  # seed -> stages whose results go to the summary
    error: str | None = None
    noise: dict[int, Stage] = dataclasses.field(default_factory=dict)  # seed -> HV evaluation-noise stage


@dataclass
class Plan:
    config: RunConfig
    task: Task
    grid: list[tuple[float, ...]]
    generator: str
    data: dict[int, Stage]
    base: dict[int, Stage]
    reference: dict[int, EvalPoint]
    methods: dict[str, MethodPlan]
    compare: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (method, baseline) pairs

    def stages(self) -> list[Stage]:
        roots: list[Stage] = list(self.data.values()) + list(self.base.values())
        roots += [p.score for p in self.reference.values()]
        for m in self.methods.values():
            roots += [p.score for p in m.points]
            for ex in m.extra.values():
                roots += list(ex.values())
            roots += list(m.noise.values())
        return walk(roots)


def resolve_methods(cfg: RunConfig, runtime: Runtime, task: Task) -> list[str]:
    """The run's method labels: 'all' expands to every compatible registered method; a variant
    `name@...` needs a registered `name`."""
    reg = runtime.registries.methods
    labels: list[str] = []
    for label in cfg.methods:
        if label == "all":
            names = [n for n in reg.names() if _compatible(reg.get(n), task)]
            if not names:
                raise UsageError(f"`methods`: no registered method runs on task {task.name!r}")
            labels += names
        else:
            reg.get(parse_label(label)[0])  # unknown -> "Did you mean"
            labels.append(label)
    return list(dict.fromkeys(labels))


def _compatible(cls: Any, task: Task) -> bool:
    if cls.tasks is not None:
        return task.name in cls.tasks
    return task.model_based or not cls.needs_model


def method_config(cls: Any, task: Task, overrides: dict, name: str, where: str | None = None) -> Any:
    """Method `name`'s config: the task's defaults for it, then `overrides`; errors name `where`
    (default `method_options.<name>`)."""
    merged = {**task.method_defaults(name), **overrides}
    return build(cls.config_class, merged, where or f"method_options.{name}")


def plan_run(cfg: RunConfig, runtime: Runtime) -> Plan:
    """Validate every name and option and build the stage graph (nothing runs)."""
    task = runtime.task(cfg.task, cfg.task_options)
    objectives = task.objectives()
    k = len(objectives)
    grid = simplex_grid(k, cfg.weights) if isinstance(cfg.weights, int) else validate_weights(cfg.weights, k)
    if cfg.ref_point is not None and len(cfg.ref_point) != k:
        raise ConfigError(f"`ref_point`: expected {k} values (one per objective), got {cfg.ref_point!r}")
    generator = cfg.generator or task.default_generator
    runtime.registries.generators.get(generator)
    runtime.registries.executors.get(cfg.executor)
    for name, options in task.scorers():
        runtime.registries.scorers.get(name)
    names = resolve_methods(cfg, runtime, task)
    for extra in cfg.method_options:  # options may configure methods used by others (dpo)
        if extra not in runtime.registries.methods:
            from .errors import did_you_mean

            raise ConfigError(f"`method_options.{extra}`: " + did_you_mean("method", extra, runtime.registries.methods.names()))
    configs: dict[str, Any] = {}

    def config_of(name: str) -> Any:
        if name not in configs:
            configs[name] = method_config(runtime.registries.methods.get(name), task, cfg.method_options.get(name, {}), name)
        return configs[name]

    labels = {}  # label -> (method name, config)
    for label in names:
        name, overrides = parse_label(label)
        config_of(name)  # method_options errors first, named `method_options.<name>`
        where = f"methods[{cfg.methods.index(label)}]" if overrides else f"method_options.{name}"
        labels[label] = (name, method_config(runtime.registries.methods.get(name), task,
                                             {**cfg.method_options.get(name, {}), **overrides}, name, where)
                         if overrides else config_of(name))
    compare = compare_pairs(cfg.compare_to, names)

    task_cfg = task.stage_config()
    decoding = to_dict(cfg.decoding)
    plan = Plan(cfg, task, grid, generator, {}, {}, {}, {}, compare)

    def eval_point(label: str, spec: PolicySpec, w, seed: int) -> EvalPoint:
        spec = spec.normalized()
        tag = f"{label},w={fmt(w)},seed={seed}" if w is not None else f"{label},seed={seed}"
        gen = Stage(f"generate[{tag}]", "sipo_bench.evaluation:generate_stage",
                    {**task_cfg, "policy": spec.to_config(), "decoding": decoding, "generator": generator,
                     "seed": seed, "max_test_prompts": cfg.max_test_prompts},
                    {**spec.stages(), "data": plan.data[seed]}, tags={"method": label, "seed": seed})
        score = Stage(f"score[{tag}]", "sipo_bench.evaluation:score_stage",
                      {**task_cfg, "scorers": [list(s) for s in task.scorers()]},
                      {"generations": gen}, tags={"method": label, "seed": seed}, version="2")
        return EvalPoint(label, tuple(w) if w is not None else None, seed, gen, score)

    for seed in cfg.seeds:
        plan.data[seed] = Stage(f"data[seed={seed}]", "sipo_bench.taskstages:data_stage", {**task_cfg, "seed": seed})
        plan.base[seed] = Stage(f"base[seed={seed}]", "sipo_bench.taskstages:base_stage", {**task_cfg, "seed": seed},
                                {"data": plan.data[seed]})
        plan.reference[seed] = eval_point("base", PolicySpec(plan.base[seed]), None, seed)

    for label, (name, config) in labels.items():
        cls = runtime.registries.methods.get(name)
        mp = MethodPlan(label, to_dict(config), [], {})
        plan.methods[label] = mp
        try:
            method = cls(config)
            for seed in cfg.seeds:
                fctx = FitContext(task=task, seed=seed, data=plan.data[seed], base=plan.base[seed],
                                  weights=list(grid), runtime=runtime, method_name=label, method_configs=config_of)
                family = method.fit(fctx)
                mp.extra[seed] = dict(family.extra_stages())
                for w in grid:
                    spec = family.policy(w)
                    if spec is not None:
                        mp.points.append(eval_point(label, spec, w, seed))
            if not mp.points:
                raise RuntimeError(f"method {label!r} gave no policy for any weight of the grid")
            if cfg.eval_noise_replicates:
                from .evaluation import noise_stage

                fixed_ref = cfg.ref_point if cfg.ref_point is not None else task.reference_point()
                for seed in cfg.seeds:
                    pts = [p.score for p in mp.points if p.seed == seed]
                    if pts:
                        mp.noise[seed] = noise_stage(label, seed, pts, plan.reference[seed].score, fixed_ref, task,
                                                     cfg.eval_noise_replicates)
        except UsageError:
            raise
        except Exception as e:  # a broken method must not stop the others
            from .stages import format_exception

            mp.error = f"planning failed: {type(e).__name__}: {e}".splitlines()[0]
            mp.points, mp.extra, mp.noise = [], {}, {}
            runtime.log(f"method {label} failed while planning: {format_exception(e)}")
    return plan


# --- Running --------------------------------------------------------------------------------


def default_out(task: str) -> Path:
    return Path("results") / f"{task}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def check_out_dir(out: Path) -> None:
    """Fail early (usage error) if OUT cannot be written; creates nothing."""
    p = out.resolve()
    if p.exists() and not p.is_dir():
        raise UsageError(f"`--out`: expected a directory, got {str(out)!r} (a file)")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"`--out`: expected a writable directory, got {str(out)!r} ({str(probe)!r} is not writable)")


def execute(cfg: RunConfig, runtime: Runtime | None = None) -> tuple[dict, Path]:
    """Plan, run and summarise. Returns (summary, out dir). Raises UsageError before writing
    anything for bad input; stage failures are recorded in the summary instead. A config with
    a `sweep` plans every sweep point, runs the union of their stages once and returns the
    sweep summary (`sipo_bench.sweep`)."""
    from . import sweep as sweeps

    t0 = time.time()
    runtime = runtime or Runtime(plugins_dir=cfg.plugins_dir, quiet=cfg.quiet)
    points = sweeps.plan_sweep(cfg, runtime, plan_run)  # [] without a sweep
    plans = [p.plan for p in points] or [plan_run(cfg, runtime)]
    plan = plans[0]
    out = Path(cfg.out) if cfg.out else default_out(cfg.task)
    check_out_dir(out)
    cache = Cache(cfg.cache_dir or default_cache_dir())
    try:
        cache.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"`--cache-dir`: expected a writable directory, got {str(cache.root)!r} ({e.strerror})") from None
    cache.gc_tmp()
    stages = walk([s for p in plans for s in p.stages()])
    if cfg.no_cache:
        for s in stages:
            cache.invalidate(s)
    if cfg.cpu_threads is not None and any(not cache.is_done(s) for s in stages):
        _set_cpu_threads(cfg.cpu_threads)
    executor = runtime.registries.executors.get(cfg.executor)(**cfg.executor_options)
    out.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:12]
    log = StageLog(out / "logs" / "stages.jsonl", run_id)
    runtime.log(f"run {run_id}: task {plan.task.name}, {len(plan.methods)} method(s), {len(cfg.seeds)} seed(s), "
                f"{len(plan.grid)} weights{f', {len(plans)} sweep points' if points else ''}, {len(stages)} stages "
                f"(cache {cache.root})")
    with runtime.live():
        with runtime.progress(len(stages), "stages") as overall:
            outcomes = executor.run(stages, runtime, cache, log, overall)
    runtime.close()
    for s in stages:
        o = outcomes.get(s.key)
        if o is not None and o.status == "failed":
            from .stages import atomic_write_text

            atomic_write_text(out / "logs" / "failures" / f"{s.key}.txt", f"{s.name}\n\n{o.traceback}")
    if points:
        return sweeps.write_sweep(cfg, points, outcomes, cache, out, run_id=run_id, t0=t0), out
    summary = summarize(plan, outcomes, cache, wall_seconds=time.time() - t0, run_id=run_id)
    write_json(out / "summary.json", summary)
    from . import report

    report.render_files(summary, out)
    return summary, out


def _set_cpu_threads(n: int) -> None:
    """Limit torch's CPU threads for stages run in this process (no effect on GPU kernels)."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(n)


# --- Summary --------------------------------------------------------------------------------


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
        source = "base policy mean test scores (per seed, cached stage)"
        ref_points = dict(base_scores)
    valid_refs = [r for r in ref_points.values() if r is not None]
    floor = task.floor()

    data_meta = {seed: result(st) for seed, st in plan.data.items()}
    base_meta = {seed: result(st) for seed, st in plan.base.items()}

    methods: dict[str, Any] = {}
    for name, mp in plan.methods.items():
        entry: dict[str, Any] = {"status": "ok", "error": mp.error, "config": mp.config, "points": [],
                                 "front": [], "hypervolume": None, "hypervolume_floor": None, "igd_plus": None}
        failed = [(p, outcomes.get(s.key)) for p in mp.points for s in (p.generate, p.score)]
        failed = [(p, o) for p, o in failed if o is None or o.status in ("failed", "skipped")]
        own = [p.score for p in mp.points] + [x for ex in mp.extra.values() for x in ex.values()] + list(mp.noise.values())
        upstream = [s for s in walk(own) if outcomes.get(s.key) is not None and outcomes[s.key].status == "failed"]
        if mp.error or failed or upstream:
            entry["status"] = "failed"
            if not entry["error"]:
                first = upstream[0] if upstream else None
                entry["error"] = f"stage {first.name}: {outcomes[first.key].error}" if first else "a stage did not run"
        for p in mp.points:
            r = result(p.score)
            if r is not None:
                entry["points"].append({"w": list(p.w), "seed": p.seed, "scores": r["mean"], "se": r.get("se"),
                                        "n_prompts": r.get("n")})
        # Mean over seeds per w, front of those means.
        by_w: dict[tuple, list[list[float]]] = {}
        for pt in entry["points"]:
            by_w.setdefault(tuple(pt["w"]), []).append(pt["scores"])
        mean_points = [{"w": list(w), "scores": np.mean(v, axis=0).tolist(), "n_seeds": len(v)} for w, v in by_w.items()]
        entry["mean_points"] = mean_points
        if mean_points and entry["status"] == "ok":
            arr = np.array([m["scores"] for m in mean_points])
            entry["front"] = [mean_points[i] for i in pareto.pareto_front(arr, maximize)]
            noise = {seed: result(st) for seed, st in mp.noise.items()}
            eval_se = {key: {seed: (r[key] or {}).get("se") for seed, r in noise.items() if r} if noise else None
                       for key in stats.HV_KEYS}
            entry["hypervolume"] = stats.hv_stats(entry["points"], ref_points, maximize, cfg.seeds,
                                                  eval_se["hypervolume"])
            if floor is not None:
                entry["hypervolume_floor"] = stats.hv_stats(entry["points"], {s: floor for s in cfg.seeds}, maximize,
                                                            cfg.seeds, eval_se["hypervolume_floor"])
        entry["best"] = ({o.name: (max if o.higher_is_better else min)(m["scores"][i] for m in mean_points)
                          for i, o in enumerate(objectives)} if mean_points else {})
        entry["stage_seconds"] = _seconds_by_kind(own, outcomes)
        entry["seconds"] = round(sum(entry["stage_seconds"].values()), 3)
        entry["extra"] = {str(seed): {n: result(st) for n, st in ex.items()} for seed, ex in mp.extra.items() if ex}
        methods[name] = entry

    union_front = stats.union_front_igd_plus(methods, maximize)
    stats.comparisons(methods, plan.compare)

    stages = plan.stages()
    counts: dict[str, int] = {}
    for s in stages:
        st = outcomes[s.key].status if s.key in outcomes else "not run"
        counts[st] = counts.get(st, 0) + 1
    return {
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
        "generator": plan.generator,
        "config": to_dict(cfg),
        "versions": package_versions(),
        "git_commit": _git_commit(),
        # Everything below differs between two runs of the same config (see `comparable`).
        "run": {"run_id": run_id, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "wall_seconds": round(wall_seconds, 3), "stages": {"total": len(stages), **counts}},
    }


VOLATILE_METHOD_KEYS = ("stage_seconds", "seconds")


def comparable(summary: dict) -> dict:
    """`summary` without what legitimately differs between reruns: timings, run id, date,
    paths of the run (out, cache)."""
    import copy

    s = copy.deepcopy(summary)
    s.pop("run", None)
    for m in s.get("methods", {}).values():
        for k in VOLATILE_METHOD_KEYS:
            m.pop(k, None)
    for k in ("out", "cache_dir", "quiet", "no_cache", "cpu_threads"):
        s.get("config", {}).pop(k, None)

    def strip(x: Any) -> Any:  # timing fields inside stage results (`seconds`, `sft_seconds`, ...)
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if not (k == "seconds" or k.endswith("_seconds"))}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(s)
