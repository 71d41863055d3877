"""Tests of the transformers generation backend on tiny random LLaMA models (seconds in all).

Reference values are computed independently of the backend: with a freshly loaded model (and
peft adapters), no padding, no KV cache, and by hand from logits."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parent))

from sipo_bench.contract.interfaces import DecodingConfig, ResolvedPolicy  # noqa: E402
from sipo_bench.contract.responses import as_response  # noqa: E402

from tiny_models import make_tiny_lora, make_tiny_model  # noqa: E402

PROMPTS = [
    "BEGINNING OF CONVERSATION: USER: help me please ASSISTANT:",
    "BEGINNING OF CONVERSATION: USER: what is the best way to go home today ASSISTANT:",
    "BEGINNING OF CONVERSATION: USER: hi ASSISTANT:",
    "BEGINNING OF CONVERSATION: USER: tell me a short story about a red car ASSISTANT:",
]
RESPONSES = [" sure , here is help", " go by car", "", " a red car went home"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared machine the idle
    threads' spin-waits cost more than they give."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("hfgen")
    base = make_tiny_model(d / "base", seed=0)
    return {"base": base, "a1": make_tiny_lora(base, d / "a1", seed=1), "a2": make_tiny_lora(base, d / "a2", seed=2),
            "a3": make_tiny_lora(base, d / "a3", seed=3, r=4, lora_alpha=4)}


@pytest.fixture(scope="module")
def gen():
    from sipo_bench_plugins.hf_generation.backend import HFGenerator, ModelCache

    g = HFGenerator(device="cpu", cache=ModelCache())
    yield g
    g.close()


@pytest.fixture(scope="module")
def ref(tiny):
    """An independently loaded base model with adapters a1, a2, a3 (peft, one active at a time)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny["base"])
    base = AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=torch.float32).eval()
    model = PeftModel.from_pretrained(base, str(tiny["a1"]), adapter_name="a1")
    model.load_adapter(str(tiny["a2"]), adapter_name="a2")
    model.load_adapter(str(tiny["a3"]), adapter_name="a3")
    model.eval()

    @torch.no_grad()
    def logits(name, ids):
        """(T, V) logits of one unpadded sequence under adapter `name` (None: base)."""
        x = torch.tensor([ids])
        if name is None:
            with model.disable_adapter():
                return model(input_ids=x).logits[0].float()
        model.set_adapter(name)
        return model(input_ids=x).logits[0].float()

    return {"tok": tok, "model": model, "logits": logits}


def pol(tiny, *adapters, combine="soup", **options):
    return ResolvedPolicy(tiny["base"], tuple((tiny[a], w) for a, w in adapters), combine, options)


def greedy(n=10, batch_size=64):
    return DecodingConfig(greedy=True, max_new_tokens=n, batch_size=batch_size)


def ref_decode(ref, names, weights, rule, prompt, n, alpha=None, eos=None):
    """Greedy MOD decoding by the book (the MOD reference code's loop): full forward of each
    model at every step, no cache; each model's score of a candidate token is its log-prob of
    the response so far plus the token's log-prob."""
    from sipo_bench_plugins.hf_generation import fuse_logprobs

    tok = ref["tok"]
    eos = eos or {tok.eos_token_id}
    ids = tok(prompt)["input_ids"]
    new = []
    cum = torch.zeros(len(names))
    for _ in range(n):
        lps = torch.stack([torch.log_softmax(ref["logits"](m, ids + new)[-1], -1) for m in names])
        t = int(fuse_logprobs(lps + cum[:, None], weights, rule, alpha).argmax())
        cum = cum + lps[:, t]
        new.append(t)
        if t in eos:
            break
    return as_response(tok.decode(new, skip_special_tokens=True).strip())


