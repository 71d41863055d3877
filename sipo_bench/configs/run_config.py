"""A run's config: :class:`RunConfig` (every field a YAML key, CLI flags override it), loading it
from YAML, and which of its fields decide the results (:func:`run_identity`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..contract.interfaces import DecodingConfig
from ..errors import UsageError
from ..scoring import extra_scorers
from .schema import build, check, field, to_dict
from .variants import check_compare_to, parse_label


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
    budget: dict = field({}, help="One training budget for every method: {epochs, max_pairs, eval_every, load_best} "
                                  "set on every method config that has them (the DPO endpoints, DPO-LW, MODPO, SIPO's "
                                  "re-alignment validation); a method that cannot meet a field is a usage error "
                                  "(sipo_bench.contract.budget).")
    seeds: list = field([0], help="Seeds; everything seed-dependent is repeated per seed.")
    weights: Any = field(4, help="Simplex partitions (int, das-dennis) or an explicit list of weight vectors.")
    decoding: DecodingConfig = field(DecodingConfig(), help="Evaluation decoding settings.")
    generator: str | None = field(None, help="Generation backend; default: the task's.")
    max_test_prompts: int | None = field(None, help="Evaluate on at most this many test prompts.")
    eval_split: Literal["test", "val"] = field(
        "test", help="Prompts every point (and the base policy's reference point) is evaluated on: test, the reported "
                     "numbers; val, the distinct prompts of the validation pairs, for choosing settings (`tune`) "
                     "without looking at test.")
    ref_point: list[float] | None = field(None, help="Override the hypervolume reference point (objective units).")
    extra_scorers: list[extra_scorers.ExtraScorerConfig] = field(
        [], help="More scorers on every evaluated point: [{name, options, objectives}]; their objectives are "
                 "reported beside the task's, the weights, front and HV stay over the task's objectives.")
    tune: dict = field({}, help="Tuning: {method: {field: [values]}}; each method runs as one variant per combination "
                                "(the same number for every method named), evaluated on `eval_split: val`; the "
                                "summary's `tuning` names each method's best trial by validation HV "
                                "(sipo_bench.configs.tuning).")
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
                                            "deterministic algorithms) set before torch loads, at a cost in speed; part "
                                            "of every stage's cache key. Same bits under other kernel choices on one "
                                            "machine; not across CPU vendors (measured, docs/reproducibility.md).")

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
        from ..contract.budget import check_budget

        check_budget(self.budget)
        from .tuning import check_tune

        check_tune(self.tune, self.eval_split)
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
