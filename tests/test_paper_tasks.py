"""The paper tasks (beavertails, helpsteer) on offline fixtures in the exact upstream schemas
(tests/fixtures/, written by make_paper_fixtures.py), through the same loader a hub id uses.
Expected values are derived here from the raw fixture rows, independently of the task code."""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest

from sipo_bench.configs.schema import ConfigError
from sipo_bench.contract.interfaces import TaskData
from sipo_bench.execution.stages import read_jsonl

FIXTURES = Path(__file__).parent / "fixtures"
PKU10K = FIXTURES / "pku_saferlhf_10k"
PKU30K = FIXTURES / "pku_saferlhf_30k"
HELPSTEER = FIXTURES / "helpsteer"
ATTRS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


def _raw(path: Path) -> list[dict]:
    data = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _tiny_models():
    spec = importlib.util.spec_from_file_location("sipo_test_make_checkpoints", FIXTURES / "make_checkpoints.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    _tiny_models().make_tokenizer(d)
    return d


def task(name: str, **options):
    from sipo_bench.execution.runtime import Runtime

    return Runtime(quiet=True).task(name, options)


def build(t, out: Path) -> tuple[dict, list[dict], list[dict], list[dict]]:
    out.mkdir(parents=True, exist_ok=True)
    meta = t.build_data(out, 0, None)
    d = TaskData(out)
    return meta, read_jsonl(d.train), read_jsonl(d.val), read_jsonl(d.test)


def bt(**kw):
    return task("beavertails", **{"dataset": str(PKU10K), "test_dataset": str(PKU30K), **kw})


# --- beavertails -----------------------------------------------------------------------------


def test_beavertails_split_rows_and_test_prompts(tmp_path):
    import datasets

    meta, train, val, test = build(bt(n_test=5), tmp_path)
    raw = _raw(PKU10K / "train.jsonl")
    # the split is datasets' train_test_split(test_size=0.1, seed=0) of the 10k train split
    ref = datasets.Dataset.from_list(raw).train_test_split(test_size=0.1, seed=0)
    assert [r["prompt"] for r in train] == ref["train"]["prompt"]
    assert [r["prompt"] for r in val] == ref["test"]["prompt"]
    assert (len(train), len(val)) == (54, 6)
    assert [r["prompt"] for r in train] != [r["prompt"] for r in raw[:54]]  # shuffled, not a head/tail cut
    by_prompt = {r["prompt"]: r for r in raw}
    for row in train + val:
        src = by_prompt[row["prompt"]]
        assert row["responses"] == [" " + src["response_0"], " " + src["response_1"]]
        assert row["labels"] == {"helpfulness": src["better_response_id"], "harmlessness": src["safer_response_id"]}
        assert row["conflict"] == (src["better_response_id"] != src["safer_response_id"])
        assert row["safe"] == [src["is_response_0_safe"], src["is_response_1_safe"]]
    # test prompts: the last 5 rows of the 30K *test* split, in order (its train split is ignored)
    assert [r["prompt"] for r in test] == [r["prompt"] for r in _raw(PKU30K / "test.jsonl")[-5:]]
    assert meta["pairs_train"] == 54 and meta["test_prompts"] == 5
    # default n_test=500 > 12 rows: every test row
    _, _, _, test_all = build(bt(), tmp_path / "all")
    assert len(test_all) == 12


def test_beavertails_hub_id_goes_through_the_same_loader(tmp_path, monkeypatch):
    """A hub id is loaded by `datasets.load_dataset(id, split=...)`: the same call a local copy in
    the hub layout gets; redirected here to the fixture directories (no network)."""
    import datasets

    calls = []
    real = datasets.load_dataset
    hub = {"PKU-Alignment/PKU-SafeRLHF-10K": str(PKU10K), "PKU-Alignment/PKU-SafeRLHF-30K": str(PKU30K)}

    def fake(path, *args, **kwargs):
        calls.append((path, kwargs.get("split")))
        return real(hub.get(path, path), *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    _, train_h, val_h, test_h = build(task("beavertails", n_test=3), tmp_path / "hub")
    assert calls == [("PKU-Alignment/PKU-SafeRLHF-10K", "train"), ("PKU-Alignment/PKU-SafeRLHF-30K", "test")]
    calls.clear()
    _, train_l, val_l, test_l = build(bt(n_test=3), tmp_path / "local")
    assert calls == [(str(PKU10K), "train"), (str(PKU30K), "test")]
    assert (train_h, val_h, test_h) == (train_l, val_l, test_l)


def test_beavertails_local_file_formats(tmp_path):
    import datasets

    _, train_ref, val_ref, _ = build(bt(n_test=2), tmp_path / "ref")
    ds = datasets.Dataset.from_list(_raw(PKU10K / "train.jsonl"))
    ds.to_parquet(str(tmp_path / "pku.parquet"))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "saved"))
    for source in (PKU10K / "train.jsonl", tmp_path / "pku.parquet", tmp_path / "saved"):
        _, train, val, _ = build(bt(n_test=2, dataset=str(source)), tmp_path / source.name.replace(".", "_"))
        assert (train, val) == (train_ref, val_ref), source


