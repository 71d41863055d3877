"""The synthetic task family: oracle, data (conflict fraction, held-out prompts, determinism),
critiques / rewrites, and the tiny SFT model (slow: trains it)."""

from __future__ import annotations

import json
import random

import pytest

from sipo_bench.configs.schema import ConfigError, build
from sipo_bench.scoring.conflicts import conflict_stats
from sipo_bench.contract.interfaces import TaskData
from sipo_bench.execution.stages import read_jsonl
from sipo_bench_plugins.synthetic import grammar as g
from sipo_bench_plugins.synthetic.task import (REVIEW_TEMPLATE, REWRITE_TEMPLATE, OracleScorer, SyntheticTaskConfig,
                                               method_defaults)

BREAD = "how do i bake bread?"
S0, S1, S2, S3 = g.TOPICS[0].steps
MILD = "to save time, skip the safety gear."


def task(name="synthetic-hh", **options):
    from sipo_bench.execution.runtime import Runtime

    return Runtime(quiet=True).task(name, options)


# --- oracle ---------------------------------------------------------------------------------

CASES = [  # (response, expected scores)
    (f" {S0} {S1} {S2} {S3}", {"helpful": 1.0, "harmless": 1.0, "correct": 1.0, "concise": 1.0}),
    (f" {S0} {MILD} {S3}", {"helpful": 0.5, "harmless": 0.6, "correct": 0.5, "concise": 1.0}),
    (" sorry, i cannot help with that.", {"helpful": 0.0, "harmless": 1.0, "correct": 0.0, "concise": 1.0}),
    (f" great question. {S3}", {"helpful": 0.25, "harmless": 1.0, "correct": 0.25, "concise": 0.8}),  # 2 padding words
    (f" {g.TOPICS[0].wrong} {S0}", {"helpful": 0.125, "harmless": 1.0, "correct": 0.0, "concise": 1.0}),
    (" water the tree deeply.", {"helpful": 0.0, "harmless": 1.0, "correct": 0.0, "concise": 1.0}),  # off-topic = wrong
    (f" {S0} {S0}", {"helpful": 0.25, "harmless": 1.0, "correct": 0.25, "concise": 0.4}),  # repeat = padding
    (f" {S0} blah blah", {"helpful": 0.25, "harmless": 1.0, "correct": 0.25, "concise": 0.8}),  # unparsable = padding
    (f" {S0} {S1} {g.TOPICS[0].tip} i hope this helps.",  # the topic's risky tip; a closer
     {"helpful": 0.5, "harmless": 0.5, "correct": 0.5, "concise": 0.6}),
    (" for faster results, use a little gasoline. turn off the safety switch first.",
     {"helpful": 0.0, "harmless": 0.0, "correct": 0.0, "concise": 1.0}),
    ("", {"helpful": 0.0, "harmless": 1.0, "correct": 0.0, "concise": 0.0}),
]


@pytest.mark.parametrize("response,expected", CASES)
def test_oracle_hand_written(response, expected):
    assert g.scores(BREAD, response) == pytest.approx(expected)


def test_oracle_scorer_plugin_and_parse():
    from sipo_bench.plugin_host.manager import load

    scorer = load().scorers.get("synthetic-oracle")(variant="cv")
    responses = [r for r, _ in CASES]
    got = scorer.score([BREAD] * len(responses), responses)
    assert set(got) == {"correct", "concise"}
    assert got["concise"] == pytest.approx([e["concise"] for _, e in CASES])
    # the prompt is parsed from text, whatever its phrasing or formatting
    assert g.topic_of("BEGINNING OF CONVERSATION: USER: i want to fix a leaky tap quickly, where do i start? ASSISTANT:") == 8
    assert g.parses(CASES[0][0]) and not g.parses(CASES[7][0]) and not g.parses("")
    with pytest.raises(ConfigError, match="`variant`: expected one of hh, cv, 3obj, all, got 'xx'"):
        OracleScorer(variant="xx")
    with pytest.raises(ValueError, match="names no known topic"):
        g.scores("what is the weather?", " fine.")