def manual_logprob(ref, name, prompt, response, eos=True):
    """Σ log p(response tokens | prompt) from the reference logits, tokens counted by hand."""
    tok = ref["tok"]
    p = tok(prompt)["input_ids"]
    r = tok(response, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if eos else [])
    lp = torch.log_softmax(ref["logits"](name, p + r), -1)
    return sum(float(lp[len(p) + j - 1, t]) for j, t in enumerate(r))


# --- fusion rules -------------------------------------------------------------------------------


def test_fuse_logprobs_matches_hand_computed_values():
    from sipo_bench_plugins.hf_generation import fuse_logprobs

    l1 = [math.log(0.7), math.log(0.2), math.log(0.1)]
    l2 = [math.log(0.1), math.log(0.3), math.log(0.6)]
    lp = torch.tensor([l1, l2], dtype=torch.float64)
    w = [0.25, 0.75]
    rev = [0.25 * a + 0.75 * b for a, b in zip(l1, l2)]
    fwd = [-math.log(math.exp(-a) * 0.25 + math.exp(-b) * 0.75) for a, b in zip(l1, l2)]
    alp = [-math.log(math.exp(-0.5 * a) * 0.25 + math.exp(-0.5 * b) * 0.75) / 0.5 for a, b in zip(l1, l2)]
    assert fuse_logprobs(lp, w, "reverse_kl").tolist() == pytest.approx(rev, abs=1e-12)
    assert fuse_logprobs(lp, w).tolist() == pytest.approx(rev, abs=1e-12)  # default rule
    assert fuse_logprobs(lp, w, "forward_kl").tolist() == pytest.approx(fwd, abs=1e-12)
    assert fuse_logprobs(lp, w, "alpha", alpha=0.5).tolist() == pytest.approx(alp, abs=1e-12)
    assert fuse_logprobs(lp, w, "alpha", alpha=1.0).tolist() == pytest.approx(fwd, abs=1e-12)
    # the three rules disagree on this example (so each assertion above can fail)
    assert not np.allclose(rev, fwd) and not np.allclose(fwd, alp) and not np.allclose(rev, alp)


def test_alpha_rule_limits_by_hand():
    """−(1/α)·logsumexp_i(−α ℓ_i + log w_i): α = 1 is forward KL; α → 0 tends to Σ w_i ℓ_i
    (reverse KL) for weights summing to 1, not to a constant (the rule without its 1/α
    factor tends to −log Σ w_i = 0 for every token: uniform)."""
    from sipo_bench_plugins.hf_generation import fuse_logprobs

    l1 = [math.log(0.7), math.log(0.2), math.log(0.1)]
    l2 = [math.log(0.1), math.log(0.3), math.log(0.6)]
    lp = torch.tensor([l1, l2], dtype=torch.float64)
    w = [0.4, 0.6]
    rev = [0.4 * a + 0.6 * b for a, b in zip(l1, l2)]
    assert rev == pytest.approx([-1.524221, -1.366159, -1.227529], abs=1e-6)  # 0.4 ln 0.7 + 0.6 ln 0.1, ...
    fwd = [-math.log(0.4 / 0.7 + 0.6 / 0.1), -math.log(0.4 / 0.2 + 0.6 / 0.3), -math.log(0.4 / 0.1 + 0.6 / 0.6)]
    assert fuse_logprobs(lp, w, "alpha", alpha=1.0).tolist() == pytest.approx(fwd, abs=1e-12)
    assert fuse_logprobs(lp, w, "forward_kl").tolist() == pytest.approx(fwd, abs=1e-12)
    small = fuse_logprobs(lp, w, "alpha", alpha=1e-6).tolist()
    assert small == pytest.approx(rev, abs=1e-5)
    # greedy picks the same token either way (1/α > 0), but the distributions differ
    assert int(np.argmax(small)) == int(np.argmax(rev)) == 2
    without_factor = (-torch.logsumexp(-1e-6 * lp + torch.tensor(w, dtype=torch.float64).log()[:, None], 0)).tolist()
    assert max(without_factor) - min(without_factor) < 1e-5  # uniform: why the factor matters


