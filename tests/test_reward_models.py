"""Reward-model scorers end to end on tiny randomly initialised models of the real
architectures and checkpoint layouts (tests/fixtures/tiny_models.py), checked against manual
forward passes written here independently of the scorer code."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

FIXTURES = Path(__file__).parent / "fixtures"


def _tiny_models():
    spec = importlib.util.spec_from_file_location("sipo_test_tiny_models", FIXTURES / "tiny_models.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


tm = _tiny_models()

PROMPTS = ["How can I bake bread?", "Explain how to learn chess in a few sentences.", "Hi"]
RESPONSES = [" Here is a careful way to bake bread: go step by step and ask an expert if unsure.",
             "Just learn chess.",  # no leading space: the scorer adds one
             " Answer 0 for you: detail detail detail detail detail detail detail detail detail"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm-stand-ins")
    return {
        "reward": tm.make_beaver(root / "reward", "reward", seed=11),
        "cost": tm.make_beaver(root / "cost", "cost", seed=12, bias=True, bias_key="score_bias", sharded_bin=False),
        "norm": tm.make_beaver(root / "norm", "reward", seed=13, normalizer=(2.0, 4.0)),
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
    score at the last token."""
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
            s = (s - float(state["normalizer.mean"][0])) / (float(state["normalizer.var"][0]) ** 0.5 + 1e-8)
        out.append(s)
    return out


def conversation(prompt: str, response: str) -> str:
    r = response if response.startswith(" ") else " " + response
    return f"BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{r}"


# --- beaver ----------------------------------------------------------------------------------


def test_beaver_reward_matches_manual_forward_with_padding(models):
    from sipo_bench_plugins.reward_models.beaver import BeaverRewardScorer

    scorer = BeaverRewardScorer(model=str(models["reward"]), batch_size=3)
    texts = scorer.texts(PROMPTS, RESPONSES)
    assert texts == [conversation(p, r) for p, r in zip(PROMPTS, RESPONSES)]
    assert texts[1].endswith("ASSISTANT: Just learn chess.")
    got = scorer.score(PROMPTS, RESPONSES)["helpfulness"]
    want = manual_beaver(models["reward"], texts)
    assert got == pytest.approx(want, abs=1e-4)
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


def test_beaver_cost_is_reported_raw_and_declared_lower_is_better(models):
    from sipo_bench_plugins.reward_models.beaver import BeaverCostScorer

    scorer = BeaverCostScorer(model=str(models["cost"]))
    assert scorer.objectives() == ["harmlessness"]
    assert scorer.directions() == {"harmlessness": False}
    got = scorer.score(PROMPTS, RESPONSES)["harmlessness"]
    # manual reference includes the score_head bias (config key `score_bias`), and no negation
    assert got == pytest.approx(manual_beaver(models["cost"], scorer.texts(PROMPTS, RESPONSES)), abs=1e-4)
    assert scorer.load().model.score_head.bias is not None


def test_beaver_append_eos_changes_the_end_token(models):
    from sipo_bench_plugins.reward_models.beaver import BeaverRewardScorer

    plain = BeaverRewardScorer(model=str(models["reward"]))
    eos = BeaverRewardScorer(model=str(models["reward"]), append_eos=True)
    texts = plain.texts(PROMPTS, RESPONSES)
    got = eos.score(PROMPTS, RESPONSES)["helpfulness"]
    assert got == pytest.approx(manual_beaver(models["reward"], texts, eos=True), abs=1e-4)
    assert got != pytest.approx(plain.score(PROMPTS, RESPONSES)["helpfulness"], abs=1e-4)


def test_beaver_normaliser_applied_when_configured(models):
    from sipo_bench_plugins.reward_models.beaver import BeaverRewardScorer

    scorer = BeaverRewardScorer(model=str(models["norm"]))
    got = scorer.score(PROMPTS, RESPONSES)["helpfulness"]
    want = manual_beaver(models["norm"], scorer.texts(PROMPTS, RESPONSES))  # (s - 2) / (sqrt(4) + eps)
    assert got == pytest.approx(want, abs=1e-4)


def test_beaver_checks_score_type_and_missing_head(models, tmp_path):
    from sipo_bench_plugins.reward_models.beaver import BeaverRewardScorer

    with pytest.raises(RuntimeError, match="is a 'cost' model"):
        BeaverRewardScorer(model=str(models["cost"])).score(["p"], ["r"])
    broken = tmp_path / "no-head"
    shutil.copytree(models["cost"], broken)
    from safetensors.torch import load_file, save_file

    state = load_file(broken / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("score_head")}, broken / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match="score_head"):
        BeaverRewardScorer(model=str(broken), objective="x").score(["p"], ["r"])


