"""The baseline trainers on a tiny random LLaMA: parameters change, the loss goes down, log-probs
count response tokens only, the SIPO reference is base + merged adapter, soups are exact, RLOO
raises its reward. Seconds each (marked slow)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import make_tiny_lora, make_tiny_model  # noqa: E402

from sipo_bench_baselines.losses import DPOLoss, DPOLWLoss, MODPOLoss, SIPOLoss, sipo_loss  # noqa: E402

pytestmark = pytest.mark.slow

TEMPLATE = "BEGINNING OF CONVERSATION: USER: {} ASSISTANT:"
QUESTIONS = ["help me please", "what is the best way to go home", "tell me a story", "is it safe",
             "how do i make food", "what day is it", "give me an idea", "say something kind"]
GOOD, BAD = " sure here is a good and helpful answer", " no"
TRAIN = dict(learning_rate=5e-3, epochs=2, batch_size=8, grad_accum=1, max_length=64, lr_scheduler="constant",
             warmup_ratio=0.0, weight_decay=0.0, lora_r=8, lora_alpha=16, lora_dropout=0.0,
             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], eval_every=0, load_best=False,
             gradient_checkpointing=False, bf16=False, max_pairs=None)


def pairs(n=32, flip=False):
    rows = []
    for i in range(n):
        a, b = (BAD, GOOD) if flip else (GOOD, BAD)
        rows.append({"prompt": TEMPLATE.format(QUESTIONS[i % len(QUESTIONS)]), "chosen": a, "rejected": b})
    return rows


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("baselines-train")
    return {"dir": d, "base": make_tiny_model(d / "base", seed=0)}


def lora_b_norm(adapter_dir: Path) -> float:
    from safetensors.torch import load_file

    sd = load_file(str(adapter_dir / "adapter_model.safetensors"))
    return sum(float(v.norm()) for k, v in sd.items() if "lora_B" in k)


def train(tiny, name, rows, loss, **kw):
    from sipo_bench_baselines.trainer import train_preference_adapter

    out = tiny["dir"] / name
    out.mkdir()
    return out, train_preference_adapter(out, tiny["base"], rows, [], loss, {**TRAIN, **kw.pop("train", {})}, 0, **kw)


@pytest.fixture(scope="module")
def dpo_pair(tiny):
    """Two DPO adapters with opposite preferences (reused by the soup test)."""
    a, ma = train(tiny, "dpo-good", pairs(), DPOLoss(0.1))
    b, mb = train(tiny, "dpo-bad", pairs(flip=True), DPOLoss(0.1))
    return {"good": (a, ma), "bad": (b, mb)}


def test_dpo_trainer_changes_parameters_and_lowers_the_loss(tiny, dpo_pair):
    out, m = dpo_pair["good"]
    assert (out / "adapter_config.json").is_file() and not (out / "_trainer").exists()
    assert lora_b_norm(out) > 0  # LoRA B starts at zero: training moved it
    assert m["initial_loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy = reference at the start
    assert m["final_loss"] < 0.5 * m["initial_loss"], m
    assert m["steps"] == 8 and m["n_train_pairs"] == 32
    from sipo_bench.reporting.curves import read_curves, series

    rec = read_curves(out)  # the stage's curves, kept beside its adapter
    assert rec["trainer"] == "PreferenceTrainer" and rec["selection"]["global_step"] == 8
    assert [s for s, _ in series(rec["train"], "loss")] == list(range(1, 9))
    assert series(rec["train"], "loss")[0][1] == pytest.approx(math.log(2), abs=1e-4)
    for key in ("rewards/margins", "rewards/accuracies", "learning_rate"):
        assert len(series(rec["train"], key)) == 8, key
    assert rec["extra"]["initial_loss"] == m["initial_loss"] and rec["extra"]["final_loss"] == m["final_loss"]
    _, mb = dpo_pair["bad"]
    assert mb["final_loss"] < 0.5 * mb["initial_loss"]


def test_training_is_deterministic_per_seed(tiny, dpo_pair):
    from safetensors.torch import load_file

    again, m = train(tiny, "dpo-good-again", pairs(), DPOLoss(0.1))
    assert m["final_loss"] == pytest.approx(dpo_pair["good"][1]["final_loss"], rel=1e-5)
    a = load_file(str(again / "adapter_model.safetensors"))
    b = load_file(str(dpo_pair["good"][0] / "adapter_model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.parametrize("fused", [True, False])
def test_pair_logps_sum_response_tokens_only(tiny, fused):
    """The trainer's policy/reference log-probs equal Σ log p(response tokens + EOS | prompt)
    computed by hand, through trl's fused LM head (a GPU's default) and through the full logits
    (a CPU's); the token count is the response's (prompt tokens excluded)."""
    from sipo_bench_baselines.trainer import build_trainer

    rows = pairs(4)
    trainer = build_trainer(tiny["dir"] / f"probe-{fused}", tiny["base"], rows, [], DPOLoss(0.1), TRAIN, 0)
    trainer.fused_logps = fused
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # make the policy differ from the reference
        for n, p in trainer.model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    trainer.model.eval()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    with torch.no_grad():
        lp = trainer.pair_logps(trainer.model, batch)
    tok = trainer.processing_class

    def by_hand(prompt, response, adapters_on):
        p = tok(prompt)["input_ids"]
        r = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        x = torch.tensor([p + r])
        with torch.no_grad():
            if adapters_on:
                logits = trainer.model(input_ids=x).logits[0]
            else:
                with trainer.model.disable_adapter():
                    logits = trainer.model(input_ids=x).logits[0]
        ls = torch.log_softmax(logits.float(), -1)
        return sum(float(ls[len(p) + j - 1, t]) for j, t in enumerate(r)), len(r)

    for i, row in enumerate(rows):
        pol, n_ch = by_hand(row["prompt"], row["chosen"], True)
        ref, _ = by_hand(row["prompt"], row["chosen"], False)
        pol_r, n_rj = by_hand(row["prompt"], row["rejected"], True)
        assert float(lp.chosen[i]) == pytest.approx(pol, abs=1e-3)
        assert float(lp.ref_chosen[i]) == pytest.approx(ref, abs=1e-3)
        assert float(lp.rejected[i]) == pytest.approx(pol_r, abs=1e-3)
        assert int(lp.chosen_tokens[i]) == n_ch == len(GOOD.split()) + 1  # words + EOS, no prompt tokens
        assert int(lp.rejected_tokens[i]) == n_rj == 2
    assert float(lp.chosen[0]) != pytest.approx(float(lp.ref_chosen[0]), abs=1e-3)
    # the padded width of the batch (chosen and rejected padded together), as the released code counts it
    width = max(len(tok(r["prompt"] + r[k] + tok.eos_token)["input_ids"]) for r in rows for k in ("chosen", "rejected"))
    assert lp.padded_length.tolist() == [width] * 4 and batch["input_ids"].shape[1] == width


def test_long_pairs_dropped_instead_of_truncated(tiny):
    """long_pairs: drop leaves out every pair whose prompt + chosen or prompt + rejected (BOS,
    EOS included) exceeds max_length, in training and validation, and says how many."""
    from sipo_bench_baselines.trainer import build_trainer, pair_lengths

    rows = pairs(8)
    tok = build_trainer(tiny["dir"] / "len-probe", tiny["base"], rows, [], DPOLoss(0.1), TRAIN, 0).processing_class
    lengths = pair_lengths(tok, rows)
    # by hand: BOS + prompt words + response words + EOS (the tiny tokenizer is word-level)
    assert lengths == [1 + len(TEMPLATE.format(QUESTIONS[i % 8]).replace(":", " :").split()) + len(GOOD.split()) + 1
                       for i in range(8)]
    cap = sorted(lengths)[3]  # keeps exactly the pairs at or below the 4th shortest
    keep = [r for r, n in zip(rows, lengths) if n <= cap]
    assert 0 < len(keep) < len(rows)
    train = {**TRAIN, "max_length": cap, "eval_every": 0.5, "long_pairs": "drop"}
    t = build_trainer(tiny["dir"] / "drop", tiny["base"], rows, rows[:4], DPOLoss(0.1), train, 0)
    assert t.dropped_long_pairs == {"train": len(rows) - len(keep), "val": sum(n > cap for n in lengths[:4])}
    assert len(t.train_dataset) == len(keep)
    assert [t.processing_class.decode(x["prompt_ids"]) for x in t.train_dataset] == \
        [t.processing_class.decode(tok(r["prompt"])["input_ids"]) for r in keep]
    # truncating (the default) keeps every pair
    assert len(build_trainer(tiny["dir"] / "trunc", tiny["base"], rows, [], DPOLoss(0.1),
                             {**TRAIN, "max_length": cap}, 0).train_dataset) == len(rows)
    with pytest.raises(ValueError, match="all 8 are longer than max_length=8"):
        build_trainer(tiny["dir"] / "none", tiny["base"], rows, rows[:4], DPOLoss(0.1), {**train, "max_length": 8}, 0)


def test_modpo_trainer_reads_margins(tiny):
    # a large positive margin on every pair: the optimum needs h(y_w) − h(y_l) > w_2·margin
    rows = [{**r, "margins": [3.0]} for r in pairs()]
    out, m = train(tiny, "modpo", rows, MODPOLoss(0.1, 0.5, (0.5,)))
    assert m["initial_loss"] == pytest.approx(-math.log(1 / (1 + math.exp(3.0))), abs=1e-4)  # −log σ((0 − 1.5)/0.5)
    assert m["final_loss"] < 0.5 * m["initial_loss"] and lora_b_norm(out) > 0


def test_dpo_lw_trainer_reads_signs(tiny):
    # objective 1 prefers GOOD (+1), objective 2 prefers BAD (−1), w = (0.8, 0.2): GOOD should win
    rows = [{**r, "signs": [1.0, -1.0]} for r in pairs()]
    out, m = train(tiny, "dpo-lw", rows, DPOLWLoss(0.1, (0.8, 0.2)))
    assert m["initial_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert m["final_loss"] < m["initial_loss"] and lora_b_norm(out) > 0
    # an all-tie batch has zero loss: nothing to learn
    rows = [{**r, "signs": [0.0, 0.0]} for r in pairs(8)]
    _, m0 = train(tiny, "dpo-lw-ties", rows, DPOLWLoss(0.1, (0.5, 0.5)))
    assert m0["initial_loss"] == 0.0 and m0["final_loss"] == 0.0


def test_sipo_loss_with_a_merged_adapter_reference(tiny):
    """Reference = base + R: at the start policy = reference, so the DPO part is log 2 and the
    NLL part is the reference's length-normalised NLL; the saved adapter is R + the new delta,
    and re-evaluating the loss with independently loaded peft models gives the trainer's number."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    R = make_tiny_lora(tiny["base"], tiny["dir"] / "R", seed=5, r=4, lora_alpha=8)
    rows = pairs(16)
    out, m = train(tiny, "sipo", rows, SIPOLoss(0.1, 0.1), ref_adapter_dir=R, train={"epochs": 1})
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == TRAIN["lora_r"] + 4  # "cat" of the new rank-8 delta and R's rank-4 delta

    tok = AutoTokenizer.from_pretrained(tiny["base"])

    def logps(model, prompt, response):
        p = tok(prompt)["input_ids"]
        r = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            ls = torch.log_softmax(model(input_ids=torch.tensor([p + r])).logits[0].float(), -1)
        return sum(float(ls[len(p) + j - 1, t]) for j, t in enumerate(r)), len(r)

    def load(adapter):
        base = AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=torch.float32)
        return PeftModel.from_pretrained(base, str(adapter)).eval()

    ref, pol = load(R), load(out)
    got = []
    init = []
    for row in rows:
        (c, n), (rj, _) = logps(pol, row["prompt"], row["chosen"]), logps(pol, row["prompt"], row["rejected"])
        (rc, _), (rr, _) = logps(ref, row["prompt"], row["chosen"]), logps(ref, row["prompt"], row["rejected"])
        t = lambda x: torch.tensor([x], dtype=torch.float64)  # noqa: E731
        got.append(float(sipo_loss(t(c), t(rj), t(rc), t(rr), 0.1, torch.tensor([n]), 0.1)))
        init.append(math.log(2) + 0.1 * (-rc / n))
    assert m["initial_loss"] == pytest.approx(sum(init) / len(init), abs=1e-4)
    assert m["final_loss"] == pytest.approx(sum(got) / len(got), abs=1e-3)
    assert m["final_loss"] < m["initial_loss"]


