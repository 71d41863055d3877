"""A run: its config, the stage graph it plans, executing it, and `summary.json`.

Planning is cheap and pure: every method's `fit` returns a policy family whose `PolicySpec`s
refer to stages; the runner adds one `generate` and one `score` stage per (method, w, seed),
plus the base policy's own evaluation (the default hypervolume reference point). The executor
runs the deduplicated graph; the summary is computed from the stages' results only.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import platform
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .. import __version__, provenance
from ..execution import compute
from ..scoring import extra_scorers, stats
from ..configs.schema import ConfigError, build, check, field, to_dict
from ..errors import UsageError
from ..contract.interfaces import DecodingConfig, FitContext, PolicySpec, Task
from ..execution.runtime import Runtime
from ..execution.stages import Cache, Stage, StageLog, default_cache_dir, walk
from .taskstages import plan_task_stages
from ..configs.variants import check_compare_to, compare_pairs, parse_label
from ..contract.weights import fmt, simplex_grid, validate_weights
from ..reporting.summary_schema import SCHEMA_VERSION
from ..scoring.indicators import method_indicators

DEFAULT_TASK = "synthetic-hh"
#: seeds go to numpy / torch / `random`, whose seeds are 32-bit
MAX_SEED = 2**31 - 1
#: RunConfig fields that say how or where a run executes, not what it computes: a rerun that
#: changes only these resumes into the same OUT (and `comparable` ignores them)
HOW_NOT_WHAT = ("out", "cache_dir", "quiet", "no_cache", "cpu_threads", "overwrite", "executor", "executor_options", "jobs",
                "plugins_dir", "samples_per_point", "tracking")


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
    ref_point: list[float] | None = field(None, help="Override the hypervolume reference point (objective units).")
    extra_scorers: list[extra_scorers.ExtraScorerConfig] = field(
        [], help="More scorers on every evaluated point: [{name, options, objectives}]; their objectives are "
                 "reported beside the task's, the weights, front and HV stay over the task's objectives.")
    executor: str = field("local", help="Executor plugin name.")
    executor_options: dict = field({}, help="Options passed to the executor.")
    out: str | None = field(None, help="Output directory (default results/<task>-<timestamp>).")
    cache_dir: str | None = field(None, help="Stage cache (default $SIPO_BENCH_CACHE or ~/.cache/sipo-bench).")
    no_cache: bool = field(False, help="Recompute every stage of this run (a concurrent run reading the old copies is not disturbed).")
    overwrite: bool = field(False, help="Replace the results in `out` when they belong to a run of another config.")
    plugins_dir: str | None = field(None, help="Directory of extra plugin *.py files.")
    quiet: bool = field(False, help="Plain log lines instead of progress bars.")
    compare_to: Any = field(None, help="Paired comparisons: a baseline label or a list of them (every other method "
                                       "vs each), or a mapping {method: baseline or [baselines]}.")
    sweep: dict = field({}, help="Sweep: {option path: [values]}, e.g. {task_options.conflict_fraction: [0.0, 0.6]}; "
                                 "one run per combination, shared stages run once (sipo_bench.configs.sweep).")
    eval_noise_replicates: int = field(500, help="Prompt-bootstrap replicates of HV's evaluation-noise SE per method "
                                                 "and seed; 0 = do not measure.")
    cpu_threads: int | None = field(1, help="torch intra-op threads per stage (1 is fastest for tiny models on a small shared CPU); null = torch's default.")
    jobs: int | None = field(None, help="Stages run side by side in this many worker processes (local executor); "
                                        "null = the cores available to this process divided by cpu_threads; "
                                        "1 = one after another in this process.")
    samples_per_point: int = field(4, help="Sample responses kept per evaluated point (the first seed's first test "
                                           "prompts, with their scores) in OUT/samples.json and index.html; 0 = none.")
    tracking: str = field("none", help="Experiment tracker the run's curves and HV go to: tensorboard, wandb, mlflow "
                                      "or none (docs/reporting.md).")
    device: Literal["auto", "cpu", "cuda"] = field("auto", help="Where models run: cuda (one GPU stage per visible "
                                                                "GPU), cpu, or auto = cuda when a GPU is visible.")
    deterministic: bool = field(False, help="Pinned kernels (baseline x86-64 ATen and MKL code paths, one thread, "
                                            "deterministic algorithms) set before torch loads: bit-identical results "
                                            "on any x86-64 CPU, at a cost in speed; part of every stage's cache key "
                                            "(docs/reproducibility.md).")

    def __post_init__(self) -> None:
        check(len(self.methods) > 0, "methods", "at least one method name", self.methods)
        for i, m in enumerate(self.methods):
            check(isinstance(m, str) and bool(m), f"methods[{i}]", "a method name", m)
            parse_label(m, f"methods[{i}]")
        check_compare_to(self.compare_to)
        from ..configs.sweep import check_sweep

        check_sweep(self.sweep)
        check(isinstance(self.eval_noise_replicates, int) and (self.eval_noise_replicates == 0 or self.eval_noise_replicates >= 2),
              "eval_noise_replicates", "0 or an integer >= 2", self.eval_noise_replicates)
        check(isinstance(self.samples_per_point, int) and not isinstance(self.samples_per_point, bool)
              and self.samples_per_point >= 0, "samples_per_point", "an integer >= 0", self.samples_per_point)
        from ..reporting.tracking import check_tracking

        check_tracking(self.tracking)
        check(len(self.seeds) > 0, "seeds", "at least one integer seed", self.seeds)
        for i, s in enumerate(self.seeds):
            check(isinstance(s, int) and not isinstance(s, bool), f"seeds[{i}]", "an integer", s)
            check(0 <= s <= MAX_SEED, f"seeds[{i}]", f"an integer in [0, {MAX_SEED}]", s)
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
        if self.jobs is not None:
            check(self.jobs >= 1, "jobs", "an integer >= 1 or null", self.jobs)
        check(isinstance(self.deterministic, bool), "deterministic", "true or false", self.deterministic)
        if self.deterministic:
            check(self.cpu_threads == 1, "cpu_threads", "1 in deterministic mode (one thread fixes the order of "
                                                        "every reduction)", self.cpu_threads)
            check(self.executor == "local", "executor", "local in deterministic mode (it starts the stage processes, "
                                                        "so it can pin their kernels before torch loads)", self.executor)

    def effective_jobs(self) -> int:
        """`jobs`, or by default the cores this process may use divided by `cpu_threads`."""
        if self.jobs is not None:
            return self.jobs
        return default_jobs(self.cpu_threads)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_jobs(cpu_threads: int | None) -> int:
    """Cores available (CPU affinity) // threads per stage, at least 1; 1 with torch's default
    thread count (`cpu_threads: null` already uses every core per stage)."""
    if cpu_threads is None:
        return 1
    return max(1, available_cores() // cpu_threads)


def load_yaml(path: str | Path) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"`--config`: expected a YAML file, got {str(p)!r} (not found)")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"`--config`: expected a UTF-8 text file, got {str(p)!r} (byte {e.start}: "
                         f"{e.object[e.start:e.start + 1]!r} is not UTF-8)") from None
    except OSError as e:
        raise UsageError(f"`--config`: expected a readable file, got {str(p)!r} ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UsageError(f"`--config`: {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:  # an empty file (or only comments): every default
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"`--config`: expected a mapping at the top of {p}, got {type(data).__name__} {data!r:.60}")
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
    extra: list[Stage] = dataclasses.field(default_factory=list)  # extra-score stages, one per extra scorer
    generator: str = ""  # the backend that generates this point


@dataclass
class MethodPlan:
    name: str
    config: dict
    points: list[EvalPoint]
    extra: dict[int, dict[str, Stage]]  # seed -> stages whose results go to the summary
    error: str | None = None
    traceback: str | None = None  # of a failure while planning, for OUT/logs/failures/
    trained_on: str | None = None  # Method.trained_on(task)
    variant: str | None = None  # Method.variant()
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
    device: str = "cpu"  # the resolved device ("cpu" or "cuda")
    extra_scorers: list[extra_scorers.ExtraScorer] = dataclasses.field(default_factory=list)
    compare: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (method, baseline) pairs

    def stages(self) -> list[Stage]:
        """Every stage in a topological order that runs what generation needs (training) first,
        then the generate stages one backend after another, then the scoring: an exclusive
        backend (a vLLM engine) starts once for all its points instead of once per point."""
        roots: list[Stage] = list(self.data.values()) + list(self.base.values())
        points = [*self.reference.values(), *(p for m in self.methods.values() for p in m.points)]
        roots += [d for p in points for d in p.generate.inputs.values()]
        for m in self.methods.values():
            for ex in m.extra.values():
                roots += list(ex.values())
        roots += [p.generate for p in sorted(points, key=lambda p: p.generator)]
        roots += [s for p in points for s in (p.score, *p.extra)]
        for m in self.methods.values():
            roots += list(m.noise.values())
        return walk(roots)


def resolve_methods(cfg: RunConfig, runtime: Runtime, task: Task) -> tuple[list[str], dict[str, str]]:
    """(method labels to run, {method name: error} of those whose plugin code cannot be imported).

    'all' expands to every compatible registered method; a variant `name@...` needs a
    registered `name`. A method that cannot be imported is reported failed with its import
    error while the others run; an unknown name, or a method named explicitly that cannot run
    on the task, is a usage error."""
    from ..errors import PluginError

    reg = runtime.registries.methods
    broken: dict[str, str] = {}

    def load(n: str) -> Any:
        try:
            return reg.get(n)
        except PluginError as e:
            if n not in reg:
                raise
            broken[n] = f"cannot load the method: {e}"
            return None

    labels: list[str] = []
    for label in cfg.methods:
        if label == "all":
            names = [n for n in reg.names() if (cls := load(n)) is None or _compatible(cls, task)]
            if not [n for n in names if n not in broken]:
                raise UsageError(f"`methods`: no registered method runs on task {task.name!r}")
            labels += names
            continue
        name = parse_label(label)[0]
        cls = load(name)  # unknown -> "Did you mean"
        if cls is not None and cls.needs_model and not task.model_based:
            raise UsageError(f"`methods`: method {name!r} cannot run on task {task.name!r}: the task has no language "
                             f"model and {cls.__name__}.needs_model is True (the default); set needs_model = False on "
                             f"{cls.__name__} if it needs no language model")
        labels.append(label)
    return list(dict.fromkeys(labels)), broken


def _compatible(cls: Any, task: Task) -> bool:
    """For `methods: [all]`: the method's own task list, else model-based vs model-free. A
    method named explicitly may run on a task outside its list (a variant of that task)."""
    if cls.tasks is not None:
        return task.name in cls.tasks
    return task.model_based or not cls.needs_model


def method_config(cls: Any, task: Task, overrides: dict, name: str, where: str | None = None) -> Any:
    """Method `name`'s config: the task's defaults for it, then `overrides`; errors name `where`
    (default `method_options.<name>`)."""
    merged = {**task.method_defaults(name), **overrides}
    return build(cls.config_class, merged, where or f"method_options.{name}")


class FamilyPlanner:
    """`(method name, seed) -> PolicyFamily`, each planned once per run (behind
    `FitContext.method`): the method is built with the run's config for it and fitted with a
    context made by `make_ctx(name, seed)`. A method that needs itself is an error naming the
    cycle; a failed fit is not memoised (the next caller sees the same error)."""

    def __init__(self, make_ctx: Any, runtime: Runtime, config_of: Any):
        self.make_ctx, self.runtime, self.config_of = make_ctx, runtime, config_of
        self.families: dict[tuple[str, int], Any] = {}
        self.methods: dict[str, Any] = {}
        self.active: list[str] = []

    def method(self, name: str) -> Any:
        """The run's instance of method `name` (made once, with the run's config for it; a
        variant label `name@field=value` gets that variant's config)."""
        if name not in self.methods:
            self.methods[name] = self.runtime.registries.methods.get(parse_label(name)[0])(self.config_of(name))
        return self.methods[name]

    def __call__(self, name: str, seed: int) -> Any:
        if (name, seed) in self.families:
            return self.families[(name, seed)]
        if name in self.active:
            chain = " -> ".join([*self.active[self.active.index(name):], name])
            raise RuntimeError(f"methods need each other's families in a cycle: {chain}")
        method = self.method(name)
        self.active.append(name)
        try:
            family = method.fit(self.make_ctx(name, seed))
        finally:
            self.active.pop()
        self.families[(name, seed)] = family
        return family


