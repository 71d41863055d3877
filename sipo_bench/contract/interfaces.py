"""The small interfaces every plugin implements.

- :class:`Objective`: a named quality with a direction.
- :class:`Task`: data + objectives + scorers + base-model recipe, built as stages.
- :class:`Scorer`: batched (prompt, response) -> one score per covered objective.
- :class:`Method`: a config dataclass plus `fit`, which *plans* stages and returns a
  :class:`PolicyFamily`; nothing heavy happens in `fit` itself.
- :class:`PolicyFamily`: `policy(w)` -> :class:`PolicySpec` for any simplex point `w`.
- :class:`Generator`: realises a `PolicySpec` and generates or scores log-probs in batches.
- :class:`Executor`: runs a graph of stages.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from ..configs.schema import ConfigError, field

if TYPE_CHECKING:
    from ..execution.stages import Stage


# --- Objectives -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """A named, scored quality. Scores of a lower-is-better objective are never sign-flipped
    silently: `higher_is_better=False` travels with every number to the indicator boundary."""

    name: str
    higher_is_better: bool = True
    description: str = ""


# --- Configs --------------------------------------------------------------------------------


@dataclass
class MethodConfig:
    """Base of method configs. Subclasses add fields made with `sipo_bench.configs.schema.field`."""


@dataclass
class TaskConfig:
    """Base of task configs."""

    max_examples: int | None = field(None, help="Cap on training pairs (smoke runs); None = all.", stages=("data",))


# --- Tasks ----------------------------------------------------------------------------------


@dataclass
class TaskData:
    """Where a task's data stage wrote its files (all JSONL, readable by `datasets`).

    - `train.jsonl` / `val.jsonl`: one pair per row:
      `{"prompt": str, "responses": [str, str], "labels": {objective: 0 | 1 | null}}`;
      `labels[o]` is the index of the response objective `o` prefers (null: tie/unlabelled).
    - `test.jsonl`: `{"prompt": str}` rows of held-out prompts.
    - `meta.json`: anything else (rates, counts) that should reach `summary.json`.
    Prompts are stored raw; `Task.format_prompt` applies the template.
    """

    dir: Path

    @property
    def train(self) -> Path:
        return self.dir / "train.jsonl"

    @property
    def val(self) -> Path:
        return self.dir / "val.jsonl"

    @property
    def test(self) -> Path:
        return self.dir / "test.jsonl"


class Task(abc.ABC):
    """A preference dataset, its objectives and scorers, and the base policy's recipe.

    A task is built in two cached stages: `build_data` (pairs and test prompts) and
    `build_base` (the SFT model: trained here, or a pointer to a hub id / local path).
    """

    name: ClassVar[str]
    config_class: ClassVar[type[TaskConfig]] = TaskConfig
    description: ClassVar[str] = ""
    #: generation backend used unless the run config names another
    default_generator: ClassVar[str] = "transformers"
    #: True when the task's scorers are exact oracles of its objectives (synthetic tasks), so
    #: methods may report diagnostics against the truth (e.g. SIPO's filter precision)
    oracle: ClassVar[bool] = False
    #: False for tasks without a language model (the dummy task): model-based methods skip them
    model_based: ClassVar[bool] = True
    #: bump when the task's code changes what its stages produce (data, base model): it is part
    #: of every stage key, so stale cached stages are not reused
    version: ClassVar[str] = "1"
    #: prompt template; `{prompt}` is replaced by the raw prompt
    prompt_template: ClassVar[str] = "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:"
    #: False when `build_base` does not read the data stage (it then gets `data=None` and the
    #: base stage's key does not depend on the data options, e.g. the pair sampling)
    base_reads_data: ClassVar[bool] = True
    #: True when the data and base stages do not depend on the run seed (a task whose data
    #: stage samples from a real model once, e.g. an AI-feedback pool): every seed then shares
    #: the seed-0 data and base stages, and only the methods' own stages vary with the seed
    shares_data_across_seeds: ClassVar[bool] = False
    #: where the base policy's skill at reviewing and rewriting its own answers comes from, for
    #: a self-refining method's "trained on" label (e.g. "the SFT corpus"); None: not stated
    review_skill: ClassVar[str | None] = None

    def __init__(self, config: TaskConfig | None = None):
        self.config = config if config is not None else self.config_class()

    @abc.abstractmethod
    def objectives(self) -> list[Objective]:
        """The objectives, in the order of weight vectors and score vectors."""

    @abc.abstractmethod
    def scorers(self) -> list[tuple[str, dict]]:
        """(scorer name, scorer options) pairs that together cover every objective."""

    @abc.abstractmethod
    def build_data(self, out: Path, seed: int, ctx: Any) -> dict | None:
        """Write `train.jsonl`, `val.jsonl`, `test.jsonl` (see :class:`TaskData`) into `out`."""

    @abc.abstractmethod
    def build_base(self, data: TaskData | None, out: Path, seed: int, ctx: Any) -> dict | None:
        """Make the base (SFT) policy in `out` (`save_pretrained` layout), or write
        `out/pointer.json` = `{"model": hub id or path}` for a model that lives elsewhere.
        `data` is None for a task with `base_reads_data = False`."""

    def format_prompt(self, prompt: str) -> str:
        return self.prompt_template.format(prompt=prompt)

    def stage_config(self, kind: str | None = None) -> dict:
        """What identifies this task in the config (and so the key) of a stage of `kind`
        (`data`, `base`, `generate`, `score`, `method`; None: every option): the task's name,
        version, and the options that kind reads. An option declares the kinds that read it
        with `field(..., stages=(...))`; an option that declares none is in every key."""
        import dataclasses

        from ..configs.schema import to_dict

        options = to_dict(self.config)
        if kind is not None:
            reads = {f.name: f.metadata.get("stages") for f in dataclasses.fields(self.config)}
            options = {k: v for k, v in options.items() if reads.get(k) is None or kind in reads[k]}
        return {"task": self.name, "task_options": options, "task_version": self.version}

    def uses_accelerator(self, kind: str) -> bool:
        """Whether this task's stage of `kind` (`data`, `base`) runs a model (and so asks for
        a GPU on a `cuda` run): by default only the base stage of a model-based task."""
        return self.model_based and kind == "base"

    def method_defaults(self, method: str) -> dict:
        """Per-method config defaults for this task (e.g. a tiny model's learning rates)."""
        return {}

    def reference_point(self) -> list[float] | None:
        """An explicit HV reference point; None = the base policy's mean test scores."""
        return None

    def floor(self) -> list[float] | None:
        """Worst possible score per objective, if bounded (e.g. 0 for oracle scores in [0, 1])."""
        return None

    def review_template(self) -> str:
        """One-shot review prompt with `{prompt}` and `{response}` (used by SIPO)."""
        return ("Review the answer below and say how to improve it on every objective.\n"
                "Question: {prompt}\nAnswer: {response}\nReview:")

    def rewrite_template(self) -> str:
        """Rewrite prompt with `{prompt}`, `{response}`, `{review}` (used by SIPO)."""
        return ("Rewrite the answer following the review.\nQuestion: {prompt}\n"
                "Answer: {response}\nReview: {review}\nRewritten answer:")

    def review_prefix(self) -> str:
        """Forced start of a review: appended to the formatted review prompt, so the model
        continues it, and kept as the review's first words ("" = none)."""
        return ""

    def refine_stop(self) -> str | None:
        """Reviews and rewrites are cut at the first occurrence of this text (e.g. where a
        one-shot prompt's model starts another example); None = not cut."""
        return None

    @property
    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives()]


