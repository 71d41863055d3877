"""SIPO's review and rewrite stages on HelpSteer send exactly the released prompts (one-shot
demonstrations, forced review start), with the released length limits, and post-process the
outputs as released (cut at `Question:`, stripped). The stages are taken from the planned
paper-helpsteer preset and run against a recording generator; the expected prompts come from
the released code itself (tests/fixtures/sipo_released_prompts.json, written by
make_released_prompts.py from zyttt-coder/SIPO). No model is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sipo_bench.contract.interfaces import Generator
from sipo_bench.execution.stages import StageContext, read_jsonl, write_jsonl

REPO = Path(__file__).parent.parent
RELEASED = json.loads((REPO / "tests" / "fixtures" / "sipo_released_prompts.json").read_text())


class RecordingGenerator(Generator):
    """Returns canned texts and records every call (policy, prompts, decoding)."""

    name = "transformers"

    def __init__(self, outputs):
        self.outputs, self.calls = outputs, []

    def generate(self, policy, prompts, decoding, *, num_return_sequences=1, seed=0, progress=None):
        self.calls.append({"policy": policy, "prompts": list(prompts), "decoding": decoding})
        return [[self.outputs(p)] for p in prompts]


@pytest.fixture(scope="module")
def planned():
    from sipo_bench.configs.run_config import load_yaml, make_config
    from sipo_bench.planning.experiment import plan_run
    from sipo_bench.execution.runtime import Runtime

    rt = Runtime(quiet=True)
    plan = plan_run(make_config(load_yaml(REPO / "presets" / "paper-helpsteer.yaml")), rt)
    return rt, {s.kind: s for s in plan.stages()}


def _ctx(rt, stage, out: Path, inputs: dict) -> StageContext:
    out.mkdir(parents=True, exist_ok=True)
    return StageContext(stage=stage, out=out, inputs=inputs, runtime=rt)


PROMPT = "What is the most common use for dill in home cooking?"
CANDIDATE = " Dill is used in pickles."


def test_released_prompt_fixture_is_the_released_code():
    assert RELEASED["source"] == "zyttt-coder/SIPO"
    assert (RELEASED["review_max_length"], RELEASED["rewrite_max_length"]) == (1200, 1600)
    assert RELEASED["review_template"].count("{raw_prompt}") == 1 and "{response}" in RELEASED["rewrite_template"]


def test_review_and_rewrite_send_the_released_prompts(planned, tmp_path):
    from sipo_bench_plugins.sipo.stages import review_stage, rewrite_stage

    rt, stages = planned
    for d in ("candidates", "base", "reviewer", "a0", "a1"):
        (tmp_path / d).mkdir()
    write_jsonl(tmp_path / "candidates" / "candidates.jsonl", [
        {"pid": 0, "prompt": PROMPT, "responses": [" Pickles.", " In soups."], "labels": {"correctness": 0, "verbosity": 1},
         "w": [0.2, 0.8], "candidate": CANDIDATE}])

    # review: the model continues the forced start; everything from "Question:" on is cut
    gen = RecordingGenerator(lambda p: " Add recipes.\nExplain its history.\n\n\nQuestion: What else?\nResponse: x")
    rt._generators["transformers"] = gen
    review_stage(_ctx(rt, stages["sipo-review"], tmp_path / "rev", {
        "candidates": tmp_path / "candidates", "base": tmp_path / "base", "reviewer": tmp_path / "reviewer"}))
    (call,) = gen.calls
    # the released input: the decoded MOD sample's text after "ASSISTANT:" keeps its space
    assert call["prompts"] == [RELEASED["review_template"].format(raw_prompt=PROMPT, response=CANDIDATE)]
    assert call["decoding"].max_length == RELEASED["review_max_length"] and call["decoding"].greedy
    assert call["policy"].adapters == ((tmp_path / "reviewer", 1.0),)  # the correctness model reviews
    (row,) = read_jsonl(tmp_path / "rev" / "reviews.jsonl")
    assert row["review"] == "The response can be more correct and verbose by\nAdd recipes.\nExplain its history."

    # rewrite: the MOD policy at the candidate's weight, the released prompt, cut at "Question:"
    gen = RecordingGenerator(lambda p: " Dill is a herb used in pickles and soups. \nQuestion: Why?")
    rt._generators["transformers"] = gen
    rewrite_stage(_ctx(rt, stages["sipo-rewrite"], tmp_path / "rew", {
        "reviews": tmp_path / "rev", "base": tmp_path / "base", "adapter0": tmp_path / "a0", "adapter1": tmp_path / "a1"}))
    (call,) = gen.calls
    assert call["prompts"] == [RELEASED["rewrite_template"].format(raw_prompt=PROMPT, response=CANDIDATE,
                                                                   review=row["review"])]
    assert call["decoding"].max_length == RELEASED["rewrite_max_length"]
    assert call["policy"].combine == "fusion" and [w for _, w in call["policy"].adapters] == [0.2, 0.8]
    (row,) = read_jsonl(tmp_path / "rew" / "rewrites.jsonl")
    assert row["rewrite"] == " Dill is a herb used in pickles and soups."


def test_other_objectives_get_the_instructions_without_the_demonstrations(tmp_path):
    from sipo_bench.execution.runtime import Runtime

    t = Runtime(quiet=True).task("helpsteer", {"objectives": ["helpfulness", "correctness", "verbosity"],
                                               "dataset": str(REPO / "tests" / "fixtures" / "helpsteer")})
    review = t.format_prompt(t.review_template().format(prompt="Q?", response=" R.")) + t.review_prefix()
    assert review == ("BEGINNING OF CONVERSATION: USER: Question: Q?\nResponse:  R.\nGenerate three suggestions on how "
                      "to make the response more helpful and correct and verbose. ASSISTANT:The response can be more "
                      "helpful and correct and verbose by\n")
    assert t.refine_stop() == "Question:"


def test_sampling_uses_the_released_total_length_cap(planned):
    _, stages = planned
    assert stages["sipo-sample"].config["decoding"]["max_length"] == 512
    assert stages["sipo-realign"].config["nll_normalization"] == "padded_length"
    assert stages["sipo-realign"].config["train"]["long_pairs"] == "drop"
