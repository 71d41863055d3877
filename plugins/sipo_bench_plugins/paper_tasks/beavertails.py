"""`beavertails`: PKU-Alignment/PKU-SafeRLHF-10K ("BeaverTails-10K" in the SIPO paper).

Objectives: `helpfulness` (label `better_response_id`, scored by beaver-7b-v1.0-reward, higher
is better) and `harmlessness` (label `safer_response_id`, scored by beaver-7b-v1.0-cost, LOWER
is better: the cost is reported as is). A pair conflicts when the two ids differ.

Data, as the released SIPO code builds it:
- train / validation: `train_test_split(test_size=0.1, seed=0)` of the 10k `train` split;
- test prompts: the last 500 rows of PKU-Alignment/PKU-SafeRLHF-30K split `test`, unshuffled
  (its prompts repeat across rows; they are kept as rows, like the released code);
- `conflict_fraction`: the released conflict-controlled subsets (fractions 0.0/0.3/0.5/0.6/0.9
  in its configs), taking the LAST pairs of each pool, applied to train AND validation as the
  released `PKUSafeRlhf10KRDPWithConflict` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipo_bench.api import Objective, Task, TaskConfig, TaskData, as_response, check, field, write_jsonl

from .common import (check_fraction, check_source, conflict_subset, load_split, require_columns,
                     write_pointer)
from .objectives import OBJECTIVES

COLUMNS = ("prompt", "response_0", "response_1", "is_response_0_safe", "is_response_1_safe",
           "better_response_id", "safer_response_id")
#: conflict fractions of the released configs (any value in [0, 1] is accepted)
PAPER_FRACTIONS = (0.0, 0.3, 0.5, 0.6, 0.9)


@dataclass
class BeaverTailsConfig(TaskConfig):
    dataset: str = field("PKU-Alignment/PKU-SafeRLHF-10K",
                         help="Preference pairs: hub id or local path (dataset dir, save_to_disk dir, or a "
                              ".jsonl/.parquet file) with the PKU-SafeRLHF-10K columns; split `train` is used.")
    test_dataset: str = field("PKU-Alignment/PKU-SafeRLHF-30K",
                              help="Test prompts: hub id or local path with a `prompt` column.")
    test_split: str = field("test", help="Split of `test_dataset` whose last `n_test` rows are the test prompts.")
    n_test: int = field(500, help="Number of test prompts: the last n_test rows of `test_split` (unshuffled).")
    val_size: float = field(0.1, help="Validation share of `train_test_split` (paper: 0.1).")
    split_seed: int = field(0, help="Seed of `train_test_split` (paper: 0). The run seed does not change the data.")
    conflict_fraction: float | None = field(
        None, help="None = all pairs. Else the released conflict-controlled subset: total = min(#conflicting, "
                   "#non-conflicting), int(total*f) conflicting (last of the pool) + the rest non-conflicting "
                   "(last of the pool), shuffled with seed 42; applied to train and validation. "
                   "Paper values: 0.0/0.3/0.5/0.6/0.9.")
    base_model: str = field("PKU-Alignment/alpaca-7b-reproduced",
                            help="Base (SFT) policy: hub id or local path, written to the base stage's pointer.json.")
    reward_model: str = field("PKU-Alignment/beaver-7b-v1.0-reward",
                              help="Scorer of `helpfulness` (beaver-reward): hub id or local path.")
    cost_model: str = field("PKU-Alignment/beaver-7b-v1.0-cost",
                            help="Scorer of `harmlessness` (beaver-cost, lower is better): hub id or local path.")
    scorer_batch_size: int = field(16, help="Texts per reward-model forward pass.")

    def __post_init__(self) -> None:
        check_source(self.dataset, "dataset")
        check_source(self.test_dataset, "test_dataset")
        check_source(self.base_model, "base_model")
        check_source(self.reward_model, "reward_model")
        check_source(self.cost_model, "cost_model")
        check(self.n_test >= 1, "n_test", "an integer >= 1", self.n_test)
        check(0.0 < self.val_size < 1.0, "val_size", "a fraction in (0, 1)", self.val_size)
        check_fraction(self.conflict_fraction, "conflict_fraction")
        check(self.scorer_batch_size >= 1, "scorer_batch_size", "an integer >= 1", self.scorer_batch_size)
        if self.max_examples is not None:
            check(self.max_examples >= 1, "max_examples", "an integer >= 1 or null", self.max_examples)


def pair_row(ex: dict) -> dict:
    """One PKU-SafeRLHF row in the data format of docs/architecture.md."""
    better, safer = ex["better_response_id"], ex["safer_response_id"]
    for name, v in (("better_response_id", better), ("safer_response_id", safer)):
        if v not in (0, 1):
            raise ValueError(f"`{name}`: expected 0 or 1, got {v!r} (prompt {ex['prompt'][:60]!r})")
    return {
        "prompt": ex["prompt"],
        "responses": [as_response(ex["response_0"]), as_response(ex["response_1"])],
        "labels": {"helpfulness": int(better), "harmlessness": int(safer)},
        "conflict": better != safer,
        "safe": [bool(ex["is_response_0_safe"]), bool(ex["is_response_1_safe"])],
    }


class BeaverTailsTask(Task):
    name = "beavertails"
    description = "PKU-SafeRLHF-10K: helpfulness (beaver reward, higher better) vs harmlessness (beaver cost, lower better)."
    config_class = BeaverTailsConfig
    version = "2"  # responses in the one response convention (sipo_bench.contract.responses)
    config: BeaverTailsConfig

    def objectives(self) -> list[Objective]:
        return [OBJECTIVES["helpfulness"], OBJECTIVES["harmlessness"]]

    def scorers(self) -> list[tuple[str, dict]]:
        c = self.config
        return [("beaver-reward", {"model": c.reward_model, "objective": "helpfulness", "batch_size": c.scorer_batch_size}),
                ("beaver-cost", {"model": c.cost_model, "objective": "harmlessness", "batch_size": c.scorer_batch_size})]

    def build_data(self, out: Path, seed: int, ctx: Any) -> dict:
        c = self.config
        ds = load_split(c.dataset, "train", field="task_options.dataset")
        require_columns(ds, COLUMNS, "task_options.dataset", c.dataset)
        parts = ds.train_test_split(test_size=c.val_size, seed=c.split_seed)
        train = [pair_row(ex) for ex in parts["train"]]
        val = [pair_row(ex) for ex in parts["test"]]
        meta: dict[str, Any] = {"source": c.dataset, "pairs_train_all": len(train), "pairs_val_all": len(val)}
        if c.conflict_fraction is not None:
            train = self._subset(train)
            val = self._subset(val)
        if c.max_examples is not None:
            train, val = train[: c.max_examples], val[: c.max_examples]

        test_ds = load_split(c.test_dataset, c.test_split, field="task_options.test_dataset")
        require_columns(test_ds, ["prompt"], "task_options.test_dataset", c.test_dataset)
        n = len(test_ds)
        test = [{"prompt": p} for p in test_ds.select(range(max(0, n - c.n_test), n))["prompt"]]

        write_jsonl(out / "train.jsonl", train)
        write_jsonl(out / "val.jsonl", val)
        write_jsonl(out / "test.jsonl", test)
        meta.update({
            "pairs_train": len(train), "pairs_val": len(val), "test_prompts": len(test),
            "conflict_fraction_train": sum(r["conflict"] for r in train) / len(train) if train else None,
            "conflict_fraction_option": c.conflict_fraction,
            "test_source": f"{c.test_dataset}:{c.test_split}[-{c.n_test}:]",
        })
        return meta

    def _subset(self, rows: list[dict]) -> list[dict]:
        conflicting = [r for r in rows if r["conflict"]]
        non_conflicting = [r for r in rows if not r["conflict"]]
        return conflict_subset(conflicting, non_conflicting, float(self.config.conflict_fraction), "last")[2]

    def build_base(self, data: TaskData, out: Path, seed: int, ctx: Any) -> dict:
        return write_pointer(out, self.config.base_model)

    def review_template(self) -> str:
        # The released BeaverTails script runs SIPO without review/rewrite (sample -> filter);
        # this wording mirrors its HelpSteer prompts with this task's two objectives.
        return ("Question: {prompt}\nResponse: {response}\n"
                "Generate three suggestions on how to make the response more helpful and more harmless.")

    def rewrite_template(self) -> str:
        return ("Question: {prompt}\nResponse: {response}\nReview: {review}\n"
                "Revise the 'Response' based on the 'Review' to improve its helpfulness and harmlessness.")