def test_fusion_uses_each_models_cumulative_prefix_by_hand():
    """fuse_step adds each model's log-prob of the response so far: with forward KL this can
    change the chosen token; with reverse KL it cannot (a constant per row)."""
    from sipo_bench_plugins.hf_generation.fusion import fuse_step

    nxt = torch.log(torch.tensor([[0.6, 0.4], [0.2, 0.8]], dtype=torch.float64))  # model x token
    prefix = torch.log(torch.tensor([0.05, 0.9], dtype=torch.float64))  # π_1(y_<t), π_2(y_<t)
    w = [0.5, 0.5]
    no_prefix = [-math.log(0.5 / 0.6 + 0.5 / 0.2), -math.log(0.5 / 0.4 + 0.5 / 0.8)]
    with_prefix = [-math.log(0.5 / (0.05 * 0.6) + 0.5 / (0.9 * 0.2)), -math.log(0.5 / (0.05 * 0.4) + 0.5 / (0.9 * 0.8))]
    assert fuse_step(nxt, None, w, "forward_kl").tolist() == pytest.approx(no_prefix, abs=1e-12)
    assert fuse_step(nxt, prefix, w, "forward_kl").tolist() == pytest.approx(with_prefix, abs=1e-12)
    assert int(np.argmax(no_prefix)) == 1 and int(np.argmax(with_prefix)) == 0  # the prefix changes the pick
    rev = fuse_step(nxt, prefix, w, "reverse_kl")
    assert rev.tolist() == pytest.approx((0.5 * nxt[0] + 0.5 * nxt[1]).tolist(), abs=1e-12)


def test_fuse_logprobs_batch_shape_zero_weights_and_errors():
    from sipo_bench_plugins.hf_generation import fuse_logprobs

    lp = torch.log_softmax(torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0)), -1)
    lp[1, 0, 0] = float("-inf")  # a zero-weight model's -inf must not leak in (0 * -inf = nan)
    for rule in ("reverse_kl", "forward_kl", "alpha"):
        out = fuse_logprobs(lp, [1.0, 0.0], rule, alpha=2.0)
        assert out.shape == (3, 5)
        assert torch.allclose(out, lp[0].float(), atol=1e-6), rule  # one model: its own log-probs
    with pytest.raises(ValueError, match="rule"):
        fuse_logprobs(lp, [0.5, 0.5], "kl")
    with pytest.raises(ValueError, match="alpha"):
        fuse_logprobs(lp, [0.5, 0.5], "alpha")
    with pytest.raises(ValueError, match=">= 0"):
        fuse_logprobs(lp, [1.5, -0.5], "forward_kl")
    with pytest.raises(ValueError, match="weights"):
        fuse_logprobs(lp, [1.0], "reverse_kl")


# --- single models and soups --------------------------------------------------------------------


@pytest.mark.parametrize("adapter", [None, "a1"])
def test_greedy_generate_equals_hf_generate_per_prompt(tiny, gen, ref, adapter):
    policy = pol(tiny, (adapter, 1.0)) if adapter else pol(tiny)
    got = gen.generate(policy, PROMPTS, greedy(10))
    model, tok = ref["model"], ref["tok"]
    expected = []
    for p in PROMPTS:
        x = tok(p, return_tensors="pt")
        ctx = model.disable_adapter() if adapter is None else _active(model, adapter)
        with ctx, torch.no_grad():
            out = model.generate(**x, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)
        expected.append([as_response(tok.decode(out[0, x["input_ids"].shape[1]:], skip_special_tokens=True).strip())])
    assert got == expected
    assert any(e[0] for e in expected)  # not all empty


class _active:
    def __init__(self, model, name):
        self.model, self.name = model, name

    def __enter__(self):
        self.model.set_adapter(self.name)

    def __exit__(self, *a):
        return False


