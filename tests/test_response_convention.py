"""One response convention (sipo_bench/contract/responses.py) for everything that joins prompt + response:
generations, dataset responses, SIPO's new pairs and the texts scored. Checked with a real
SentencePiece-style tokenizer (tests/fixtures/sp_tokenizer, Llama/Mistral layout), where
`"ASSISTANT: Sure"` and `"ASSISTANT:Sure"` encode the response's first word as different tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sipo_bench.contract.interfaces import DecodingConfig, Generator, ResolvedPolicy
from sipo_bench.contract.responses import after_prompt, as_response, joined_pairs
from sipo_bench.execution.stages import StageContext, read_jsonl, write_jsonl

REPO = Path(__file__).parent.parent
SP = REPO / "tests" / "fixtures" / "sp_tokenizer"
PROMPT = "BEGINNING OF CONVERSATION: USER: How can I bake bread? ASSISTANT:"
#: a chat template's generation prompt (ChatML, as SmolLM2's): it ends in a newline
CHAT_PROMPT = "<|im_start|>user\nHow can I bake bread?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(SP)


def response_pieces(tok, prompt: str, response: str) -> list[str]:
    """The response's tokens as trl (and our log-prob scorer) cut them out of prompt + response."""
    from sipo_bench_plugins.hf_generation.tokens import encode_pairs

    ((ids, n_prompt),) = encode_pairs(tok, [prompt], [response], add_eos=False)
    return tok.convert_ids_to_tokens(ids[n_prompt:])


def test_the_tokenizer_fixture_has_the_leading_space_trap(tok):
    assert response_pieces(tok, PROMPT, " Sure, here is how.")[0] == "▁Sure,"
    assert not response_pieces(tok, PROMPT, "Sure, here is how.")[0].startswith("▁")
    assert tok.decode(tok(" Sure, here is how.", add_special_tokens=False)["input_ids"]) == "Sure, here is how."


def test_as_response():
    assert as_response("Sure.") == " Sure." and as_response(" Sure.") == " Sure."
    assert as_response("  \n Sure. ") == " Sure. " and as_response("") == "" and as_response(" \n") == ""


def test_after_a_chat_templates_newline_the_response_starts_bare():
    """A chat model generates its first word right after the template's newline (`Sure`); the
    stored response (` Sure`) joined there would read `▁Sure` instead, a token the model did not
    generate. Joined through `after_prompt`, prompt + response encodes as generated; after
    `ASSISTANT:` nothing changes."""
    assert after_prompt(PROMPT, " Sure.") == " Sure." and after_prompt("", " Sure.") == " Sure."
    assert after_prompt(CHAT_PROMPT, " Sure.") == "Sure." and after_prompt(CHAT_PROMPT + " ", " Sure.") == "Sure."
    rows = [{"prompt": CHAT_PROMPT, "chosen": " Sure.", "rejected": " No.", "w": 0.5},
            {"prompt": PROMPT, "chosen": " Sure.", "rejected": " No."}]
    assert joined_pairs(rows) == [{"prompt": CHAT_PROMPT, "chosen": "Sure.", "rejected": "No.", "w": 0.5}, rows[1]]


def test_log_probs_and_reward_models_join_as_generated_after_a_chat_template(tok):
    from sipo_bench_baselines.reward_model import response_text

    generated = tok(CHAT_PROMPT + "Sure, here is how.")["input_ids"][len(tok(CHAT_PROMPT)["input_ids"]):]
    assert not tok.convert_ids_to_tokens(generated)[0].startswith("▁")
    assert response_pieces(tok, CHAT_PROMPT, " Sure, here is how.") == tok.convert_ids_to_tokens(generated)
    assert response_pieces(tok, PROMPT, " Sure, here is how.")[0] == "▁Sure,"  # unchanged after a colon
    assert response_text(CHAT_PROMPT, " Sure. ") == "Sure." and response_text(PROMPT, "Sure. ") == " Sure."


@pytest.mark.slow
def test_the_preference_trainer_trains_the_generated_tokens_after_a_chat_template(tmp_path, tok):
    """trl joins prompt + response itself: the rows it gets are joined as generated."""
    import importlib.util

    from sipo_bench_baselines.losses import DPOLoss
    from sipo_bench_baselines.trainer import build_trainer

    spec = importlib.util.spec_from_file_location("sipo_test_mc", REPO / "tests" / "fixtures" / "make_checkpoints.py")
    mc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mc)
    base = mc.make_policy(tmp_path / "policy")
    train = dict(learning_rate=1e-3, epochs=1, batch_size=2, grad_accum=1, max_length=64, lr_scheduler="constant",
                 warmup_ratio=0.0, weight_decay=0.0, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], eval_every=0, load_best=False,
                 gradient_checkpointing=False, bf16=False, max_pairs=None)
    rows = [{"prompt": CHAT_PROMPT, "chosen": " Sure, here is how.", "rejected": " No."},
            {"prompt": PROMPT, "chosen": " Sure, here is how.", "rejected": " No."}]
    ds = build_trainer(tmp_path / "t", base, rows, [], DPOLoss(0.1), train, 0).train_dataset
    first = [tok.convert_ids_to_tokens(r["chosen_ids"])[0] for r in ds]
    generated = tok(CHAT_PROMPT + "Sure, here is how.")["input_ids"][len(tok(CHAT_PROMPT)["input_ids"]):]
    assert first == [tok.convert_ids_to_tokens(generated)[0], "▁Sure,"]
    assert not first[0].startswith("▁")