def test_beavertails_conflict_fraction_subsets(tmp_path):
    _, train_all, val_all, _ = build(bt(n_test=2), tmp_path / "all")
    for f in (0.0, 0.3, 0.5, 0.6, 0.9, 1.0):
        meta, train, val, _ = build(bt(n_test=2, conflict_fraction=f), tmp_path / str(f))
        for rows, full in ((train, train_all), (val, val_all)):
            conf = [r for r in full if r["conflict"]]
            non = [r for r in full if not r["conflict"]]
            total = min(len(conf), len(non))
            n_c = int(total * f)
            assert len(rows) == total
            assert sum(r["conflict"] for r in rows) == n_c
            # PKU: the LAST pairs of each pool (n = 0 takes none), shuffled by random.seed(42)
            expected = (conf[len(conf) - n_c:] if n_c else []) + (non[len(non) - (total - n_c):] if total - n_c else [])
            random.seed(42)
            random.shuffle(expected)
            assert rows == expected, (f, rows is train)
    _, train0, _, _ = build(bt(n_test=2, conflict_fraction=0.0), tmp_path / "zero")
    assert not any(r["conflict"] for r in train0)  # the released `pool[-0:]` would keep them all


def test_beavertails_max_examples_and_pointer(tmp_path):
    _, train, val, _ = build(bt(n_test=2, max_examples=7), tmp_path / "d")
    assert len(train) == 7 and len(val) == 6
    t = bt(base_model=str(PKU10K))
    out = tmp_path / "base"
    out.mkdir()
    assert t.build_base(TaskData(tmp_path / "d"), out, 0, None) == {"model": str(PKU10K.resolve())}
    assert json.loads((out / "pointer.json").read_text()) == {"model": str(PKU10K.resolve())}
    hub = task("beavertails")
    out2 = tmp_path / "base2"
    out2.mkdir()
    hub.build_base(TaskData(tmp_path / "d"), out2, 0, None)
    assert json.loads((out2 / "pointer.json").read_text()) == {"model": "PKU-Alignment/alpaca-7b-reproduced"}


def test_beavertails_objectives_scorers_and_template():
    t = task("beavertails")
    assert [(o.name, o.higher_is_better) for o in t.objectives()] == [("helpfulness", True), ("harmlessness", False)]
    assert [s for s, _ in t.scorers()] == ["beaver-reward", "beaver-cost"]
    assert t.scorers()[1][1]["model"] == "PKU-Alignment/beaver-7b-v1.0-cost"
    assert t.format_prompt("Hi?") == "BEGINNING OF CONVERSATION: USER: Hi? ASSISTANT:"


