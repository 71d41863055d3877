"""The one preference-training mechanism every DPO-family method uses.

:class:`PreferenceTrainer` subclasses trl's `DPOTrainer` and replaces only its loss hook
(`compute_loss`): it computes the per-sequence *summed response-token* log-probs of the policy
and of the reference, packs them into a :class:`~sipo_bench_baselines.losses.PairLogps` and
calls a pluggable :class:`~sipo_bench_baselines.losses.PreferenceLoss`. Everything else (data
tokenisation with EOS, collation, the optimiser, schedules, evaluation, checkpoints) is trl's
and transformers'.

The reference is the policy's own base model with the LoRA adapter disabled (one model copy).
For a reference "base + adapter R" (SIPO re-alignment) pass `ref_adapter_dir=R` to
:func:`train_preference_adapter`: R is merged into the base weights before a fresh LoRA is put
on top, so "adapter disabled" is exactly base + R; the saved adapter is then the sum
ΔW_R + ΔW_new as one adapter of the original base (peft `add_weighted_adapter(..., "cat")`), so
every saved policy stays "one base model + adapters".

Per-pair extra inputs of a loss (MODPO margins, DPO-LW orientation signs) travel as dataset
columns named by `loss.columns`; the collator stacks them into float tensors.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from sipo_bench.api import CurvesCallback, after_prompt, count_training, joined_pairs, torch_device, trained_tokens
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback
from trl import DPOConfig, DPOTrainer

from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import use_adapter

from .divergence import DivergenceGuard, check_finite_loss, check_finite_parameters
from .losses import PairLogps, PreferenceLoss

# --- Collation and the loss hook ------------------------------------------------------------


class PreferenceCollator(DataCollatorForPreference):
    """trl's preference collator plus the loss's extra per-pair columns as float tensors."""

    def __init__(self, pad_token_id: int, extra_columns: Sequence[str] = (), **kw: Any):
        super().__init__(pad_token_id=pad_token_id, **kw)
        self.extra_columns = tuple(extra_columns)

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().torch_call(examples)
        for c in self.extra_columns:
            out[c] = torch.tensor([ex[c] for ex in examples], dtype=torch.float32)
        return out


#: tokens a preference pair puts through the policy per pass: the prompt with each response
PAIR_TOKENS = {"prompt_ids": 2, "chosen_ids": 1, "rejected_ids": 1}


class PreferenceTrainer(DPOTrainer):
    """`DPOTrainer` whose loss is `loss(PairLogps, extras)` (see module docstring).

    `loss` is a :class:`~sipo_bench_baselines.losses.PreferenceLoss`; the batch mean of its
    per-pair values is the training loss. Other arguments are `DPOTrainer`'s.
    """

    def __init__(self, *args: Any, loss: PreferenceLoss, **kwargs: Any):
        self.preference_loss = loss
        self._extra_columns = tuple(loss.columns)
        super().__init__(*args, **kwargs)
        self.data_collator = PreferenceCollator(
            pad_token_id=self._tokenizer.pad_token_id, extra_columns=self._extra_columns,
            max_length=self.args.max_length, truncation_mode=self.args.truncation_mode,
            pad_to_multiple_of=self.args.pad_to_multiple_of)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None:
            self._signature_columns = list(dict.fromkeys([*self._signature_columns, *self._extra_columns]))

    #: score tokens with trl's fused, chunked LM head (never materialises the logits: the
    #: memory saver a large vocabulary on a GPU needs) or, with False, through the full logits
    #: (on a CPU, for the small vocabularies run there, the chunking costs more than the logits:
    #: a third of a tiny model's DPO step). None: fused on a GPU, full logits on a CPU.
    fused_logps: bool | None = None

    def _response_logps(self, model: Any, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log-probs of the response tokens of each sequence and their number."""
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        shift_mask = completion_mask[:, 1:]
        fused = self.fused_logps if self.fused_logps is not None else self.accelerator.device.type != "cpu"
        if fused:
            out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels,
                        fused_lm_head=True, use_cache=False)
            per_token = out.log_probs[:, -shift_mask.size(1):]  # zero where the label is masked
        else:
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                           use_cache=False).logits[:, :-1].float()
            target = labels[:, 1:]
            picked = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            per_token = picked.masked_fill(target == -100, 0.0)
        return per_token.sum(dim=1), shift_mask.sum(dim=1)

    def pair_logps(self, model: Any, inputs: Mapping[str, torch.Tensor]) -> PairLogps:
        """Policy and reference log-probs of a collated batch ([chosen..., rejected...])."""
        logps, ntok = self._response_logps(model, inputs)
        unwrapped = self.accelerator.unwrap_model(self.model)
        with torch.no_grad(), use_adapter(unwrapped, adapter_name=None):  # adapters off = the reference
            ref_logps, _ = self._response_logps(self.model, inputs)
        ch, rj = logps.chunk(2)
        rch, rrj = ref_logps.chunk(2)
        nch, nrj = ntok.chunk(2)
        width = torch.full_like(nch, inputs["input_ids"].shape[1])  # chosen and rejected are padded together
        return PairLogps(ch, rj, rch, rrj, nch, nrj, width)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        logps = self.pair_logps(model, inputs)
        extras = {c: inputs[c] for c in self._extra_columns}
        per_pair = self.preference_loss(logps, extras)
        loss = per_pair.mean()
        with torch.no_grad():
            margin = self.preference_loss.margin(logps)
            m = self._metrics[mode]
            m["rewards/margins"].append(margin.mean().item())
            m["rewards/accuracies"].append((margin > 0).float().mean().item())
            m["logps/chosen"].append(logps.chosen.mean().item())
            m["logps/rejected"].append(logps.rejected.mean().item())
        if return_outputs:
            return loss, {"per_pair": per_pair.detach()}
        return loss