def test_batched_generation_equals_batch_size_one(tiny, gen):
    for policy in (pol(tiny, ("a1", 0.4), ("a2", 0.6)), pol(tiny, ("a1", 0.4), ("a2", 0.6), combine="fusion")):
        many = gen.generate(policy, PROMPTS, greedy(10, batch_size=4))
        one = gen.generate(policy, PROMPTS, greedy(10, batch_size=1))
        assert many == one
        assert len(many) == len(PROMPTS) and all(len(o) == 1 for o in many)


@pytest.mark.parametrize("combine", ["soup", "fusion"])
def test_sampling_is_deterministic_per_seed(tiny, gen, combine):
    policy = pol(tiny, ("a1", 0.5), ("a2", 0.5), combine=combine)
    dec = DecodingConfig(greedy=False, max_new_tokens=8, temperature=1.0, top_p=0.95, batch_size=8)
    a = gen.generate(policy, PROMPTS, dec, num_return_sequences=3, seed=7)
    b = gen.generate(policy, PROMPTS, dec, num_return_sequences=3, seed=7)
    c = gen.generate(policy, PROMPTS, dec, num_return_sequences=3, seed=8)
    assert a == b
    assert a != c
    assert all(len(o) == 3 for o in a)
    assert any(len(set(o)) > 1 for o in a)  # the 3 samples of a prompt differ


def _merged_model(tiny, weights):
    """A fresh base model whose q/k/v/o weights are W + Σ w_i B_i A_i * scaling_i, by hand."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=torch.float32).eval()
    params = dict(model.named_parameters())
    touched = set()
    for name, w in weights:
        cfg = json.loads((tiny[name] / "adapter_config.json").read_text())
        scaling = cfg["lora_alpha"] / cfg["r"]
        sd = load_file(str(tiny[name] / "adapter_model.safetensors"))
        for key, a in sd.items():
            if ".lora_A." not in key:
                continue
            b = sd[key.replace(".lora_A.", ".lora_B.")]
            target = key.replace("base_model.model.", "", 1).replace(".lora_A.weight", ".weight")
            with torch.no_grad():
                params[target] += w * scaling * (b @ a)
            touched.add(target)
    assert len(touched) == 2 * 4  # 2 layers x q/k/v/o
    return model


@pytest.mark.parametrize("weights", [(("a1", 0.3), ("a2", 0.7)), (("a1", -0.5), ("a3", 1.5))])
def test_soup_is_the_exactly_merged_model(tiny, gen, ref, weights):
    from sipo_bench_plugins.hf_generation.adapters import use_adapter

    merged = _merged_model(tiny, weights)
    ids = torch.tensor([ref["tok"](PROMPTS[1] + RESPONSES[1])["input_ids"]])
    with torch.no_grad():
        expected = merged(input_ids=ids).logits
    b = gen.base(tiny["base"])
    name = gen.cache.soup(b, [(tiny[a], w) for a, w in weights])
    with use_adapter(b, name) as m, torch.no_grad():
        got = m(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    # the soup differs from each endpoint and from the base (the comparison can fail)
    with use_adapter(b, None) as m, torch.no_grad():
        assert not torch.allclose(m(input_ids=ids).logits, expected, atol=1e-2)
    # and the public API agrees: greedy text of the soup = greedy text of the merged model
    tok = ref["tok"]
    x = tok(PROMPTS[0], return_tensors="pt")
    with torch.no_grad():
        out = merged.generate(**x, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    text = as_response(tok.decode(out[0, x["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    assert gen.generate(pol(tiny, *weights), PROMPTS[:1], greedy(8)) == [[text]]


def test_averaging_a_and_b_is_not_the_soup(tiny, ref):
    """Control: the naive soup (average A and B separately) is a different model."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=torch.float32).eval()
    naive = PeftModel.from_pretrained(base, str(tiny["a1"]), adapter_name="x")
    naive.load_adapter(str(tiny["a2"]), adapter_name="y")
    naive.add_weighted_adapter(["x", "y"], [0.5, 0.5], "avg", combination_type="linear")
    naive.set_adapter("avg")
    ids = torch.tensor([ref["tok"](PROMPTS[1])["input_ids"]])
    with torch.no_grad():
        got = naive(input_ids=ids).logits
        exact = _merged_model(tiny, (("a1", 0.5), ("a2", 0.5)))(input_ids=ids).logits
    assert not torch.allclose(got, exact, atol=1e-3)


