"""The vLLM backend without vLLM: request building (pure functions), the soup merge (checked
against peft's own `add_weighted_adapter(combination_type="cat")` and the explicit weight sum),
and the generator's glue against a stand-in `vllm` module that records every call."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from sipo_bench.interfaces import DecodingConfig, ResolvedPolicy
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
    assert [max_lora_rank(r) for r in (1, 8, 9, 64, 65, 128, 129)] == [8, 8, 16, 64, 128, 128, 256]
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
    """A tiny LLaMA and two LoRA adapters of different ranks, alphas and targets."""
    torch = pytest.importorskip("torch")
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("lora")
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(root / "base")
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


# --- the generator against a stand-in vllm ---------------------------------------------------


class _Recorder:
    def __init__(self):
        self.engines, self.calls = [], []


@pytest.fixture
def fake_vllm(monkeypatch):
    rec = _Recorder()

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LoRARequest:
        def __init__(self, name, int_id, path):
            self.args = (name, int_id, path)

    class LLM:
        def __init__(self, **kw):
            rec.engines.append(kw)

        def generate(self, prompts, params, lora_request=None, use_tqdm=True):
            rec.calls.append({"prompts": prompts, "params": params.kw,
                              "lora": lora_request.args if lora_request else None})
            n = params.kw["n"]
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f" out {p} #{j} ") for j in range(n)])
                    for p in prompts]

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    lora_mod, req_mod = types.ModuleType("vllm.lora"), types.ModuleType("vllm.lora.request")
    req_mod.LoRARequest = LoRARequest
    vllm.lora, lora_mod.request = lora_mod, req_mod
    for name, mod in (("vllm", vllm), ("vllm.lora", lora_mod), ("vllm.lora.request", req_mod)):
        monkeypatch.setitem(sys.modules, name, mod)
    for k in list(__import__("os").environ):
        if k.startswith("SIPO_BENCH_VLLM_"):
            monkeypatch.delenv(k)
    return rec


def test_generator_glue(fake_vllm, tiny_lora, tmp_path):
    from sipo_bench_plugins.vllm_generation.backend import VLLMGenerator

    base = tiny_lora / "base"
    gen = VLLMGenerator()
    greedy = DecodingConfig(greedy=True, max_new_tokens=16)
    seen = []
    out = gen.generate(_policy(base), ["p1", "p2"], greedy, num_return_sequences=2, seed=3, progress=seen.append)
    assert out == [["out p1 #0", "out p1 #0"], ["out p2 #0", "out p2 #0"]] and seen == [2]
    assert fake_vllm.calls[-1] == {"prompts": ["p1", "p2"], "lora": None,
                                   "params": {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 16, "seed": 3,
                                              "skip_special_tokens": True}}
    assert fake_vllm.engines == [{"model": str(base), "tokenizer": str(base), "enable_lora": True, "max_loras": 1,
                                  "max_lora_rank": 64, "gpu_memory_utilization": 0.85, "tensor_parallel_size": 1,
                                  "dtype": "auto"}]
    # one adapter at weight 1: served as is, with a stable id
    gen.generate(_policy(base, [(tiny_lora / "a", 1.0)]), ["p"], greedy)
    assert fake_vllm.calls[-1]["lora"] == ("adapter1", 1, str((tiny_lora / "a").resolve()))
    # a soup: merged once into a rank-6 adapter, same engine (6 <= 64)
    soup = _policy(base, [(tiny_lora / "a", 0.4), (tiny_lora / "b", 0.6)])
    gen.generate(soup, ["p"], greedy)
    gen.generate(soup, ["q"], greedy)
    merged = Path(fake_vllm.calls[-1]["lora"][2])
    assert fake_vllm.calls[-2]["lora"] == fake_vllm.calls[-1]["lora"] and fake_vllm.calls[-1]["lora"][1] == 2
    assert json.loads((merged / "adapter_config.json").read_text())["r"] == 6
    assert len(fake_vllm.engines) == 1
    # sampling: n sequences from vLLM itself
    sampled = DecodingConfig(greedy=False, max_new_tokens=8, temperature=0.5, top_p=0.8)
    assert gen.generate(_policy(base), ["p"], sampled, num_return_sequences=3) == [["out p #0", "out p #1", "out p #2"]]
    # MOD fusion: refused before any engine call
    n_calls = len(fake_vllm.calls)
    with pytest.raises(UnsupportedPolicy, match="transformers backend"):
        gen.generate(_policy(base, [(tiny_lora / "a", 0.5), (tiny_lora / "b", 0.5)], "fusion"), ["p"], greedy)
    assert len(fake_vllm.calls) == n_calls
    gen.close()
    assert not merged.exists()


def test_generator_rebuilds_engine_for_a_larger_rank(fake_vllm, tiny_lora, tmp_path, monkeypatch):
    from sipo_bench_plugins.vllm_generation.backend import VLLMGenerator

    monkeypatch.setenv("SIPO_BENCH_VLLM_MAX_LORA_RANK", "4")
    gen = VLLMGenerator()
    base = tiny_lora / "base"
    gen.generate(_policy(base, [(tiny_lora / "b", 1.0)]), ["p"], DecodingConfig())  # r=2 -> max_lora_rank 8
    gen.generate(_policy(base, [(tiny_lora / "a", 1.0)]), ["p"], DecodingConfig())  # r=4 fits
    assert [e["max_lora_rank"] for e in fake_vllm.engines] == [8]
    soup = _policy(base, [(tiny_lora / "a", 0.5), (tiny_lora / "b", 0.5)] + [(tiny_lora / "a", 0.25)] * 1)
    gen.generate(soup, ["p"], DecodingConfig())  # r = 4 + 2 + 4 = 10 -> rebuilt with 16
    assert [e["max_lora_rank"] for e in fake_vllm.engines] == [8, 16]
    gen.close()


def test_missing_vllm_is_a_one_line_error(monkeypatch, tmp_path):
    from sipo_bench_plugins.vllm_generation.backend import VLLMGenerator

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(UnsupportedPolicy, match=r"the `vllm` package is not installed .*generator: transformers"):
        VLLMGenerator().generate(_policy(_base(tmp_path)), ["p"], DecodingConfig())


def test_registered_as_generator():
    from sipo_bench.plugins import load

    regs = load()
    assert "vllm" in regs.generators
    entry = regs.generators.entries()
    assert any(e.name == "vllm" and e.plugin == "vllm" for e in entry)