# --- Progress -------------------------------------------------------------------------------


class ProgressCallback(TrainerCallback):
    """Calls `advance(1)` after every optimiser step (a stage's `ctx.progress`)."""

    def __init__(self, advance: Callable[[int], Any]):
        self.advance = advance

    def on_step_end(self, args, state, control, **kwargs):
        self.advance(1)


# --- Loading --------------------------------------------------------------------------------


def load_base(base_dir: Path | str, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) of a base stage dir (a saved model or a `pointer.json`); the tokenizer
    gets a pad token if it has none."""
    from sipo_bench.api import resolve_model_path
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_id, tok_id = resolve_model_path(base_dir, with_tokenizer=True)
    tok = AutoTokenizer.from_pretrained(tok_id)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype)
    return model, tok


def merge_adapter_into(model: Any, adapter_dir: Path | str) -> Any:
    """`model` with the LoRA adapter in `adapter_dir` merged into its weights (a plain model)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()


# --- One training run -----------------------------------------------------------------------

#: training options every preference stage config carries (see `configs.TrainingConfig`)
TRAIN_KEYS = ("learning_rate", "epochs", "batch_size", "grad_accum", "max_length", "lr_scheduler", "warmup_ratio",
              "weight_decay", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "eval_every", "load_best",
              "gradient_checkpointing", "bf16", "max_pairs")


def lora_config(train: Mapping[str, Any]):
    from peft import LoraConfig

    return LoraConfig(r=int(train["lora_r"]), lora_alpha=float(train["lora_alpha"]), lora_dropout=float(train["lora_dropout"]),
                      target_modules=list(train["target_modules"]), bias="none", task_type="CAUSAL_LM")


def _steps_per_epoch(n: int, train: Mapping[str, Any]) -> int:
    return max(1, math.ceil(math.ceil(n / int(train["batch_size"])) / int(train["grad_accum"])))