def test_beavertails_config_and_schema_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"`conflict_fraction`: expected a fraction in \[0, 1\]"):
        task("beavertails", conflict_fraction=1.5)
    with pytest.raises(ConfigError, match=r"`dataset`: expected an existing local path or a hub id, got './nope"):
        task("beavertails", dataset="./nope")
    with pytest.raises(ConfigError, match=r"`n_test`: expected an integer >= 1, got 0"):
        task("beavertails", n_test=0)
    with pytest.raises(ConfigError, match=r"`task_options.dataset_name`: unknown key"):
        task("beavertails", dataset_name="x")
    rows = _raw(PKU10K / "train.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "safer_response_id"}) + "\n" for r in rows))
    with pytest.raises(ConfigError, match=r"`task_options.dataset`: expected columns .* missing \['safer_response_id'\]"):
        build(bt(dataset=str(bad)), tmp_path / "x")
    with pytest.raises(ConfigError, match=r"`task_options.test_dataset`: cannot load split 'validation'"):
        build(bt(test_split="validation"), tmp_path / "y")


# --- helpsteer -------------------------------------------------------------------------------


def hs(tokenizer_dir, **kw):
    kw.setdefault("tokenizer", str(tokenizer_dir))
    return task("helpsteer", dataset=str(HELPSTEER), **kw)


def raw_pairs(rows: list[dict]) -> list[tuple]:
    """(prompt, response_0, response_1, {attr: label}) of every two responses of one prompt."""
    out = []
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["prompt"], []).append(r)
    for prompt, group in by.items():
        for j in range(len(group)):
            for k in range(j + 1, len(group)):
                a, b = group[j], group[k]
                out.append((prompt, a["response"], b["response"],
                            {x: (0 if a[x] > b[x] else 1 if b[x] > a[x] else None) for x in ATTRS}))
    return out


def ntok(text: str) -> int:
    return 1 + len(text.split())  # the tiny tokenizer: BOS + one token per word


def test_helpsteer_pairs_labels_length_filter_and_test_prompts(tmp_path, tokenizer_dir):
    max_len = 30
    meta, train, val, test = build(hs(tokenizer_dir, max_length=max_len, objectives=list(ATTRS)), tmp_path)
    train_raw, val_raw = _raw(HELPSTEER / "train.jsonl.gz"), _raw(HELPSTEER / "validation.jsonl.gz")
    fits = lambda p: ntok(p[0]) + ntok(p[1]) <= max_len and ntok(p[0]) + ntok(p[2]) <= max_len  # noqa: E731
    all_train = raw_pairs(train_raw)
    kept_train = [p for p in all_train if fits(p)]
    assert len(kept_train) < len(all_train)  # the long response of Q3 is filtered
    kept_val = [p for p in raw_pairs(val_raw) if fits(p)]
    # test prompts: as many as unique validation prompts, sampled from the sorted train prompts
    n = len({p[0] for p in kept_val})
    expected_test = random.Random(0).sample(sorted({p[0] for p in kept_train}), n)
    assert [r["prompt"] for r in test] == expected_test and n == 3  # V0 has one response: no pair
    # train: the remaining prompts' pairs with at least one label, in order, labelled per attribute
    expected_train = [p for p in kept_train if p[0] not in set(expected_test) and any(v is not None for v in p[3].values())]
    assert [(r["prompt"], r["responses"], r["labels"]) for r in train] == \
        [(p[0], [" " + p[1], " " + p[2]], p[3]) for p in expected_train]
    assert [(r["prompt"], r["labels"]) for r in val] == [(p[0], p[3]) for p in kept_val if any(v is not None for v in p[3].values())]
    assert all(r["prompt"] not in set(expected_test) for r in train)
    assert any(None in r["labels"].values() for r in train)  # ties are null labels
    assert meta["test_prompts"] == 3 and meta["pairs_train"] == len(train)
    # another test seed draws other prompts; the same seed the same ones
    _, _, _, test_b = build(hs(tokenizer_dir, max_length=max_len, test_seed=1), tmp_path / "b")
    _, _, _, test_c = build(hs(tokenizer_dir, max_length=max_len), tmp_path / "c")
    assert test_b != test and test_c == test


