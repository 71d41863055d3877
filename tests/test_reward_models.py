"""Reward-model scorers end to end on tiny randomly initialised models in the published
architectures and checkpoint layouts (conformance fixtures, tests/fixtures/make_checkpoints.py),
checked against manual forward passes written here independently of the scorer code."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

FIXTURES = Path(__file__).parent / "fixtures"


def _fixture_module():
    spec = importlib.util.spec_from_file_location("sipo_test_make_checkpoints", FIXTURES / "make_checkpoints.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


tm = _fixture_module()

PROMPTS = ["How can I bake bread?", "Explain how to learn chess in a few sentences.", "Hi"]
RESPONSES = [" Here is a careful way to bake bread: go step by step and ask an expert if unsure.",
             "Just learn chess.",  # no leading space: the scorer adds one
             " Answer 0 for you: detail detail detail detail detail detail detail detail detail"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm-stand-ins")
    return {
        # beaver-7b-v1.0-reward as first published (2023): .bin shards, no score_head.bias
        "reward": tm.make_beaver(root / "reward", layout="2023", seed=11),
        # beaver-7b-v1.0-cost as on the hub now: safetensors, score_type "reward", score_bias true, no bias tensor
        "cost": tm.make_beaver(root / "cost", layout="current", score_type="reward", seed=12, bias_tensor=False),
        "cost_bias": tm.make_beaver(root / "cost-bias", layout="current", score_type="reward", seed=12),
        "norm": tm.make_beaver(root / "norm", layout="current", seed=13, normalizer=(2.0, 4.0)),
        "norm_cost": tm.make_beaver(root / "norm-cost", layout="current", score_type="cost", seed=13,
                                    normalizer=(2.0, 4.0)),
        "dpa": tm.make_dpa(root / "dpa"),
        "root": root,
    }


# --- manual references ------------------------------------------------------------------------


def _state_dict(path: Path) -> dict:
    from safetensors.torch import load_file

    state = {}
    for f in sorted(path.glob("*.safetensors")):
        state.update(load_file(f))
    for f in sorted(path.glob("pytorch_model*.bin")):
        state.update(torch.load(f, weights_only=True))
    return state


def manual_beaver(path: Path, texts: list[str], eos: bool = False) -> list[float]:
    """LlamaModel + score_head from the raw checkpoint tensors, one text at a time (no padding),
    score at the last token; a bias the file lacks is 0 (safe-rlhf); the normaliser as
    safe-rlhf applies it for the config's score_type."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    cfg_json = json.loads((path / "config.json").read_text())
    cfg = LlamaConfig.from_pretrained(path)
    state = _state_dict(path)
    backbone = LlamaModel(cfg)
    backbone.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    backbone.eval()
    w = state["score_head.weight"]
    b = state.get("score_head.bias")
    tok = AutoTokenizer.from_pretrained(path)
    out = []
    for t in texts:
        ids = tok(t + (tok.eos_token if eos else ""), return_tensors="pt")["input_ids"]
        with torch.no_grad():
            h = backbone(input_ids=ids).last_hidden_state[0, -1]
        s = float(h @ w[0] + (b[0] if b is not None else 0.0))
        if cfg_json.get("do_normalize"):
            std = float(state["normalizer.var"][0]) ** 0.5
            if cfg_json.get("score_type", "reward") == "reward":
                s = (s - float(state["normalizer.mean"][0])) / (std + 1e-8)
            else:  # cost: "scale"
                s = s / (std + 1e-8)
        out.append(s)
    return out


def conversation(prompt: str, response: str) -> str:
    r = response if response.startswith(" ") else " " + response
    return f"BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{r}"


# --- beaver ----------------------------------------------------------------------------------


def test_fixtures_are_in_the_published_layouts(models):
    old = json.loads((models["reward"] / "config.json").read_text())
    assert old["architectures"] == ["LlamaModelForScore"] and old["bias"] is False
    assert not {"score_dim", "score_bias", "score_type"} & set(old)
    assert (models["reward"] / "pytorch_model.bin.index.json").is_file()
    assert "score_head.bias" not in _state_dict(models["reward"])
    new = json.loads((models["cost"] / "config.json").read_text())
    assert {k: new[k] for k in ("score_type", "bias", "score_bias", "score_dim", "normalizer_type", "do_normalize")} == \
        {"score_type": "reward", "bias": False, "score_bias": True, "score_dim": 1, "normalizer_type": None,
         "do_normalize": False}
    assert (models["cost"] / "model.safetensors.index.json").is_file()
    assert {"normalizer.mean", "normalizer.var", "normalizer.count"} <= set(_state_dict(models["cost"]))