def test_soup_of_trained_adapters_is_the_exact_interpolation(tiny, dpo_pair):
    """The `dpo-soups` policy, realised by the backend, has the log-probs of the base model with
    W + Σ w_i (α_i/r_i) B_i A_i merged by hand."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sipo_bench.contract.interfaces import ResolvedPolicy
    from sipo_bench_plugins.hf_generation.backend import HFGenerator, ModelCache

    a, b = dpo_pair["good"][0], dpo_pair["bad"][0]
    w = (0.3, 0.7)
    model = AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=torch.float32).eval()
    params = dict(model.named_parameters())
    for adapter, wi in zip((a, b), w):
        cfg = json.loads((adapter / "adapter_config.json").read_text())
        sd = load_file(str(adapter / "adapter_model.safetensors"))
        for key, A in sd.items():
            if ".lora_A." in key:
                B = sd[key.replace(".lora_A.", ".lora_B.")]
                with torch.no_grad():
                    params[key.replace("base_model.model.", "", 1).replace(".lora_A.weight", ".weight")] += \
                        wi * cfg["lora_alpha"] / cfg["r"] * (B @ A)
    tok = AutoTokenizer.from_pretrained(tiny["base"])
    prompts = [TEMPLATE.format(q) for q in QUESTIONS[:3]]
    expected = []
    for p in prompts:
        ids_p = tok(p)["input_ids"]
        r = tok(GOOD, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            ls = torch.log_softmax(model(input_ids=torch.tensor([ids_p + r])).logits[0], -1)
        expected.append(sum(float(ls[len(ids_p) + j - 1, t]) for j, t in enumerate(r)))
    gen = HFGenerator(device="cpu", cache=ModelCache())
    try:
        got = gen.logprobs(ResolvedPolicy(tiny["base"], ((a, w[0]), (b, w[1])), "soup", {}), prompts, [GOOD] * 3)
        ends = gen.logprobs(ResolvedPolicy(tiny["base"], ((a, 1.0),), "soup", {}), prompts, [GOOD] * 3)
    finally:
        gen.close()
    assert got == pytest.approx(expected, abs=1e-3)
    assert ends != pytest.approx(expected, abs=1e-2)  # the comparison can fail


def test_rloo_raises_the_reward_and_changes_parameters(tiny):
    """Reward = how often a word occurs that the base model samples now and then (picked from
    its own samples, so the random model gives a learnable signal)."""
    from collections import Counter

    from sipo_bench.contract.interfaces import DecodingConfig, ResolvedPolicy
    from sipo_bench_baselines.rl import train_rloo_adapter
    from sipo_bench_plugins.hf_generation.backend import HFGenerator, ModelCache

    gen = HFGenerator(device="cpu", cache=ModelCache())
    try:
        samples = gen.generate(ResolvedPolicy(tiny["base"], (), "soup", {}), [TEMPLATE.format(q) for q in QUESTIONS],
                               DecodingConfig(greedy=False, max_new_tokens=8), num_return_sequences=4, seed=0)
    finally:
        gen.close()
    texts = [t for group in samples for t in group]
    share = Counter(w for t in texts for w in set(t.split()))
    target = min(share, key=lambda w: abs(share[w] / len(texts) - 0.3))  # in ~30% of the samples

    def reward(raw_prompts, responses):
        return [float(r.split().count(target)) for r in responses]

    out = tiny["dir"] / "rloo"
    out.mkdir()
    rl = dict(learning_rate=2e-2, epochs=1, max_steps=16, batch_size=8, grad_accum=1, num_generations=4,
              max_new_tokens=8, temperature=1.0, kl_beta=0.0, max_prompts=None, lr_scheduler="constant",
              warmup_ratio=0.0, weight_decay=0.0, lora_r=8, lora_alpha=16, lora_dropout=0.0,
              target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], gradient_checkpointing=False, bf16=False)
    m = train_rloo_adapter(out, tiny["base"], QUESTIONS, TEMPLATE.format, reward, rl, 0)
    assert m["steps"] == 16 and lora_b_norm(out) > 0 and not (out / "_trainer").exists()
    from sipo_bench.reporting.curves import read_curves, series

    rec = read_curves(out)
    assert rec["trainer"] == "RLOOTrainer" and len(series(rec["train"], "reward")) == 16
    assert m["late_mean_reward"] > m["early_mean_reward"], (target, m)


def test_validation_every_fraction_of_an_epoch_keeps_the_best_checkpoint(tiny):
    """The paper's protocol (evaluate every quarter epoch, keep the best): checkpoints live in
    `out/_trainer` and are removed; the best validation loss is reported."""
    from sipo_bench_baselines.trainer import train_preference_adapter

    out = tiny["dir"] / "dpo-val2"
    out.mkdir()
    m = train_preference_adapter(out, tiny["base"], pairs(), pairs(8), DPOLoss(0.1),
                                 {**TRAIN, "eval_every": 0.5, "load_best": True, "epochs": 1, "batch_size": 4}, 0)
    assert m["n_val_pairs"] == 8 and m["best_eval_loss"] is not None and m["best_eval_loss"] < math.log(2)
    assert not (out / "_trainer").exists() and (out / "adapter_model.safetensors").is_file()
    from sipo_bench.reporting.curves import read_curves, series

    rec = read_curves(out)  # 32 pairs / batch 4 = 8 steps, evaluated every 4
    evals = series(rec["eval"], "eval_loss")
    assert [s for s, _ in evals] == [4, 8]
    assert rec["selection"]["selected_step"] == min(evals, key=lambda e: e[1])[0] == m["best_eval_step"]
    assert rec["extra"]["initial_val_loss"] == m["initial_val_loss"]