# --- Scorers --------------------------------------------------------------------------------


class Scorer(abc.ABC):
    """A reward model: batches of (prompt, response) -> one array of scores per objective.

    Made with the options a task (`Task.scorers`) or a run (`extra_scorers`) gives it, as
    keyword arguments. Keep the constructor cheap (load models on the first `score`): the run
    makes one instance per (name, options) while planning, to check the options and ask
    `objectives()` / `directions()`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: True if scoring runs a model (a reward model): score stages then ask for a GPU on a cuda run
    uses_accelerator: ClassVar[bool] = False
    #: the options dataclass, if the scorer declares one (fields with `help`): checked before any
    #: stage runs and listed by `sipo-bench show scorer NAME`
    options_class: ClassVar[type | None] = None

    def __init__(self, **options: Any):
        self.options = options

    @abc.abstractmethod
    def objectives(self) -> list[str]:
        """Names of the objectives this scorer grades."""

    @abc.abstractmethod
    def score(self, prompts: Sequence[str], responses: Sequence[str], progress: Any = None) -> dict[str, list[float]]:
        """Score aligned lists (raw prompts, responses); `progress(n)` may be called per batch."""

    def directions(self) -> dict[str, bool] | None:
        """{objective: higher_is_better} of the scores this scorer returns, if it knows; the
        harness refuses to score a task whose objective declares the other direction."""
        return None

    def close(self) -> None:
        """Free loaded models (called when the run's runtime closes)."""


# --- Policies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicySpec:
    """A serialisable description of one policy: what a generator backend must realise.

    - `base`: the base model's stage (or a hub id / path string).
    - `adapters`: (adapter stage or path, weight) pairs.
    - `combine`: "soup" = one model with the weighted sum of the adapters' weight deltas
      (an empty list is the base model itself); "fusion" = decode from the fused next-token
      scores of the per-adapter models (MOD), with `options["rule"]` and `options["alpha"]`.
    Other values of `combine` are free for third-party backends.
    """

    base: Any
    adapters: tuple[tuple[Any, float], ...] = ()
    combine: str = "soup"
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def normalized(self) -> "PolicySpec":
        """Drop zero-weight adapters; a single unit-weight adapter is a plain model whatever
        the combine rule, so identical policies share one generation stage."""
        adapters = tuple((a, float(w)) for a, w in self.adapters if float(w) != 0.0)
        if self.combine in ("soup", "fusion") and len(adapters) == 1 and adapters[0][1] == 1.0:
            return PolicySpec(self.base, adapters, "soup", {})
        if self.combine == "soup":
            return PolicySpec(self.base, adapters, "soup", {})
        return PolicySpec(self.base, adapters, self.combine, dict(self.options))

    def stages(self) -> dict[str, "Stage"]:
        """The stages this spec refers to, named for use as a stage's inputs."""
        from ..execution.stages import Stage

        out: dict[str, Stage] = {}
        if isinstance(self.base, Stage):
            out["base"] = self.base
        for i, (a, _) in enumerate(self.adapters):
            if isinstance(a, Stage):
                out[f"adapter{i}"] = a
        return out

    def to_config(self) -> dict:
        """JSON for stage configs: stages become `{"__stage__": key}`."""
        from ..execution.stages import Stage

        def ref(x: Any) -> Any:
            return {"__stage__": x.key} if isinstance(x, Stage) else x

        return {"base": ref(self.base), "adapters": [[ref(a), w] for a, w in self.adapters],
                "combine": self.combine, "options": dict(self.options)}


@dataclass(frozen=True)
class ResolvedPolicy:
    """A `PolicySpec` with every stage replaced by its artefact directory (what backends get)."""

    base: Path | str
    adapters: tuple[tuple[Path | str, float], ...]
    combine: str
    options: Mapping[str, Any]

    @staticmethod
    def from_config(cfg: Mapping[str, Any], inputs: Mapping[str, Path]) -> "ResolvedPolicy":
        """Resolve `PolicySpec.to_config()` output given the stage's input dirs."""
        def res(x: Any, name: str) -> Any:
            return inputs[name] if isinstance(x, dict) and "__stage__" in x else x

        return ResolvedPolicy(
            base=res(cfg["base"], "base"),
            adapters=tuple((res(a, f"adapter{i}"), float(w)) for i, (a, w) in enumerate(cfg["adapters"])),
            combine=cfg["combine"], options=dict(cfg.get("options", {})),
        )


class PolicyFamily(abc.ABC):
    """Yields a policy for any point `w` of the simplex (one weight per objective)."""

    @abc.abstractmethod
    def policy(self, w: Sequence[float]) -> PolicySpec | None:
        """The policy for preference weights `w`, or None where this family has none (a
        per-objective DPO family answers only the simplex vertices)."""

    def extra_stages(self) -> dict[str, "Stage"]:
        """Stages whose `result.json` should reach `summary.json` (e.g. SIPO's counts)."""
        return {}


class Method(abc.ABC):
    """An alignment algorithm: a config dataclass and a `fit` that plans stages."""

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    description: ClassVar[str] = ""
    #: task names this method runs on (None: any); `--methods all` picks the compatible ones
    tasks: ClassVar[tuple[str, ...] | None] = None
    #: True (the default) if the method trains or decodes a language model. Such a method runs
    #: only on a task with one (`Task.model_based`): `--methods all` leaves it out on a model-free
    #: task and naming it there is a usage error; on a `cuda` run its stages get a GPU. A method
    #: that only plans stages of its own on any task (like `dummy`) sets it to False.
    needs_model: ClassVar[bool] = True
    #: the fields of a run's `budget` (sipo_bench.contract.budget.BUDGET_FIELDS: epochs,
    #: max_pairs, eval_every, load_best) this method meets, itself or through the models it uses
    #: (MOD: its DPO endpoints'). None (the default): the budget fields its config class has. A
    #: run whose budget names a field one of its methods does not meet is a usage error.
    budget_fields: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, config: MethodConfig | None = None):
        self.config = config if config is not None else self.config_class()

    @abc.abstractmethod
    def fit(self, ctx: "FitContext") -> PolicyFamily:
        """Plan the stages of this method (training etc.) and return its policy family.

        Do no heavy work here: create stages with `ctx.stage(...)` and refer to them in the
        family's `PolicySpec`s; the executor runs them, cached and resumable."""

    def trained_on(self, task: Task) -> str | None:
        """What training signal this method (with its config) sees on `task`, in a few words
        (stored as `trained_on` in the method's entry of summary.json): "pair labels" for
        methods that learn from the task's preference pairs only; say so when a method sees
        anything else (a reward model learned from the pairs, the evaluation judge itself,
        self-generated data); None for a method that trains on nothing."""
        return "pair labels"

    def variant(self) -> str | None:
        """A short text of the options that make this run of the method a variant worth naming
        in a table (e.g. SIPO's decoding, filter, rounds, α and re-alignment budget), stored as
        `variant` in summary.json; None when there is nothing to say."""
        return None