def plan_run(cfg: RunConfig, runtime: Runtime) -> Plan:
    """Validate every name and option and build the stage graph (nothing runs). Every stage of
    a deterministic run is keyed under that mode (`sipo_bench.determinism.key_mode`)."""
    from ..determinism import key_mode

    with key_mode(cfg.deterministic):
        return _plan_run(cfg, runtime)


def _plan_run(cfg: RunConfig, runtime: Runtime) -> Plan:
    from ..execution.device import resolve, stage_resources

    device = runtime.device = resolve(cfg.device)  # methods may read it while planning
    task = runtime.task(cfg.task, cfg.task_options)
    objectives = task.objectives()
    k = len(objectives)
    grid = simplex_grid(k, cfg.weights) if isinstance(cfg.weights, int) else validate_weights(cfg.weights, k)
    if cfg.ref_point is not None and len(cfg.ref_point) != k:
        raise ConfigError(f"`ref_point`: expected {k} values (one per objective), got {cfg.ref_point!r}")
    generator = cfg.generator or task.default_generator
    generator_cls = runtime.registries.generators.get(generator)
    executor_options(cfg, runtime)
    scorer_classes = [runtime.registries.scorers.get(name) for name, options in task.scorers()]
    extras = extra_scorers.resolve(cfg.extra_scorers, runtime, task)

    def resources(gpu: bool):
        return stage_resources(device, cfg.cpu_threads, gpu=gpu)
    names, broken = resolve_methods(cfg, runtime, task)
    for extra in cfg.method_options:  # options may configure methods used by others (dpo)
        if extra not in runtime.registries.methods:
            from ..errors import did_you_mean

            raise ConfigError(f"`method_options.{extra}`: " + did_you_mean("method", extra, runtime.registries.methods.names()))
    configs: dict[str, Any] = {}

    def config_of(name: str) -> Any:
        if name not in configs:
            configs[name] = method_config(runtime.registries.methods.get(name), task, cfg.method_options.get(name, {}), name)
        return configs[name]

    from ..errors import PluginError

    for extra in cfg.method_options:  # options of a method only others use (dpo) are checked now, not when used
        if extra not in broken:
            try:
                config_of(extra)
            except PluginError:
                pass  # cannot import it: reported if a method needs it

    variants: dict[str, Any] = {}  # variant label -> its config

    def config_for(label: str) -> Any:
        """The config of a method name (the run's) or of a variant `name@field=value` (the
        run's config for `name` with the variant's overrides)."""
        name, overrides = parse_label(label)
        if not overrides:
            return config_of(name)
        if label not in variants:
            where = f"methods[{cfg.methods.index(label)}]" if label in cfg.methods else f"method {label!r}"
            config_of(name)  # method_options errors first, named `method_options.<name>`
            variants[label] = method_config(runtime.registries.methods.get(name), task,
                                            {**cfg.method_options.get(name, {}), **overrides}, name, where)
        return variants[label]

    for label in names:
        if parse_label(label)[0] not in broken:
            config_for(label)
    compare = compare_pairs(cfg.compare_to, names)

    families = FamilyPlanner(lambda label, seed: FitContext(
        task=task, seed=seed, data=plan.data[seed], base=plan.base[seed], weights=list(grid), runtime=runtime,
        method_name=label, method_configs=config_of, method_families=families,
        resources=resources(bool(runtime.registries.methods.get(parse_label(label)[0]).needs_model))),
        runtime, config_for)

    decoding = to_dict(cfg.decoding)
    plan = Plan(cfg, task, grid, generator, {}, {}, {}, {}, device=device, extra_scorers=extras, compare=compare)
    spec_generator = _generator_chooser(runtime, generator, task.default_generator)
    gen_res = {name: resources(bool(getattr(runtime.registries.generators.get(name), "uses_accelerator", True)))
               for name in {generator, task.default_generator}}
    score_res = resources(any(getattr(c, "uses_accelerator", False) for c in scorer_classes))
    extra_res = {e.name: resources(bool(getattr(runtime.registries.scorers.get(e.name), "uses_accelerator", False)))
                 for e in extras}

    def eval_point(label: str, spec: PolicySpec, w, seed: int) -> EvalPoint:
        spec = spec.normalized()
        tag = f"{label},w={fmt(w)},seed={seed}" if w is not None else f"{label},seed={seed}"
        backend = spec_generator(spec, label)
        # 0.1 names of the stage functions: part of the keys (sipo_bench.compat)
        gen = Stage(f"generate[{tag}]", "sipo_bench.evaluation:generate_stage",
                    {**task.stage_config("generate"), "policy": spec.to_config(), "decoding": decoding,
                     "generator": backend, "seed": seed, "max_test_prompts": cfg.max_test_prompts},
                    {**spec.stages(), "data": plan.data[seed]}, resources=gen_res[backend],
                    tags={"method": label, "seed": seed, "spec_lora_rank": planned_lora_rank(spec)})
        score = Stage(f"score[{tag}]", "sipo_bench.evaluation:score_stage",
                      {**task.stage_config("score"), "scorers": [list(s) for s in task.scorers()]},
                      {"generations": gen}, resources=score_res, tags={"method": label, "seed": seed}, version="2")
        tags = {"method": label, "seed": seed}
        extra = [extra_scorers.plan_stage(e, gen, tag, tags, extra_res[e.name]) for e in extras]
        return EvalPoint(label, tuple(w) if w is not None else None, seed, gen, score, extra=extra, generator=backend)

    for seed in cfg.seeds:
        plan.data[seed], plan.base[seed] = plan_task_stages(task, seed, resources(task.uses_accelerator("data")),
                                                            resources(task.uses_accelerator("base")))
        plan.reference[seed] = eval_point("base", PolicySpec(plan.base[seed]), None, seed)

    for label in names:
        name = parse_label(label)[0]
        if name in broken:
            plan.methods[label] = MethodPlan(label, {}, [], {}, error=broken[name].splitlines()[0], traceback=broken[name])
            runtime.log(f"method {label} failed: {plan.methods[label].error}")
            continue
        mp = MethodPlan(label, to_dict(config_for(label)), [], {})
        plan.methods[label] = mp
        try:
            method = families.method(label)
            mp.trained_on, mp.variant = method.trained_on(task), method.variant()
            for seed in cfg.seeds:
                family = families(label, seed)
                mp.extra[seed] = dict(family.extra_stages())
                for w in grid:
                    spec = family.policy(w)
                    if spec is not None:
                        mp.points.append(eval_point(label, spec, w, seed))
            if not mp.points:
                raise RuntimeError(f"method {label!r} gave no policy for any weight of the grid")
            if cfg.eval_noise_replicates:
                from ..scoring.evaluation import noise_stage

                fixed_ref = cfg.ref_point if cfg.ref_point is not None else task.reference_point()
                for seed in cfg.seeds:
                    pts = [p.score for p in mp.points if p.seed == seed]
                    if pts:
                        mp.noise[seed] = noise_stage(label, seed, pts, plan.reference[seed].score, fixed_ref, task,
                                                     cfg.eval_noise_replicates, resources(False))
        except UsageError:
            raise
        except Exception as e:  # a broken method must not stop the others
            from ..execution.stages import format_exception

            mp.error = f"planning failed: {type(e).__name__}: {e}".splitlines()[0]
            mp.traceback = format_exception(e)
            mp.points, mp.extra, mp.noise = [], {}, {}
            runtime.log(f"method {label} failed while planning: {type(e).__name__}: {e}".splitlines()[0])
    _add_generator_hints([*plan.reference.values(), *(p for m in plan.methods.values() for p in m.points)])
    return plan


