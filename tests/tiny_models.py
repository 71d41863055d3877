"""Tiny random models for tests and benchmarks: a LLaMA causal LM with a word-level tokenizer
and random LoRA adapters for it, saved with `save_pretrained` the way stages save them.

Everything is deterministic given `seed` and takes well under a second on a CPU:

    base = make_tiny_model(tmp_path / "base", seed=0)
    a1 = make_tiny_lora(base, tmp_path / "a1", seed=1)

The tokenizer is a `PreTrainedTokenizerFast` over a `WordLevel` model: text is split on
whitespace and punctuation (`Whitespace` pre-tokenizer), unknown words map to `<unk>`, and
`tok(text)` prepends `<s>` (bos). Special tokens: `<pad>`=0, `<s>`=1, `</s>`=2, `<unk>`=3. The
vocabulary holds the prompt-template words, a few hundred common English words, any
`extra_words`, and filler words `w0`, `w1`, ... up to `vocab_size`. Decoding joins words with a
space.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]

#: words of the default prompt template and the review/rewrite templates
TEMPLATE_WORDS = ("BEGINNING OF CONVERSATION : USER ASSISTANT Review the answer below and say how to "
                  "improve it on every objective . Question Answer Rewrite following review Rewritten").split()

COMMON_WORDS = """a an the and or but if then so of to in on at by for with from as is are was were be
been it this that these those i you he she we they me him her us them my your his its our their what
which who when where why how not no yes all any some many much more most few less good bad best worst
help helpful harmless safe unsafe answer question please thanks thank sure sorry can could would should
will may might must do does did done make made get got give gave take took go went come came see saw
know knew think thought say said tell told ask asked use used find found want need like love hate
time day year way thing man woman child people world life hand part place case week work number point
water food money book word fact idea story name city home house car road door room one two three four
five six seven eight nine ten first last long short big small high low new old great little right wrong
true false here there now today very just also only even still well too again never always often
because while before after over under up down out into about than other same each every both either
step steps first second finally correct incorrect verbose concise short long detailed simple clear
kind rude polite honest wise true fun happy sad calm fast slow hot cold red blue green""".split()


def _vocab(vocab_size: int, extra_words: Iterable[str] = ()) -> dict[str, int]:
    words: list[str] = []
    seen = set(SPECIAL_TOKENS)
    for w in [*TEMPLATE_WORDS, *COMMON_WORDS, *extra_words]:
        if w not in seen:
            seen.add(w)
            words.append(w)
    n_filler = max(vocab_size - len(SPECIAL_TOKENS) - len(words), 0)
    words += [f"w{i}" for i in range(n_filler)]
    return {w: i for i, w in enumerate([*SPECIAL_TOKENS, *words])}


def make_tiny_tokenizer(vocab_size: int = 512, extra_words: Iterable[str] = ()):
    """A word-level `PreTrainedTokenizerFast` with bos/eos/pad/unk (see the module docstring)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = _vocab(vocab_size, extra_words)
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with one space
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", padding_side="left", model_max_length=1024)


def make_tiny_model(out_dir, *, seed: int = 0, vocab_size: int = 512, hidden_size: int = 128, num_layers: int = 2,
                    num_heads: int = 4, intermediate_size: int = 256, max_position_embeddings: int = 512,
                    extra_words: Iterable[str] = (), init_std: float = 0.2) -> Path:
    """Save a random `LlamaForCausalLM` (fp32) and its tokenizer to `out_dir`; returns the dir.

    `init_std` is larger than LLaMA's 0.02 so the random model has peaked, input-dependent
    next-token distributions (greedy outputs differ between adapters; ties are unlikely)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tiny_tokenizer(vocab_size, extra_words)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=intermediate_size,
                         num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
                         max_position_embeddings=max_position_embeddings, initializer_range=init_std,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_tiny_lora(base_dir, out_dir, *, seed: int = 1, r: int = 8, lora_alpha: int = 16, std: float = 0.05,
                   target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")) -> Path:
    """Save a random LoRA adapter (A and B both nonzero, so ΔW = B A · alpha/r ≠ 0) for the
    model in `base_dir` to `out_dir` with peft's `save_pretrained`; returns the dir."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    cfg = LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=list(target_modules), lora_dropout=0.0,
                     task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    peft_model.save_pretrained(out)
    return out