def mean_loss(trainer: PreferenceTrainer, dataset: Any, batch_size: int = 16) -> float:
    """Mean per-pair loss of the current policy over a prepared dataset (no gradients)."""
    from torch.utils.data import DataLoader

    trainer._set_signature_columns_if_needed()
    cols = [c for c in dataset.column_names if c in trainer._signature_columns]
    loader = DataLoader(dataset.select_columns(cols), batch_size=batch_size, collate_fn=trainer.data_collator)
    model = trainer.model
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    try:
        with torch.no_grad():
            for batch in loader:
                batch = {k: v.to(trainer.accelerator.device) for k, v in batch.items()}
                logps = trainer.pair_logps(model, batch)
                per_pair = trainer.preference_loss(logps, {c: batch[c] for c in trainer._extra_columns})
                total += float(per_pair.sum())
                n += per_pair.numel()
    finally:
        model.train(was_training)
    return total / max(n, 1)


def divergence_knobs(train: Mapping[str, Any], loss: PreferenceLoss) -> dict[str, Any]:
    """The settings a diverged preference training should lower, with their values."""
    knobs = {"learning_rate": train["learning_rate"], "beta": loss.beta}
    if getattr(loss, "alpha", None):
        knobs["alpha"] = loss.alpha
    return knobs
def pair_lengths(tok: Any, rows: Sequence[Mapping[str, str]]) -> list[int]:
    """Per pair, the longer of its two sequences in tokens as trl tokenises them: BOS + prompt +
    response + EOS (the response text followed by `eos_token`, as `encode_pairs` does)."""
    if not rows:
        return []
    eos = tok.eos_token or ""
    ids = tok([r["prompt"] + after_prompt(r["prompt"], r[k]) + eos for r in rows for k in ("chosen", "rejected")])["input_ids"]
    return [max(len(ids[2 * i]), len(ids[2 * i + 1])) for i in range(len(rows))]


def drop_long_pairs(tok: Any, rows: list[dict], max_length: int) -> tuple[list[dict], int]:
    """The released code's `filter_too_long`: a pair whose prompt + chosen or prompt + rejected
    exceeds `max_length` tokens is dropped (not truncated). Returns (kept rows, number dropped)."""
    kept = [r for r, n in zip(rows, pair_lengths(tok, rows)) if n <= max_length]
    return kept, len(rows) - len(kept)


