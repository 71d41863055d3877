"""Planning a run: the stage graph of a :class:`~sipo_bench.configs.run_config.RunConfig`.

Planning is cheap and pure: every method's `fit` returns a policy family whose `PolicySpec`s
refer to stages; the planner adds one `generate` and one `score` stage per (method, w, seed),
plus the base policy's own evaluation (the default hypervolume reference point). Running the
plan is :mod:`sipo_bench.planning.run`; its summary, :mod:`sipo_bench.reporting.summary`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


from ..scoring import extra_scorers
from ..configs.schema import ConfigError, build, to_dict
from ..errors import UsageError
from ..contract.interfaces import FitContext, PolicySpec, Task
from ..configs.run_config import RunConfig
from ..configs.sweep import SweepPoint, expand
from ..execution.runtime import Runtime
from ..execution.stages import Stage, walk
from .taskstages import plan_task_stages
from ..configs.variants import compare_pairs, parse_label
from ..contract.weights import fmt, simplex_grid, validate_weights


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


def method_config(cls: Any, task: Task, overrides: dict, name: str, where: str | None = None,
                  budget: dict | None = None) -> Any:
    """Method `name`'s config: the task's defaults for it, then the run's `budget` (the fields the
    config has), then `overrides` (which may not contradict the budget); errors name `where`
    (default `method_options.<name>`)."""
    from ..contract.budget import apply_budget

    where = where or f"method_options.{name}"
    merged = {**task.method_defaults(name), **apply_budget(budget or {}, cls.config_class, overrides, where)}
    return build(cls.config_class, merged, where)


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
    a deterministic run is keyed under that mode (`sipo_bench.execution.determinism.key_mode`)."""
    from ..execution.determinism import key_mode

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
    if cfg.tune:
        from ..configs.tuning import expand

        names = expand(names, cfg.tune)
    for extra in cfg.method_options:  # options may configure methods used by others (dpo)
        if extra not in runtime.registries.methods:
            from ..errors import did_you_mean

            raise ConfigError(f"`method_options.{extra}`: " + did_you_mean("method", extra, runtime.registries.methods.names()))
    configs: dict[str, Any] = {}

    def config_of(name: str) -> Any:
        if name not in configs:
            configs[name] = method_config(runtime.registries.methods.get(name), task, cfg.method_options.get(name, {}), name,
                                          budget=cfg.budget)
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
                                            {**cfg.method_options.get(name, {}), **overrides}, name, where, budget=cfg.budget)
        return variants[label]

    from ..contract.budget import check_honoured

    for label in names:
        if parse_label(label)[0] not in broken:
            check_honoured(cfg.budget, label, runtime.registries.methods.get(parse_label(label)[0]))
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
                     "generator": backend, "seed": seed, "max_test_prompts": cfg.max_test_prompts,
                     **({"split": cfg.eval_split} if cfg.eval_split != "test" else {})},  # test keys unchanged
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


def plan_sweep(cfg: RunConfig, runtime: Runtime, plan: Any = None) -> list[SweepPoint]:
    """Expand and plan every sweep point (nothing runs); a bad value is a usage error naming
    the point. Returns [] when `cfg` has no sweep. `plan`: the planner (default :func:`plan_run`)."""
    plan = plan or plan_run
    points = expand(cfg)
    for p in points:
        try:
            p.plan = plan(p.config, runtime)
        except UsageError as e:
            raise type(e)(f"`sweep` point {p.label}: {e}") from None
    return points


def __getattr__(name: str):  # names that moved to other modules in 0.2 (sipo_bench.compat.MOVED_NAMES)
    from sipo_bench import compat

    return compat.moved_attr(__name__, name)
