"""The first thing to run on a machine with a GPU: the synthetic task end to end on CUDA.

    python benchmarks/gpu_check.py                          # ~100M-parameter model, bf16 where supported
    python benchmarks/gpu_check.py --device cpu --size tiny # what the CPU test runs (tests/test_gpu_check.py)

It runs `synthetic-hh` with every method, one seed, on a locally built LLaMA large enough to
keep a GPU busy (`--size gpu`: hidden 768, 12 layers, about 113M parameters, trained from
scratch by the task's SFT stage), through the local executor (GPU stages in a worker that owns
the GPU, CPU stages beside it), in a fresh cache. Then it checks:

- every method's status is `ok`, every stage of the graph ran (none failed or skipped), and
  the run's device is the one asked for;
- on `cuda`: every stage that declares a GPU ran in a worker that owned one, and none other did;
  the generation backend loads models in bf16 where the GPU supports it;

and prints the figures a GPU user wants: generation tokens/s (greedy, batched, on the trained
base model, after loading), training steps/s (the SFT model, full fine-tuning; and the LoRA
preference training stages, trainer set-up included), and peak GPU memory (per stage kind,
from the stage log). Exit status: 0 all checks pass, 1 any check fails, 2 no CUDA device.
Goal: at most 5 minutes on one GPU (the script says when it took longer).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

#: task options per size: `gpu` is GPU-bound, `tiny` runs the same graph in seconds on a CPU
SIZES: dict[str, dict] = {
    "gpu": {"hidden_size": 768, "intermediate_size": 3072, "num_layers": 12, "num_heads": 12, "sft_lr": 1e-3},
    "tiny": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 2, "sft_examples": 200,
             "review_examples": 40, "rewrite_examples": 40, "sft_epochs": 1, "train_pairs": 64, "val_pairs": 16,
             "n_test": 8, "n_val_prompts": 8, "eval_samples": 1, "eval_max_new_tokens": 16},
}
#: method options per size (training in bf16 on a GPU; a lower learning rate for the larger model)
TRAINING = ("dpo", "modpo", "dpo-lw", "sipo")
METHOD_OPTIONS: dict[str, dict] = {
    "gpu": {**{m: {"learning_rate": 1e-3} for m in TRAINING}, "rewarded-soups": {"learning_rate": 1e-3}},
    "tiny": {**{m: {"max_pairs": 16, "batch_size": 8} for m in TRAINING}, "sipo": {"max_pairs": 16, "batch_size": 8,
             "max_prompts": 4, "max_new_tokens": 16}, "rewarded-soups": {"max_steps": 1, "batch_size": 4,
                                                                        "num_generations": 2, "max_new_tokens": 8}},
}
BUDGET_SECONDS = 300


def _events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "logs" / "stages.jsonl").read_text().splitlines()]


def check_run(summary: dict, out: Path, device: str) -> list[str]:
    """Everything wrong with the run, one line each (empty: all good)."""
    problems = [f"method {n}: {m['status']}: {m['error']}" for n, m in summary["methods"].items() if m["status"] != "ok"]
    counts = summary["run"]["stages"]
    if counts.get("done", 0) != counts["total"]:
        problems.append(f"stage graph: {counts['total']} stages, {counts.get('done', 0)} ran: {counts}")
    if summary.get("device") != device:
        problems.append(f"device: the run used {summary.get('device')!r}, asked for {device!r}")
    evs = _events(out)
    if device == "cuda":
        starts = [e for e in evs if e["event"] == "start"]
        from sipo_bench.configs.run_config import make_config
        from sipo_bench.planning.experiment import plan_run
        from sipo_bench.execution.runtime import Runtime

        cfg = make_config({**summary["config"], "device": device})  # what each stage declares on `device`
        wants = {s.key: s.resources.gpus > 0 for s in plan_run(cfg, Runtime(quiet=True)).stages()}
        for e in starts:
            if wants.get(e["key"]) != ("gpu" in e):
                problems.append(f"stage {e['stage']}: declares {'a' if wants.get(e['key']) else 'no'} GPU but ran "
                                f"{'with GPU ' + str(e['gpu']) if 'gpu' in e else 'without one'}")
        if not any("gpu" in e for e in starts):
            problems.append("no stage ran on a GPU")
    return problems


def measure_generation(base_dir: Path, prompts: list[str], max_new_tokens: int) -> dict:
    """Greedy batched generation on the trained base model, timed after a warm-up batch."""
    import torch

    from sipo_bench.contract.interfaces import DecodingConfig, ResolvedPolicy
    from sipo_bench_plugins.hf_generation.backend import HFGenerator, ModelCache

    gen = HFGenerator(cache=ModelCache())
    policy = ResolvedPolicy(base=base_dir, adapters=(), combine="soup", options={})
    dec = DecodingConfig(greedy=True, max_new_tokens=max_new_tokens, batch_size=len(prompts))
    gen.generate(policy, prompts[:8], dec)  # load + warm-up
    b = gen.base(base_dir)
    cuda = b.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    outs = gen.generate(policy, prompts, dec)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tokens = sum(len(b.tokenizer(o[0], add_special_tokens=False)["input_ids"]) + 1 for o in outs)  # + eos
    info = {"dtype": str(next(b.model.parameters()).dtype).replace("torch.", ""), "prompts": len(prompts),
            "tokens": tokens, "seconds": round(seconds, 3), "tokens_per_second": round(tokens / seconds, 1)}
    gen.close()
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="device of the run (default cuda)")
    ap.add_argument("--size", default=None, choices=sorted(SIZES), help="model size (default: gpu on cuda, tiny on cpu)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: the run's default)")
    ap.add_argument("--work", help="cache and output directory (default: a fresh temporary one)")
    ns = ap.parse_args(argv)
    size = ns.size or ("gpu" if ns.device == "cuda" else "tiny")
    t_start = time.time()
    for var in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):  # as `sipo-bench run`
        os.environ.setdefault(var, "1")

    import torch

    if ns.device == "cuda":
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device visible (torch.cuda.is_available() is False)", file=sys.stderr)
            return 2
        props = torch.cuda.get_device_properties(0)
        print(f"GPU: {props.name}, {props.total_memory / 1024 ** 3:.0f} GiB, {torch.cuda.device_count()} visible, "
              f"bf16 {'supported' if torch.cuda.is_bf16_supported() else 'NOT supported (fp16 instead)'}; "
              f"torch {torch.__version__}, CUDA {torch.version.cuda}")
    from sipo_bench.configs.run_config import make_config
    from sipo_bench.planning.run import execute
    from sipo_bench.execution.runtime import Runtime

    work = Path(ns.work) if ns.work else Path(tempfile.mkdtemp(prefix="sipo-gpu-check-"))
    options = dict(SIZES[size])
    method_options = {m: dict(o) for m, o in METHOD_OPTIONS[size].items()}
    if ns.device == "cuda":
        for m in TRAINING + ("rewarded-soups",):
            method_options.setdefault(m, {})["bf16"] = bool(torch.cuda.is_bf16_supported())
    data = {"task": "synthetic-hh", "methods": ["all"], "seeds": [int(s) for s in ns.seeds.split(",")],
            "device": ns.device, "task_options": options, "method_options": method_options, "quiet": True,
            "out": str(work / "out"), "cache_dir": str(work / "cache"),
            **({"max_test_prompts": 8} if size == "tiny" else {}), **({"jobs": ns.jobs} if ns.jobs else {})}
    cfg = make_config(data)
    print(f"run: synthetic-hh, every method, seeds {cfg.seeds}, size {size} {options}, device {ns.device}, "
          f"jobs {cfg.effective_jobs()}, work dir {work}")
    summary, out = execute(cfg, Runtime(quiet=True))
    run_seconds = time.time() - t_start

    problems = check_run(summary, out, ns.device)
    print("\nmethods: " + ", ".join(f"{n} {m['status']}" for n, m in summary["methods"].items()))
    counts = summary["run"]["stages"]
    print(f"stage graph: {counts}")

    evs = _events(out)
    base = next(v for v in summary["task_base"].values() if v)
    print(f"\nbase model: {base['parameters'] / 1e6:.1f}M parameters, vocab {base['vocab_size']}")
    print(f"training, SFT (full model): {base['sft_steps']} steps in {base['sft_seconds']:.1f} s = "
          f"{base['sft_steps'] / max(base['sft_seconds'], 1e-9):.2f} steps/s")
    done = {e["key"]: e for e in evs if e["event"] == "done"}
    stages = Path(cfg.cache_dir) / "stages"
    lora = [(json.loads((stages / k / "result.json").read_text())["steps"], e["seconds"]) for k, e in done.items()
            if e["stage"].split("[")[0] in ("dpo", "dpo-lw", "modpo")]
    if lora:
        n, s = sum(x for x, _ in lora), sum(y for _, y in lora)
        print(f"training, LoRA preference stages (dpo, dpo-lw, modpo; set-up included): {n} steps in {s:.1f} s = "
              f"{n / s:.2f} steps/s over {len(lora)} stages")
    first = lambda kind: stages / next(k for k, e in done.items() if e["stage"].startswith(kind + "["))  # noqa: E731
    base_dir = first("base")
    test = [json.loads(line)["prompt"] for line in (first("data") / "test.jsonl").read_text().splitlines()]
    from sipo_bench.execution.device import using

    task = Runtime(quiet=True).task("synthetic-hh", options)
    prompts = [task.format_prompt(p) for p in (test * 8)[: (256 if size == "gpu" else 16)]]
    with using(ns.device):
        g = measure_generation(base_dir, prompts, 64 if size == "gpu" else 16)
    print(f"generation ({g['dtype']}, greedy, batch {g['prompts']}): {g['tokens']} tokens in {g['seconds']:.2f} s = "
          f"{g['tokens_per_second']:.0f} tokens/s")
    if ns.device == "cuda" and g["dtype"] != ("bfloat16" if torch.cuda.is_bf16_supported() else "float16"):
        problems.append(f"generation dtype {g['dtype']}: expected bf16 (or fp16 without bf16 support)")
    peaks: dict[str, float] = defaultdict(float)
    for e in done.values():
        if "peak_gpu_gb" in e:
            kind = e["stage"].split("[")[0]
            peaks[kind] = max(peaks[kind], e["peak_gpu_gb"])
    if ns.device == "cuda":
        peaks["generation benchmark"] = torch.cuda.max_memory_allocated() / 1024 ** 3
        print("peak GPU memory (GiB): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(peaks.items(), key=lambda kv: -kv[1])))
    else:
        print("peak GPU memory: n/a (cpu run)")

    total = time.time() - t_start
    print(f"\nwall time: run {run_seconds:.0f} s, total {total:.0f} s" +
          (f" (over the {BUDGET_SECONDS} s goal)" if ns.device == "cuda" and total > BUDGET_SECONDS else ""))
    if problems:
        print("\nFAILED:\n" + "\n".join(f"- {p}" for p in problems), file=sys.stderr)
        print(f"tracebacks: {out}/logs/failures/", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