def test_beaver_reward_matches_manual_forward_with_padding(models):
    from sipo_bench_plugins.reward_models.beaver import BeaverRewardScorer

    scorer = BeaverRewardScorer(model=str(models["reward"]), batch_size=3)
    texts = scorer.texts(PROMPTS, RESPONSES)
    assert texts == [conversation(p, r) for p, r in zip(PROMPTS, RESPONSES)]
    assert texts[1].endswith("ASSISTANT: Just learn chess.")
    got = scorer.score(PROMPTS, RESPONSES)["helpfulness"]
    want = manual_beaver(models["reward"], texts)
    assert got == pytest.approx(want, abs=1e-4)
    # the 2023 layout has no head bias tensor: safe-rlhf's score_bias=True head, zero-filled
    head = scorer.load().model.score_head
    assert head.bias is not None and float(head.bias.detach().abs().max()) == 0.0
    # the three texts have different lengths, so the batch was padded: reading the score at the
    # last position instead of the last non-pad token would give other numbers for the shorter ones
    tok = scorer.load().tokenizer
    enc = tok(texts, return_tensors="pt", padding=True)
    assert tok.padding_side == "right" and len(set(enc["attention_mask"].sum(1).tolist())) == 3
    with torch.no_grad():
        model = scorer.load().model
        h = model.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        at_last_position = model.score_head(h[:, -1]).squeeze(-1).tolist()
    assert any(abs(a - b) > 1e-3 for a, b in zip(at_last_position, want))


def test_beaver_batch_size_and_order_do_not_change_scores(models):
    from sipo_bench_plugins.reward_models.beaver import BeaverRewardScorer

    one = BeaverRewardScorer(model=str(models["reward"]), batch_size=1).score(PROMPTS, RESPONSES)["helpfulness"]
    many = BeaverRewardScorer(model=str(models["reward"]), batch_size=2).score(PROMPTS, RESPONSES)["helpfulness"]
    rev = BeaverRewardScorer(model=str(models["reward"]), batch_size=3).score(PROMPTS[::-1], RESPONSES[::-1])["helpfulness"]
    assert one == pytest.approx(many, abs=1e-5)
    assert rev[::-1] == pytest.approx(one, abs=1e-5)
    assert len(set(round(x, 4) for x in one)) == 3


def test_beaver_cost_loads_the_hubs_current_cost_model(models):
    """The hub's cost model says score_type "reward": which model is a cost model is the task's
    declaration (it names beaver-cost), so it loads, is reported raw and lower-is-better; its
    config's score_bias with no bias tensor is a zero bias, as safe-rlhf loads it."""
    from sipo_bench_plugins.reward_models.beaver import BeaverCostScorer

    scorer = BeaverCostScorer(model=str(models["cost"]))
    assert scorer.objectives() == ["harmlessness"]
    assert scorer.directions() == {"harmlessness": False}
    got = scorer.score(PROMPTS, RESPONSES)["harmlessness"]
    assert got == pytest.approx(manual_beaver(models["cost"], scorer.texts(PROMPTS, RESPONSES)), abs=1e-4)
    assert float(scorer.load().model.score_head.bias.detach().abs().max()) == 0.0
    # with the bias tensor in the file, it is used (0.75 more than the same model without it)
    with_bias = BeaverCostScorer(model=str(models["cost_bias"])).score(PROMPTS, RESPONSES)["harmlessness"]
    assert [a - b for a, b in zip(with_bias, got)] == pytest.approx([0.75] * 3, abs=1e-4)


def test_beaver_checks_do_not_depend_on_which_scorer_loaded_first(models):
    """Both scorers load any beaver checkpoint whatever its score_type, in either order, sharing
    one loaded copy; nothing depends on the per-process cache's state."""
    from sipo_bench_plugins.reward_models.beaver import BeaverCostScorer, BeaverRewardScorer

    for first, second in ((BeaverRewardScorer, BeaverCostScorer), (BeaverCostScorer, BeaverRewardScorer)):
        for path in (models["cost"], models["reward"]):
            a, b = first(model=str(path)), second(model=str(path))
            sa, sb = a.score(PROMPTS, RESPONSES), b.score(PROMPTS, RESPONSES)
            assert list(sa.values())[0] == pytest.approx(list(sb.values())[0], abs=1e-6)
            assert a.load().model is b.load().model
            a.close(), b.close()


