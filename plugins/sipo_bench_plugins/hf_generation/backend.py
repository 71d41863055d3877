"""The `transformers` generation backend: one base model per process, LoRA adapters loaded
onto it by name, exact soups, MOD fusion decoding, and batched response log-probs.

Conventions (see docs/generation.md):

- Generation: prompts are already formatted; the tokenizer adds its special tokens (bos);
  batches are left-padded; the returned text is the decoded continuation with special tokens
  skipped, in the response convention (`sipo_bench.contract.responses.as_response`: one leading space),
  so that prompt + response re-encodes to the tokens the model generated. A response has at
  most `new_token_budget(decoding, prompt tokens)` tokens (`DecodingConfig.max_length` caps
  prompt + response per row, not per padded batch).
- Log-probs follow trl 1.16's `DPOTrainer` (non-conversational data): tokenize `prompt` and
  `prompt + response + eos_token` (special tokens added, i.e. bos); the response tokens are
  those after the longest common prefix of the two; the eos token is one of them and counts
  (`add_eos=False` leaves it out).
- k adapters are evaluated together by stacking k copies of the batch: row group g uses
  adapter g (or the base model for `None`). The default `grouped` mode computes the LoRA
  deltas of all groups with two batched matmuls per layer (a forward hook on peft's LoRA
  layers while peft's own adapters are disabled); `peft` uses peft's mixed-adapter batches
  (`adapter_names=`); `sequential` switches adapters in turn (k forwards, k KV caches).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import numpy as np
import torch

from sipo_bench.api import DecodingConfig, Generator, ResolvedPolicy, as_response, count, new_token_budget

from .adapters import GROUP_MODES, grouped, use_adapter
from .fusion import check_rule, fuse_step
from .model_cache import MODELS, LoadedBase, ModelCache, default_device
from .tokens import batch_seed, encode_pairs, generated_length, index_batches, sample_next


# --- the backend -------------------------------------------------------------------------------


class HFGenerator(Generator):
    """transformers backend. `device`/`dtype` default to the run's (`sipo_bench.execution.device`:
    cuda + bf16 on a GPU run, cpu + fp32 otherwise); `group_mode` is how k adapters share one forward ("grouped", "peft" or
    "sequential", see the module docstring); `kv_cache` is the KV cache of the fusion
    decoding loop ("static": preallocated, written in place; "dynamic": grown by concat);
    `max_forward_tokens` caps the tokens (rows x adapters x width) of one scoring forward
    ("auto": 2048 on CPU, where bigger blocks fall out of cache and run slower; no cap on
    GPU). Single-model and soup generation use transformers' `generate`."""

    name = "transformers"
    description = "transformers + peft: batched generation, exact LoRA soups, MOD fusion, log-probs."

    def __init__(self, device: str | None = None, dtype: str | None = None, group_mode: str = "grouped",
                 kv_cache: str = "static", max_forward_tokens: int | None | str = "auto",
                 cache: ModelCache | None = None):
        if group_mode not in GROUP_MODES:
            raise ValueError(f"`group_mode`: expected one of {list(GROUP_MODES)}, got {group_mode!r}")
        self.device = torch.device(device) if device else None
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.group_mode = group_mode
        if kv_cache not in ("dynamic", "static"):
            raise ValueError(f"`kv_cache`: expected 'dynamic' or 'static', got {kv_cache!r}")
        self.kv_cache = kv_cache
        if max_forward_tokens == "auto":
            dev = self.device or default_device()
            max_forward_tokens = None if dev.type == "cuda" else 2048
        if max_forward_tokens is not None and int(max_forward_tokens) < 1:
            raise ValueError(f"`max_forward_tokens`: expected >= 1 or None, got {max_forward_tokens!r}")
        self.max_forward_tokens = max_forward_tokens
        self.cache = cache or MODELS

    # -- loading --

    def base(self, base_dir: Any) -> LoadedBase:
        return self.cache.base(base_dir, self.device, self.dtype)

    def _slots(self, b: LoadedBase, adapter_dirs: Sequence[Any]) -> list[str | None]:
        return [None if a is None else self.cache.adapter(b, a) for a in adapter_dirs]

    # -- generation --

    def generate(self, policy: ResolvedPolicy, prompts: Sequence[str], decoding: DecodingConfig, *,
                 num_return_sequences: int = 1, seed: int = 0, progress: Any = None) -> list[list[str]]:
        if num_return_sequences < 1:
            raise ValueError(f"`num_return_sequences`: expected >= 1, got {num_return_sequences}")
        b = self.base(policy.base)
        with self.cache.lock:
            if policy.combine == "soup":
                name = self.cache.soup(b, policy.adapters)
                run = lambda ids, mask, n, s, steps: self._generate_single(b, name, ids, mask, decoding, n, s, steps)  # noqa: E731
            elif policy.combine == "fusion":
                adapters = [(a, float(w)) for a, w in policy.adapters if float(w) != 0.0]
                rule = policy.options.get("rule", "reverse_kl")
                alpha = policy.options.get("alpha")
                check_rule(rule, alpha)
                if not adapters:
                    raise ValueError("fusion policy with no adapter of nonzero weight")
                slots = self._slots(b, [a for a, _ in adapters])
                weights = [w for _, w in adapters]
                run = lambda ids, mask, n, s, steps: self._generate_fused(b, slots, weights, rule, alpha,  # noqa: E731
                                                                          ids, mask, decoding, n, s, steps)
            else:
                raise ValueError(f"policy `combine`: expected 'soup' or 'fusion', got {policy.combine!r}")
            return self._generate_batches(b, prompts, decoding, num_return_sequences, seed, progress, run)

    def _generate_batches(self, b: LoadedBase, prompts, decoding, n_ret, seed, progress, run) -> list[list[str]]:
        tok = b.tokenizer
        enc = tok(list(prompts))["input_ids"]
        order = sorted(range(len(prompts)), key=lambda i: -len(enc[i]))
        rows_per_prompt = 1 if decoding.greedy else n_ret
        per_batch = max(1, decoding.batch_size // rows_per_prompt)
        out: list[list[str]] = [[] for _ in prompts]
        for bi, idx in enumerate(index_batches(order, per_batch)):
            width = max(len(enc[i]) for i in idx)
            pad = tok.pad_token_id
            budgets = [new_token_budget(decoding, len(enc[i])) for i in idx for _ in range(rows_per_prompt)]
            if max(budgets) == 0:
                texts = [""] * len(budgets)
            else:
                ids = torch.tensor([[pad] * (width - len(enc[i])) + enc[i] for i in idx], device=b.device)
                mask = torch.tensor([[0] * (width - len(enc[i])) + [1] * len(enc[i]) for i in idx], device=b.device)
                steps = torch.tensor(budgets, device=b.device)
                new = run(ids, mask, rows_per_prompt, batch_seed(seed, bi), steps)  # (len(idx) * rows, T_new)
                # a row's tokens past its own budget are dropped: the tokens before do not depend on them
                rows = new.tolist()
                texts = [as_response(tok.decode(row[:n], skip_special_tokens=True).strip()) for row, n in zip(rows, budgets)]
                count("tokens_generated", sum(generated_length(row[:n], (tok.eos_token_id, pad)) for row, n in zip(rows, budgets)))
            for j, i in enumerate(idx):
                got = texts[j * rows_per_prompt : (j + 1) * rows_per_prompt]
                out[i] = got * n_ret if rows_per_prompt == 1 and n_ret > 1 else got
            if progress:
                progress(len(idx))
        return out

    def _generation_config(self, b: LoadedBase, decoding: DecodingConfig, n: int):
        from transformers import GenerationConfig

        tok = b.tokenizer
        return GenerationConfig(
            max_new_tokens=decoding.max_new_tokens, do_sample=not decoding.greedy, num_beams=1,
            temperature=1.0 if decoding.greedy else decoding.temperature,
            # top_k: transformers' global default is 50; 0 disables it (only set when sampling,
            # greedy decoding warns about any explicit value)
            top_p=1.0 if decoding.greedy else decoding.top_p, top_k=None if decoding.greedy else 0,
            typical_p=1.0, min_new_tokens=0, repetition_penalty=1.0, no_repeat_ngram_size=0,
            num_return_sequences=n,
            eos_token_id=b.eos_ids, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        )

    @torch.inference_mode()
    def _generate_single(self, b: LoadedBase, name, ids, mask, decoding, n, seed, steps) -> torch.Tensor:
        cfg = self._generation_config(b, decoding, n)
        cfg.max_new_tokens = int(steps.max())
        devices = [b.device] if b.device.type == "cuda" else []
        with use_adapter(b, name) as model, torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
        return out[:, ids.shape[1] :]

    def _cache_factory(self, b: LoadedBase, length: int) -> Callable[[], Any]:
        """A fresh KV cache per call: None lets the model make its default (dynamic) cache;
        "static" preallocates `length` positions and writes in place (no per-step concat)."""
        if self.kv_cache == "dynamic":
            return lambda: None
        from transformers import StaticCache

        model = b.model.get_base_model() if hasattr(b.model, "get_base_model") else b.model
        return lambda: StaticCache(config=model.config, max_cache_len=length)

    def _forward(self, b: LoadedBase, model, ids, mask, pos, cache, extra) -> tuple[torch.Tensor, Any]:
        kw = {b.cache_kw: cache} if cache is not None else {}
        if b.keeps_logits:
            kw["logits_to_keep"] = 1
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kw, **extra)
        cache = getattr(out, "cache", None)
        return out.logits[:, -1], cache if cache is not None else getattr(out, "past_key_values", None)

    @torch.inference_mode()
    def _generate_fused(self, b: LoadedBase, slots, weights, rule, alpha, ids, mask, decoding, n, seed, steps) -> torch.Tensor:
        """MOD decoding: k = len(slots) models, one KV cache over k stacked copies of the
        batch (grouped/peft modes) or k caches (sequential mode). Each model's cumulative
        log-prob of the response so far enters the fusion rule (`fuse_step`). Rows that
        finished (eos, or their own token budget `steps`) are dropped from the batch (and the
        caches) once they are an eighth of it."""
        if n > 1:
            ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
        k, rows, dev = len(slots), ids.shape[0], ids.device
        gen = torch.Generator(device=dev).manual_seed(seed)
        eos = torch.tensor(b.eos_ids, device=dev)
        pad = b.tokenizer.pad_token_id
        max_steps = int(steps.max())
        out = torch.full((rows, max_steps), pad, dtype=ids.dtype, device=dev)
        n_steps = 0
        active = torch.arange(rows, device=dev)  # original row of each row in the batch
        done = torch.zeros(rows, dtype=torch.bool, device=dev)  # finished, not yet dropped
        budget = steps.clone()  # tokens each row may still generate
        prefix = torch.zeros(k, rows, dtype=torch.float32, device=dev)  # Σ log π_i(y_<t | x) per model
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        seq = self.group_mode == "sequential"
        new_cache = self._cache_factory(b, ids.shape[1] + max_steps)
        with contextlib.ExitStack() as stack:
            if seq:
                caches: list[Any] = [new_cache() for _ in slots]

                def step_logits(inp, mask, pos):
                    res = []
                    for i, s in enumerate(slots):
                        with use_adapter(b, s) as model:
                            lg, caches[i] = self._forward(b, model, inp, mask, pos, caches[i], {})
                        res.append(lg)
                    return torch.stack(res)

                def select(keep, mask, pos):
                    for c in caches:
                        c.reorder_cache(keep)
                    return mask[keep], pos[keep]
            else:
                kw = stack.enter_context(grouped(b, slots, self.group_mode))
                mask, pos, state = mask.repeat(k, 1), pos.repeat(k, 1), {"cache": new_cache()}

                def step_logits(inp, mask, pos):
                    lg, state["cache"] = self._forward(b, b.model, inp.repeat(k, 1), mask, pos, state["cache"],
                                                       kw(inp.shape[0]))
                    return lg.view(k, inp.shape[0], -1)

                def select(keep, mask, pos):
                    idx = (keep[None] + len(done) * torch.arange(k, device=dev)[:, None]).flatten()
                    state["cache"].reorder_cache(idx)
                    return mask[idx], pos[idx]

            logits = step_logits(ids, mask, pos)
            for step in range(max_steps):
                lp = torch.log_softmax(logits.float(), -1)  # (k, rows, V)
                f = fuse_step(lp, prefix, weights, rule, alpha)
                nxt = f.argmax(-1) if decoding.greedy else sample_next(f, decoding.temperature, decoding.top_p, gen)
                nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
                out[active, step] = nxt
                n_steps = step + 1
                prefix = prefix + lp.gather(-1, nxt.view(1, -1, 1).expand(k, -1, 1)).squeeze(-1)
                budget = budget - 1
                done = done | torch.isin(nxt, eos) | (budget <= 0)
                if step == max_steps - 1:
                    break
                n_done = int(done.sum())
                if n_done == len(done):
                    break
                if n_done and n_done * 8 >= len(done):
                    keep = (~done).nonzero().flatten()
                    mask, pos = select(keep, mask, pos)
                    active, nxt, done = active[keep], nxt[keep], done[keep]
                    budget, prefix = budget[keep], prefix[:, keep]
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
                pos = pos[:, -1:] + 1
                logits = step_logits(nxt[:, None], mask, pos)
        return out[:, :n_steps]

    # -- log-probs --

    def logprobs(self, policy: ResolvedPolicy, prompts: Sequence[str], responses: Sequence[str], *,
                 batch_size: int = 64, progress: Any = None, add_eos: bool = True) -> list[float]:
        """Summed log-prob of each response's tokens (eos included unless add_eos=False) under
        the policy; for a fusion policy, under the normalised fused distribution
        softmax(f) at temperature 1."""
        b = self.base(policy.base)
        with self.cache.lock:
            if policy.combine == "soup":
                slots = [self.cache.soup(b, policy.adapters)]
                return self._sequence_logprobs(b, slots, prompts, responses, batch_size, progress, add_eos)[0].tolist()
            if policy.combine == "fusion":
                adapters = [(a, float(w)) for a, w in policy.adapters if float(w) != 0.0]
                rule, alpha = policy.options.get("rule", "reverse_kl"), policy.options.get("alpha")
                check_rule(rule, alpha)
                slots = self._slots(b, [a for a, _ in adapters])
                fuse = lambda lp, prefix: torch.log_softmax(  # noqa: E731
                    fuse_step(lp, prefix, [w for _, w in adapters], rule, alpha), -1)
                return self._sequence_logprobs(b, slots, prompts, responses, batch_size, progress, add_eos,
                                               fuse=fuse)[0].tolist()
            raise ValueError(f"policy `combine`: expected 'soup' or 'fusion', got {policy.combine!r}")

    def sequence_logprobs(self, base_dir: Any, adapter_dirs: Sequence[Any], prompts: Sequence[str],
                          responses: Sequence[str], batch_size: int = 64, progress: Any = None,
                          add_eos: bool = True) -> np.ndarray:
        """(len(adapter_dirs), n) summed response log-probs; None in `adapter_dirs` = base model."""
        b = self.base(base_dir)
        with self.cache.lock:
            slots = self._slots(b, adapter_dirs)
            return self._sequence_logprobs(b, slots, prompts, responses, batch_size, progress, add_eos)

    def implicit_rewards(self, base_dir: Any, adapter_dirs: Sequence[Any], prompts: Sequence[str],
                         responses: Sequence[str], beta: float, ref_adapter: Any = None, batch_size: int = 64,
                         progress: Any = None, add_eos: bool = True) -> np.ndarray:
        """(k, n) implicit rewards beta * (log π_i(y|x) − log π_ref(y|x)); π_ref = the base model
        (or base + `ref_adapter`)."""
        lp = self.sequence_logprobs(base_dir, [*adapter_dirs, ref_adapter], prompts, responses, batch_size,
                                    progress, add_eos)
        return beta * (lp[:-1] - lp[-1:])

    @torch.inference_mode()
    def _sequence_logprobs(self, b: LoadedBase, slots: list[str | None], prompts, responses, batch_size, progress,
                           add_eos, fuse: Callable | None = None) -> np.ndarray:
        """Log-probs under each slot; with `fuse`, one row: the sequence log-prob under
        fuse(per-slot log-softmax, per-slot cumulative response log-prob) (a (k, ..., V),
        (k, ...) -> (..., V) log-distribution)."""
        if batch_size < 1:
            raise ValueError(f"`batch_size`: expected >= 1, got {batch_size}")
        pairs = encode_pairs(b.tokenizer, prompts, responses, add_eos)
        k = len(slots)
        out = np.zeros((1 if fuse else k, len(pairs)))
        if not pairs or not slots:
            return out
        order = sorted(range(len(pairs)), key=lambda i: -len(pairs[i][0]))
        distinct = list(dict.fromkeys(slots))
        for batch in index_batches(order, batch_size):
            # one forward holds at most `max_forward_tokens` (rows x slots x width) tokens:
            # on a CPU, past a few thousand tokens the activations leave the cache and the
            # throughput per token drops (docs/generation.md)
            width = len(pairs[batch[0]][0])
            per = len(batch) if self.max_forward_tokens is None else max(1, self.max_forward_tokens // (len(distinct) * width))
            for idx in index_batches(batch, per):
                out[:, idx] = self._score_block(b, pairs, idx, slots, distinct, fuse)
            if progress:
                progress(len(batch))
        return out

    def _score_block(self, b: LoadedBase, pairs, idx, slots, distinct, fuse) -> np.ndarray:
        # left padding: every row ends at column W-1, so the logits that predict response
        # tokens are among the last K = max response length + 1 columns, and the model
        # computes only those (`logits_to_keep`), skipping the prompt's vocab projection
        pad = b.tokenizer.pad_token_id
        lens = [len(pairs[i][0]) for i in idx]
        width = max(lens)
        n_resp = [n - max(pairs[i][1], 1) for n, i in zip(lens, idx)]
        keep = max(n_resp) + 1
        ids = torch.tensor([[pad] * (width - n) + pairs[i][0] for n, i in zip(lens, idx)], device=b.device)
        mask = torch.tensor([[0] * (width - n) + [1] * n for n in lens], device=b.device)
        labels = ids[:, width - keep + 1 :]  # (rows, K-1): the token each kept column predicts
        col = torch.arange(keep - 1, device=b.device)
        score = col[None] >= (keep - 1 - torch.tensor(n_resp, device=b.device))[:, None]
        per_slot = self._slot_logits(b, distinct, ids, mask, keep)  # slot -> (rows, K, V) logits
        if fuse is None:
            sums = torch.stack([self._token_logprobs(per_slot[s][:, :-1], labels, score) for s in slots])
        else:
            lp = torch.stack([torch.log_softmax(per_slot[s][:, :-1].float(), -1) for s in slots])  # (k, rows, K-1, V)
            picked = lp.gather(-1, labels[None, ..., None].expand(len(slots), -1, -1, 1)).squeeze(-1) * score
            prefix = picked.cumsum(-1) - picked  # each model's log-prob of the response before each column
            f = fuse(lp, prefix)
            sums = (f.gather(-1, labels[..., None]).squeeze(-1) * score).sum(-1)[None]
        return sums.double().cpu().numpy()

    @staticmethod
    def _token_logprobs(logits: torch.Tensor, labels: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
        """Σ over scored columns of log softmax(logits)[label], without materialising the
        log-softmax: logit[label] − logsumexp(logits), in float32."""
        picked = logits.gather(-1, labels[..., None]).squeeze(-1).float()
        lse = torch.logsumexp(logits.float(), -1)
        return ((picked - lse) * score).sum(-1)

    def _slot_logits(self, b: LoadedBase, distinct: list[str | None], ids, mask, keep: int) -> dict:
        rows = ids.shape[0]
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        kw = {"logits_to_keep": keep} if b.keeps_logits else {}
        if len(distinct) == 1 or self.group_mode == "sequential":
            res = {}
            for s in distinct:
                with use_adapter(b, s) as model:
                    res[s] = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, **kw).logits[:, -keep:]
            return res
        k = len(distinct)
        with grouped(b, distinct, self.group_mode) as extra:
            logits = b.model(input_ids=ids.repeat(k, 1), attention_mask=mask.repeat(k, 1), position_ids=pos.repeat(k, 1),
                             use_cache=False, **kw, **extra(rows)).logits[:, -keep:]
        return {s: logits[g * rows : (g + 1) * rows] for g, s in enumerate(distinct)}

    def close(self) -> None:
        self.cache.clear()


# --- module-level helpers on a process-wide generator -------------------------------------------

_DEFAULT: HFGenerator | None = None


def default_generator() -> HFGenerator:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = HFGenerator()
    return _DEFAULT


def sequence_logprobs(base_dir: Any, adapter_dirs: Sequence[Any], prompts: Sequence[str], responses: Sequence[str],
                      batch_size: int = 64, progress: Any = None, add_eos: bool = True) -> np.ndarray:
    """Summed response log-probs, shape (len(adapter_dirs), n), of base + each adapter (None:
    the base model with adapters disabled), all adapters in one batched forward per batch."""
    return default_generator().sequence_logprobs(base_dir, adapter_dirs, prompts, responses, batch_size, progress, add_eos)


def implicit_rewards(base_dir: Any, adapter_dirs: Sequence[Any], prompts: Sequence[str], responses: Sequence[str],
                     beta: float, ref_adapter: Any = None, batch_size: int = 64, progress: Any = None,
                     add_eos: bool = True) -> np.ndarray:
    """DPO implicit rewards, shape (len(adapter_dirs), n): beta * (log π_i(y|x) − log π_ref(y|x))
    with π_ref the base model, or base + `ref_adapter` when given."""
    return default_generator().implicit_rewards(base_dir, adapter_dirs, prompts, responses, beta, ref_adapter,
                                                batch_size, progress, add_eos)