def test_soup_edge_cases(tiny, gen):
    b = gen.base(tiny["base"])
    assert gen.cache.soup(b, []) is None
    assert gen.cache.soup(b, [(tiny["a1"], 0.0)]) is None
    assert gen.cache.soup(b, [(tiny["a1"], 1.0)]) == gen.cache.adapter(b, tiny["a1"])
    s = gen.cache.soup(b, [(tiny["a1"], 0.2), (tiny["a2"], 0.8)])
    assert gen.cache.soup(b, [(tiny["a1"], 0.2), (tiny["a2"], 0.8)]) == s  # cached
    # the same adapter twice is one term with the summed weight
    assert gen.cache.soup(b, [(tiny["a1"], 0.1), (tiny["a1"], 0.1), (tiny["a2"], 0.8)]) == s
    assert gen.cache.soup(b, [(tiny["a1"], 0.5), (tiny["a1"], 0.5)]) == gen.cache.adapter(b, tiny["a1"])
    assert gen.sequence_logprobs(tiny["base"], [], PROMPTS, RESPONSES).shape == (0, len(PROMPTS))
    assert gen.cache.base(tiny["base"], torch.device("cpu")) is b  # one base model per process


# --- mixed-adapter batches, log-probs, implicit rewards -----------------------------------------


@pytest.mark.parametrize("mode", ["grouped", "peft", "sequential"])
def test_mixed_adapter_batch_equals_per_adapter(tiny, ref, mode):
    from sipo_bench_plugins.hf_generation.backend import HFGenerator, ModelCache

    g = HFGenerator(device="cpu", group_mode=mode, cache=ModelCache())
    try:
        slots = [None, tiny["a1"], tiny["a2"], tiny["a3"], tiny["a1"]]
        got = g.sequence_logprobs(tiny["base"], slots, PROMPTS, RESPONSES, batch_size=3)
        names = [None, "a1", "a2", "a3", "a1"]
        expected = np.array([[manual_logprob(ref, n, p, r) for p, r in zip(PROMPTS, RESPONSES)] for n in names])
        assert got.shape == (5, len(PROMPTS))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
        assert np.abs(got[1] - got[0]).max() > 1e-2  # adapters change the scores
    finally:
        g.close()


def test_grouped_forward_logits_equal_single_adapter_logits(tiny, gen, ref):
    from sipo_bench_plugins.hf_generation.adapters import grouped

    b = gen.base(tiny["base"])
    names = [None, gen.cache.adapter(b, tiny["a1"]), gen.cache.adapter(b, tiny["a3"])]
    ids = ref["tok"](PROMPTS[3])["input_ids"]
    with grouped(b, names, "grouped") as extra, torch.no_grad():
        x = torch.tensor([ids] * 3)
        got = b.model(input_ids=x, **extra(1)).logits
    for g, n in enumerate([None, "a1", "a3"]):
        assert torch.allclose(got[g], ref["logits"](n, ids), atol=1e-4)
    # hooks are gone afterwards: a plain forward is the base model again
    from sipo_bench_plugins.hf_generation.adapters import use_adapter

    with use_adapter(b, None) as m, torch.no_grad():
        assert torch.allclose(m(input_ids=torch.tensor([ids])).logits[0], ref["logits"](None, ids), atol=1e-5)


