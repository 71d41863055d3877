"""Device and dtype: one place decides (`sipo_bench.execution.device`), and every site that puts a model
somewhere asks it. No GPU is needed: the run's device is injected through `$SIPO_BENCH_DEVICE`
and `torch.cuda` is monkeypatched, and each test checks what *would* go where (a recorded
`.to(device)`, the dtype a model is loaded in, a trainer's `use_cpu`) or moves to the `meta`
device, which holds no data."""

from __future__ import annotations

import pytest
import torch

import sipo_bench.execution.device as device
from sipo_bench.errors import UsageError
from sipo_bench.execution.stages import Resources, Stage


class Stop(Exception):
    """Raised by a spy once it has seen what it was looking for."""


@pytest.fixture
def cuda(monkeypatch):
    """A run on `cuda` with 2 visible GPUs that support bf16 (as far as the code can tell)."""
    monkeypatch.setattr(device, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setenv(device.ENV, "cuda")


def test_resolve_auto_cpu_cuda(monkeypatch):
    monkeypatch.setattr(device, "cuda_device_count", lambda: 0)
    assert device.resolve("auto") == "cpu" and device.resolve("cpu") == "cpu"
    with pytest.raises(UsageError, match=r"^`device`: expected a visible CUDA device for `cuda`, got none"):
        device.resolve("cuda")
    with pytest.raises(UsageError, match=r"^`device`: expected one of auto, cpu, cuda, got 'gpu'"):
        device.resolve("gpu")
    monkeypatch.setattr(device, "cuda_device_count", lambda: 1)
    assert device.resolve("auto") == "cuda" and device.resolve("cuda") == "cuda" and device.resolve("cpu") == "cpu"


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr(device, "cuda_device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert device.visible_gpus() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert device.visible_gpus() == ["3", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(device, "cuda_device_count", lambda: 0)
    assert device.visible_gpus() == []


def test_no_driver_means_no_gpu_without_importing_torch(monkeypatch):
    import sys

    monkeypatch.setattr(device, "_DRIVER_NODES", ("/nonexistent/nvidiactl",))
    monkeypatch.delitem(sys.modules, "torch")
    assert device.cuda_device_count() == 0 and "torch" not in sys.modules
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert device.cuda_device_count() == 0


def test_dtypes_per_device(cuda, monkeypatch):
    assert device.current() == "cuda" and device.torch_device() == torch.device("cuda")
    assert device.inference_dtype() is torch.bfloat16 and device.mixed_precision() is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # e.g. a V100
    assert device.inference_dtype("cuda") is torch.float16 and device.mixed_precision("cuda") is torch.float16
    assert device.inference_dtype("cpu") is torch.float32 and device.mixed_precision("cpu") is None
    monkeypatch.setenv(device.ENV, "cpu")  # a cpu run on a GPU machine stays on the CPU
    assert device.torch_device() == torch.device("cpu") and device.inference_dtype() is torch.float32


def test_using_publishes_and_restores(monkeypatch):
    monkeypatch.delenv(device.ENV, raising=False)
    with device.using("cuda"):
        assert device.current() == "cuda"
    import os

    assert device.ENV not in os.environ


def test_stage_resources():
    assert device.stage_resources("cuda", 2, gpu=True) == Resources(cpus=2, gpus=1)
    assert device.stage_resources("cuda", 2, gpu=False) == Resources(cpus=2, gpus=0)
    assert device.stage_resources("cpu", None, gpu=True) == Resources(cpus=1, gpus=0)


@pytest.mark.parametrize("dev", ["cpu", "cuda"])
def test_plan_declares_what_each_stage_needs(dev, cuda, monkeypatch):
    """Model stages (base, training, generation) ask for a GPU on a cuda run; the data stage
    and the oracle scorer's score stage do not; nothing does on a cpu run."""
    from sipo_bench.configs.run_config import make_config
    from sipo_bench.planning.experiment import plan_run
    from sipo_bench.execution.runtime import Runtime

    cfg = make_config({"methods": ["dpo", "sipo"], "device": dev, "cpu_threads": 2, "quiet": True})
    plan = plan_run(cfg, Runtime(quiet=True))
    assert plan.device == dev
    gpus = {}
    for s in plan.stages():
        assert s.resources.cpus == 2, s
        gpus.setdefault(s.kind, set()).add(s.resources.gpus)
    want = 1 if dev == "cuda" else 0
    assert gpus.pop("data") == {0} and gpus.pop("score") == {0} and gpus.pop("eval-noise") == {0}  # numpy only
    assert gpus == {k: {want} for k in gpus} and {"base", "dpo", "generate", "sipo-sample", "sipo-realign"} <= set(gpus)


def test_generation_backend_loads_on_the_run_device(cuda, tmp_path, monkeypatch):
    from sipo_bench_plugins.hf_generation.backend import HFGenerator, ModelCache

    seen = []

    def load(base_dir, dev, dtype):
        seen.append((dev, dtype))
        raise Stop

    cache = ModelCache()
    monkeypatch.setattr(cache, "_load", load)
    gen = HFGenerator(cache=cache)
    assert gen.max_forward_tokens is None  # no CPU cache-size cap on a GPU
    with pytest.raises(Stop):
        gen.base(tmp_path)
    assert seen == [(torch.device("cuda"), torch.bfloat16)]
    monkeypatch.setenv(device.ENV, "cpu")
    assert HFGenerator(cache=cache).max_forward_tokens == 2048
    with pytest.raises(Stop):
        HFGenerator(cache=cache).base(tmp_path)
    assert seen[-1] == (torch.device("cpu"), torch.float32)


def test_generation_backend_moves_the_model_where_it_is_told(tmp_path):
    """The real loading path, to the data-less `meta` device in bf16."""
    from sipo_bench_plugins.hf_generation.model_cache import ModelCache
    from tiny_models import make_tiny_model

    base = make_tiny_model(tmp_path / "base", seed=0)
    b = ModelCache().base(base, torch.device("meta"), torch.bfloat16)
    assert {(p.device.type, p.dtype) for p in b.model.parameters()} == {("meta", torch.bfloat16)}


def test_reward_model_scorers_take_the_run_device(cuda, monkeypatch):
    from sipo_bench_plugins.reward_models import classifier
    from sipo_bench_plugins.reward_models.loading import pick_device, pick_dtype

    assert pick_device(None) == "cuda" and pick_device("cpu") == "cpu"
    assert pick_dtype("auto", "cuda") is torch.bfloat16 and pick_dtype("auto", "cpu") is torch.float32
    assert pick_dtype("float16", "cpu") is torch.float16
    seen = []

    def load(path, dev, dtype, *args, **kwargs):
        seen.append((dev, dtype))
        raise Stop

    monkeypatch.setattr(classifier, "load_classifier", load)
    scorer = classifier.HFClassifierScorer(model="some/model", objectives={"helpful": {"head": 0}})
    with pytest.raises(Stop):
        scorer.score(["q"], ["a"])
    assert seen == [("cuda", torch.bfloat16)]


def _preference_rows(n: int = 4) -> list[dict]:
    return [{"prompt": "BEGINNING OF CONVERSATION : USER question ASSISTANT :", "chosen": " good answer",
             "rejected": " bad answer"} for _ in range(n)]


def _capture_config(monkeypatch, owner, attr: str) -> dict:
    """Replace the trainer config class `owner.attr` by a spy that records its keyword
    arguments and stops the training there."""
    seen: dict = {}

    def spy(**kw):
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(owner, attr, spy)
    return seen


@pytest.mark.parametrize("dev,use_cpu", [("cuda", False), ("cpu", True)])
def test_preference_trainer_device(dev, use_cpu, cuda, tmp_path, monkeypatch):
    from sipo_bench_baselines import trainer
    from sipo_bench_baselines.configs import DPOConfig
    from sipo_bench_baselines.losses import DPOLoss
    from tiny_models import make_tiny_model

    monkeypatch.setenv(device.ENV, dev)
    base = make_tiny_model(tmp_path / "base", seed=0)
    seen = _capture_config(monkeypatch, trainer, "DPOConfig")
    train = DPOConfig(bf16=True, max_length=32, eval_every=0, load_best=False).training()
    with pytest.raises(Stop):
        trainer.build_trainer(tmp_path / "out", base, _preference_rows(), [], DPOLoss(beta=0.1), train, 0)
    assert seen["use_cpu"] is use_cpu and seen["bf16"] is True


@pytest.mark.parametrize("dev,use_cpu", [("cuda", False), ("cpu", True)])
def test_rloo_and_reward_model_trainers_device(dev, use_cpu, cuda, tmp_path, monkeypatch):
    import trl

    from sipo_bench_baselines.configs import RewardedSoupsConfig
    from sipo_bench_baselines.reward_model import train_reward_model
    from sipo_bench_baselines.rl import train_rloo_adapter
    from sipo_bench.configs.schema import to_dict
    from tiny_models import make_tiny_model

    monkeypatch.setenv(device.ENV, dev)
    base = make_tiny_model(tmp_path / "base", seed=0)
    seen = _capture_config(monkeypatch, trl, "RLOOConfig")
    with pytest.raises(Stop):
        train_rloo_adapter(tmp_path / "out", base, ["q"], lambda p: p, lambda p, r: [0.0] * len(r),
                           to_dict(RewardedSoupsConfig()), 0)
    assert seen["use_cpu"] is use_cpu
    seen = _capture_config(monkeypatch, trl, "RewardConfig")
    with pytest.raises(Stop):
        train_reward_model(tmp_path / "rm", base, _preference_rows(), [], RewardedSoupsConfig().reward_model(), 0)
    assert seen["use_cpu"] is use_cpu and seen["logging_nan_inf_filter"] is False


def test_synthetic_sft_trains_on_the_run_device(monkeypatch, tmp_path):
    """The SFT model is built on the CPU (the same initial weights anywhere) and moved to the
    run's device before its first loss; autocast follows the device."""
    from sipo_bench.execution.runtime import Runtime
    from sipo_bench_plugins.synthetic import model as sft

    import sipo_bench.api

    monkeypatch.setattr(sipo_bench.api, "torch_device", lambda: torch.device("meta"))  # what plugins import
    seen = {}

    def loss_spy(m, tok, rows, batch_size=64):
        seen["loss"] = {p.device.type for p in m.parameters()}
        return 0.0

    def train_spy(m, tok, rows, c, seed, advance=None):
        seen["train"] = {p.device.type for p in m.parameters()}
        assert isinstance(sft.autocast(m), __import__("contextlib").nullcontext)  # meta is no GPU
        raise Stop

    monkeypatch.setattr(sft, "mean_loss", loss_spy)
    monkeypatch.setattr(sft, "train", train_spy)
    task = Runtime(quiet=True).task("synthetic-hh", {"sft_examples": 20, "review_examples": 5, "rewrite_examples": 5})
    with pytest.raises(Stop):
        sft.build_sft_model(task, None, tmp_path, 0, None)
    assert seen == {"loss": {"meta"}, "train": {"meta"}}


def test_autocast_on_a_gpu_model(cuda, monkeypatch):
    from sipo_bench_plugins.synthetic import model as sft

    class Param:
        device = torch.device("cuda")

    class Model:
        def parameters(self):
            return iter([Param()])

    seen = []
    monkeypatch.setattr(torch, "autocast", lambda device_type, dtype: seen.append((device_type, dtype)) or "ctx")
    assert sft.autocast(Model()) == "ctx" and seen == [("cuda", torch.bfloat16)]


class _Held:
    def __init__(self):
        self.closed = 0

    def close(self):
        self.closed += 1


def test_runtime_releases_heavy_objects_between_gpu_stages_of_different_kinds(monkeypatch):
    from sipo_bench.execution import runtime as rt

    hook = _Held()
    monkeypatch.setattr(rt, "_RELEASE_HOOKS", [hook.close])
    r = rt.Runtime(quiet=True)
    gen = _Held()

    def stage(name: str, gpus: int) -> Stage:
        return Stage(name, "tests.stage_fns:write", {"v": name}, resources=Resources(gpus=gpus))

    def hold():
        r._generators["transformers"] = gen

    hold()
    r.before_stage(stage("generate[a]", 1))
    r.before_stage(stage("score[a]", 0))  # a CPU stage: nothing released
    r.before_stage(stage("generate[b]", 1))  # same kind as the last GPU stage: the base model is reused
    assert gen.closed == 0 and hook.closed == 0 and r._generators
    r.before_stage(stage("dpo[x]", 1))  # training needs the GPU's memory
    assert gen.closed == 1 and hook.closed == 1 and not r._generators
    hold()
    r.before_stage(stage("dpo[y]", 1))
    assert gen.closed == 1
    r.before_stage(stage("generate[c]", 1))
    assert gen.closed == 2 and hook.closed == 2


def test_an_exclusive_backend_frees_the_device_once_per_hand_over(monkeypatch):
    """A vLLM-like backend gets the device free of everything else when it is handed out; handed
    out again with nothing loaded in between, nothing is freed a second time. Another backend
    in between, or a stage that closes it, makes the next hand-over free the device again."""
    from sipo_bench.execution import runtime as rt

    hook = _Held()
    monkeypatch.setattr(rt, "_RELEASE_HOOKS", [hook.close])
    r = rt.Runtime(quiet=True)
    engine, other = _Held(), _Held()
    engine.exclusive_device, engine.name = True, "vllm"
    r._generators.update({"vllm": engine, "transformers": other})
    r.release_device(engine)
    assert (other.closed, hook.closed, engine.closed) == (1, 1, 0)
    r.release_device(engine)
    assert (other.closed, hook.closed) == (1, 1)  # still its own
    r.release_device(other)  # another model is used: the engine is closed
    assert engine.closed == 1
    r.release_device(engine)
    assert (other.closed, hook.closed) == (2, 2)
    r.before_stage(Stage("dpo[x]", "tests.stage_fns:write", {"v": 1}))  # a stage without the engine closes it
    assert engine.closed == 2
    r.release_device(engine)
    assert hook.closed == 3