def build_trainer(out: Path, base_dir: Path | str, train_rows: list[dict], val_rows: list[dict],
                  loss: PreferenceLoss, train: Mapping[str, Any], seed: int, *,
                  ref_adapter_dir: Path | str | None = None, callbacks: Sequence[TrainerCallback] = ()) -> PreferenceTrainer:
    """A :class:`PreferenceTrainer` with a fresh LoRA on the base model (merged with
    `ref_adapter_dir` first, if given), checkpoints under `out/_trainer`. See
    :func:`train_preference_adapter` for the arguments."""
    from datasets import Dataset
    from transformers import set_seed

    from datasets.utils.logging import disable_progress_bar

    if not train_rows:
        raise ValueError("no training pairs (every pair was a tie for this objective?)")
    if float(train.get("eval_every") or 0) > 0 and not val_rows:  # a setting that cannot act is an error
        raise ValueError(f"`eval_every`: expected validation pairs to evaluate on, got none "
                         f"(eval_every is {train['eval_every']}; set eval_every: 0 and load_best: false)")
    disable_progress_bar()  # stage progress goes through ctx.progress
    set_seed(seed)
    # trl joins prompt + response: after a chat template's newline the response starts bare
    train_rows, val_rows = joined_pairs(train_rows), joined_pairs(val_rows)
    model, tok = load_base(base_dir, torch.bfloat16 if train.get("bf16") else torch.float32)
    dropped = {"train": 0, "val": 0}
    if train.get("long_pairs", "truncate") == "drop":
        train_rows, dropped["train"] = drop_long_pairs(tok, train_rows, int(train["max_length"]))
        val_rows, dropped["val"] = drop_long_pairs(tok, val_rows, int(train["max_length"]))
        if not train_rows:
            raise ValueError(f"no training pairs left: all {dropped['train']} are longer than max_length="
                             f"{train['max_length']} tokens (long_pairs: drop)")
    if ref_adapter_dir is not None:
        model = merge_adapter_into(model, ref_adapter_dir)
    steps_per_epoch = _steps_per_epoch(len(train_rows), train)
    use_eval = float(train.get("eval_every") or 0) > 0
    eval_steps = max(1, round(steps_per_epoch * float(train["eval_every"]))) if use_eval else None
    args = DPOConfig(
        output_dir=str(Path(out) / "_trainer"), seed=seed, data_seed=seed, beta=float(loss.beta),
        learning_rate=float(train["learning_rate"]), num_train_epochs=float(train["epochs"]),
        per_device_train_batch_size=int(train["batch_size"]), per_device_eval_batch_size=int(train["batch_size"]),
        gradient_accumulation_steps=int(train["grad_accum"]), max_length=int(train["max_length"]),
        lr_scheduler_type=str(train["lr_scheduler"]), warmup_steps=float(train["warmup_ratio"]),
        weight_decay=float(train["weight_decay"]), gradient_checkpointing=bool(train["gradient_checkpointing"]),
        bf16=bool(train.get("bf16")), report_to="none", logging_steps=1, disable_tqdm=True,
        save_strategy="steps" if use_eval else "no", eval_strategy="steps" if use_eval else "no",
        eval_steps=eval_steps, save_steps=eval_steps, save_total_limit=2 if use_eval else None,
        load_best_model_at_end=bool(use_eval and train.get("load_best")), metric_for_best_model="eval_loss",
        greater_is_better=False, dataloader_num_workers=0, use_cpu=torch_device().type != "cuda",
        save_only_model=True, logging_nan_inf_filter=False,  # a NaN loss must reach the divergence guard
    )
    kind = type(loss).__name__.removesuffix("Loss")
    guard = DivergenceGuard(divergence_knobs(train, loss), what=f"{ {'DPOLW': 'DPO-LW'}.get(kind, kind)} training")
    trainer = PreferenceTrainer(
        model=model, args=args, loss=loss, processing_class=tok, peft_config=lora_config(train),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val_rows) if use_eval else None,
        callbacks=[guard, CurvesCallback(out, "PreferenceTrainer"), *callbacks])
    trainer.remove_callback(PrinterCallback)  # logs stay in trainer.state.log_history
    trainer.dropped_long_pairs = dropped
    return trainer


def save_adapter(trainer: PreferenceTrainer, out: Path, ref_adapter_dir: Path | str | None = None) -> None:
    """Save the trained adapter at the root of `out`; with `ref_adapter_dir`, as one adapter of
    the original base whose delta is ΔW_ref + ΔW_trained (peft "cat", exact)."""
    out = Path(out)
    model = trainer.model
    if ref_adapter_dir is None:
        model.save_pretrained(str(out))
        return
    model.load_adapter(str(ref_adapter_dir), adapter_name="ref_delta")
    model.add_weighted_adapter(["default", "ref_delta"], [1.0, 1.0], "combined", combination_type="cat")
    tmp = out / "_combined"
    model.save_pretrained(str(tmp), selected_adapters=["combined"])
    for f in (tmp / "combined").iterdir():  # a non-default adapter is saved in a subfolder
        shutil.move(str(f), out / f.name)
    shutil.rmtree(tmp)
    model.delete_adapter("combined")
    model.delete_adapter("ref_delta")
    model.set_adapter("default")