def test_helpsteer_default_objectives_drop_unlabelled_pairs(tmp_path, tokenizer_dir):
    _, train, val, _ = build(hs(tokenizer_dir), tmp_path)
    t = hs(tokenizer_dir)
    assert [(o.name, o.higher_is_better) for o in t.objectives()] == [("correctness", True), ("verbosity", True)]
    assert t.scorers() == [("dpa-rm", {"model": "RLHFlow/RewardModel-Mistral-7B-for-DPA-v1", "batch_size": 8})]
    for r in train + val:
        assert set(r["labels"]) == {"correctness", "verbosity"}
        assert any(v is not None for v in r["labels"].values())
        s = r["scores"]
        for o in ("correctness", "verbosity"):  # higher score chosen: verbosity prefers the more verbose one
            want = 0 if s[o][0] > s[o][1] else 1 if s[o][1] > s[o][0] else None
            assert r["labels"][o] == want
    three = hs(tokenizer_dir, objectives=["helpfulness", "correctness", "verbosity"])
    _, train3, _, _ = build(three, tmp_path / "3")
    assert [o.name for o in three.objectives()] == ["helpfulness", "correctness", "verbosity"]
    assert len(train3) >= len(train) and all(set(r["labels"]) == {"helpfulness", "correctness", "verbosity"} for r in train3)


def test_helpsteer_conflict_fraction_takes_the_first_pairs(tmp_path, tokenizer_dir):
    _, train_all, val_all, _ = build(hs(tokenizer_dir), tmp_path / "all")
    both = lambda r: None not in r["labels"].values()  # noqa: E731
    for f in (0.0, 0.2, 0.3, 0.6, 0.9):
        _, train, val, _ = build(hs(tokenizer_dir, conflict_fraction=f), tmp_path / str(f))
        labelled = [r for r in train_all if both(r)]
        conf = [r for r in labelled if r["labels"]["correctness"] != r["labels"]["verbosity"]]
        agree = [r for r in labelled if r["labels"]["correctness"] == r["labels"]["verbosity"]]
        total = min(len(conf), len(agree))
        n_c = int(total * f)
        expected = conf[:n_c] + agree[:total - n_c]
        random.seed(42)
        random.shuffle(expected)
        assert train == expected and total > 0
        assert val == [r for r in val_all if both(r)]  # validation: both labelled, not subset


def test_helpsteer_base_model_and_tokenizer_required(tmp_path, tokenizer_dir):
    t = task("helpsteer", dataset=str(HELPSTEER))
    with pytest.raises(ConfigError, match=r"`task_options.tokenizer`: expected the policy's tokenizer"):
        t.build_data(tmp_path, 0, None)
    out = tmp_path / "base"
    out.mkdir()
    with pytest.raises(ConfigError, match=r"`task_options.base_model`: expected the hub id or path of the SFT policy"):
        t.build_base(TaskData(tmp_path), out, 0, None)
    # the base model's tokenizer is the default of the length filter
    _, train_a, _, _ = build(task("helpsteer", dataset=str(HELPSTEER), base_model=str(tokenizer_dir), max_length=30),
                             tmp_path / "a")
    _, train_b, _, _ = build(hs(tokenizer_dir, max_length=30), tmp_path / "b")
    assert train_a == train_b
    with pytest.raises(ConfigError, match=r"`objectives\[1\]`: expected one of helpfulness"):
        task("helpsteer", objectives=["correctness", "honesty"])
    with pytest.raises(ConfigError, match=r"`objectives`: expected at least two"):
        task("helpsteer", objectives=["correctness"])