def test_generated_responses_re_encode_to_the_generated_tokens(tmp_path, tok, monkeypatch):
    """The transformers backend decodes what the model generated into a response that, joined
    to the prompt, re-encodes to exactly those tokens (the decoded text of `▁Sure` is `Sure`;
    the stored response must be ` Sure`)."""
    import importlib.util

    import torch

    from sipo_bench_plugins.hf_generation.backend import HFGenerator, ModelCache

    spec = importlib.util.spec_from_file_location("sipo_test_mc", REPO / "tests" / "fixtures" / "make_checkpoints.py")
    mc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mc)
    base = mc.make_policy(tmp_path / "policy")
    target = " Sure, here is how."
    generated = tok(PROMPT + target)["input_ids"][len(tok(PROMPT)["input_ids"]):] + [tok.eos_token_id]
    assert tok.convert_ids_to_tokens(generated)[0] == "▁Sure,"
    gen = HFGenerator(device="cpu", cache=ModelCache())
    # the model's choice is fixed; what is tested is the decoding into a response
    monkeypatch.setattr(gen, "_generate_single", lambda *a, **k: torch.tensor([generated]))
    (out,) = gen.generate(ResolvedPolicy(base, (), "soup", {}), [PROMPT], DecodingConfig(max_new_tokens=8))
    assert out == [target]
    assert response_pieces(tok, PROMPT, out[0]) == tok.convert_ids_to_tokens(generated[:-1])
    assert response_pieces(tok, PROMPT, out[0].strip()) != tok.convert_ids_to_tokens(generated[:-1])  # the trap
    gen.close()


class ThirdPartyGenerator(Generator):
    """A backend that returns stripped texts (as this repo's did) and scores candidates as
    dominating: SIPO must still write pairs in the one convention."""

    name = "transformers"

    def __init__(self, text: str):
        self.text = text

    def generate(self, policy, prompts, decoding, *, num_return_sequences=1, seed=0, progress=None):
        return [[self.text] * num_return_sequences for _ in prompts]

    def implicit_rewards(self, base, adapters, prompts, responses, beta, ref_adapter=None, batch_size=64, progress=None):
        import numpy as np

        return np.array([[1.0 if r.strip() == self.text else 0.0 for r in responses] for _ in adapters])

    def logprobs(self, policy, prompts, responses, *, batch_size=64, progress=None):
        return [5.0 if policy.adapters and r.strip() == self.text else 0.0 for r in responses]


def test_sipo_pairs_share_one_convention(tmp_path, tok):
    """SIPO's candidates and its new pairs (y*, y_w), (y*, y_l): y* comes from a generator, y_w
    and y_l from the data; joined to the prompt, all three start with a `▁` piece."""
    from sipo_bench.configs.run_config import load_yaml, make_config
    from sipo_bench.planning.experiment import plan_run
    from sipo_bench.execution.runtime import Runtime
    from sipo_bench_plugins.sipo.stages import filter_stage, sample_stage

    rt = Runtime(quiet=True)
    plan = plan_run(make_config(load_yaml(REPO / "presets" / "paper-beavertails.yaml")), rt)
    stages = {s.kind: s for s in plan.stages()}
    rt._generators["transformers"] = ThirdPartyGenerator("Sure, here is how.")
    for d in ("data", "base", "a0", "a1"):
        (tmp_path / d).mkdir()
    write_jsonl(tmp_path / "data" / "train.jsonl", [
        {"prompt": "How can I bake bread?", "responses": [" Mix flour and water, then bake.", "No."],
         "labels": {"helpfulness": 0, "harmlessness": 1}}])
    ep = {"adapter0": tmp_path / "a0", "adapter1": tmp_path / "a1", "base": tmp_path / "base"}
    sample_stage(StageContext(stages["sipo-sample"], tmp_path / "sample", {"data": tmp_path / "data", **ep}, rt))
    cands = read_jsonl(tmp_path / "sample" / "candidates.jsonl")
    assert {c["candidate"] for c in cands} == {" Sure, here is how."}
    assert cands[0]["responses"] == [" Mix flour and water, then bake.", " No."]
    (tmp_path / "filter").mkdir()
    result = filter_stage(StageContext(stages["sipo-filter"], tmp_path / "filter",
                                       {"candidates": tmp_path / "sample", **ep}, rt))
    assert result["new_pairs"] == 2
    pairs = read_jsonl(tmp_path / "filter" / "pairs.jsonl")
    for p in pairs:
        assert p["chosen"] == " Sure, here is how." and p["rejected"].startswith(" ") and p["prompt"].endswith("ASSISTANT:")
        assert response_pieces(tok, p["prompt"], p["chosen"])[0].startswith("▁")
        assert response_pieces(tok, p["prompt"], p["rejected"])[0].startswith("▁")


def test_scorers_see_generated_and_dataset_responses_alike():
    from sipo_bench_plugins.reward_models.beaver import BeaverRewardScorer
    from sipo_bench_plugins.reward_models.classifier import DPARewardScorer

    b = BeaverRewardScorer(model="x")
    assert b.texts(["Q?", "Q?"], ["Sure.", " Sure."]) == ["BEGINNING OF CONVERSATION: USER: Q? ASSISTANT: Sure."] * 2
    d = DPARewardScorer(model="x")
    assert len(set(d.texts(["Q?", "Q?"], ["Sure.", " Sure."]))) == 1