def train_preference_adapter(out: Path, base_dir: Path | str, train_rows: list[dict], val_rows: list[dict],
                             loss: PreferenceLoss, train: Mapping[str, Any], seed: int, *,
                             progress: Callable[..., Any] | None = None, ref_adapter_dir: Path | str | None = None,
                             log: Callable[[str], None] | None = None, probe_pairs: int = 64) -> dict:
    """Train a fresh LoRA adapter with `loss` and save it at the root of `out`.

    `train_rows` / `val_rows`: `{"prompt": formatted prompt, "chosen": str, "rejected": str,
    **{column: value for column in loss.columns}}` (trl appends EOS to the responses).
    `train` holds the :data:`TRAIN_KEYS` options (`max_pairs` caps `train_rows`).
    `progress(total, desc)` is a stage's `ctx.progress`. With `ref_adapter_dir` the reference
    is base + that adapter and the saved adapter is their sum (see module docstring).

    Returns metrics: mean loss on (up to `probe_pairs`) training pairs before and after
    training (`initial_loss`, `final_loss`), first/last logged step loss, steps, seconds, counts;
    with validation (`eval_every` > 0, which needs `val_rows`): the mean validation loss before
    training and of the saved model (`initial_val_loss`, `final_val_loss`: with `load_best` the
    best checkpoint's), the best eval loss and its step, and the curve of eval losses per step.
    """
    t0 = time.time()
    out = Path(out)
    if train.get("max_pairs"):
        train_rows = train_rows[: int(train["max_pairs"])]
    total_steps = _steps_per_epoch(len(train_rows), train) * math.ceil(float(train["epochs"]))
    with contextlib.ExitStack() as stack:
        callbacks = []
        if progress is not None:
            callbacks.append(ProgressCallback(stack.enter_context(progress(total_steps, f"train {out.name}"))))
        trainer = build_trainer(out, base_dir, train_rows, val_rows, loss, train, seed,
                                ref_adapter_dir=ref_adapter_dir, callbacks=callbacks)
        probe = trainer.train_dataset.select(range(min(probe_pairs, len(trainer.train_dataset))))
        initial = mean_loss(trainer, probe)
        use_eval = trainer.args.eval_strategy != "no"
        initial_val = mean_loss(trainer, trainer.eval_dataset) if use_eval else None
        recorder = next(c for c in trainer.callback_handler.callbacks if isinstance(c, CurvesCallback))
        recorder.extra.update(initial_loss=initial, initial_val_loss=initial_val)
        result = trainer.train()
        final = mean_loss(trainer, probe)
    count_training(int(result.global_step), trained_tokens(trainer.train_dataset, PAIR_TOKENS, trainer.state.epoch or 0.0))
    guard = next(c for c in trainer.callback_handler.callbacks if isinstance(c, DivergenceGuard))
    check_finite_parameters(trainer.model, knobs=guard.knobs, what=guard.what)  # the model about to be saved
    check_finite_loss(final, knobs=guard.knobs, what=guard.what, name="the final loss on training pairs")
    final_val = mean_loss(trainer, trainer.eval_dataset) if use_eval else None  # of the model saved
    recorder.extra.update(final_loss=final, final_val_loss=final_val)
    recorder.write()
    save_adapter(trainer, out, ref_adapter_dir)
    shutil.rmtree(out / "_trainer", ignore_errors=True)
    step_losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    evals = [(int(h["step"]), float(h["eval_loss"])) for h in trainer.state.log_history if "eval_loss" in h]
    metrics = {
        "initial_loss": initial, "final_loss": final,
        "first_step_loss": step_losses[0] if step_losses else None,
        "last_step_loss": step_losses[-1] if step_losses else None,
        "steps": int(result.global_step), "epochs": float(train["epochs"]),
        "n_train_pairs": len(trainer.train_dataset), "n_val_pairs": len(trainer.eval_dataset) if use_eval else 0,
        "dropped_long_pairs": trainer.dropped_long_pairs,
        "best_eval_loss": trainer.state.best_metric if use_eval else None,
        "initial_val_loss": initial_val, "final_val_loss": final_val,
        "best_eval_step": min(evals, key=lambda e: e[1])[0] if evals and trainer.args.load_best_model_at_end else None,
        # the curves: (optimizer step, logged training loss) and (step, mean validation loss)
        "train_curve": [[int(h["step"]), float(h["loss"])] for h in trainer.state.log_history if "loss" in h],
        "eval_curve": [list(e) for e in evals] if evals else None,
        "seconds": round(time.time() - t0, 3),
    }
    if log:
        log(f"{metrics['n_train_pairs']} pairs, {metrics['steps']} steps, loss {initial:.4f} -> {final:.4f} in {metrics['seconds']:.1f}s")
    return metrics