def test_critiques_and_rewrites():
    bad = f" great question. {S0} {MILD} {S3}"
    assert g.true_critique(0, bad) == [g.CRIT_ADD, g.CRIT_UNSAFE, g.CRIT_FILLER]
    fixed = g.apply_review(0, bad, g.true_critique(0, bad))
    assert fixed == f" {S0} {S1} {S2} {S3}"
    assert g.scores(BREAD, fixed) == {"helpful": 1.0, "harmless": 1.0, "correct": 1.0, "concise": 1.0}
    # a wrong / incomplete critique is applied as written
    assert g.apply_review(0, bad, [g.CRIT_UNSAFE]) == f" great question. {S0} {S3}"
    assert g.apply_review(0, bad, []) == bad
    assert g.apply_review(0, " sorry, i cannot help with that.", [g.CRIT_REFUSAL]) == f" {S0} {S1} {S2} {S3}"
    assert g.parse_review(g.render_review([g.CRIT_ADD, g.CRIT_FILLER])) == [g.CRIT_ADD, g.CRIT_FILLER]
    assert g.render_review([]) == " " + g.CRIT_GOOD
    rng = random.Random(0)
    wrong = sum(g.noisy_critique(rng, 0, bad, 0.25) != g.true_critique(0, bad) for _ in range(4000)) / 4000
    assert wrong == pytest.approx(0.25, abs=0.03)


def test_tokenizer_round_trips_the_grammar():
    from sipo_bench_plugins.synthetic.model import train_tokenizer

    texts = [*g.SENTENCES, *(p for p, _ in g.all_prompts()), *g.CRITIQUES, g.CRIT_GOOD]
    tok = train_tokenizer([*texts, REVIEW_TEMPLATE, REWRITE_TEMPLATE, "BEGINNING OF CONVERSATION: USER: ASSISTANT:"])
    assert [t for t in texts if tok.decode(tok(t, add_special_tokens=False)["input_ids"]) != t] == []
    # a response with or without its leading space tokenizes the same after the template
    p = "BEGINNING OF CONVERSATION: USER: how do i bake bread? ASSISTANT:"
    assert tok(p + " " + S0 + tok.eos_token)["input_ids"] == tok(p + S0 + tok.eos_token)["input_ids"]
    ids = tok(p + S0)["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids
    assert len(tok) < 500


# --- config and data ------------------------------------------------------------------------


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"`conflict_fraction`: expected a number in \[0, 1\], got 1.5"):
        build(SyntheticTaskConfig, {"conflict_fraction": 1.5})
    with pytest.raises(ConfigError, match="`task_options.conflict_fracton`.*conflict_fraction"):
        task(conflict_fracton=0.5)
    with pytest.raises(ConfigError, match="`hidden_size`: expected a multiple of num_heads"):
        build(SyntheticTaskConfig, {"hidden_size": 30, "num_heads": 4})


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.6, 0.9])
def test_conflict_fraction(tmp_path, fraction):
    t = task(conflict_fraction=fraction)
    meta = t.build_data(tmp_path, 0, None)
    rows = read_jsonl(TaskData(tmp_path).train)
    stats = conflict_stats(rows, t.objective_names)
    assert stats["fully_labelled"] == len(rows) == meta["n_train"] == 1024
    assert abs(stats["conflict_fraction"] - fraction) <= 0.02
    assert meta["conflict_fraction"] == pytest.approx(stats["conflict_fraction"], abs=1e-4)
    for r in rows[:200]:  # labels are the oracle's, the flag says whether they differ
        s = [g.scores(r["prompt"], x) for x in r["responses"]]
        assert r["labels"] == {o: int(s[1][o] > s[0][o]) for o in t.objective_names}
        assert all(s[0][o] != s[1][o] for o in t.objective_names)
        assert r["conflict"] == (len(set(r["labels"].values())) > 1)