def executor_options(cfg: RunConfig, runtime: Runtime) -> Any:
    """The executor's options, validated against the config dataclass it declares."""
    cls = runtime.registries.executors.get(cfg.executor)
    return build(cls.config_class, cfg.executor_options, "executor_options")


def _generator_chooser(runtime: Runtime, generator: str, fallback: str):
    """spec -> the backend that evaluates it: the run's generator when it realises the spec's
    `combine` (`Generator.combines`), else the task's default generator (e.g. MOD fusion on
    transformers when the run's generator is vllm); a usage error when neither can."""
    def serves(name: str, combine: str) -> bool:
        combines = getattr(runtime.registries.generators.get(name), "combines", None)
        return combines is None or combine in combines

    def choose(spec: PolicySpec, label: str) -> str:
        if serves(generator, spec.combine):
            return generator
        if fallback != generator and serves(fallback, spec.combine):
            return fallback
        raise ConfigError(f"`generator`: expected a backend that serves combine={spec.combine!r} (method {label}), "
                          f"got {generator!r} (and the task's default {fallback!r} does not either)")

    return choose


def planned_lora_rank(spec: PolicySpec) -> int | None:
    """The LoRA rank a single-model backend needs for `spec`: 0 for the base model, the adapter's
    rank for one adapter at weight 1, else the sum of the ranks (a soup served as one merged
    LoRA, A = cat(w_i A_i)). Adapter stages declare their rank in `tags["lora_rank"]`; None when
    one does not (or for a fusion spec, which is not one model)."""
    adapters = [a for a, w in spec.adapters if float(w) != 0.0]
    if spec.combine != "soup":
        return None
    ranks = [a.tags.get("lora_rank") if isinstance(a, Stage) else None for a in adapters]
    if any(r is None for r in ranks):
        return None
    if len(spec.adapters) == 1 and float(spec.adapters[0][1]) == 1.0:
        return int(ranks[0])
    return int(sum(ranks))