@dataclass
class FitContext:
    """What `Method.fit` may use: the task, seed, and its data and base-model stages."""

    task: Task
    seed: int
    data: "Stage"
    base: "Stage"
    weights: list[tuple[float, ...]]
    runtime: Any
    method_name: str = ""
    #: resolved configs of every method (task defaults + run overrides), also of methods not
    #: requested in this run, so a method can plan another's stages with the same config
    #: (e.g. soups, MOD, MODPO and SIPO reuse the `dpo` stages and share their cache keys)
    method_configs: Any = None
    #: what this method's stages ask of a worker (`Resources`: CPU threads, and a GPU on a
    #: cuda run for a method that `needs_model`), unless a stage passes its own `resources=`
    resources: Any = None
    #: `(name, seed) -> PolicyFamily`: the run's memoised planner behind :meth:`method`
    method_families: Any = None

    @property
    def objectives(self) -> list[Objective]:
        return self.task.objectives()

    def method_config(self, name: str) -> MethodConfig:
        """The config the run uses for method `name` (its defaults if not requested)."""
        return self.method_configs(name)

    def method(self, name: str) -> PolicyFamily:
        """Method `name`'s policy family for this seed, planned with the config the run uses for
        it (:meth:`method_config`), whether or not `name` is itself requested.

        Planned once per (name, seed) in a run: every method asking for `dpo` gets the same
        family, whose stages have the same keys as the `dpo` method's own, so they run once.
        Use it to build on another method's models, e.g. the endpoints
        `ctx.method("dpo").policy(vertex)` (a method asking for itself, directly or through
        others, is an error)."""
        if self.method_families is None:
            raise RuntimeError("FitContext.method: this context was made without the run's planner")
        return self.method_families(name, self.seed)

    def stage(self, name: str, fn: Any, config: Mapping[str, Any], inputs: Mapping[str, "Stage"] | None = None, **kw: Any) -> "Stage":
        """A new stage: `fn(ctx: StageContext)` runs it, given as a module-level function object
        (its import path is derived; functions of `--plugins-dir` files work too) or as the
        string `"package.module:function"`. `config` is hashed into the stage key with `fn` and
        the inputs' keys (put everything that changes the result there); `inputs` maps names to
        the stages whose artefact dirs the function reads. Keywords: `resources`, `version`, `tags`."""
        from ..execution.stages import Stage

        if self.resources is not None:
            kw.setdefault("resources", self.resources)
        return Stage(name=name, fn=fn, config=dict(config), inputs=dict(inputs or {}), **kw)


