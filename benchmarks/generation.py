"""Throughput of the transformers backend on a tiny random LLaMA (the synthetic task's size).

    python benchmarks/generation.py                 # defaults: hidden 128, 2 layers, vocab 512
    python benchmarks/generation.py --help

Prints, on the same model and prompts (best of --repeats runs, wall clock):

1. batched generation vs a batch-size-1 loop (goal >= 10x);
2. MOD fusion decoding cost per token, k=2 adapters, in each group mode, vs one
   single-adapter decode through the same loop and vs HF `generate` (goal <= 1.5x);
3. one forward of a (batch x tokens) block under 2 adapters: grouped / peft mixed batch /
   two sequential passes, vs one single-adapter forward;
4. batched implicit-reward scoring (2 adapters + reference) vs per-example loops: one forward
   per example over the 3 models, and one forward per example and model, the research code's
   loop (goal >= 5x).

On CPU the figures are process CPU seconds (this machine is shared; wall time is noise), with
one torch thread by default.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


CLOCK = time.perf_counter


def interleaved(fns: dict, repeats: int, per_call: bool = True) -> dict:
    """Best time of each function over `repeats` round-robin rounds (one warm-up call each);
    with per_call, divided by the function's return value (e.g. decoding steps)."""
    out = {k: f() for k, f in fns.items()}
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = CLOCK()
            n = f()
            times[k].append((CLOCK() - t) / (n if per_call else 1))
    return {k: min(v) for k, v in times.items()}


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = CLOCK()
        fn()
        times.append(CLOCK() - t)
    return min(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=128, help="hidden size")
    ap.add_argument("--layers", type=int, default=2, help="decoder layers")
    ap.add_argument("--heads", type=int, default=4, help="attention heads")
    ap.add_argument("--vocab", type=int, default=512, help="vocabulary size")
    ap.add_argument("--rank", type=int, default=8, help="LoRA rank of the two adapters")
    ap.add_argument("--prompts", type=int, default=64, help="number of prompts")
    ap.add_argument("--batch-size", type=int, default=64, help="generation / scoring batch size")
    ap.add_argument("--new-tokens", type=int, default=40, help="new tokens per response")
    ap.add_argument("--loop-prompts", type=int, default=16,
                    help="prompts timed in the batch-size-1 loops (rate extrapolated)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per figure (best is kept)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda if available)")
    ap.add_argument("--clock", choices=["auto", "cpu", "wall"], default="auto",
                    help="auto: process CPU time on CPU (robust on a shared machine), wall clock on GPU")
    args = ap.parse_args(argv)

    import torch

    from sipo_bench.contract.interfaces import DecodingConfig, ResolvedPolicy
    from sipo_bench_plugins.hf_generation.backend import HFGenerator, ModelCache, grouped, use_adapter
    from tiny_models import COMMON_WORDS, make_tiny_lora, make_tiny_model

    global CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
    on_gpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if args.clock == "cpu" or (args.clock == "auto" and not on_gpu):
        CLOCK = time.process_time  # CPU seconds of this process: robust to other jobs' load
    elif on_gpu:
        def CLOCK():  # noqa: N802
            torch.cuda.synchronize()
            return time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="sipo-genbench-"))
    base = make_tiny_model(tmp / "base", seed=0, vocab_size=args.vocab, hidden_size=args.hidden,
                           num_layers=args.layers, num_heads=args.heads, intermediate_size=2 * args.hidden)
    a1 = make_tiny_lora(base, tmp / "a1", seed=1, r=args.rank, lora_alpha=2 * args.rank)
    a2 = make_tiny_lora(base, tmp / "a2", seed=2, r=args.rank, lora_alpha=2 * args.rank)
    words = COMMON_WORDS
    prompts = [f"BEGINNING OF CONVERSATION: USER: {' '.join(words[(7 * i + j) % len(words)] for j in range(4 + i % 9))}"
               " ASSISTANT:" for i in range(args.prompts)]
    responses = [" " + " ".join(words[(11 * i + j) % len(words)] for j in range(args.new_tokens // 2)) for i in range(args.prompts)]
    dec = DecodingConfig(greedy=True, max_new_tokens=args.new_tokens, batch_size=args.batch_size)
    dec1 = DecodingConfig(greedy=True, max_new_tokens=args.new_tokens, batch_size=1)
    loop_prompts = prompts[: args.loop_prompts]
    gens = {m: HFGenerator(device=args.device, group_mode=m, cache=ModelCache()) for m in ("grouped", "peft", "sequential")}
    g = gens["grouped"]
    b = g.base(base)
    print(f"model: LLaMA hidden={args.hidden} layers={args.layers} vocab={len(b.tokenizer)} device={b.device} "
          f"threads={torch.get_num_threads()}; LoRA r={args.rank} on q/k/v/o; {args.prompts} prompts, "
          f"{args.new_tokens} new tokens, batch {args.batch_size}; best of {args.repeats}")

    # 1. batched generation vs batch-size-1 loop
    single = ResolvedPolicy(base, ((a1, 1.0),), "soup", {})
    g.generate(single, prompts[:2], dec)  # warm-up (loads adapter)
    t_batch = best(lambda: g.generate(single, prompts, dec), args.repeats)
    t_loop = best(lambda: g.generate(single, loop_prompts, dec1), min(2, args.repeats))
    rate_b, rate_1 = args.prompts / t_batch, len(loop_prompts) / t_loop
    print("\n[1] generation, single adapter (HF generate)")
    print(f"  batched (bs={args.batch_size}): {rate_b:8.1f} prompts/s   batch-size-1 loop: {rate_1:6.1f} prompts/s"
          f"   speed-up {rate_b / rate_1:5.1f}x (goal >= 10x)")

    # 2. fused decoding per token; variants timed in turn (round-robin) so they share the
    #    machine's load, best of --repeats each
    enc = b.tokenizer(prompts[: args.batch_size], padding=True, return_tensors="pt").to(b.device)
    gens["grouped, dynamic KV"] = HFGenerator(device=args.device, kv_cache="dynamic", cache=ModelCache())

    def fused(gen, slots, weights):
        bb = gen.base(base)
        names = [None if s is None else gen.cache.adapter(bb, s) for s in slots]
        return lambda: gen._generate_fused(bb, names, weights, "reverse_kl", None, enc["input_ids"],
                                           enc["attention_mask"], dec, 1, 0).shape[1]

    def hf_generate():
        return g._generate_single(b, g.cache.adapter(b, a1), enc["input_ids"], enc["attention_mask"], dec, 1, 0).shape[1]

    variants = {"single adapter, same loop": fused(g, [a1], [1.0]), "single adapter, HF generate": hf_generate}
    for mode, gen in gens.items():
        variants[f"fused k=2, {mode}"] = fused(gen, [a1, a2], [0.5, 0.5])
    # lower bound of any scheme that stacks the k copies as rows: the base model alone (no
    # LoRA work at all) on 2x the rows
    variants["floor: base model on 2x rows"] = fused(g, [None, None], [0.5, 0.5])
    per_step = interleaved(variants, args.repeats)
    ref = per_step["single adapter, same loop"]
    print(f"\n[2] MOD decoding, batch {enc['input_ids'].shape[0]}, time per decoding step (prefill included)")
    for label, t in per_step.items():
        goal = "  (goal <= 1.5x)" if label == "fused k=2, grouped" else ""
        print(f"  {label:30s} {1e3 * t:7.2f} ms/step  {t / ref:4.2f}x{goal}")

    # 3. one forward of a block under 2 adapters
    ids = enc["input_ids"]
    if ids.shape[1] < args.new_tokens:
        ids = torch.cat([ids, ids[:, -1:].expand(-1, args.new_tokens - ids.shape[1])], 1)
    ids = ids[:, : args.new_tokens]
    rows = ids.shape[0]
    n1, n2 = g.cache.adapter(b, a1), g.cache.adapter(b, a2)

    @torch.inference_mode()
    def fwd_single():
        with use_adapter(b, n1) as m:
            m(input_ids=ids, use_cache=False)

    @torch.inference_mode()
    def fwd_mode(mode):
        with grouped(b, [n1, n2], mode) as extra:
            b.model(input_ids=ids.repeat(2, 1), use_cache=False, **extra(rows))

    @torch.inference_mode()
    def fwd_seq():
        for n in (n1, n2):
            with use_adapter(b, n) as m:
                m(input_ids=ids, use_cache=False)

    fwd = interleaved({"single adapter": fwd_single, "2 adapters, grouped": lambda: fwd_mode("grouped"),
                       "2 adapters, peft mixed batch": lambda: fwd_mode("peft"), "2 adapters, sequential": fwd_seq},
                      args.repeats + 2, per_call=False)
    print(f"\n[3] one forward, {rows} x {ids.shape[1]} tokens")
    for label, t in fwd.items():
        print(f"  {label:30s} {1e3 * t:7.2f} ms       {t / fwd['single adapter']:4.2f}x")

    # 4. implicit rewards: batched vs per-example loops
    seq = gens["sequential"]
    for gen in (g, seq):
        gen.implicit_rewards(base, [a1, a2], prompts[:2], responses[:2], 0.1)

    def batched():
        g.implicit_rewards(base, [a1, a2], prompts, responses, 0.1, batch_size=args.batch_size)
        return len(prompts)

    def per_example(gen):
        def run():
            for p, r in zip(loop_prompts, responses):
                gen.implicit_rewards(base, [a1, a2], [p], [r], 0.1, batch_size=1)
            return len(loop_prompts)
        return run

    rates = interleaved({"batched": batched, "per example, 3 models in one forward": per_example(g),
                         "per example and per model (naive)": per_example(seq)}, args.repeats)
    print(f"\n[4] implicit rewards, 2 adapters + reference ({args.prompts} pairs, batch {args.batch_size})")
    for label, t in rates.items():
        vs = "" if label == "batched" else f"  batched is {t / rates['batched']:4.1f}x faster"
        print(f"  {label:38s} {1 / t:8.1f} pairs/s{vs}" + ("  (goal >= 5x)" if label.endswith("(naive)") else ""))
    for gen in gens.values():
        gen.close()


if __name__ == "__main__":
    main()
