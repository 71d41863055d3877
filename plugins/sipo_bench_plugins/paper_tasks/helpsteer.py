"""`helpsteer`: nvidia/HelpSteer as pairwise preferences per attribute.

Pairs: every two responses of the same prompt (rows of one prompt are consecutive); for each
attribute the response with the higher score is chosen, equal scores leave that attribute
unlabelled (null). Objectives: `correctness` and `verbosity` by default (the paper's
conflicting pair; both higher-is-better: the verbosity label prefers the MORE verbose response
and the dpa-rm verbosity rating grows with verbosity), or any of the five attributes via the
`objectives` option (e.g. helpfulness, correctness, verbosity for a 3-objective run).

Order of operations, as the released preprocessing (`HS_preprocess.py`) does it:
1. pairs of `train` and `validation`;
2. length filter: drop a pair when len(tok(prompt)) + len(tok(response_i)) > max_length for
   either response (raw prompt, each text tokenised on its own with the tokenizer's default
   special tokens, as released), tokenizer = the policy's (`tokenizer`, default `base_model`);
3. test prompts: n = #unique validation prompts left; the released code takes n prompts from an
   unordered Python set (its test split changes from run to run), here they are
   `random.Random(test_seed).sample(sorted(unique train prompts), n)`, deterministic; every
   train pair of those prompts is removed from train;
4. pairs labelled by none of the chosen objectives are dropped (this run cannot use them);
5. `conflict_fraction`: pairs labelled for both correctness and verbosity only (train and
   validation, as released); train becomes the released subset, taking the FIRST pairs of each
   pool (fractions 0.0/0.2/0.3/0.6/0.9 in its configs; the paper's main runs use 0.6).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipo_bench.api import (ConfigError, Objective, Task, TaskConfig, TaskData, as_response, check, field, read_jsonl,
                            write_jsonl)
from sipo_bench_baselines.configs import SFTConfig

from .common import (check_fraction, check_source, conflict_subset, load_split, require_columns,
                     write_pointer)
from . import refine_prompts
from .objectives import HELPSTEER_ATTRIBUTES, OBJECTIVES

COLUMNS = ("prompt", "response") + HELPSTEER_ATTRIBUTES
CONFLICT_PAIR = ("correctness", "verbosity")
SFT_TRAIN, SFT_VAL = "sft_train.jsonl", "sft_val.jsonl"
PAPER_FRACTIONS = (0.0, 0.2, 0.3, 0.6, 0.9)


@dataclass
class HelpSteerConfig(TaskConfig):
    dataset: str = field("nvidia/HelpSteer",
                         help="HelpSteer rows (splits `train` and `validation`): hub id or local path.")
    test_dataset: str | None = field(
        None, help="None = test prompts drawn from the train prompts (as the paper). Else a hub id or path with a "
                   "`prompt` column whose `test_split` gives the test prompts (removed from train).")
    test_split: str = field("test", help="Split of `test_dataset` (when set).")
    test_seed: int = field(0, help="Seed of the sample of test prompts from the sorted train prompts.")
    objectives: list[str] = field(list(CONFLICT_PAIR),
                                  help="Attributes used as objectives, in weight order: any of helpfulness, "
                                       "correctness, coherence, complexity, verbosity.")
    conflict_fraction: float | None = field(
        None, help="None = all pairs. Else the released subset of pairs labelled for both correctness and "
                   "verbosity: total = min(#conflicting, #agreeing), int(total*f) conflicting (first of the pool) "
                   "+ the rest agreeing (first of the pool), shuffled with seed 42. Paper: 0.0/0.2/0.3/0.6/0.9.")
    max_length: int | None = field(512, help="Drop pairs whose prompt + either response exceeds this many tokens; None = keep all.")
    tokenizer: str | None = field(None, help="Tokenizer of the length filter; None = the base model's.")
    base_model: str | None = field(
        None, help="Hub id or local path. Without `sft`: the base (SFT) policy itself (pointer.json). With `sft`: the "
                   "pretrained model the base stage fine-tunes on HelpSteer (the paper: meta-llama/Llama-2-7b-hf).")
    sft: SFTConfig | None = field(
        None, help="Supervised fine-tuning of `base_model` on the SFT rows (every train-split prompt/response pair, the "
                   "test prompts held out; validation rows for evaluation) in the base stage, as the paper's modpo "
                   "recipe; {} takes its defaults. null = use `base_model` as the SFT policy.")
    reward_model: str = field("RLHFlow/RewardModel-Mistral-7B-for-DPA-v1", help="dpa-rm scorer: hub id or local path.")
    scorer_batch_size: int = field(8, help="Texts per reward-model forward pass.")

    def __post_init__(self) -> None:
        check_source(self.dataset, "dataset")
        check_source(self.test_dataset, "test_dataset", optional=True)
        check_source(self.base_model, "base_model", optional=True)
        check_source(self.tokenizer, "tokenizer", optional=True)
        check_source(self.reward_model, "reward_model")
        check(len(self.objectives) >= 2, "objectives", "at least two HelpSteer attributes", self.objectives)
        for i, o in enumerate(self.objectives):
            check(o in HELPSTEER_ATTRIBUTES, f"objectives[{i}]", "one of " + ", ".join(HELPSTEER_ATTRIBUTES), o)
        check(len(set(self.objectives)) == len(self.objectives), "objectives", "distinct attributes", self.objectives)
        check_fraction(self.conflict_fraction, "conflict_fraction")
        if self.max_length is not None:
            check(self.max_length >= 2, "max_length", "an integer >= 2 or null", self.max_length)
        check(self.scorer_batch_size >= 1, "scorer_batch_size", "an integer >= 1", self.scorer_batch_size)
        if self.max_examples is not None:
            check(self.max_examples >= 1, "max_examples", "an integer >= 1 or null", self.max_examples)


def _chosen(s0: int, s1: int) -> int | None:
    return 0 if s0 > s1 else 1 if s1 > s0 else None


def make_pairs(rows: list[dict]) -> list[dict]:
    """Every two responses of the same prompt (consecutive rows), labelled per attribute."""
    pairs = []
    for prompt, group in itertools.groupby(rows, key=lambda r: r["prompt"]):
        group = list(group)
        for a, b in itertools.combinations(group, 2):
            pairs.append({
                "prompt": prompt,
                "raw": [a["response"], b["response"]],
                "scores": {k: [int(a[k]), int(b[k])] for k in HELPSTEER_ATTRIBUTES},
                "all_labels": {k: _chosen(int(a[k]), int(b[k])) for k in HELPSTEER_ATTRIBUTES},
            })
    return pairs


def length_filter(pairs: list[dict], tokenizer: Any, max_length: int) -> list[dict]:
    """Keep pairs with len(tok(prompt)) + len(tok(response_i)) <= max_length for both i."""
    texts = sorted({p["prompt"] for p in pairs} | {r for p in pairs for r in p["raw"]})
    lengths = dict(zip(texts, (len(ids) for ids in tokenizer(texts)["input_ids"]))) if texts else {}
    return [p for p in pairs
            if all(lengths[p["prompt"]] + lengths[r] <= max_length for r in p["raw"])]


def _conflicts(p: dict) -> bool | None:
    c, v = (p["all_labels"][k] for k in CONFLICT_PAIR)
    return None if c is None or v is None else c != v


class HelpSteerTask(Task):
    name = "helpsteer"
    description = "nvidia/HelpSteer pairs: correctness vs verbosity (both higher-better) by default; dpa-rm scorer."
    config_class = HelpSteerConfig
    version = "2"  # response convention; released review/rewrite prompts
    config: HelpSteerConfig

    def objectives(self) -> list[Objective]:
        return [OBJECTIVES[o] for o in self.config.objectives]

    def scorers(self) -> list[tuple[str, dict]]:
        c = self.config
        return [("dpa-rm", {"model": c.reward_model, "batch_size": c.scorer_batch_size})]

    def _tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        from .common import resolve_model_ref

        name = self.config.tokenizer or self.config.base_model
        if name is None:
            raise ConfigError("`task_options.tokenizer`: expected the policy's tokenizer (hub id or path) for the "
                              "length filter, got None (and `base_model` is None too)")
        return AutoTokenizer.from_pretrained(resolve_model_ref(name))

    def build_data(self, out: Path, seed: int, ctx: Any) -> dict:
        c = self.config
        splits = {}
        for split in ("train", "validation"):
            ds = load_split(c.dataset, split, field="task_options.dataset")
            require_columns(ds, COLUMNS, "task_options.dataset", c.dataset)
            splits[split] = ds.select_columns(list(COLUMNS)).to_list()
        train, val = make_pairs(splits["train"]), make_pairs(splits["validation"])
        meta: dict[str, Any] = {"source": c.dataset, "pairs_train_all": len(train), "pairs_val_all": len(val)}

        if c.max_length is not None:
            tok = self._tokenizer()
            train, val = length_filter(train, tok, c.max_length), length_filter(val, tok, c.max_length)
            meta.update({"pairs_train_length_ok": len(train), "pairs_val_length_ok": len(val)})

        if c.test_dataset is None:
            n = len({p["prompt"] for p in val})
            pool = sorted({p["prompt"] for p in train})
            if n > len(pool):
                raise ConfigError(f"`task_options.dataset`: expected at least {n} train prompts to draw the test "
                                  f"prompts from, got {len(pool)}")
            test_prompts = random.Random(c.test_seed).sample(pool, n)
            test_source = f"{n} train prompts: random.Random({c.test_seed}).sample(sorted(train prompts), {n})"
        else:
            tds = load_split(c.test_dataset, c.test_split, field="task_options.test_dataset")
            require_columns(tds, ["prompt"], "task_options.test_dataset", c.test_dataset)
            test_prompts = list(dict.fromkeys(tds["prompt"]))
            test_source = f"{c.test_dataset}:{c.test_split}"
        held_out = set(test_prompts)
        train = [p for p in train if p["prompt"] not in held_out]

        objs = c.objectives
        train = [p for p in train if any(p["all_labels"][o] is not None for o in objs)]
        val = [p for p in val if any(p["all_labels"][o] is not None for o in objs)]

        if c.conflict_fraction is not None:
            train = [p for p in train if _conflicts(p) is not None]
            val = [p for p in val if _conflicts(p) is not None]
            conflicting = [p for p in train if _conflicts(p)]
            agreeing = [p for p in train if not _conflicts(p)]
            train = conflict_subset(conflicting, agreeing, float(c.conflict_fraction), "first")[2]
        if c.max_examples is not None:
            train, val = train[: c.max_examples], val[: c.max_examples]

        write_jsonl(out / "train.jsonl", [self._row(p) for p in train])
        write_jsonl(out / "val.jsonl", [self._row(p) for p in val])
        write_jsonl(out / "test.jsonl", [{"prompt": p} for p in test_prompts])
        if c.sft is not None:  # the SFT split: every row of the split once, test prompts held out
            sft_train = [r for r in dict.fromkeys((r["prompt"], r["response"]) for r in splits["train"])
                         if r[0] not in held_out]
            sft_val = list(dict.fromkeys((r["prompt"], r["response"]) for r in splits["validation"]))
            write_jsonl(out / SFT_TRAIN, [{"prompt": p, "response": as_response(r)} for p, r in sft_train])
            write_jsonl(out / SFT_VAL, [{"prompt": p, "response": as_response(r)} for p, r in sft_val])
            meta.update({"sft_rows": len(sft_train), "sft_val_rows": len(sft_val)})
        conf = [_conflicts(p) for p in train]
        known = [x for x in conf if x is not None]
        meta.update({
            "pairs_train": len(train), "pairs_val": len(val), "test_prompts": len(test_prompts),
            "test_source": test_source, "objectives": list(objs),
            "conflict_fraction_train": sum(known) / len(known) if known else None,
            "conflict_fraction_option": c.conflict_fraction,
            "labelled_train": {o: sum(p["all_labels"][o] is not None for p in train) for o in objs},
        })
        return meta

    def _row(self, p: dict) -> dict:
        labels = {o: p["all_labels"][o] for o in self.config.objectives}
        known = [v for v in labels.values() if v is not None]
        return {"prompt": p["prompt"], "responses": [as_response(r) for r in p["raw"]],
                "labels": labels, "conflict": len(set(known)) > 1, "scores": p["scores"]}

    def build_base(self, data: TaskData, out: Path, seed: int, ctx: Any) -> dict:
        c = self.config
        if c.base_model is None:
            raise ConfigError("`task_options.base_model`: expected the hub id or path of the SFT policy, or of the "
                              "pretrained model to fine-tune with `sft` (the paper: meta-llama/Llama-2-7b-hf), got None")
        if c.sft is None:
            return write_pointer(out, c.base_model)
        from sipo_bench.api import to_dict
        from sipo_bench_baselines.sft import train_sft_model

        from .common import resolve_model_ref

        def rows(name: str) -> list[dict]:
            return [{"prompt": self.format_prompt(r["prompt"]), "completion": r["response"]}
                    for r in read_jsonl(data.dir / name)]

        return train_sft_model(out, resolve_model_ref(c.base_model), rows(SFT_TRAIN), rows(SFT_VAL), to_dict(c.sft), seed,
                               progress=getattr(ctx, "progress", None), log=getattr(ctx, "log", None))

    # SIPO's review / rewrite prompts: the released ones (refine_prompts.py, one-shot
    # demonstrations included) for the paper's objectives correctness and verbosity; for any
    # other objectives the same instructions and forced review start without a demonstration
    # (the released demonstrations are about correctness and verbosity).

    def _released_prompts(self) -> bool:
        return set(self.config.objectives) == set(CONFLICT_PAIR)

    def review_template(self) -> str:
        if self._released_prompts():
            return refine_prompts.REVIEW_TEMPLATE
        return ("Question: {prompt}\nResponse: {response}\n"
                f"Generate three suggestions on how to make the response more {self._adjectives()}.")

    def review_prefix(self) -> str:
        return refine_prompts.REVIEW_PREFIX if self._released_prompts() else f"The response can be more {self._adjectives()} by\n"

    def rewrite_template(self) -> str:
        if self._released_prompts():
            return refine_prompts.REWRITE_TEMPLATE
        nouns = " and ".join(self.config.objectives)
        return ("Question: {prompt}\nResponse: {response}\nReview: {review}\n"
                f"Revise the 'Response' based on the 'Review' to improve its {nouns}.")

    def refine_stop(self) -> str:
        return refine_prompts.STOP

    def _adjectives(self) -> str:
        adj = {"helpfulness": "helpful", "correctness": "correct", "coherence": "coherent",
               "complexity": "complex", "verbosity": "verbose"}
        return " and ".join(adj[o] for o in self.config.objectives)