def test_one_model_per_process_per_model_id(models):
    from sipo_bench_plugins.reward_models.beaver import BeaverRewardScorer

    a = BeaverRewardScorer(model=str(models["reward"]), objective="helpfulness")
    b = BeaverRewardScorer(model=str(models["reward"]), objective="other", batch_size=2)
    assert a.load().model is b.load().model


def test_scorer_options_fail_with_one_line_naming_the_field(models):
    from sipo_bench.config import ConfigError
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
    from transformers import AutoTokenizer, MistralForSequenceClassification

    model = MistralForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.pad_token is None  # like Mistral's; batch size 1 needs none
    out = []
    for t in texts:
        with torch.no_grad():
            out.append(model(**tok(t, return_tensors="pt")).logits[0].tolist())
    return out


def test_dpa_template_heads_and_rescaling(models):
    from sipo_bench_plugins.reward_models.classifier import DPA_TEMPLATE, DPARewardScorer

    scorer = DPARewardScorer(model=str(models["dpa"]), batch_size=3)
    texts = scorer.texts(PROMPTS, RESPONSES)
    assert texts[1] == ("[INST] You must read the following conversation carefully and rate the assistant's response "
                        "from score 0-100 in these aspects: helpfulness, correctness, coherence, honesty, complexity, "
                        "verbosity\n\nUser: Explain how to learn chess in a few sentences.\n\nAssistant:  Just learn "
                        "chess. [/INST]")
    assert DPA_TEMPLATE.startswith("[INST] ") and DPA_TEMPLATE.endswith(" [/INST]")
    got = scorer.score(PROMPTS, RESPONSES)
    assert list(got) == ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
    logits = manual_logits(models["dpa"], texts)
    for head, name in enumerate(got):
        assert got[name] == pytest.approx([(row[head] - 10) / 20 for row in logits], abs=1e-4), name
    # heads 5-9 exist but are not HelpSteer attributes
    assert len(logits[0]) == 10
    assert scorer.directions() == {o: True for o in got}
    tok = scorer.load().tokenizer
    assert tok.pad_token == tok.unk_token and tok.padding_side == "right"


def test_dpa_subset_of_objectives(models):
    from sipo_bench_plugins.reward_models.classifier import DPARewardScorer

    full = DPARewardScorer(model=str(models["dpa"])).score(PROMPTS, RESPONSES)
    two = DPARewardScorer(model=str(models["dpa"]), objectives=["verbosity", "correctness"]).score(PROMPTS, RESPONSES)
    assert list(two) == ["verbosity", "correctness"]
    assert two["verbosity"] == pytest.approx(full["verbosity"], abs=1e-5)


def test_hf_classifier_by_config_alone(models):
    from sipo_bench_plugins.reward_models.classifier import HFClassifierScorer

    scorer = HFClassifierScorer(model=str(models["dpa"]), template="Q: {prompt} A: {response}", batch_size=2,
                                objectives={"cost": {"head": 7, "shift": 1.5, "scale": -4.0, "higher_is_better": False},
                                            "quality": {"head": 2}})
    texts = scorer.texts(PROMPTS, RESPONSES)
    assert texts[1] == "Q: Explain how to learn chess in a few sentences. A: Just learn chess."
    got = scorer.score(PROMPTS, RESPONSES)
    logits = manual_logits(models["dpa"], texts)
    assert got["cost"] == pytest.approx([(row[7] - 1.5) / -4.0 for row in logits], abs=1e-4)
    assert got["quality"] == pytest.approx([row[2] for row in logits], abs=1e-4)
    assert scorer.directions() == {"cost": False, "quality": True}


def test_hf_classifier_rejects_heads_beyond_num_labels(models):
    from sipo_bench.config import ConfigError
    from sipo_bench_plugins.reward_models.classifier import HFClassifierScorer

    with pytest.raises(ConfigError, match=r"head indices < 10 .* got \{'x': 10\}"):
        HFClassifierScorer(model=str(models["dpa"]), objectives={"x": {"head": 10}}).score(["p"], ["r"])


# --- registration and task consistency -------------------------------------------------------


def test_scorers_registered_lazily_with_directions_matching_the_tasks(tmp_path):
    from sipo_bench.plugins import load
    from sipo_bench.runtime import Runtime

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