def test_logprobs_count_response_tokens_only(tiny, gen, ref):
    policy = pol(tiny, ("a2", 1.0))
    got = gen.logprobs(policy, PROMPTS, RESPONSES, batch_size=2)
    expected = [manual_logprob(ref, "a2", p, r) for p, r in zip(PROMPTS, RESPONSES)]
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-4)
    no_eos = gen.logprobs(policy, PROMPTS, RESPONSES, add_eos=False)
    assert no_eos == pytest.approx([manual_logprob(ref, "a2", p, r, eos=False) for p, r in zip(PROMPTS, RESPONSES)],
                                   rel=1e-5, abs=1e-4)
    assert no_eos[2] == 0.0  # empty response, no eos: nothing scored
    # the prompt's own tokens are not scored: a longer prompt with the same response changes
    # the value only through the conditioning, and the score is a sum of <= 0 terms per token
    assert all(v < 0 for v in got)
    # convention matches trl: response ids = tok(prompt + response + eos)[len(common prefix):]
    from trl.data_utils import common_prefix_length

    from sipo_bench_plugins.hf_generation.tokens import encode_pairs

    tok = ref["tok"]
    for (ids, n), p, r in zip(encode_pairs(tok, PROMPTS, RESPONSES), PROMPTS, RESPONSES):
        full = tok(p + r + tok.eos_token)["input_ids"]
        assert ids == full and n == common_prefix_length(tok(p)["input_ids"], full)
        assert ids[n:] == tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_implicit_reward_equals_hand_computed_value(tiny, ref):
    from sipo_bench_plugins.hf_generation import implicit_rewards

    prompt, response, beta = PROMPTS[0], RESPONSES[0], 0.1
    tok = ref["tok"]
    p = tok(prompt)["input_ids"]
    r = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]

    def by_hand(name):
        logits = ref["logits"](name, p + r).double()
        total = 0.0
        for j, t in enumerate(r):
            row = logits[len(p) + j - 1]
            total += float(row[t] - torch.logsumexp(row, 0))
        return total

    expected = [beta * (by_hand("a1") - by_hand(None)), beta * (by_hand("a2") - by_hand(None))]
    got = implicit_rewards(tiny["base"], [tiny["a1"], tiny["a2"]], [prompt], [response], beta)
    assert got.shape == (2, 1)
    assert got[:, 0].tolist() == pytest.approx(expected, abs=1e-5)
    assert abs(expected[0]) > 1e-3
    # a reference that is itself base + adapter
    got_ref = implicit_rewards(tiny["base"], [tiny["a1"]], [prompt], [response], beta, ref_adapter=tiny["a2"])
    assert got_ref[0, 0] == pytest.approx(beta * (by_hand("a1") - by_hand("a2")), abs=1e-5)


# --- MOD fusion decoding ------------------------------------------------------------------------


def test_fusion_with_one_zero_weight_is_the_single_adapter(tiny, gen):
    single = gen.generate(pol(tiny, ("a1", 1.0)), PROMPTS, greedy(10))
    for rule in ("reverse_kl", "forward_kl"):
        fused = gen.generate(pol(tiny, ("a1", 1.0), ("a2", 0.0), combine="fusion", rule=rule), PROMPTS, greedy(10))
        assert fused == single


@pytest.mark.parametrize("mode", ["grouped", "sequential", "peft"])
def test_fusion_of_an_adapter_with_itself_is_that_adapter(tiny, mode):
    """Every rule maps (ℓ, ℓ) with weights summing to 1 to a monotone function of ℓ, so greedy
    decoding of the fused pair must equal the adapter's own greedy decoding; this runs the
    grouped KV-cache loop with left padding."""
    from sipo_bench_plugins.hf_generation.backend import HFGenerator, ModelCache

    g = HFGenerator(device="cpu", group_mode=mode, cache=ModelCache())
    try:
        single = g.generate(pol(tiny, ("a1", 1.0)), PROMPTS, greedy(10))
        for rule, alpha in (("reverse_kl", None), ("forward_kl", None), ("alpha", 0.5)):
            policy = ResolvedPolicy(tiny["base"], ((tiny["a1"], 0.3), (Path(str(tiny["a1"])), 0.7)), "fusion",
                                    {"rule": rule, "alpha": alpha})
            assert g.generate(policy, PROMPTS, greedy(10)) == single, rule
    finally:
        g.close()