def test_helpsteer_external_test_dataset(tmp_path, tokenizer_dir):
    prompts = sorted({r["prompt"] for r in _raw(HELPSTEER / "train.jsonl.gz")})[:3]
    f = tmp_path / "test.jsonl"
    f.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts + prompts[:1]))
    _, train, _, test = build(hs(tokenizer_dir, test_dataset=str(f)), tmp_path / "d")
    assert [r["prompt"] for r in test] == prompts
    assert not {r["prompt"] for r in train} & set(prompts)


@pytest.mark.slow
def test_helpsteer_base_stage_sfts_a_pretrained_model(tmp_path, tokenizer_dir):
    """With `sft`, the base stage fine-tunes the pretrained `base_model` (a tiny Llama saved
    locally, standing in for meta-llama/Llama-2-7b-hf) on HelpSteer's SFT split (every train row
    once, test prompts held out; validation rows for evaluation), merges the LoRA and saves a
    full model: the loss on the SFT rows went down and the weights moved."""
    import torch
    from transformers import AutoModelForCausalLM

    from sipo_bench_plugins.hf_generation import resolve_model_path

    pretrained = _tiny_models().make_policy(tmp_path / "pretrained")
    sft = {"epochs": 3, "learning_rate": 5e-3, "batch_size": 8, "grad_accum": 1, "max_length": 64, "lora_r": 4,
           "lora_alpha": 8, "eval_every": 0.5}
    t = hs(tokenizer_dir, base_model=str(pretrained), sft=sft)
    meta, train, _, test = build(t, tmp_path / "data")
    raw = _raw(HELPSTEER / "train.jsonl.gz")
    held_out = {r["prompt"] for r in test}
    sft_rows = read_jsonl(tmp_path / "data" / "sft_train.jsonl")
    expected = list(dict.fromkeys((r["prompt"], r["response"]) for r in raw if r["prompt"] not in held_out))
    assert [(r["prompt"], r["response"]) for r in sft_rows] == [(p, " " + x) for p, x in expected]
    assert meta["sft_rows"] == len(expected) and meta["sft_val_rows"] == len(_raw(HELPSTEER / "validation.jsonl.gz"))
    out = tmp_path / "base"
    out.mkdir()
    result = t.build_base(TaskData(tmp_path / "data"), out, 0, None)
    assert resolve_model_path(out) == str(out) and not (out / "pointer.json").exists()
    assert result["final_loss"] < result["initial_loss"] and result["n_rows"] == len(expected)
    assert result["n_val_rows"] > 0 and result["best_eval_loss"] is not None
    from sipo_bench.reporting.curves import read_curves, series

    rec = read_curves(out)  # the SFT stage's curves, evaluated every half epoch
    assert rec["trainer"] == "SFTTrainer" and series(rec["train"], "loss") and len(series(rec["eval"], "eval_loss")) >= 2
    assert rec["extra"]["initial_loss"] == result["initial_loss"]
    a = AutoModelForCausalLM.from_pretrained(pretrained).state_dict()
    b = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert set(a) == set(b)  # a plain model: the LoRA is merged
    moved = [k for k in a if not torch.equal(a[k], b[k])]
    assert moved and all(any(m in k for m in ("q_proj", "k_proj", "v_proj", "o_proj")) for k in moved)
    # without `sft` the base stage points at base_model, as before
    plain = tmp_path / "plain"
    plain.mkdir()
    hs(tokenizer_dir, base_model=str(pretrained)).build_base(TaskData(tmp_path / "data"), plain, 0, None)
    assert json.loads((plain / "pointer.json").read_text()) == {"model": str(pretrained)}