def _add_generator_hints(points: list[EvalPoint]) -> None:
    """Tell every generate stage what its backend will serve in the whole run (tags, not the key:
    `Generator.reserve`): the largest LoRA rank of that backend's points, None if any is unknown."""
    by_backend: dict[str, list[int | None]] = {}
    for p in points:
        by_backend.setdefault(p.generator, []).append(p.generate.tags.get("spec_lora_rank"))
    for p in points:
        ranks = by_backend[p.generator]
        hint = None if any(r is None for r in ranks) else max(ranks, default=0)
        p.generate.tags = {**p.generate.tags, "generator_hints": {"max_lora_rank": hint}}


# --- Running --------------------------------------------------------------------------------


def default_out(task: str) -> Path:
    return Path("results") / f"{task}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def check_out_dir(out: Path) -> None:
    """Fail early (usage error) if OUT cannot be written; creates nothing."""
    from ..reporting.outdir import ResultsDir

    ResultsDir(out).check_writable()


def run_identity(cfg: RunConfig | dict) -> dict:
    """The part of a run config that decides its results (everything but :data:`HOW_NOT_WHAT`)."""
    d = to_dict(cfg) if not isinstance(cfg, dict) else dict(cfg)
    return {k: v for k, v in d.items() if k not in HOW_NOT_WHAT}