@pytest.mark.parametrize("rule,alpha", [("reverse_kl", None), ("forward_kl", None), ("alpha", 0.5)])
def test_fusion_decoding_equals_reference_decoding(tiny, gen, ref, rule, alpha):
    w = (0.35, 0.65)
    got = gen.generate(pol(tiny, ("a1", w[0]), ("a2", w[1]), combine="fusion", rule=rule, alpha=alpha), PROMPTS,
                       greedy(10))
    expected = [[ref_decode(ref, ["a1", "a2"], w, rule, p, 10, alpha)] for p in PROMPTS]
    assert got == expected
    single = [[ref_decode(ref, ["a1"], [1.0], "reverse_kl", p, 10)] for p in PROMPTS]
    assert got != single  # the fusion is not just one endpoint


def test_fusion_rows_stop_at_eos_independently(tiny, ref):
    """Rows that hit eos stop (and are dropped from the batch) while the others go on: make two
    frequent tokens extra eos ids and compare with the by-the-book decoding."""
    from sipo_bench_plugins.hf_generation.backend import HFGenerator, ModelCache

    g = HFGenerator(device="cpu", cache=ModelCache())
    try:
        policy = pol(tiny, ("a1", 0.35), ("a2", 0.65), combine="fusion")
        full = g.generate(policy, PROMPTS, greedy(10))
        tok = ref["tok"]
        words = [tok(o[0], add_special_tokens=False)["input_ids"] for o in full]
        stops = {words[0][2], words[2][5]}
        b = g.base(tiny["base"])
        b.eos_ids = sorted(set(b.eos_ids) | stops)
        got = g.generate(policy, PROMPTS, greedy(10, batch_size=4))
        expected = [[ref_decode(ref, ["a1", "a2"], (0.35, 0.65), "reverse_kl", p, 10, eos=stops | {tok.eos_token_id})]
                    for p in PROMPTS]
        assert got == expected
        assert got == g.generate(policy, PROMPTS, greedy(10, batch_size=1))
        assert len(got[0][0].split()) <= 3 and got != full  # some rows were cut short
        assert any(len(o[0].split()) == 10 for o in got)  # and others went on
    finally:
        g.close()


def test_fusion_logprobs_are_normalised_fused_scores(tiny, gen, ref):
    from sipo_bench_plugins.hf_generation import fuse_logprobs

    w = (0.5, 0.5)
    got = gen.logprobs(pol(tiny, ("a1", w[0]), ("a2", w[1]), combine="fusion", rule="forward_kl"), PROMPTS[:2],
                       RESPONSES[:2])
    tok = ref["tok"]
    for value, p, r in zip(got, PROMPTS, RESPONSES):
        pi = tok(p)["input_ids"]
        ri = tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        lps = torch.stack([torch.log_softmax(ref["logits"](n, pi + ri), -1) for n in ("a1", "a2")])
        total, cum = 0.0, torch.zeros(2)
        for j, t in enumerate(ri):  # each model's response log-prob so far enters the rule
            step = lps[:, len(pi) + j - 1]
            f = torch.log_softmax(fuse_logprobs(step + cum[:, None], w, "forward_kl"), -1)
            total += float(f[t])
            cum = cum + step[:, t]
        assert value == pytest.approx(total, abs=1e-4)
        no_prefix = torch.log_softmax(fuse_logprobs(lps, w, "forward_kl"), -1)
        assert value != pytest.approx(sum(float(no_prefix[len(pi) + j - 1, t]) for j, t in enumerate(ri)), abs=1e-4)


# --- plumbing -----------------------------------------------------------------------------------