# --- Backends -------------------------------------------------------------------------------


@dataclass
class DecodingConfig:
    """How responses are generated for evaluation and sampling."""

    greedy: bool = field(True, help="Greedy decoding (the paper's evaluation); else sampling.")
    max_new_tokens: int = field(64, help="Maximum new tokens per response.")
    max_length: int | None = field(None, help="Cap on prompt + response tokens (the prompt counted as the model's tokenizer "
                                              "encodes it, BOS included): a response ends after min(max_new_tokens, "
                                              "max_length - prompt tokens) tokens. None = max_new_tokens only. The released "
                                              "SIPO evaluation uses 512.")
    temperature: float = field(1.0, help="Sampling temperature (ignored when greedy).")
    top_p: float = field(1.0, help="Nucleus sampling mass (ignored when greedy).")
    batch_size: int = field(64, help="Prompts per generation batch.")
    samples_per_prompt: int = field(1, help="Responses sampled per test prompt (sampled decoding only); a point's "
                                            "score is the per-prompt mean over samples, then the mean over prompts.")

    def __post_init__(self) -> None:
        if isinstance(self.samples_per_prompt, bool) or self.samples_per_prompt < 1:
            raise ConfigError(f"`samples_per_prompt`: expected an integer >= 1, got {self.samples_per_prompt!r}")
        if self.greedy and self.samples_per_prompt != 1:
            raise ConfigError(f"`samples_per_prompt`: expected 1 with greedy decoding (greedy samples are identical; "
                              f"set `greedy: false` to sample), got {self.samples_per_prompt}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"`max_new_tokens`: expected >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ConfigError(f"`batch_size`: expected >= 1, got {self.batch_size}")
        if self.max_length is not None and self.max_length < 2:
            raise ConfigError(f"`max_length`: expected an integer >= 2 or null, got {self.max_length}")
        if self.temperature <= 0:
            raise ConfigError(f"`temperature`: expected > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"`top_p`: expected a probability mass in (0, 1], got {self.top_p}")


def new_token_budget(decoding: DecodingConfig, prompt_tokens: int) -> int:
    """How many tokens a response to a prompt of `prompt_tokens` tokens may have (0 when the
    prompt alone reaches `decoding.max_length`)."""
    if decoding.max_length is None:
        return decoding.max_new_tokens
    return max(0, min(decoding.max_new_tokens, decoding.max_length - prompt_tokens))


class Generator(abc.ABC):
    """A generation backend. Prompts it receives are already formatted with the template.

    Responses follow the response convention of `sipo_bench.contract.responses` (one leading space)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: True if generation runs a model: generate stages then ask for a GPU on a cuda run
    uses_accelerator: ClassVar[bool] = True
    #: the `PolicySpec.combine` values this backend realises (None: any); a run whose generator
    #: cannot serve a spec evaluates that spec on the task's default generator instead
    combines: ClassVar[tuple[str, ...] | None] = None
    #: True for a backend that takes most of a device's memory when it starts (a vLLM engine):
    #: the runtime closes every other loaded model before handing it out, and closes it before
    #: handing out anything else
    exclusive_device: ClassVar[bool] = False

    @abc.abstractmethod
    def generate(self, policy: ResolvedPolicy, prompts: Sequence[str], decoding: DecodingConfig, *,
                 num_return_sequences: int = 1, seed: int = 0, progress: Any = None) -> list[list[str]]:
        """For each prompt, `num_return_sequences` responses (text after the prompt)."""

    def logprobs(self, policy: ResolvedPolicy, prompts: Sequence[str], responses: Sequence[str], *,
                 batch_size: int = 64, progress: Any = None) -> list[float]:
        """Summed log-prob of each response's tokens given its prompt (response tokens only)."""
        raise NotImplementedError(f"generator {self.name!r} does not score log-probs")

    def reserve(self, *, max_lora_rank: int | None = None) -> None:
        """Called before generating with what the run's plan will ask of this backend (the
        largest LoRA rank of the adapters and soups it will serve, None if unknown), so a
        backend that sizes resources once, like a vLLM engine, sizes them for the whole run."""

    def close(self) -> None:
        """Free cached models."""


@dataclass
class ExecutorConfig:
    """Base of executor configs (`executor_options` in a run config); the base has no options,
    so any option given to an executor that declares none is an unknown-key usage error."""


class Executor(abc.ABC):
    """Runs a graph of stages. Independent stages may run in parallel.

    `config_class` declares the executor's options (`executor_options`), validated with
    `sipo_bench.configs.schema.build` before anything runs; the executor is built with them as
    keyword arguments."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    config_class: ClassVar[type] = ExecutorConfig

    def __init__(self, **options: Any):
        self.options = options

    @abc.abstractmethod
    def run(self, stages: list["Stage"], runtime: Any, cache: Any, log: Any, overall: Any = None) -> dict[str, "StageOutcome"]:
        """Run every stage (given in topological order) whose inputs succeed, skipping those
        already in `cache` (a :class:`~sipo_bench.execution.stages.Cache`); never raise for a failing
        stage: record it in `log` (a :class:`~sipo_bench.execution.stages.StageLog`) and go on with the
        stages that do not depend on it. Call `overall()` once per finished stage.
        Returns outcomes by stage key."""


@dataclass
class StageOutcome:
    status: str  # "done" | "cached" | "failed" | "skipped"
    result: Any = None
    seconds: float = 0.0
    error: str | None = None  # one line
    traceback: str | None = None