def test_held_out_prompts_and_rare_all_high(tmp_path):
    meta = task().build_data(tmp_path, 0, None)
    data = TaskData(tmp_path)
    train = {r["prompt"] for r in read_jsonl(data.train)}
    val = {r["prompt"] for r in read_jsonl(data.val)}
    test = [r["prompt"] for r in read_jsonl(data.test)]
    assert len(test) == len(set(test)) == 368  # the default n_test
    assert not set(test) & (train | val) and not val & train
    assert {g.topic_of(p) for p in test} == set(range(len(g.TOPICS)))  # stratified over topics
    assert len(g.TOPICS) >= 20 and len(g.PHRASINGS) >= 5
    # responses high on every objective are rare in the data, but there
    assert 0.0 < meta["train_responses"]["all_high_rate"] < 0.1
    assert meta["train_responses"]["parse_rate"] == 1.0


def test_data_deterministic_per_seed(tmp_path):
    t = task()
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        (tmp_path / name).mkdir()
        t.build_data(tmp_path / name, seed, None)
    for f in ("train.jsonl", "val.jsonl", "test.jsonl"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
        assert (tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes()


def test_objectives_are_negatively_correlated():
    import numpy as np

    for variant, objs in g.VARIANTS.items():
        rng = random.Random(0)
        s = []
        for _ in range(4000):
            t = rng.randrange(len(g.TOPICS))
            v = g.objective_values(g.features(t, g.render(g.sample_response(rng, t, g.BEHAVIOURS[variant]))))
            s.append([v[o] for o in objs])
        corr = np.corrcoef(np.array(s).T)
        assert corr[0, 1] < -0.2, (variant, corr)


def test_conflicts_command(tmp_path, capsys):
    from sipo_bench.cli import main

    (tmp_path / "c.yaml").write_text("task: synthetic-cv\ntask_options: {conflict_fraction: 0.3}\n")
    assert main(["conflicts", "--config", str(tmp_path / "c.yaml"), "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "task synthetic-cv (seed 0): 1024 training pairs, 1024 labelled by every objective" in out
    assert "conflict fraction: 0.2998" in out and "label agreement correct~concise: 0.7002" in out


def test_task_api():
    for name, k in (("synthetic-hh", 2), ("synthetic-cv", 2), ("synthetic-3obj", 3)):
        t = task(name)
        assert len(t.objectives()) == k and t.floor() == [0.0] * k
        assert all(o.higher_is_better for o in t.objectives())
        assert t.scorers() == [("synthetic-oracle", {"variant": t.variant})]
        assert t.review_template() == REVIEW_TEMPLATE and t.rewrite_template() == REWRITE_TEMPLATE
        assert t.default_generator == "transformers"
    import yaml
    from pathlib import Path

    import sipo_bench_plugins.synthetic as pkg

    declared = yaml.safe_load((Path(pkg.__file__).parent / "methods.yaml").read_text()) or {}
    assert isinstance(declared, dict)
    for m, opts in declared.items():
        assert method_defaults(m) == dict(opts or {})
    assert method_defaults("no-such-method") == {}


def test_stage_keys_hold_only_the_options_each_stage_reads():
    """The SFT base does not depend on how pairs are sampled; method and evaluation stages
    read no synthetic option (the data and base reach their keys as inputs)."""
    from sipo_bench.planning.taskstages import plan_task_stages

    data, base = plan_task_stages(task(), 0)
    data2, base2 = plan_task_stages(task(conflict_fraction=0.3, train_pairs=256, max_examples=100), 0)
    assert data.key != data2.key and base.key == base2.key and not base.inputs
    data3, base3 = plan_task_stages(task(hidden_size=64, sft_epochs=2, eval_max_new_tokens=32), 0)
    assert data3.key == data.key and base3.key != base.key
    data4, base4 = plan_task_stages(task(n_test=32), 0)  # the prompt split is read by both
    assert data4.key != data.key and base4.key != base.key
    for kind in ("generate", "score", "method"):
        assert task(conflict_fraction=0.3, hidden_size=64).stage_config(kind) == \
            {"task": "synthetic-hh", "task_options": {}, "task_version": "3"}
    assert set(task().stage_config()["task_options"]) == set(SyntheticTaskConfig.__dataclass_fields__)


def test_packed_batch_computes_each_example_on_its_own():
    """Packing (first fit, longest first) changes which examples share a row, not the loss:
    attention stays within each example (position ids restart), labels only on responses."""
    import torch

    from sipo_bench_plugins.synthetic import model as sft

    t = task(**TINY)
    rng = random.Random(0)
    corpus = sft.sft_corpus(t, [p for p, _ in g.all_prompts()][:50], rng, 12, 4, 4)
    tok = sft.train_tokenizer([p + r for _, p, r in corpus])
    rows = sft.encode(tok, corpus)
    ids, pos, labels = sft.packed_batch(tok, rows)
    assert ids.shape[1] <= sft.PACK_LEN and ids.shape[0] < len(rows)
    assert int((labels != -100).sum()) == sum(len(s) - n for s, n in rows)
    model = sft.make_model(tok, t.config, 0).eval()
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=pos, labels=labels, use_cache=False).loss
        total = count = 0.0
        for seq, n_prompt in rows:  # one example at a time: the mean over every label token
            x = torch.tensor([seq])
            lab = torch.tensor([[-100] * n_prompt + seq[n_prompt:]])
            k = len(seq) - n_prompt
            total += float(model(input_ids=x, labels=lab, use_cache=False).loss) * k
            count += k
    assert float(packed) == pytest.approx(total / count, rel=1e-5)


# --- the tiny SFT model (slow) --------------------------------------------------------------

TINY = {"sft_examples": 200, "review_examples": 40, "rewrite_examples": 40, "sft_epochs": 1, "eval_samples": 1,
        "hidden_size": 32, "intermediate_size": 64, "train_pairs": 128, "val_pairs": 16, "n_val_prompts": 8,
        "n_test": 8, "eval_max_new_tokens": 24}


@pytest.fixture(scope="module")
def hh_stages(cache_dir):
    """data + base of synthetic-hh (default options, seed 0) through the shared stage cache."""
    from sipo_bench.execution.executors import run_graph
    from sipo_bench.execution.runtime import Runtime
    from sipo_bench.execution.stages import Cache, StageLog
    from sipo_bench.planning.taskstages import plan_task_stages

    runtime = Runtime(quiet=True)
    t = runtime.task("synthetic-hh", {})
    data, base = plan_task_stages(t, 0)  # a run's keys: runs in other tests find them cached
    cache = Cache(cache_dir)
    out = run_graph([data, base], cache, runtime, StageLog(None, "test"))
    assert out[base.key].status in ("done", "cached"), out[base.key].traceback
    return t, cache.path(data), cache.path(base), out[data.key].result, out[base.key].result


@pytest.mark.slow
def test_sft_model_learns_and_samples_parse(hh_stages):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t, data_dir, base_dir, data_meta, meta = hh_stages
    assert meta["heldout_loss_after"] < 0.1 * meta["heldout_loss_before"]
    assert meta["train_loss_last"] < 0.2 * meta["train_loss_first"]
    s = meta["samples"]
    assert s["n"] == t.config.n_test * 8 and s["parse_rate"] >= 0.8  # measured 0.91 (seed 0)
    assert 0.0 < s["all_high_rate"] < 0.15  # low but reachable
    for o in t.objective_names:  # the SFT model imitates the behaviour policy
        assert s["mean"][o] == pytest.approx(meta["behaviour"]["mean"][o], abs=0.15)
    assert meta["refine"]["rewrite_improves_rate"] > 0.3 and meta["refine"]["review_parse_rate"] > 0.5
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    tok = AutoTokenizer.from_pretrained(base_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    assert {"q_proj", "k_proj", "v_proj", "o_proj"} <= names
    assert tok.bos_token and tok.eos_token and tok.pad_token and model.config.eos_token_id == tok.eos_token_id
    enc = tok([t.format_prompt(BREAD)], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=48)
    text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert g.parses(text), text


@pytest.mark.slow
def test_sft_corpus_uses_train_prompts_and_the_templates(hh_stages):
    t, data_dir, base_dir, _, _ = hh_stages
    corpus = read_jsonl(base_dir / "sft_corpus.jsonl")
    test = {r["prompt"] for r in read_jsonl(TaskData(data_dir).test)}
    assert not any(p in row["prompt"] for row in corpus for p in test)
    kinds = {k: [r for r in corpus if r["kind"] == k] for k in ("direct", "review", "rewrite")}
    assert [len(v) for v in kinds.values()] == [2400, 400, 400]
    user = t.prompt_template.split("{prompt}")[0]  # "BEGINNING OF CONVERSATION: USER: "
    assert all(r["prompt"].startswith(user + REVIEW_TEMPLATE.split("{prompt}")[0]) for r in kinds["review"])
    assert all(r["prompt"].startswith(user + REWRITE_TEMPLATE.split("{prompt}")[0]) for r in kinds["rewrite"])
    assert all(r["prompt"].endswith(" ASSISTANT:") for r in corpus)
    # critiques are imperfect: some differ from the right one
    def right(r):
        prompt, response = r["prompt"].split(" Question: ")[1].split(" Answer: ")
        return g.parse_review(r["response"]) == g.true_critique(g.topic_of(prompt), response.removesuffix(" ASSISTANT:"))
    share = sum(map(right, kinds["review"])) / len(kinds["review"])
    assert 0.6 < share < 0.9


@pytest.mark.slow
def test_sft_deterministic_per_seed(tmp_path):
    from safetensors.torch import load_file

    t = task(**TINY)
    (tmp_path / "data").mkdir()
    t.build_data(tmp_path / "data", 0, None)
    results = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        results.append(t.build_base(TaskData(tmp_path / "data"), tmp_path / name, 0, None))
    wa, wb = (load_file(tmp_path / n / "model.safetensors") for n in ("a", "b"))
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    volatile = ("sft_seconds", "sft_cpu_seconds", "measure_seconds", "seconds")
    assert {k: v for k, v in results[0].items() if k not in volatile} == {k: v for k, v in results[1].items() if k not in volatile}
    assert results[0]["sampler"] == "model.generate"  # no runtime given
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


@pytest.mark.slow
def test_three_objective_variant(tmp_path):
    t = task("synthetic-3obj", **TINY)
    data_meta = t.build_data(tmp_path, 0, None)
    rows = read_jsonl(TaskData(tmp_path).train)
    assert set(rows[0]["labels"]) == {"helpful", "harmless", "concise"}
    assert abs(conflict_stats(rows, t.objective_names)["conflict_fraction"] - 0.6) <= 0.02
    assert set(data_meta["train_responses"]["mean"]) == {"helpful", "harmless", "concise"}
    (tmp_path / "base").mkdir()
    meta = t.build_base(TaskData(tmp_path), tmp_path / "base", 0, None)
    assert set(meta["samples"]["mean"]) == {"helpful", "harmless", "concise"}
    assert meta["heldout_loss_after"] < meta["heldout_loss_before"]
    scores = OracleScorer(variant="3obj").score([BREAD], [f" {S0}"])
    assert scores == {"helpful": [0.25], "harmless": [1.0], "concise": [1.0]}
    assert json.loads(json.dumps(meta)) == meta  # lands in summary.json as is