def same_results_config(a: dict, b: dict) -> bool:
    """Whether two run configs (as stored in OUT) compute the same thing; a field one of them
    lacks (written by another sipo-bench version) counts as its default."""
    defaults = to_dict(RunConfig())
    a, b = run_identity(a), run_identity(b)
    return all(a.get(k, defaults.get(k)) == b.get(k, defaults.get(k)) for k in set(a) | set(b))


def execute(cfg: RunConfig, runtime: Runtime | None = None) -> tuple[dict, Path]:
    """Plan, run and summarise. Returns (summary, out dir).

    Bad input raises `UsageError` before anything is created (OUT, cache dirs); stage
    failures are recorded in the summary instead; a report that cannot be written raises
    `ReportWriteError` with the previous report left intact. A config with a `sweep` plans
    every sweep point, runs the union of their stages once and returns the sweep index
    (`sipo_bench.configs.sweep`). A deterministic run executes in the pinned environment
    (`sipo_bench.determinism`): in this process if torch has not loaded here yet, else every
    stage in a fresh worker process."""
    if not cfg.deterministic:
        return _execute(cfg, runtime)
    from .. import determinism

    with determinism.pinned():
        return _execute(cfg, runtime)


def _execute(cfg: RunConfig, runtime: Runtime | None = None) -> tuple[dict, Path]:
    from ..configs import sweep as sweeps
    from ..reporting.outdir import ResultsDir

    t0 = time.time()
    runtime = runtime or Runtime(plugins_dir=cfg.plugins_dir, quiet=cfg.quiet)
    points = sweeps.plan_sweep(cfg, runtime, plan_run)  # [] without a sweep
    plans = [p.plan for p in points] or [plan_run(cfg, runtime)]
    plan = plans[0]
    out = Path(cfg.out) if cfg.out else default_out(cfg.task)
    results = ResultsDir(out)
    results.check_writable()
    owner = results.owner()
    same_owner = owner is None or same_results_config(owner, to_dict(cfg))
    if not same_owner and not cfg.overwrite:
        raise UsageError(f"`--out`: expected a new directory or the results of this same config, got {str(out)!r} "
                         f"(it holds the results of a run with another config); pass --overwrite to replace them, "
                         f"or choose another --out")
    cache = Cache(cfg.cache_dir or default_cache_dir(), recompute=cfg.no_cache,
                  warn=lambda m: runtime.log(f"[yellow]warning: {m}[/yellow]" if not runtime.quiet else f"warning: {m}"))
    from ..execution.fsio import probe_writable

    why = probe_writable(cache.root)
    if why:
        raise UsageError(f"`--cache-dir`: expected a writable directory, got {str(cache.root)!r} ({why})")
    stages = walk([s for p in plans for s in p.stages()])
    executor = runtime.registries.executors.get(cfg.executor)(**cfg.executor_options)

    # --- from here on, things are created ---
    run_id = uuid.uuid4().hex[:12]
    try:
        cache.clean_tmp()
        cache.record_run(run_id, out, [s.key for s in stages])
    except OSError as e:
        raise UsageError(f"`--cache-dir`: expected a writable directory, got {str(cache.root)!r} ({e.strerror})") from None
    log = StageLog(results.start(run_id, to_dict(cfg), same_owner=same_owner), run_id)
    jobs = cfg.effective_jobs()
    runtime.device, runtime.jobs, runtime.cpu_threads = plan.device, jobs, cfg.cpu_threads
    from .. import determinism

    # a deterministic run whose kernels this process can no longer pin runs its stages in workers
    runtime.fresh_processes = cfg.deterministic and determinism.needs_fresh_processes()
    in_process = cfg.executor == "local" and jobs == 1 and not runtime.fresh_processes
    from ..execution.device import using

    with cache.in_use():
        try:
            if cfg.deterministic and in_process and any(not cache.is_done(s) for s in stages):
                determinism.apply_in_process()
            if cfg.cpu_threads is not None and in_process and any(not cache.is_done(s) for s in stages):
                _set_cpu_threads(cfg.cpu_threads)
            runtime.log(f"run {run_id}: task {plan.task.name}, {len(plan.methods)} method(s), {len(cfg.seeds)} seed(s), "
                        f"{len(plan.grid)} weights{f', {len(plans)} sweep points' if points else ''}, {len(stages)} stages (cache {cache.root}; device {plan.device}"
                        + (f", {jobs} jobs)" if cfg.executor == "local" else ")"))
            with using(plan.device), runtime.live():
                with runtime.progress(len(stages), "stages") as overall:
                    outcomes = executor.run(stages, runtime, cache, log, overall)
            runtime.close()
        finally:
            cache.end_run(run_id)
    failures = {f"{s.key}.txt": f"{s.name}\n\n{o.traceback}" for s in stages
                if (o := outcomes.get(s.key)) is not None and o.status == "failed"}
    if points:
        return sweeps.write_sweep(cfg, points, outcomes, cache, out, failures, run_id=run_id, t0=t0), out
    failures.update(plan_failures(plan))
    summary = summarize(plan, outcomes, cache, wall_seconds=time.time() - t0, run_id=run_id)
    from ..reporting.outdir import write_report

    files = run_files(plan, outcomes, cache, summary)
    write_report(out, summary, failures, files)
    from ..reporting.tracking import track_run

    track_run(cfg.tracking, summary, files, out, log=runtime.log)
    return summary, out


