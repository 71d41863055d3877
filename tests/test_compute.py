"""The compute counters (`sipo_bench.execution.compute`, plugins use `sipo_bench.api.count`): stages record what they spent in their cache
marker, the summary sums them per method, reports say "not recorded" where a stage has no
record; trainers count optimizer steps and tokens, generation backends generated tokens."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from sipo_bench.execution import compute
from sipo_bench.reporting import merge
from sipo_bench.reporting import tables
from sipo_bench.cli import main

sys.path.insert(0, str(Path(__file__).parent))


def test_count_inside_a_meter_only():
    compute.count("scorer_calls", 5)  # no meter: nothing to count into, no error
    with compute.metered() as outer:
        compute.count("scorer_calls", 2)
        with compute.metered() as inner:
            compute.count_training(3, 40)
        compute.count("tokens_generated", 7)
    assert inner == {"optimizer_steps": 3, "tokens_trained": 40, "tokens_generated": 0, "scorer_calls": 0}
    assert outer == {"optimizer_steps": 0, "tokens_trained": 0, "tokens_generated": 7, "scorer_calls": 2}
    with pytest.raises(ValueError, match=r"`field`: expected one of optimizer_steps, .*, got 'steps'"):
        compute.count("steps", 1)


def test_trained_tokens_weights_columns_and_epochs():
    rows = [{"prompt_ids": [1, 2, 3], "chosen_ids": [4], "rejected_ids": [5, 6]},
            {"prompt_ids": [1], "chosen_ids": [4, 4], "rejected_ids": [5]}]
    # per pass: (2*3 + 1 + 2) + (2*1 + 2 + 1) = 9 + 5 = 14; 2.5 epochs: 35
    assert compute.trained_tokens(rows, {"prompt_ids": 2, "chosen_ids": 1, "rejected_ids": 1}, 2.5) == 35


def test_total_is_not_recorded_when_a_stage_has_no_record():
    done = {"seconds": 1.5, "compute": {"optimizer_steps": 4, "tokens_trained": 10, "tokens_generated": 3,
                                        "scorer_calls": 2}}
    t = compute.total([done, done])
    assert t == {"optimizer_steps": 8, "tokens_trained": 20, "tokens_generated": 6, "scorer_calls": 4,
                 "seconds": 3.0, "stages": 2, "stages_not_recorded": 0}
    old = compute.total([done, {"seconds": 2.0}])  # a stage cached before counting
    assert all(old[f] is None for f in compute.FIELDS) and old["stages_not_recorded"] == 1
    assert compute.add(t, t)["optimizer_steps"] == 16 and compute.add(t, old)["scorer_calls"] is None
    assert compute.add(t, None) is None


def _run(tmp_path: Path, name: str, cache: Path) -> dict:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(textwrap.dedent("""\
        task: dummy
        task_options: {n_test: 6}
        methods: [dummy]
        seeds: [0, 1]
        eval_noise_replicates: 0
        """))
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / name), "--cache-dir", str(cache), "--quiet"]) == 0
    return json.loads((tmp_path / name / "summary.json").read_text())


def test_a_run_records_compute_per_method_and_a_cached_stage_keeps_it(tmp_path):
    cache = tmp_path / "cache"
    s = _run(tmp_path, "a", cache)
    c = s["methods"]["dummy"]["compute"]
    points = s["methods"]["dummy"]["points"]
    # the dummy scorer scored every test prompt of every (w, seed) point once; the dummy trains no model
    assert c["scorer_calls"] == sum(p["n_prompts"] for p in points) == 6 * len(points) and len(points) == 10
    assert c["optimizer_steps"] == 0 and c["tokens_generated"] == 0 and c["stages_not_recorded"] == 0
    again = _run(tmp_path, "b", cache)  # every stage cached: its marker still holds what it spent
    assert {k: v for k, v in again["methods"]["dummy"]["compute"].items() if k != "seconds"} == \
        {k: v for k, v in c.items() if k != "seconds"}
    assert "| dummy | 0 | 0 | 0 | 60 |" in (tmp_path / "b" / "table.md").read_text()
    # a stage cached before counting existed: its marker has no `compute`
    marker = next(p for p in (cache / "stages").glob("*/_DONE.json") if json.loads(p.read_text())["name"].startswith("score[dummy"))
    data = json.loads(marker.read_text())
    del data["compute"]
    marker.write_text(json.dumps(data))
    old = _run(tmp_path, "c", cache)["methods"]["dummy"]["compute"]
    assert old["scorer_calls"] is None and old["stages_not_recorded"] == 1
    assert "| dummy | not recorded | not recorded | not recorded | not recorded |" in (tmp_path / "c" / "table.md").read_text()


def test_an_old_summary_says_not_recorded(tmp_path):
    s = json.loads((Path(__file__).resolve().parent / "fixtures" / "old-summaries" / "reference-2026-12-02.json").read_text())
    assert all("compute" not in m for m in s["methods"].values())
    cols, body = tables.compute_table(merge.upgrade(s))
    assert cols[1:] == ["optimizer steps", "training tokens", "tokens generated", "scorer calls"]
    assert body and all(r[1:] == ["not recorded"] * 4 for r in body)


@pytest.mark.slow
def test_trainer_and_generator_count_what_they_did(tmp_path):
    pytest.importorskip("torch")
    from tiny_models import make_tiny_model

    from sipo_bench.api import DecodingConfig, ResolvedPolicy
    from sipo_bench_baselines.losses import DPOLoss
    from sipo_bench_baselines.trainer import train_preference_adapter
    from sipo_bench_plugins.hf_generation.backend import HFGenerator, ModelCache
    from transformers import AutoTokenizer

    base = make_tiny_model(tmp_path / "base", seed=0)
    prompt, good, bad = "USER: help me please ASSISTANT:", " sure here is a good answer", " no"
    rows = [{"prompt": prompt, "chosen": good, "rejected": bad}] * 16
    train = dict(learning_rate=5e-3, epochs=2, batch_size=8, grad_accum=1, max_length=64, lr_scheduler="constant",
                 warmup_ratio=0.0, weight_decay=0.0, lora_r=8, lora_alpha=16, lora_dropout=0.0,
                 target_modules=["q_proj", "v_proj"], eval_every=0, load_best=False, gradient_checkpointing=False,
                 bf16=False, max_pairs=None)
    (tmp_path / "dpo").mkdir()
    with compute.metered() as meter:
        m = train_preference_adapter(tmp_path / "dpo", base, rows, [], DPOLoss(0.1), train, 0)
    assert meter["optimizer_steps"] == m["steps"] == 4  # 16 pairs / 8 per step x 2 epochs
    tok = AutoTokenizer.from_pretrained(str(base))
    n = [len(tok(x, add_special_tokens=False)["input_ids"]) for x in (prompt, good, bad)]
    per_pair = 2 * n[0] + n[1] + n[2]  # without special tokens; trl adds at most BOS + EOS to each part
    assert 2 * 16 * per_pair <= meter["tokens_trained"] <= 2 * 16 * (per_pair + 6)
    assert meter["tokens_generated"] == 0 and meter["scorer_calls"] == 0

    gen = HFGenerator(device="cpu", cache=ModelCache())
    try:
        with compute.metered() as meter:
            out = gen.generate(ResolvedPolicy(base, (), "soup", {}), [prompt, "USER: tell me a story ASSISTANT:"],
                               DecodingConfig(greedy=False, max_new_tokens=8), num_return_sequences=3, seed=0)
    finally:
        gen.close()
    assert len(out) == 2 and all(len(o) == 3 for o in out)
    assert 6 <= meter["tokens_generated"] <= 6 * 8  # 6 sampled rows, 1-8 new tokens each


def _with_budget(s: dict, steps: dict) -> dict:
    s = merge.upgrade(json.loads(json.dumps(s)))
    for name, m in s["methods"].items():
        if name in steps:
            m["compute"] = {"optimizer_steps": steps[name], "tokens_trained": 0, "tokens_generated": 0,
                            "scorer_calls": 0, "seconds": 1.0}
    return s


def test_unequal_training_budgets_are_named_beside_the_comparisons():
    s = json.loads((Path(__file__).resolve().parent / "fixtures" / "old-summaries" / "synthetic-main-2026-12-02.json").read_text())
    compared = [(n, b) for n, m in merge.upgrade(s)["methods"].items() for b in m.get("comparisons") or {}]
    assert ("sipo", "mod") in compared
    assert tables.budget_line(merge.upgrade(s)) == ""  # not recorded: nothing to claim either way
    equal = _with_budget(s, {n: 64 for n in s["methods"]})
    assert tables.budget_line(equal) == ""
    unequal = _with_budget(s, {**{n: 64 for n in s["methods"]}, "sipo": 70})
    line = tables.budget_line(unequal)
    assert line.startswith("Unequal training budgets") and "sipo 70 vs mod 64 (x1.09)" in line
    assert "dpo-soups 64 vs mod 64" not in line
    from sipo_bench.reporting import report

    assert line in report.table_md(unequal) and line not in report.table_md(equal)