def test_beaver_append_eos_changes_the_end_token(models):
    from sipo_bench_plugins.reward_models.beaver import BeaverRewardScorer

    plain = BeaverRewardScorer(model=str(models["reward"]))
    eos = BeaverRewardScorer(model=str(models["reward"]), append_eos=True)
    texts = plain.texts(PROMPTS, RESPONSES)
    got = eos.score(PROMPTS, RESPONSES)["helpfulness"]
    assert got == pytest.approx(manual_beaver(models["reward"], texts, eos=True), abs=1e-4)
    assert got != pytest.approx(plain.score(PROMPTS, RESPONSES)["helpfulness"], abs=1e-4)


def test_beaver_normaliser_applied_as_safe_rlhf_does(models):
    """do_normalize: reward checkpoints are normalised affinely ((s - mean) / std), cost
    checkpoints by scale only (s / std), from the normaliser buffers in the weights."""
    from sipo_bench_plugins.reward_models.beaver import BeaverRewardScorer

    scorer = BeaverRewardScorer(model=str(models["norm"]))
    got = scorer.score(PROMPTS, RESPONSES)["helpfulness"]
    want = manual_beaver(models["norm"], scorer.texts(PROMPTS, RESPONSES))  # (s - 2) / (sqrt(4) + eps)
    assert got == pytest.approx(want, abs=1e-4)
    cost = BeaverRewardScorer(model=str(models["norm_cost"])).score(PROMPTS, RESPONSES)["helpfulness"]
    assert cost == pytest.approx(manual_beaver(models["norm_cost"], scorer.texts(PROMPTS, RESPONSES)), abs=1e-4)
    assert cost == pytest.approx([(g * 2.0 + 2.0) / 2.0 for g in got], abs=1e-4)  # same raw scores, s / 2


def _rename_tensor(path: Path, old: str, new: str) -> None:
    from safetensors.torch import load_file, save_file

    for f in path.glob("*.safetensors"):
        state = load_file(f)
        if any(k.startswith(old) for k in state):
            save_file({(new + k[len(old):] if k.startswith(old) else k): v for k, v in state.items()}, f,
                      metadata={"format": "pt"})
    index = path / "model.safetensors.index.json"
    if index.is_file():
        idx = json.loads(index.read_text())
        idx["weight_map"] = {(new + k[len(old):] if k.startswith(old) else k): v for k, v in idx["weight_map"].items()}
        index.write_text(json.dumps(idx))


def test_beaver_renamed_or_missing_head_fails_naming_the_keys(models, tmp_path):
    from sipo_bench_plugins.reward_models.beaver import BeaverRewardScorer

    renamed = tmp_path / "renamed"
    shutil.copytree(models["cost_bias"], renamed)
    _rename_tensor(renamed, "score_head.", "reward_head.")
    with pytest.raises(RuntimeError) as e:
        BeaverRewardScorer(model=str(renamed)).score(["p"], ["r"])
    msg = str(e.value)
    assert "\n" not in msg and "score_head.weight" in msg and "reward_head.weight" in msg and "reward_head.bias" in msg


def test_weight_check_allows_only_what_safe_rlhf_tolerates():
    from sipo_bench_plugins.reward_models.loading import check_loaded_weights

    ok = {"missing_keys": ["score_head.bias"], "unexpected_keys": ["model.layers.0.self_attn.rotary_emb.inv_freq"]}
    check_loaded_weights("m", "p", ok, allowed_missing=[r"^score_head\.bias$"], allowed_unexpected=[r"\.rotary_emb\.inv_freq$"])
    with pytest.raises(RuntimeError, match=r"m p: weights missing from the checkpoint \(left random\): score_head.weight"):
        check_loaded_weights("m", "p", {"missing_keys": ["score_head.weight"]})
    with pytest.raises(RuntimeError, match=r"wrong shape: score.weight"):
        check_loaded_weights("m", "p", {"mismatched_keys": [("score.weight", (10, 32), (2, 32))]})
    many = {"unexpected_keys": [f"k{i}" for i in range(6)]}
    with pytest.raises(RuntimeError, match=r"k0, k1, k2, k3 \.\.\. \(6 in all\)"):
        check_loaded_weights("m", "p", many)


