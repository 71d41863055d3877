"""The synthetic tasks' base policy: a word-level tokenizer and a tiny LLaMA trained by SFT on
the behaviour policy's responses plus REVIEW and REWRITE demonstrations, then measured.

Imports torch; loaded only by `SyntheticTask.build_base`.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any, Sequence

from sipo_bench.api import Task, TaskData, count_training, write_jsonl
from sipo_bench_baselines.divergence import check_finite_loss, check_finite_parameters

from . import grammar as g

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


# --- Tokenizer ------------------------------------------------------------------------------


def train_tokenizer(texts: Sequence[str]):
    """A word-level `PreTrainedTokenizerFast` trained on `texts`.

    Text is split into words and punctuation whatever the spacing (`Whitespace`
    pre-tokenizer), so `"ASSISTANT:" + " mix"` and `"ASSISTANT:" + "mix"` tokenize the same
    (responses with or without their conventional leading space); decoding joins words with
    one space and attaches punctuation (`WordPiece` decoder with cleanup), which restores the
    grammar's text exactly (it never writes "do not", which that cleanup would contract).
    `tok(text)` prepends `<s>`; `</s>` ends responses; unknown words map to `<unk>`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tk.train_from_iterator(list(texts), trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=1,
                                                                  show_progress=False))
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                      special_tokens=[("<s>", tk.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", padding_side="left", model_max_length=512)


# --- SFT corpus -----------------------------------------------------------------------------


def sft_corpus(task: "Task", prompts: Sequence[str], rng: random.Random, n_direct: int, n_review: int,
               n_rewrite: int) -> list[tuple[str, str, str]]:
    """(kind, formatted prompt, response) demonstrations over `prompts`:

    - direct: a behaviour-policy response to the prompt;
    - review: REVIEW_TEMPLATE over a behaviour response -> its critique, wrong or incomplete
      with probability `critique_noise`;
    - rewrite: REWRITE_TEMPLATE over a behaviour response and a (noisy) critique -> the
      response revised exactly as that critique says.
    """
    noise = task.config.critique_noise
    out: list[tuple[str, str, str]] = []
    for kind, n in (("direct", n_direct), ("review", n_review), ("rewrite", n_rewrite)):
        for _ in range(n):
            p = rng.choice(prompts)
            t = g.topic_of(p)
            r = g.render(g.sample_response(rng, t, task.behaviour))
            if kind == "direct":
                out.append((kind, task.format_prompt(p), r))
                continue
            crit = g.noisy_critique(rng, t, r, noise)
            review = g.render_review(crit)
            if kind == "review":
                out.append((kind, task.format_prompt(task.review_template().format(prompt=p, response=r)), review))
            else:
                rewritten = g.apply_review(t, r, crit)
                text = task.rewrite_template().format(prompt=p, response=r, review=review)
                out.append((kind, task.format_prompt(text), rewritten))
    return out


def encode(tok, examples: Sequence[tuple[str, str, str]]) -> list[tuple[list[int], int]]:
    """(token ids of prompt + response + eos, number of prompt tokens) per example."""
    prompts = tok([e[1] for e in examples])["input_ids"]
    responses = tok([e[2] for e in examples], add_special_tokens=False)["input_ids"]
    return [(p + r + [tok.eos_token_id], len(p)) for p, r in zip(prompts, responses)]


PACK_LEN = 192  # tokens per packed row (longer examples get a row of their own)


def packed_batch(tok, rows: Sequence[tuple[list[int], int]]):
    """Pack examples into rows of at most `PACK_LEN` tokens (first fit, longest first: 92% of
    the cells of the default corpus's batches hold tokens, against 83% with next fit in the
    given order, so a step computes 9% less; its examples and its loss are the same).

    Position ids restart at 0 for every example, and no attention mask is passed, so
    transformers attends within each example only (its packed-sequence mask); the first token
    of every example is `<s>` (never a label), so nothing is predicted across examples.
    Returns (input_ids, position_ids, labels); labels are -100 on prompts and padding."""
    import torch

    packs: list[list[tuple[list[int], int]]] = []
    used: list[int] = []
    for seq, n_prompt in sorted(rows, key=lambda r: -len(r[0])):  # stable: ties keep their order
        slot = next((i for i, u in enumerate(used) if u + len(seq) <= PACK_LEN), None)
        if slot is None:
            packs.append([])
            used.append(0)
            slot = len(packs) - 1
        packs[slot].append((seq, n_prompt))
        used[slot] += len(seq)
    width = max(sum(len(s) for s, _ in p) for p in packs)
    ids = torch.full((len(packs), width), tok.pad_token_id, dtype=torch.long)
    pos = torch.zeros((len(packs), width), dtype=torch.long)
    labels = torch.full((len(packs), width), -100, dtype=torch.long)
    for r, pack in enumerate(packs):
        o = 0
        for seq, n_prompt in pack:
            n = len(seq)
            ids[r, o:o + n] = torch.tensor(seq)
            pos[r, o:o + n] = torch.arange(n)
            labels[r, o + n_prompt:o + n] = torch.tensor(seq[n_prompt:])
            o += n
        pos[r, o:] = torch.arange(width - o)  # padding: a block of its own
    return ids, pos, labels


def batches(n: int, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Example indices in random batches. (Batches of similar length would pad less, but
    length carries content here, and such batches left the model miscalibrated: too many
    short answers; packing removes the padding instead.)"""
    idx = list(range(n))
    rng.shuffle(idx)
    return [idx[j:j + batch_size] for j in range(0, n, batch_size)]


def autocast(model):
    """Mixed precision for the model's device (`sipo_bench.execution.device.mixed_precision`: bf16 on a
    GPU that has it, nothing on a CPU); the weights stay float32."""
    import contextlib

    import torch

    from sipo_bench.api import mixed_precision

    device = next(model.parameters()).device
    dtype = mixed_precision(device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def mean_loss(model, tok, rows: Sequence[tuple[list[int], int]], batch_size: int = 64) -> float:
    """Mean negative log-likelihood per response token (eos included)."""
    import torch

    total, count = 0.0, 0
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad(), autocast(model):
        for s in range(0, len(rows), batch_size):
            ids, pos, labels = (t.to(device) for t in packed_batch(tok, rows[s:s + batch_size]))
            logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits[:, :-1].float()
            tgt = labels[:, 1:]
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1),
                                                    ignore_index=-100, reduction="sum")
            total += float(nll)
            count += int((tgt != -100).sum())
    return total / max(count, 1)


# --- Model ----------------------------------------------------------------------------------


def make_model(tok, c, seed: int):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tok), hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                         num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
                         num_key_value_heads=c.num_heads, max_position_embeddings=512, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    return model


def train(model, tok, rows, c, seed: int, advance=None) -> list[float]:
    """AdamW with linear warm-up (5%) and cosine decay to 10%; loss on response tokens only.
    Returns the loss of every step."""
    import torch

    rng = random.Random(f"synthetic-sft-order-{seed}")
    plan = [b for _ in range(c.sft_epochs) for b in batches(len(rows), c.sft_batch_size, rng)]
    opt = torch.optim.AdamW(model.parameters(), lr=c.sft_lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, len(plan) // 20)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, len(plan) - warm)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    losses: list[float] = []
    knobs = {"task_options.sft_lr": c.sft_lr}
    model.train()
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for step, b in enumerate(plan, start=1):
            ids, pos, labels = (t.to(device) for t in packed_batch(tok, [rows[i] for i in b]))
            with autocast(model):
                loss = model(input_ids=ids, position_ids=pos, labels=labels, use_cache=False).loss
            check_finite_loss(loss, step=step, total=len(plan), knobs=knobs, what="synthetic SFT")
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            check_finite_loss(grad_norm, step=step, total=len(plan), knobs=knobs, what="synthetic SFT", name="gradient norm")
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            count_training(1, sum(len(rows[i][0]) for i in b))  # real tokens, not the packing padding
            losses.append(float(loss.detach()))
            if advance is not None:
                advance(1)
    model.eval()
    check_finite_parameters(model, step=len(plan), total=len(plan), knobs=knobs, what="synthetic SFT",
                            trainable_only=False)
    return losses


def sample(model, tok, prompts: Sequence[str], n: int, max_new_tokens: int, seed: int,
           greedy: bool = False, batch_size: int = 256) -> list[list[str]]:
    """`n` responses per formatted prompt: temperature 1, no top-k / top-p (or greedy), left
    padding. Each response gets the conventional leading space."""
    import torch

    flat = [p for p in prompts for _ in range(n)]
    outs: list[str] = []
    old_side = tok.padding_side
    tok.padding_side = "left"
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            for s in range(0, len(flat), batch_size):
                enc = tok(flat[s:s + batch_size], return_tensors="pt", padding=True).to(model.device)
                kw = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0)
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                     eos_token_id=tok.eos_token_id, **kw)
                texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                outs += [" " + t.strip() for t in texts]
    finally:
        tok.padding_side = old_side
    return [outs[i * n:(i + 1) * n] for i in range(len(prompts))]


# --- The base stage -------------------------------------------------------------------------


def _log(ctx: Any, msg: str) -> None:
    if ctx is not None:
        ctx.log(msg)


def build_sft_model(task: "Task", data: TaskData | None, out: Path, seed: int, ctx: Any) -> dict:
    """Train the tokenizer and the tiny LLaMA on the seed's prompt split (`split_prompts`: the
    SFT corpus draws from the train prompts, its held-out loss and the measurements use the
    validation and test prompts; `data` is not read), save both in `out`, and measure the
    model. Runs on the run's device (`sipo_bench.execution.device`), with `torch_threads` CPU threads
    (restored afterwards)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(task.config.torch_threads)
    try:
        return _build_sft_model(task, data, out, seed, ctx)
    finally:
        torch.set_num_threads(threads)


def _build_sft_model(task: "Task", data: TaskData | None, out: Path, seed: int, ctx: Any) -> dict:
    import contextlib

    import torch

    from .data import split_prompts

    c = task.config
    objs = list(g.VARIANTS[task.variant])
    t_start = time.time()
    train_prompts, val_prompts, test_prompts = split_prompts(seed, c.n_test, c.n_val_prompts)
    train_prompts, val_prompts = sorted(train_prompts), sorted(val_prompts)
    rng = random.Random(f"synthetic-{task.variant}-sft-{seed}")
    corpus = sft_corpus(task, train_prompts, rng, c.sft_examples, c.review_examples, c.rewrite_examples)
    heldout = sft_corpus(task, val_prompts, random.Random(f"synthetic-{task.variant}-sft-val-{seed}"),
                         max(1, c.sft_examples // 10), max(1, c.review_examples // 10), max(1, c.rewrite_examples // 10))
    if not corpus:
        raise RuntimeError("synthetic SFT corpus is empty: set sft_examples, review_examples or rewrite_examples > 0")
    write_jsonl(out / "sft_corpus.jsonl", [{"kind": k, "prompt": p, "response": r} for k, p, r in corpus])

    # Vocabulary: the corpus plus every sentence and prompt word the grammar can write, so an
    # unseen combination never meets <unk>.
    vocab_texts = [p + r for _, p, r in corpus] + list(g.SENTENCES) + [g.CRIT_GOOD, *g.CRITIQUES]
    vocab_texts += [p for p, _ in g.all_prompts()]
    vocab_texts += [task.format_prompt(task.rewrite_template().format(prompt="", response="", review="")),
                    task.format_prompt(task.review_template().format(prompt="", response=""))]
    tok = train_tokenizer(vocab_texts)
    rows = encode(tok, corpus)
    held_rows = encode(tok, heldout)
    from sipo_bench.api import torch_device

    model = make_model(tok, c, seed).to(torch_device())  # initialised on the CPU: the same weights anywhere
    n_params = sum(p.numel() for p in model.parameters())
    loss_before = mean_loss(model, tok, held_rows)
    steps = c.sft_epochs * len(batches(len(rows), c.sft_batch_size, random.Random(0)))
    _log(ctx, f"SFT: {len(rows)} demonstrations, vocab {len(tok)}, {n_params} parameters, {steps} steps")
    progress = ctx.progress(steps, "sft") if ctx is not None else contextlib.nullcontext(None)
    t0, cpu0 = time.time(), time.process_time()
    with progress as advance:
        losses = train(model, tok, rows, c, seed, advance)
    train_seconds, train_cpu = time.time() - t0, time.process_time() - cpu0
    loss_after = mean_loss(model, tok, held_rows)
    from sipo_bench.api import write_curves

    write_curves(out, [{"step": i + 1, "loss": float(x)} for i, x in enumerate(losses)], trainer="synthetic SFT",
                 selection={"global_step": len(losses)}, extra={"heldout_loss_before": loss_before, "heldout_loss_after": loss_after})
    model.save_pretrained(out)
    tok.save_pretrained(out)
    _log(ctx, f"SFT: {train_seconds:.1f}s, held-out loss {loss_before:.3f} -> {loss_after:.3f}")

    result: dict[str, Any] = {
        "variant": task.variant, "objectives": objs, "parameters": n_params, "vocab_size": len(tok),
        "sft_examples": {k: sum(1 for e in corpus if e[0] == k) for k in ("direct", "review", "rewrite")},
        "sft_steps": len(losses), "sft_seconds": round(train_seconds, 2), "sft_cpu_seconds": round(train_cpu, 2),
        "torch_threads": torch.get_num_threads(),
        "heldout_loss_before": round(loss_before, 4), "heldout_loss_after": round(loss_after, 4),
        "train_loss_first": round(sum(losses[:10]) / len(losses[:10]), 4),
        "train_loss_last": round(sum(losses[-10:]) / len(losses[-10:]), 4),
    }
    if c.eval_samples > 0:
        t1 = time.time()
        sampler, result["sampler"] = make_sampler(ctx, model, tok, out)
        result.update(measure(task, sampler, test_prompts, val_prompts, seed))
        result["measure_seconds"] = round(time.time() - t1, 2)
    result["seconds"] = round(time.time() - t_start, 2)
    _log(ctx, f"SFT samples: parse rate {result.get('samples', {}).get('parse_rate')}, all-high rate "
              f"{result.get('samples', {}).get('all_high_rate')}")
    return result


def make_sampler(ctx: Any, model, tok, out: Path):
    """`sampler(formatted prompts, n, max_new_tokens, seed)` -> n responses per prompt at
    temperature 1: the run's `transformers` generator on the saved model when the runtime has
    one (the same code that evaluates every method), else `model.generate` (:func:`sample`)."""
    runtime = getattr(ctx, "runtime", None)
    if runtime is not None and "transformers" in runtime.registries.generators:
        from sipo_bench.api import DecodingConfig, ResolvedPolicy

        gen = runtime.generator("transformers")
        policy = ResolvedPolicy(base=out, adapters=(), combine="soup", options={})

        def run(prompts, n, max_new_tokens, seed):
            dec = DecodingConfig(greedy=False, max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0, batch_size=256)
            outs = gen.generate(policy, list(prompts), dec, num_return_sequences=n, seed=seed)
            return [[" " + r.strip() for r in rs] for rs in outs]

        return run, "transformers generator"
    return (lambda prompts, n, max_new_tokens, seed: sample(model, tok, prompts, n, max_new_tokens, seed)), "model.generate"


def measure(task: "Task", sampler, test_prompts: Sequence[str], val_prompts: Sequence[str],
            seed: int) -> dict:
    """What the SFT model does, sampled at temperature 1:

    - `samples`: responses to the test prompts (parse rate, mean scores, all-high rate), next to
      `behaviour`, the data's behaviour policy on the same prompts;
    - `refine`: on one sampled response per validation prompt, the model's own review
      (exactly right? names only real critiques?) and its rewrite given that review (follows the
      review exactly? Pareto-improves the response? all-high?).
    """
    from .data import all_high, score_summary

    c = task.config
    objs = list(g.VARIANTS[task.variant])
    n = c.eval_samples
    outs = sampler([task.format_prompt(p) for p in test_prompts], n, c.eval_max_new_tokens, seed)
    flat_p = [p for p in test_prompts for _ in range(n)]
    flat_r = [r for rs in outs for r in rs]
    brng = random.Random(f"synthetic-{task.variant}-behaviour-{seed}")
    beh = [g.render(g.sample_response(brng, g.topic_of(p), task.behaviour)) for p in flat_p]

    # refine: sample -> review -> rewrite, all by the model
    vp = list(val_prompts)
    first = [rs[0] for rs in sampler([task.format_prompt(p) for p in vp], 1, c.eval_max_new_tokens, seed + 1)]
    review_prompts = [task.format_prompt(task.review_template().format(prompt=p, response=r)) for p, r in zip(vp, first)]
    reviews = [rs[0] for rs in sampler(review_prompts, 1, 32, seed + 2)]
    rewrite_prompts = [task.format_prompt(task.rewrite_template().format(prompt=p, response=r, review=v))
                       for p, r, v in zip(vp, first, reviews)]
    rewrites = [rs[0] for rs in sampler(rewrite_prompts, 1, c.eval_max_new_tokens, seed + 3)]
    exact = follows = improves = high_before = high_after = review_parses = 0
    for p, r, v, w in zip(vp, first, reviews, rewrites):
        t = g.topic_of(p)
        crit = g.parse_review(v)
        review_parses += all(s in (*g.CRITIQUES, g.CRIT_GOOD) for s in g.split_sentences(v))
        exact += set(crit) == set(g.true_critique(t, r))
        follows += " ".join(w.split()) == " ".join(g.apply_review(t, r, crit).split())
        s0, s1 = g.scores(p, r), g.scores(p, w)
        improves += all(s1[o] >= s0[o] for o in objs) and any(s1[o] > s0[o] for o in objs)
        high_before += all_high(s0, objs, c.high_threshold)
        high_after += all_high(s1, objs, c.high_threshold)
    m = max(len(vp), 1)
    examples = [{"prompt": p, "response": r, "review": v, "rewrite": w}
                for p, r, v, w in list(zip(vp, first, reviews, rewrites))[:3]]
    return {
        "samples": score_summary(flat_p, flat_r, objs, c.high_threshold),
        "behaviour": score_summary(flat_p, beh, objs, c.high_threshold),
        "sample_examples": [{"prompt": p, "response": r} for p, r in list(zip(flat_p, flat_r))[:3]],
        "refine": {"n": len(vp), "review_parse_rate": round(review_parses / m, 4),
                   "review_exact_rate": round(exact / m, 4), "rewrite_follows_review_rate": round(follows / m, 4),
                   "rewrite_improves_rate": round(improves / m, 4),
                   "all_high_before": round(high_before / m, 4), "all_high_after": round(high_after / m, 4),
                   "examples": examples},
    }