def test_paper_task_plugins_register_lazily():
    import subprocess

    code = ("import sys; from sipo_bench.plugin_host.manager import load; r = load(); "
            "print(sorted(n for n in r.tasks.names() if n in ('beavertails','helpsteer')), "
            "r.objectives.get('harmlessness').higher_is_better, r.objectives.get('verbosity').higher_is_better, "
            "'datasets' in sys.modules or 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['beavertails', 'helpsteer'] False True False"


# --- smoke presets end to end ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("generator", ["transformers", "vllm"])
@pytest.mark.parametrize("name", ["smoke-beavertails", "smoke-helpsteer"])
def test_smoke_preset_runs_end_to_end(name, generator, tmp_path, monkeypatch):
    """presets/smoke-*.yaml on the conformance fixtures (reward models in the hub's layouts, the
    SentencePiece-style tokenizer): data -> base (pointer, or SFT of the pretrained stand-in for
    HelpSteer) -> DPO -> soups, MOD -> generate -> score (this repo's reward-model scorers) ->
    summary; with `generator: vllm` on the fake vLLM engine (tests/fake_vllm.py), which serves the
    single models and soups while MOD's fusion points go to transformers, as summary.json says.
    The base policy's mean scores are recomputed here from its generations with fresh scorers."""
    import numpy as np

    from sipo_bench.configs.run_config import load_yaml, make_config

    from sipo_bench.planning.experiment import plan_run

    from sipo_bench.planning.run import execute
    from sipo_bench.execution.runtime import Runtime
    from sipo_bench.execution.stages import Cache

    tm = _tiny_models()
    paths = tm.build_stand_ins(tmp_path / "models")
    config_path = tm.write_smoke_configs(tmp_path, paths)[name]
    data = load_yaml(config_path)
    data["methods"] = ["dpo-soups", "mod"]
    if generator == "vllm":
        sys.path.insert(0, str(Path(__file__).parent))
        import fake_vllm

        engine = fake_vllm.install(monkeypatch)
        monkeypatch.setenv("SIPO_BENCH_VLLM_MAX_LORA_RANK", "1")  # the plan, not the floor, sizes the engine
        data["generator"] = "vllm"
        data["jobs"] = 1  # the fake engine lives in this process (monkeypatched), not in spawned workers
    cfg = make_config(data)
    summary, out = execute(cfg, Runtime(quiet=True))
    assert summary["task"] == cfg.task
    assert all(m["status"] == "ok" for m in summary["methods"].values()), summary["methods"]
    directions = {o["name"]: o["higher_is_better"] for o in summary["objectives"]}
    assert directions == ({"helpfulness": True, "harmlessness": False} if cfg.task == "beavertails"
                          else {"correctness": True, "verbosity": True})
    soups, mod = summary["methods"]["dpo-soups"], summary["methods"]["mod"]
    assert len(soups["points"]) == 3 and len(mod["points"]) == 3
    if generator == "vllm":
        assert [p["generator"] for p in soups["points"]] == ["vllm"] * 3
        assert [p["generator"] for p in mod["points"]] == ["vllm", "transformers", "vllm"]  # fusion in the middle
        assert mod["generators"] == ["transformers", "vllm"]
        # one engine for the whole run, sized by the plan for the largest soup (two rank-4 adapters)
        assert [e["max_lora_rank"] for e in engine.started] == [8]
    else:
        assert {p["generator"] for p in soups["points"] + mod["points"]} == {"transformers"}
    base_scores = summary["base_policy"]["scores"]["0"]
    assert summary["ref_point"] == base_scores

    rt = Runtime(quiet=True)
    plan = plan_run(cfg, rt)
    cache = Cache(cfg.cache_dir)
    gens = read_jsonl(cache.path(plan.reference[0].generate) / "generations.jsonl")
    test = read_jsonl(TaskData(cache.path(plan.data[0])).test)
    assert [g["prompt"] for g in gens] == [t["prompt"] for t in test]
    assert all(g["response"].startswith(" ") or g["response"] == "" for g in gens)
    prompts, responses = [g["prompt"] for g in gens], [g["response"] for g in gens]
    t = plan.task
    recomputed = {}
    for scorer_name, options in t.scorers():
        recomputed.update(rt.registries.scorers.get(scorer_name)(**options).score(prompts, responses))
    assert [float(np.mean(recomputed[o])) for o in t.objective_names] == pytest.approx(base_scores, abs=1e-5)
    base_dir = cache.path(plan.base[0])
    if cfg.task == "beavertails":
        assert json.loads((base_dir / "pointer.json").read_text()) == {"model": str(paths["policy"])}
    else:  # fine-tuned from the pretrained stand-in in the base stage
        assert (base_dir / "config.json").is_file() and not (base_dir / "pointer.json").exists()
        assert summary["task_base"]["0"]["sft_from"] == str(paths["policy"])


# --- paper presets ---------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["paper-beavertails", "paper-helpsteer"])
def test_paper_presets_validate_with_the_paper_settings(preset, capsys):
    from sipo_bench.cli import main
    from sipo_bench.configs.run_config import load_yaml, make_config
    from sipo_bench.planning.experiment import plan_run
    from sipo_bench.execution.runtime import Runtime

    path = Path(__file__).parent.parent / "presets" / f"{preset}.yaml"
    assert main(["validate", "--config", str(path)]) == 0
    assert capsys.readouterr().out.startswith("ok: task ")
    cfg = make_config(load_yaml(path))
    plan = plan_run(cfg, Runtime(quiet=True))
    assert set(plan.methods) == {"dpo", "dpo-soups", "mod", "modpo", "dpo-lw", "sipo"}
    assert [round(w[0], 6) for w in plan.grid] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert cfg.decoding.greedy and (cfg.decoding.max_new_tokens, cfg.decoding.max_length) == (512, 512)
    for m in ("dpo", "modpo", "dpo-lw", "sipo"):
        c = plan.methods[m].config
        assert (c["lora_r"], c["lora_alpha"], c["lora_dropout"], c["beta"], c["max_length"]) == (64, 1.0, 0.0, 0.1, 512)
        assert sorted(c["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
        assert (c["epochs"], c["eval_every"], c["load_best"], c["long_pairs"]) == (3.0, 0.25, True, "drop")
        assert c["learning_rate"] == (5e-6 if m == "sipo" else 5e-4)
    sipo = plan.methods["sipo"].config
    assert (sipo["realign_learning_rate"], sipo["realign_epochs"]) == (5e-6, 3.0)  # released re-alignment
    assert (sipo["sample_greedy"], sipo["filter_scorers"]) == (True, "objectives+soups")
    assert sipo["alpha"] == 0.1 and sipo["base"] == "mod" and sipo["nll_normalization"] == "padded_length"
    assert sipo["sample_max_length"] == 512
    assert [w[0] for w in sipo["sample_weights"]] == [0.2, 0.4, 0.6, 0.8]
    t = plan.task.config
    if preset == "paper-beavertails":
        assert (t.base_model, t.n_test, t.conflict_fraction) == ("PKU-Alignment/alpaca-7b-reproduced", 500, None)
        assert [s for s, _ in plan.task.scorers()] == ["beaver-reward", "beaver-cost"]
    else:
        assert (t.objectives, t.conflict_fraction, t.max_length) == (["correctness", "verbosity"], 0.6, 512)
        assert [s for s, _ in plan.task.scorers()] == ["dpa-rm"]
        # runs as shipped: the base stage fine-tunes the public Llama-2-7b with the paper's recipe
        assert t.base_model == "meta-llama/Llama-2-7b-hf" and t.sft is not None
        assert (t.sft.lora_r, t.sft.lora_alpha, t.sft.learning_rate, t.sft.epochs, t.sft.max_length) == (16, 32.0, 1e-4, 3.0, 512)
        assert (sipo["review_max_length"], sipo["rewrite_max_length"]) == (1200, 1600)
