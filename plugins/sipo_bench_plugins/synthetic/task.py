"""The synthetic tasks `synthetic-hh`, `synthetic-cv`, `synthetic-3obj` and their oracle scorer.

Torch-free at import time: the SFT model is built by :mod:`.model`, imported inside
`build_base`. See docs/synthetic_task.md for the grammar, the objectives and measured rates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from sipo_bench.api import ConfigError, Objective, Scorer, Task, TaskConfig, TaskData, build, check, field, write_jsonl

from . import grammar as g
from .data import build_pairs, score_summary, split_prompts

#: objective instances (all in [0, 1], higher is better)
OBJECTIVES: dict[str, Objective] = {name: Objective(name, True, f"synthetic oracle: {desc}")
                                    for name, desc in g.OBJECTIVE_DESCRIPTIONS.items()}

#: SIPO's review / rewrite prompts: formatted with `str.format`, then wrapped with
#: `Task.format_prompt`; the SFT corpus holds demonstrations of exactly these.
REVIEW_TEMPLATE = "Review this answer and say what to add or remove. Question: {prompt} Answer: {response}"
REWRITE_TEMPLATE = ("Rewrite this answer as the review says. Question: {prompt} Answer: {response} "
                    "Review: {review}")


# The stage kinds that read each option (`field(stages=...)`): only their keys hold it, so the
# SFT model (`base`) is shared by runs that differ only in the pairs (`data`), and the method
# and evaluation stages (which read none of these) depend on them only through their inputs.
DATA, BASE, DATA_BASE = ("data",), ("base",), ("data", "base")


@dataclass
class SyntheticTaskConfig(TaskConfig):
    # data
    conflict_fraction: float = field(0.6, help="Share of training (and validation) pairs whose objectives disagree.",
                                     stages=DATA)
    train_pairs: int = field(1024, help="Training pairs (before `max_examples`).", stages=DATA)
    val_pairs: int = field(128, help="Validation pairs (from held-out validation prompts).", stages=DATA)
    n_test: int = field(368, help="Held-out test prompts (stratified over topics). 368 = the most the split allows "
                                  "beside 64 validation prompts: HV's evaluation noise (a bootstrap over prompts) is "
                                  "then small against its seed-to-seed spread (docs/evaluation.md).", stages=DATA_BASE)
    n_val_prompts: int = field(64, help="Held-out validation prompts (never in training data).", stages=DATA_BASE)
    high_threshold: float = field(1.0, help="A response is 'all-high' when every objective is >= this.",
                                  stages=DATA_BASE)
    # SFT corpus
    sft_examples: int = field(2400, help="Direct demonstrations (behaviour-policy responses) in the SFT corpus.",
                              stages=BASE)
    review_examples: int = field(400, help="REVIEW demonstrations (critique of a response) in the SFT corpus.",
                                 stages=BASE)
    rewrite_examples: int = field(400, help="REWRITE demonstrations (a response revised per a critique).", stages=BASE)
    critique_noise: float = field(0.25, help="Share of demonstrated critiques that miss a defect or name a false one.",
                                  stages=BASE)
    # model (LLaMA architecture)
    hidden_size: int = field(96, help="Hidden size of the tiny LLaMA.", stages=BASE)
    intermediate_size: int = field(256, help="MLP width of the tiny LLaMA.", stages=BASE)
    num_layers: int = field(2, help="Decoder layers.", stages=BASE)
    num_heads: int = field(4, help="Attention heads (also key/value heads).", stages=BASE)
    # SFT
    sft_epochs: int = field(4, help="Epochs over the SFT corpus.", stages=BASE)
    sft_lr: float = field(5e-3, help="Peak AdamW learning rate (warm-up, then cosine decay).", stages=BASE)
    sft_batch_size: int = field(32, help="Sequences per SFT step.", stages=BASE)
    torch_threads: int = field(1, help="CPU threads torch uses while the base stage trains and samples (restored "
                                       "after); 1 keeps results independent of the core count, and two threads ran "
                                       "10x slower when other processes shared the 2 cores.", stages=BASE)
    # measurement of the SFT model (returned by build_base)
    eval_samples: int = field(8, help="Samples per test prompt (temperature 1) for the measured rates.",
                              stages=DATA_BASE)
    eval_max_new_tokens: int = field(64, help="Max new tokens when sampling for the measured rates.", stages=BASE)

    def __post_init__(self) -> None:
        check(0.0 <= self.conflict_fraction <= 1.0, "conflict_fraction", "a number in [0, 1]", self.conflict_fraction)
        for name in ("train_pairs", "val_pairs", "n_test", "n_val_prompts", "hidden_size", "intermediate_size",
                     "num_layers", "num_heads", "sft_epochs", "sft_batch_size", "eval_max_new_tokens", "torch_threads"):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= 1, name, "an integer >= 1", value)
        for name in ("sft_examples", "review_examples", "rewrite_examples", "eval_samples"):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= 0, name, "an integer >= 0", value)
        if self.max_examples is not None:
            check(self.max_examples >= 1, "max_examples", "an integer >= 1 or null", self.max_examples)
        n_prompts = len(g.all_prompts())
        check(self.n_test + self.n_val_prompts <= n_prompts // 2, "n_test + n_val_prompts",
              f"at most {n_prompts // 2} (half of the {n_prompts} prompts)", self.n_test + self.n_val_prompts)
        check(0.0 < self.high_threshold <= 1.0, "high_threshold", "a number in (0, 1]", self.high_threshold)
        check(0.0 <= self.critique_noise <= 1.0, "critique_noise", "a number in [0, 1]", self.critique_noise)
        check(self.sft_lr > 0, "sft_lr", "a number > 0", self.sft_lr)
        check(self.hidden_size % self.num_heads == 0, "hidden_size",
              f"a multiple of num_heads ({self.num_heads})", self.hidden_size)


# --- Tasks ----------------------------------------------------------------------------------


class SyntheticTask(Task):
    """Base of the synthetic tasks; a subclass sets `variant` (a key of `grammar.VARIANTS`)."""

    variant: str = "hh"
    config_class = SyntheticTaskConfig
    default_generator = "transformers"
    oracle = True  # the scorer computes the objectives exactly: methods may report truth diagnostics
    review_skill = "the SFT corpus"  # it holds review and rewrite demonstrations
    version = "3"  # bump when the grammar or the SFT recipe changes (invalidates cached data/base)
    #: the SFT model is trained on the seed's train-prompt split (`split_prompts`), not on the
    #: training pairs' prompts: the base stage's key holds no pair-sampling option
    #: (`conflict_fraction`, `train_pairs`, ...), so runs that differ only there share it
    base_reads_data = False

    def objectives(self) -> list[Objective]:
        return [OBJECTIVES[o] for o in g.VARIANTS[self.variant]]

    def scorers(self) -> list[tuple[str, dict]]:
        return [("synthetic-oracle", {"variant": self.variant})]

    def floor(self) -> list[float]:
        return [0.0] * len(g.VARIANTS[self.variant])

    def review_template(self) -> str:
        return REVIEW_TEMPLATE

    def rewrite_template(self) -> str:
        return REWRITE_TEMPLATE

    def method_defaults(self, method: str) -> dict:
        return method_defaults(method)

    @property
    def behaviour(self) -> g.Behaviour:
        return g.BEHAVIOURS[self.variant]

    def build_data(self, out: Path, seed: int, ctx: Any) -> dict:
        c: SyntheticTaskConfig = self.config
        objs = list(g.VARIANTS[self.variant])
        train_p, val_p, test_p = split_prompts(seed, c.n_test, c.n_val_prompts)
        rng = random.Random(f"synthetic-{self.variant}-pairs-{seed}")
        train, train_info = build_pairs(rng, train_p, objs, self.behaviour, c.train_pairs, c.conflict_fraction)
        val, val_info = build_pairs(rng, val_p, objs, self.behaviour, c.val_pairs, c.conflict_fraction)
        if c.max_examples is not None:
            train = train[:c.max_examples]
        if not train:
            raise RuntimeError(f"task {self.name!r}: no training pairs could be built")
        write_jsonl(out / "train.jsonl", train)
        write_jsonl(out / "val.jsonl", val)
        write_jsonl(out / "test.jsonl", [{"prompt": p} for p in test_p])
        # rates in the data: every response of the training pairs, and the behaviour policy
        # itself on the test prompts (what an ideal SFT model would sample)
        resp_p = [r["prompt"] for r in train for _ in (0, 1)]
        resp = [x for r in train for x in r["responses"]]
        brng = random.Random(f"synthetic-{self.variant}-behaviour-{seed}")
        beh_p = [p for p in test_p for _ in range(c.eval_samples or 1)]
        beh = [g.render(g.sample_response(brng, g.topic_of(p), self.behaviour)) for p in beh_p]
        n_conf = sum(r["conflict"] for r in train)
        result = {
            "variant": self.variant, "objectives": objs,
            "n_train": len(train), "n_val": len(val), "n_test": len(test_p),
            "n_train_prompts": len(train_p), "n_train_prompts_used": len({r["prompt"] for r in train}),
            "conflict_fraction": round(n_conf / len(train), 4),
            "pools": train_info, "val_pools": val_info,
            "train_responses": score_summary(resp_p, resp, objs, c.high_threshold),
            "behaviour_on_test_prompts": score_summary(beh_p, beh, objs, c.high_threshold),
        }
        if ctx is not None:
            ctx.log(f"{len(train)} train pairs (conflict fraction {result['conflict_fraction']}), "
                    f"{len(val)} val pairs, {len(test_p)} test prompts; all-high rate in train responses "
                    f"{result['train_responses']['all_high_rate']}")
        return result

    def build_base(self, data: TaskData, out: Path, seed: int, ctx: Any) -> dict:
        from .model import build_sft_model

        return build_sft_model(self, data, Path(out), seed, ctx)


class SyntheticHH(SyntheticTask):
    name = "synthetic-hh"
    variant = "hh"
    description = ("Synthetic BeaverTails-like task: helpful vs. harmless (oracle-scored, tiny LLaMA trained "
                   "offline in seconds).")


class SyntheticCV(SyntheticTask):
    name = "synthetic-cv"
    variant = "cv"
    description = ("Synthetic HelpSteer-like task: correct vs. concise (concision = 1 - share of padding words; "
                   "higher is better).")


class Synthetic3Obj(SyntheticTask):
    name = "synthetic-3obj"
    variant = "3obj"
    description = "Synthetic three-objective task: helpful, harmless, concise."


# --- Scorer ---------------------------------------------------------------------------------


@dataclass
class OracleOptions:
    variant: str = field("all", help="Which objectives to grade: hh (helpful, harmless), cv (correct, concise), "
                                     "3obj (helpful, harmless, concise) or all (the four).")

    def __post_init__(self) -> None:
        allowed = [*g.VARIANTS, "all"]
        check(self.variant in allowed, "variant", f"one of {', '.join(allowed)}", self.variant)


class OracleScorer(Scorer):
    """Parses each response with the grammar and computes the objectives exactly (no model).
    Option `variant`: hh | cv | 3obj | all (all four objectives)."""

    name = "synthetic-oracle"
    description = "Exact oracle of the synthetic tasks: parses the response text (no model, no hidden labels)."
    options_class = OracleOptions

    def __init__(self, **options: Any):
        variant = build(OracleOptions, options).variant
        super().__init__(variant=variant)
        self.variant = variant

    def objectives(self) -> list[str]:
        return list(g.OBJECTIVE_DESCRIPTIONS) if self.variant == "all" else list(g.VARIANTS[self.variant])

    def score(self, prompts: Sequence[str], responses: Sequence[str], progress: Any = None) -> dict[str, list[float]]:
        if len(prompts) != len(responses):
            raise ValueError(f"synthetic-oracle: expected as many prompts as responses, got {len(prompts)} and {len(responses)}")
        objs = self.objectives()
        out: dict[str, list[float]] = {o: [] for o in objs}
        for p, r in zip(prompts, responses):
            s = g.scores(p, r)
            for o in objs:
                out[o].append(s[o])
        if progress is not None:
            progress(len(responses))
        return out


# --- Per-method defaults --------------------------------------------------------------------


def method_defaults(method: str) -> dict:
    """Defaults for `method` on the synthetic tasks, from `methods.yaml` beside this module."""
    import yaml

    path = Path(__file__).with_name("methods.yaml")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"`{path.name}`: expected a mapping of method name to options, got {type(data).__name__}")
    entry = data.get(method) or {}
    if not isinstance(entry, dict):
        raise ConfigError(f"`{path.name}: {method}`: expected a mapping of option: value, got {entry!r}")
    return dict(entry)