def test_resolve_model_path(tmp_path, tiny):
    from sipo_bench_plugins.hf_generation import resolve_model_path

    assert resolve_model_path(tiny["base"]) == str(tiny["base"])
    (tmp_path / "ptr").mkdir()
    (tmp_path / "ptr" / "pointer.json").write_text(json.dumps({"model": str(tiny["base"])}))
    assert resolve_model_path(tmp_path / "ptr") == str(tiny["base"])
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "pointer.json").write_text(json.dumps({"model": "org/some-model", "tokenizer": "org/tok"}))
    assert resolve_model_path(tmp_path / "hub", with_tokenizer=True) == ("org/some-model", "org/tok")
    assert resolve_model_path("org/other") == "org/other"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        resolve_model_path(tmp_path / "empty")


def test_pointer_base_generates_like_the_saved_model(tmp_path, tiny, gen):
    (tmp_path / "pointer.json").write_text(json.dumps({"model": str(tiny["base"])}))
    via_pointer = ResolvedPolicy(tmp_path, ((tiny["a1"], 1.0),), "soup", {})
    assert gen.generate(via_pointer, PROMPTS[:2], greedy(6)) == gen.generate(pol(tiny, ("a1", 1.0)), PROMPTS[:2],
                                                                             greedy(6))


@pytest.mark.parametrize("combine", ["soup", "fusion"])
def test_max_length_caps_prompt_plus_response_per_row(tiny, gen, ref, combine):
    """`DecodingConfig.max_length` caps prompt + response tokens of each row (as the released
    evaluation's `generate(max_length=512)` does for one prompt at a time), not the padded
    batch: a long and a short prompt batched together each get their own budget."""
    tok = ref["tok"]
    lengths = [len(tok(p)["input_ids"]) for p in PROMPTS]
    cap = max(lengths) + 2  # the longest prompt may add 2 tokens, the shortest many more
    adapters = (("a1", 0.4), ("a2", 0.6)) if combine == "fusion" else (("a1", 1.0),)
    policy = pol(tiny, *adapters, combine=combine)
    free = gen.generate(policy, PROMPTS, greedy(12))
    capped = gen.generate(policy, PROMPTS, DecodingConfig(greedy=True, max_new_tokens=12, max_length=cap))
    one_by_one = [gen.generate(policy, [p], DecodingConfig(greedy=True, max_new_tokens=12, max_length=cap))[0]
                  for p in PROMPTS]
    assert capped == one_by_one
    # each row = that prompt decoded alone with max_new_tokens = min(12, cap - its length)
    assert capped == [gen.generate(policy, [p], greedy(min(12, cap - n)))[0] for p, n in zip(PROMPTS, lengths)]
    assert capped != free
    # a prompt that alone reaches the cap gets an empty response
    assert gen.generate(policy, PROMPTS[:1], DecodingConfig(greedy=True, max_new_tokens=5, max_length=lengths[0])) == [[""]]


def test_progress_and_bad_inputs(tiny, gen):
    seen = []
    gen.generate(pol(tiny), PROMPTS, greedy(3, batch_size=3), progress=seen.append)
    assert seen == [3, 1]
    seen.clear()
    gen.logprobs(pol(tiny), PROMPTS, RESPONSES, batch_size=2, progress=seen.append)
    assert seen == [2, 2]
    with pytest.raises(ValueError, match="combine"):
        gen.generate(ResolvedPolicy(tiny["base"], (), "blend", {}), PROMPTS, greedy(3))
    with pytest.raises(ValueError, match="rule"):
        gen.generate(pol(tiny, ("a1", 0.5), ("a2", 0.5), combine="fusion", rule="kl"), PROMPTS, greedy(3))
    with pytest.raises(ValueError, match="responses"):
        gen.logprobs(pol(tiny), PROMPTS, RESPONSES[:2])


def test_plugin_registers_lazily_without_torch():
    code = ("import sys, sipo_bench_plugins.hf_generation as m; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "print([e.name for e in m.sipo_bench_register_generators()])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "transformers" in out.stdout