def run_files(plan: Plan, outcomes: dict, cache: Cache, summary: dict) -> dict[str, bytes]:
    """The run's files beside the report: `curves/<key>.json` of every training stage in
    `summary["training"]` (copies of the cached stages' curves) and `samples.json`."""
    from ..reporting import samples
    from ..reporting.curves import CURVES

    files: dict[str, bytes] = {}
    for key, st in ((summary.get("training") or {}).get("stages") or {}).items():
        p = cache.path(key) / CURVES
        if p.is_file():
            files[st["file"]] = p.read_bytes()
    content = samples.collect(plan, outcomes, cache, plan.config.samples_per_point)
    if content is not None:
        files[samples.SAMPLES] = samples.encode(content)
        summary["samples"] = {"file": samples.SAMPLES, "per_point": content["per_point"], "seed": content["seed"]}
    return files


def plan_failures(plan: Plan) -> dict[str, str]:
    """`logs/failures/` files of a plan's methods that failed while planning."""
    return {f"plan-{n}.txt": f"planning {n}\n\n{m.traceback}" for n, m in plan.methods.items() if m.traceback}


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


def _provenance(plan: Plan) -> dict:
    """Where the stages ran: this process's, or, for a deterministic run whose stages ran in
    fresh processes (torch loaded here with other kernels), a fresh process's view."""
    from .. import determinism

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
        source = "base policy mean test scores (per seed, cached stage)"
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