def test_one_model_per_process_per_model_id(models):
    from sipo_bench_plugins.reward_models.beaver import BeaverRewardScorer

    a = BeaverRewardScorer(model=str(models["reward"]), objective="helpfulness")
    b = BeaverRewardScorer(model=str(models["reward"]), objective="other", batch_size=2)
    assert a.load().model is b.load().model


def test_scorer_options_fail_with_one_line_naming_the_field(models):
    from sipo_bench.configs.schema import ConfigError
    from sipo_bench_plugins.reward_models.beaver import BeaverRewardScorer
    from sipo_bench_plugins.reward_models.classifier import DPARewardScorer, HFClassifierScorer

    with pytest.raises(ConfigError, match=r"`batch_size`: expected an integer >= 1, got 0"):
        BeaverRewardScorer(model="x", batch_size=0)
    with pytest.raises(ConfigError, match=r"`template`: expected a string containing \{response\}"):
        HFClassifierScorer(model="x", template="{prompt}", objectives={"a": {"head": 0}})
    with pytest.raises(ConfigError, match=r"`objectives`: expected at least one objective"):
        HFClassifierScorer(model="x")
    with pytest.raises(ConfigError, match=r"`scorer dpa-rm.bogus`: unknown key 'bogus'"):
        DPARewardScorer(bogus=1)
    with pytest.raises(ConfigError, match=r"`objectives\[0\]`: expected one of helpfulness"):
        DPARewardScorer(objectives=["honesty"])


# --- sequence classifiers --------------------------------------------------------------------


def manual_logits(path: Path, texts: list[str]) -> list[list[float]]:
    """The checkpoint's own (custom) class, built from the modeling file beside its config and
    loaded with load_state_dict (strict), one text at a time."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, MistralConfig

    ns: dict = {}
    exec((path / "modeling_custom.py").read_text(), ns)
    cfg = MistralConfig.from_pretrained(path)
    model = ns["MistralForAttributePrediction"](cfg)
    model.load_state_dict(load_file(path / "model.safetensors"), strict=True)
    model.eval()
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.pad_token is None  # like Mistral's; batch size 1 needs none
    out = []
    for t in texts:
        with torch.no_grad():
            out.append(model(**tok(t, return_tensors="pt")).logits[0].tolist())
    return out


def test_dpa_loads_its_custom_code_with_the_released_sliding_window(models):
    """dpa-rm loads the checkpoint through its auto_map custom code (trust_remote_code), with
    config.sliding_window = 4096 as the released evaluation sets it; scores are the custom
    head's, checked against a strict manual load."""
    from sipo_bench_plugins.reward_models.classifier import DPA_TEMPLATE, DPARewardScorer

    scorer = DPARewardScorer(model=str(models["dpa"]), batch_size=3)
    texts = scorer.texts(PROMPTS, RESPONSES)
    assert texts[1] == ("[INST] You must read the following conversation carefully and rate the assistant's response "
                        "from score 0-100 in these aspects: helpfulness, correctness, coherence, honesty, complexity, "
                        "verbosity\n\nUser: Explain how to learn chess in a few sentences.\n\nAssistant:  Just learn "
                        "chess. [/INST]")
    assert DPA_TEMPLATE.startswith("[INST] ") and DPA_TEMPLATE.endswith(" [/INST]")
    loaded = scorer.load()
    assert type(loaded.model).__name__ == "MistralForAttributePrediction"
    assert loaded.model.config.sliding_window == 4096
    assert json.loads((models["dpa"] / "config.json").read_text())["sliding_window"] is None
    got = scorer.score(PROMPTS, RESPONSES)
    assert list(got) == ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
    logits = manual_logits(models["dpa"], texts)
    for head, name in enumerate(got):
        assert got[name] == pytest.approx([(row[head] - 10) / 20 for row in logits], abs=1e-4), name
    # heads 5-9 exist but are not HelpSteer attributes
    assert len(logits[0]) == 10
    assert scorer.directions() == {o: True for o in got}
    tok = loaded.tokenizer
    assert tok.pad_token == tok.unk_token and tok.padding_side == "right"


