"""The vLLM backend without a GPU: request building (pure functions), the soup merge (checked
against peft's own `add_weighted_adapter(combination_type="cat")` and the explicit weight sum),
and the generator against a fake vLLM (tests/fake_vllm.py) whose interface is checked here
against vLLM 0.33's, recorded from its source (fixtures/vllm_signatures.json)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sipo_bench.contract.interfaces import DecodingConfig, ResolvedPolicy
from sipo_bench_plugins.vllm_generation.requests import (LoRAIds, UnsupportedPolicy, VLLMPlan, copies, engine_kwargs,
                                                          max_lora_rank, plan_policy, sampling_kwargs)


def _base(tmp_path: Path, model: str = "PKU-Alignment/alpaca-7b-reproduced") -> Path:
    d = tmp_path / "base"
    d.mkdir(exist_ok=True)
    (d / "pointer.json").write_text(json.dumps({"model": model}))
    return d


def _policy(base, adapters=(), combine="soup", options=None) -> ResolvedPolicy:
    return ResolvedPolicy(base=base, adapters=tuple(adapters), combine=combine, options=options or {})


# --- pure request building -------------------------------------------------------------------


def test_plan_policy_single_models_and_soups(tmp_path):
    base = _base(tmp_path)
    hub = "PKU-Alignment/alpaca-7b-reproduced"
    assert plan_policy(_policy(base)) == VLLMPlan(hub, hub)
    assert plan_policy(_policy(base, [("/a", 0.0), ("/b", 1.0)])) == VLLMPlan(hub, hub, adapter="/b")
    assert plan_policy(_policy(base, [("/a", 0.3), ("/b", 0.7)])) == VLLMPlan(hub, hub, merge=(("/a", 0.3), ("/b", 0.7)))
    assert plan_policy(_policy(base, [("/a", 0.5)])) == VLLMPlan(hub, hub, merge=(("/a", 0.5),))
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "config.json").write_text("{}")
    assert plan_policy(_policy(saved)) == VLLMPlan(str(saved), str(saved))


def test_mod_fusion_is_refused_with_one_line(tmp_path):
    with pytest.raises(UnsupportedPolicy) as e:
        plan_policy(_policy(_base(tmp_path), [("/a", 0.5), ("/b", 0.5)], "fusion", {"rule": "reverse_kl"}))
    assert "\n" not in str(e.value) and "use the transformers backend" in str(e.value)
    with pytest.raises(UnsupportedPolicy, match="combine='mystery'"):
        plan_policy(_policy(_base(tmp_path), [("/a", 1.0)], "mystery"))


def test_sampling_kwargs_greedy_and_sampled():
    greedy = DecodingConfig(greedy=True, max_new_tokens=512)
    assert sampling_kwargs(greedy, 3, 7) == {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 512,
                                            "seed": 7, "skip_special_tokens": True}
    assert copies(greedy, 3) == 3
    sampled = DecodingConfig(greedy=False, max_new_tokens=64, temperature=0.7, top_p=0.9)
    assert sampling_kwargs(sampled, 4, 1) == {"n": 4, "temperature": 0.7, "top_p": 0.9, "max_tokens": 64,
                                             "seed": 1, "skip_special_tokens": True}
    assert copies(sampled, 4) == 1


def test_lora_ids_ranks_and_engine_kwargs(tmp_path):
    ids = LoRAIds()
    a, b = tmp_path / "a", tmp_path / "b"
    assert ids.request_args(a) == ("adapter1", 1, str(a.resolve()))
    assert ids.request_args(b)[1] == 2 and ids.request_args(a)[1] == 1
    assert [max_lora_rank(r) for r in (1, 2, 8, 9, 64, 65, 128, 129)] == [1, 8, 8, 16, 64, 128, 128, 256]
    with pytest.raises(UnsupportedPolicy, match="rank 600"):
        max_lora_rank(600)
    kw = engine_kwargs("m", "t", 128, env={})
    assert kw == {"model": "m", "tokenizer": "t", "enable_lora": True, "max_loras": 1, "max_lora_rank": 128,
                  "gpu_memory_utilization": 0.85, "tensor_parallel_size": 1, "dtype": "auto"}
    kw = engine_kwargs("m", "t", 0, env={"SIPO_BENCH_VLLM_MAX_MODEL_LEN": "1024", "SIPO_BENCH_VLLM_TENSOR_PARALLEL_SIZE": "2",
                                         "SIPO_BENCH_VLLM_MAX_LORA_RANK": "16"})
    assert (kw["max_lora_rank"], kw["max_model_len"], kw["tensor_parallel_size"]) == (16, 1024, 2)


def test_requests_module_imports_neither_vllm_nor_torch():
    import subprocess

    code = ("import sys; import sipo_bench_plugins.vllm_generation.requests, sipo_bench_plugins.vllm_generation.backend; "
            "print('vllm' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


# --- the soup merge --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lora(tmp_path_factory):
    """A tiny LLaMA (SentencePiece-style tokenizer) and two LoRA adapters of different ranks,
    alphas and targets."""
    torch = pytest.importorskip("torch")
    import importlib.util

    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    root = tmp_path_factory.mktemp("lora")
    spec = importlib.util.spec_from_file_location("sipo_test_mc_vllm", Path(__file__).parent / "fixtures" / "make_checkpoints.py")
    mc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mc)
    mc.make_policy(root / "base", seed=0)
    specs = {"a": LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0),
             "b": LoraConfig(r=2, lora_alpha=1, target_modules=["q_proj", "k_proj", "o_proj"], lora_dropout=0.0,
                             use_rslora=True)}
    for i, (name, spec) in enumerate(specs.items()):
        torch.manual_seed(10 + i)
        model = get_peft_model(LlamaForCausalLM.from_pretrained(root / "base"), spec)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.5)
        model.save_pretrained(root / name)
    return root


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_adapter_equals_weighted_delta_sum(tiny_lora, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    from sipo_bench_plugins.vllm_generation.merge import merge_lora_adapters

    root = tiny_lora
    w = (0.3, -0.7)
    out = merge_lora_adapters([(root / "a", w[0]), (root / "b", w[1])], tmp_path / "soup")
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert (cfg["r"], cfg["lora_alpha"], cfg["use_rslora"]) == (6, 6, False)
    assert sorted(cfg["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    ids = torch.tensor([[1, 5, 9, 13, 2, 40]])

    merged = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(root / "base"), out).eval()
    got = _logits(merged, ids)
    # reference 1: the base weights plus Σ w_i ΔW_i, each ΔW_i from peft's own merge of adapter i
    ref = LlamaForCausalLM.from_pretrained(root / "base").eval()
    base_sd = {k: v.clone() for k, v in ref.state_dict().items()}
    new_sd = dict(base_sd)
    for name, wi in zip(("a", "b"), w):
        m = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(root / "base"), root / name).merge_and_unload()
        for k, v in m.state_dict().items():
            new_sd[k] = new_sd[k] + wi * (v - base_sd[k])
    ref.load_state_dict(new_sd)
    want = _logits(ref, ids)
    assert torch.allclose(got, want, atol=1e-5)
    # reference 2: peft add_weighted_adapter(combination_type="cat") on the same two adapters
    pm = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(root / "base"), root / "a", adapter_name="a")
    pm.load_adapter(root / "b", adapter_name="b")
    pm.add_weighted_adapter(["a", "b"], list(w), "cat", combination_type="cat")
    pm.set_adapter("cat")
    assert torch.allclose(got, _logits(pm.eval(), ids), atol=1e-5)
    # and the soup is not just one of the adapters
    only_a = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(root / "base"), root / "a").eval()
    assert not torch.allclose(got, _logits(only_a, ids), atol=1e-3)


def test_merge_refuses_unsupported_adapters(tiny_lora, tmp_path):
    import shutil

    from sipo_bench_plugins.vllm_generation.merge import merge_lora_adapters

    bad = tmp_path / "dora"
    shutil.copytree(tiny_lora / "a", bad)
    cfg = json.loads((bad / "adapter_config.json").read_text())
    cfg["use_dora"] = True
    (bad / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedPolicy, match="`use_dora`"):
        merge_lora_adapters([(bad, 0.5), (tiny_lora / "b", 0.5)], tmp_path / "x")


# --- the fake vLLM's interface is vLLM 0.33's -------------------------------------------------


SIGNATURES = json.loads((Path(__file__).parent / "fixtures" / "vllm_signatures.json").read_text())


def _recorded(params):
    return [(name, kind, default) for name, kind, default in params]


def _fake_signature(fn):
    import inspect

    sig = inspect.signature(fn)
    return [(p.name, p.kind.name, None if p.default is inspect.Parameter.empty else repr(p.default))
            for p in sig.parameters.values() if p.name != "self"]


def test_fake_vllm_has_the_recorded_vllm_interface():
    """tests/fake_vllm.py against the signatures recorded from vLLM 0.33's source: if either
    drifts (a new fake, a new vLLM with other parameters), this fails."""
    import fake_vllm as fv

    assert SIGNATURES["vllm"] == "0.33.0"
    assert _fake_signature(fv.LLM.generate) == _recorded(SIGNATURES["LLM.generate"])
    assert _fake_signature(fv.LLM.get_tokenizer) == _recorded(SIGNATURES["LLM.get_tokenizer"]) == []
    assert [p[0] for p in _fake_signature(fv.LoRARequest.__init__)] == SIGNATURES["LoRARequest"]
    assert [p[0] for p in _fake_signature(fv.RequestOutput.__init__)] == \
        [p[0] for p in SIGNATURES["RequestOutput.__init__"]][:len(_fake_signature(fv.RequestOutput.__init__))]
    assert set(fv.CompletionOutput.__dataclass_fields__) <= set(SIGNATURES["CompletionOutput"])
    init = SIGNATURES["LLM.__init__"]
    assert init[0][:2] == ["model", "POSITIONAL_OR_KEYWORD"] and init[-1][1] == "VAR_KEYWORD"  # LLM(model, *, ..., **kw)
    assert fv.ENGINE_KEYWORDS >= {"enable_lora", "max_loras", "max_lora_rank", "gpu_memory_utilization"}
    # what the generator sends is in vLLM's API
    kw = engine_kwargs("m", "t", 8, env={"SIPO_BENCH_VLLM_MAX_MODEL_LEN": "512"})
    assert set(kw) - {"model"} <= fv.ENGINE_KEYWORDS
    for greedy in (True, False):
        assert set(sampling_kwargs(DecodingConfig(greedy=greedy), 2, 0)) <= set(SIGNATURES["SamplingParams"])
    from sipo_bench_plugins.vllm_generation.requests import VLLM_LORA_RANKS

    assert list(VLLM_LORA_RANKS) == SIGNATURES["MaxLoRARanks"]


def test_fake_vllm_rejects_what_vllm_rejects(monkeypatch, tiny_lora):
    import fake_vllm as fv

    fv.install(monkeypatch)
    with pytest.raises(TypeError, match="max_lora_ranks"):
        fv.LLM(str(tiny_lora / "base"), max_lora_ranks=64)
    with pytest.raises(ValueError, match="max_lora_rank"):
        fv.LLM(str(tiny_lora / "base"), max_lora_rank=100)
    with pytest.raises(TypeError, match="max_new_tokens"):
        fv.SamplingParams(max_new_tokens=4)
    with pytest.raises(ValueError, match="max_tokens"):
        fv.SamplingParams(max_tokens=0)
    llm = fv.LLM(str(tiny_lora / "base"), enable_lora=True, max_lora_rank=1)
    with pytest.raises(ValueError, match="LoRA rank 4 is greater than max_lora_rank 1"):
        llm.generate(["p"], fv.SamplingParams(max_tokens=2), lora_request=fv.LoRARequest("a", 1, str(tiny_lora / "a")))


# --- the generator against the fake vLLM ------------------------------------------------------


@pytest.fixture
def fake_vllm(monkeypatch):
    import fake_vllm as fv

    for k in list(__import__("os").environ):
        if k.startswith("SIPO_BENCH_VLLM_"):
            monkeypatch.delenv(k)
    return fv.install(monkeypatch)


PROMPTS = ["BEGINNING OF CONVERSATION: USER: How can I bake bread? ASSISTANT:",
           "BEGINNING OF CONVERSATION: USER: Hi ASSISTANT:"]


def test_generator_serves_base_adapters_and_soups_like_the_transformers_backend(fake_vllm, tiny_lora):
    """Greedy outputs through the (fake) engine equal the transformers backend's for the base
    model, one adapter and a soup (merged into one LoRA of rank 6), in the response convention."""
    from sipo_bench_plugins.hf_generation.backend import HFGenerator, ModelCache
    from sipo_bench_plugins.vllm_generation.backend import VLLMGenerator

    base = tiny_lora / "base"
    gen, hf = VLLMGenerator(), HFGenerator(device="cpu", cache=ModelCache())
    greedy = DecodingConfig(greedy=True, max_new_tokens=6)
    policies = [_policy(base), _policy(base, [(tiny_lora / "a", 1.0)]),
                _policy(base, [(tiny_lora / "a", 0.4), (tiny_lora / "b", 0.6)])]
    for policy in policies:
        got = gen.generate(policy, PROMPTS, greedy, num_return_sequences=2)
        want = hf.generate(policy, PROMPTS, greedy, num_return_sequences=2)
        assert got == want and all(t[0].startswith(" ") for t in got)
    assert [e["max_lora_rank"] for e in fake_vllm.started] == [64]  # one engine for all three
    assert gen.engines_started == [(str(base), 64)]
    merged = [d for d in gen._merged.values()][0]
    assert json.loads((merged / "adapter_config.json").read_text())["r"] == 6
    # sampling: n sequences from vLLM itself, seeded
    sampled = DecodingConfig(greedy=False, max_new_tokens=4, temperature=0.9, top_p=0.95)
    s1 = gen.generate(policies[1], PROMPTS[:1], sampled, num_return_sequences=3, seed=5)
    assert len(s1[0]) == 3 and s1 == gen.generate(policies[1], PROMPTS[:1], sampled, num_return_sequences=3, seed=5)
    # MOD fusion: refused before any engine call
    n = len(fake_vllm.started)
    with pytest.raises(UnsupportedPolicy, match="transformers backend"):
        gen.generate(_policy(base, [(tiny_lora / "a", 0.5), (tiny_lora / "b", 0.5)], "fusion"), PROMPTS, greedy)
    assert len(fake_vllm.started) == n
    gen.close(), hf.close()
    assert not merged.exists()


def test_max_length_caps_each_prompt(fake_vllm, tiny_lora):
    from sipo_bench_plugins.hf_generation.backend import HFGenerator, ModelCache
    from sipo_bench_plugins.vllm_generation.backend import VLLMGenerator

    base = tiny_lora / "base"
    gen, hf = VLLMGenerator(), HFGenerator(device="cpu", cache=ModelCache())
    tok = hf.base(base).tokenizer
    n = [len(tok(p)["input_ids"]) for p in PROMPTS]
    capped = DecodingConfig(greedy=True, max_new_tokens=10, max_length=max(n) + 2)
    assert gen.generate(_policy(base), PROMPTS, capped) == hf.generate(_policy(base), PROMPTS, capped)
    assert gen.generate(_policy(base), PROMPTS, DecodingConfig(max_new_tokens=5, max_length=n[0])) == [[""], [gen.generate(
        _policy(base), PROMPTS[1:], DecodingConfig(max_new_tokens=min(5, n[0] - n[1])))[0][0]]]
    gen.close(), hf.close()


def test_planned_rank_starts_one_engine_for_the_whole_run(fake_vllm, tiny_lora, monkeypatch):
    from sipo_bench_plugins.vllm_generation.backend import VLLMGenerator

    monkeypatch.setenv("SIPO_BENCH_VLLM_MAX_LORA_RANK", "1")
    base = tiny_lora / "base"
    soup = _policy(base, [(tiny_lora / "a", 0.5), (tiny_lora / "b", 0.5)])  # r = 4 + 2
    unplanned = VLLMGenerator()
    unplanned.generate(_policy(base, [(tiny_lora / "b", 1.0)]), ["p"], DecodingConfig(max_new_tokens=2))  # r=2 -> 8
    unplanned.generate(soup, ["p"], DecodingConfig(max_new_tokens=2))  # r=6 fits in 8
    unplanned.generate(_policy(base, [(tiny_lora / "a", 0.5), (tiny_lora / "b", 0.5), (tiny_lora / "a", 0.25)]), ["p"],
                       DecodingConfig(max_new_tokens=2))  # r = 10: rebuilt with 16
    assert [r for _, r in unplanned.engines_started] == [8, 16]
    unplanned.close()
    planned = VLLMGenerator()
    planned.reserve(max_lora_rank=10)  # what plan_run tells it (generator_hints)
    planned.generate(_policy(base, [(tiny_lora / "b", 1.0)]), ["p"], DecodingConfig(max_new_tokens=2))
    planned.generate(_policy(base, [(tiny_lora / "a", 0.5), (tiny_lora / "b", 0.5), (tiny_lora / "a", 0.25)]), ["p"],
                     DecodingConfig(max_new_tokens=2))
    assert [r for _, r in planned.engines_started] == [16]
    planned.close()


def test_device_memory_is_released_before_the_engine_starts(fake_vllm, tiny_lora, tmp_path):
    """The runtime closes loaded transformers models and reward models before it hands out the
    vLLM generator, so they are gone when the engine starts; handing out a scorer or the
    transformers backend again closes the engine."""
    import importlib.util

    from sipo_bench.execution.runtime import Runtime
    from sipo_bench_plugins.hf_generation.model_cache import MODELS

    spec = importlib.util.spec_from_file_location("sipo_test_mc_rel", Path(__file__).parent / "fixtures" / "make_checkpoints.py")
    mc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mc)
    rm = mc.make_beaver(tmp_path / "rm", layout="current")
    rt = Runtime(quiet=True)
    base = tiny_lora / "base"
    rt.generator("transformers").generate(_policy(base, [(tiny_lora / "a", 1.0)]), PROMPTS, DecodingConfig(max_new_tokens=2))
    scorer = rt.scorer("beaver-reward", {"model": str(rm)})
    scorer.score(["q"], [" r"])
    assert MODELS.bases and scorer._loaded is not None
    resident = []
    fake_vllm.on_start = lambda kw: resident.append((len(MODELS.bases), scorer._loaded is not None))
    vllm = rt.generator("vllm")
    vllm.generate(_policy(base), PROMPTS, DecodingConfig(max_new_tokens=2))
    assert resident == [(0, False)]
    assert vllm._llm is not None
    rt.scorer("beaver-reward", {"model": str(rm)}).score(["q"], [" r"])  # a scorer is used again
    assert vllm._llm is None
    rt.close()


def test_missing_vllm_is_a_one_line_error(monkeypatch, tmp_path):
    from sipo_bench_plugins.vllm_generation.backend import VLLMGenerator

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(UnsupportedPolicy, match=r"the `vllm` package is not installed .*generator: transformers"):
        VLLMGenerator().generate(_policy(_base(tmp_path)), ["p"], DecodingConfig())


def test_registered_as_generator():
    from sipo_bench.plugin_host.manager import load

    regs = load()
    assert "vllm" in regs.generators
    entry = regs.generators.entries()
    assert any(e.name == "vllm" and e.plugin == "vllm" for e in entry)
    cls = regs.generators.get("vllm")
    assert cls.combines == ("soup",) and cls.exclusive_device


def test_plan_sends_fusion_to_transformers_and_sizes_the_engine_for_the_run():
    """The paper preset with `generator: vllm`: MOD and SIPO's fusion points are planned on
    transformers, everything else on vllm, and every vllm generate stage is told the largest rank
    it will serve: a soup of two r=64 DPO adapters and SIPO's re-aligned endpoints (64 + 64) are
    128."""
    from sipo_bench.configs.run_config import load_yaml, make_config
    from sipo_bench.planning.experiment import plan_run
    from sipo_bench.execution.runtime import Runtime

    data = load_yaml(Path(__file__).parent.parent / "presets" / "paper-beavertails.yaml")
    plan = plan_run(make_config({**data, "generator": "vllm"}), Runtime(quiet=True))
    for name, m in plan.methods.items():
        for p in m.points:
            interior = 0.0 < p.w[0] < 1.0
            fusion = name in ("mod", "sipo") and interior
            assert p.generator == ("transformers" if fusion else "vllm"), (name, p.w)
            assert p.generate.config["generator"] == p.generator
            hint = p.generate.tags["generator_hints"]["max_lora_rank"]
            assert hint == (None if fusion else 128)
    sipo_endpoint = plan.methods["sipo"].points[-1].generate.tags["spec_lora_rank"]
    dpo_endpoint = plan.methods["dpo"].points[-1].generate.tags["spec_lora_rank"]
    assert (sipo_endpoint, dpo_endpoint) == (128, 64)
