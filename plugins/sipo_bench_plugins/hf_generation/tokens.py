"""Tokenization and sampling helpers of the backend: prompt/response token pairs as trl's DPOTrainer
builds them, batches, nucleus sampling, per-batch seeds, generated lengths."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from sipo_bench.api import after_prompt


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def encode_pairs(tok, prompts: Sequence[str], responses: Sequence[str], add_eos: bool = True) -> list[tuple[list[int], int]]:
    """(ids, n_prompt) per pair, as trl 1.16's DPOTrainer builds them: ids = tok(prompt +
    response [+ eos_token]) with special tokens; the response tokens are ids[n_prompt:] where
    n_prompt is the common prefix length of tok(prompt) and ids."""
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
    eos = tok.eos_token if add_eos else ""
    p_ids = tok(list(prompts))["input_ids"]
    f_ids = tok([p + after_prompt(p, r) + eos for p, r in zip(prompts, responses)])["input_ids"]
    return [(f, common_prefix(p, f)) for p, f in zip(p_ids, f_ids)]


def index_batches(order: Sequence[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(order), size):
        yield list(order[i : i + size])


def sample_next(scores: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator) -> torch.Tensor:
    """One token per row from softmax(scores / temperature) restricted to the top-p nucleus
    (the smallest set of most likely tokens whose mass reaches top_p; HF's TopPLogitsWarper)."""
    scores = scores.float() / temperature
    if top_p < 1.0:
        sorted_scores, idx = torch.sort(scores, descending=False, dim=-1)
        cum = sorted_scores.softmax(-1).cumsum(-1)
        remove = cum <= (1 - top_p)
        remove[..., -1] = False
        scores = scores.masked_fill(remove.scatter(-1, idx, remove), float("-inf"))
    probs = scores.softmax(-1)
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)


def generated_length(row: Sequence[int], stop: Sequence[int | None]) -> int:
    """Tokens a row generated: up to and including its first EOS (or pad), else all of it."""
    return next((i + 1 for i, t in enumerate(row) if t in stop), len(row))


def batch_seed(seed: int, batch: int) -> int:
    return (int(seed) * 1_000_003 + batch * 7_919) % (2**63 - 1)