def test_classifier_without_the_custom_code_fails_naming_the_keys(models):
    """Loaded without its custom code, the DPA checkpoint lands in a plain
    MistralForSequenceClassification whose `score` head the file does not hold: an error naming
    both keys, never a randomly initialised head."""
    from sipo_bench_plugins.reward_models.classifier import HFClassifierScorer

    scorer = HFClassifierScorer(model=str(models["dpa"]), objectives={"x": {"head": 0}})
    with pytest.raises(RuntimeError) as e:
        scorer.score(["p"], ["r"])
    msg = str(e.value)
    assert "\n" not in msg and "score.weight" in msg and "regression_layer.weight" in msg and "trust_remote_code" in msg


def test_dpa_renamed_head_fails_naming_the_keys(models, tmp_path):
    from sipo_bench_plugins.reward_models.classifier import DPARewardScorer

    bad = tm.make_dpa(tmp_path / "renamed", head="rating_head")
    with pytest.raises(RuntimeError) as e:
        DPARewardScorer(model=str(bad)).score(["p"], ["r"])
    assert "regression_layer.weight" in str(e.value) and "rating_head.weight" in str(e.value)


def test_dpa_subset_of_objectives(models):
    from sipo_bench_plugins.reward_models.classifier import DPARewardScorer

    full = DPARewardScorer(model=str(models["dpa"])).score(PROMPTS, RESPONSES)
    two = DPARewardScorer(model=str(models["dpa"]), objectives=["verbosity", "correctness"]).score(PROMPTS, RESPONSES)
    assert list(two) == ["verbosity", "correctness"]
    assert two["verbosity"] == pytest.approx(full["verbosity"], abs=1e-5)


def test_hf_classifier_by_config_alone(models):
    from sipo_bench_plugins.reward_models.classifier import HFClassifierScorer

    scorer = HFClassifierScorer(model=str(models["dpa"]), template="Q: {prompt} A: {response}", batch_size=2,
                                trust_remote_code=True,
                                objectives={"cost": {"head": 7, "shift": 1.5, "scale": -4.0, "higher_is_better": False},
                                            "quality": {"head": 2}})
    texts = scorer.texts(PROMPTS, RESPONSES)
    assert texts[1] == "Q: Explain how to learn chess in a few sentences. A: Just learn chess."
    assert texts[0].startswith("Q: How can I bake bread? A: Here")  # inserted stripped
    got = scorer.score(PROMPTS, RESPONSES)
    logits = manual_logits(models["dpa"], texts)
    assert got["cost"] == pytest.approx([(row[7] - 1.5) / -4.0 for row in logits], abs=1e-4)
    assert got["quality"] == pytest.approx([row[2] for row in logits], abs=1e-4)
    assert scorer.directions() == {"cost": False, "quality": True}
    assert scorer.load().model.config.sliding_window is None  # no override asked for


def test_hf_classifier_rejects_heads_beyond_num_labels(models):
    from sipo_bench.configs.schema import ConfigError
    from sipo_bench_plugins.reward_models.classifier import HFClassifierScorer

    with pytest.raises(ConfigError, match=r"head indices < 10 .* got \{'x': 10\}"):
        HFClassifierScorer(model=str(models["dpa"]), trust_remote_code=True,
                           objectives={"x": {"head": 10}}).score(["p"], ["r"])


# --- registration and task consistency -------------------------------------------------------


def test_scorers_registered_lazily_with_directions_matching_the_tasks(tmp_path):
    from sipo_bench.plugin_host.manager import load
    from sipo_bench.execution.runtime import Runtime

    regs = load()
    for name in ("beaver-reward", "beaver-cost", "dpa-rm", "hf-classifier"):
        assert name in regs.scorers
    rt = Runtime(regs, quiet=True)
    for task_name in ("beavertails", "helpsteer"):
        task = rt.task(task_name, {"objectives": ["helpfulness", "correctness", "verbosity"]}
                       if task_name == "helpsteer" else {})
        declared = {o.name: o.higher_is_better for o in task.objectives()}
        covered = {}
        for name, options in task.scorers():
            covered.update(regs.scorers.get(name)(**options).directions())  # no model is loaded
        assert {o: covered[o] for o in declared} == declared
    assert declared["verbosity"] is True
    bt = {o.name: o.higher_is_better for o in rt.task("beavertails", {}).objectives()}
    assert bt == {"helpfulness": True, "harmlessness": False}
