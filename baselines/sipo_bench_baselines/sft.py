"""Supervised fine-tuning of a pretrained causal LM into a task's base (SFT) policy.

`train_sft_model` puts a fresh LoRA on the pretrained model, trains it with trl's `SFTTrainer`
on prompt/completion rows (loss on the completion tokens only, EOS appended by trl), keeps the
best validation checkpoint, merges the adapter into the weights and saves model + tokenizer with
`save_pretrained` at the root of `out`: a base stage dir like any other.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from sipo_bench.api import after_prompt, count_training, trained_tokens

from .trainer import ProgressCallback, lora_config


def train_sft_model(out: Path, model_ref: str, rows: Sequence[Mapping[str, str]], val_rows: Sequence[Mapping[str, str]],
                    sft: Mapping[str, Any], seed: int, *, progress: Callable[..., Any] | None = None,
                    log: Callable[[str], None] | None = None) -> dict:
    """`rows` / `val_rows`: `{"prompt": formatted prompt, "completion": response}`; `sft`: the
    fields of :class:`~sipo_bench_baselines.configs.SFTConfig`. Returns metrics."""
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from sipo_bench.api import CurvesCallback

    t0 = time.time()
    out = Path(out)
    rows = list(rows)[: int(sft["max_rows"])] if sft.get("max_rows") else list(rows)
    # trl joins prompt + completion: after a chat template's newline the response starts bare
    rows = [{**r, "completion": after_prompt(r["prompt"], r["completion"])} for r in rows]
    val_rows = [{**r, "completion": after_prompt(r["prompt"], r["completion"])} for r in (val_rows or [])]
    if not rows:
        raise ValueError("no SFT rows")
    disable_progress_bar()
    set_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_ref)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token  # as the released SFT script
    dtype = torch.bfloat16 if sft.get("bf16") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_ref, dtype=dtype)
    batch, accum = int(sft["batch_size"]), int(sft["grad_accum"])
    steps_per_epoch = max(1, math.ceil(math.ceil(len(rows) / batch) / accum))
    use_eval = bool(val_rows) and float(sft.get("eval_every") or 0) > 0
    eval_steps = max(1, round(steps_per_epoch * float(sft["eval_every"]))) if use_eval else None
    args = SFTConfig(
        output_dir=str(out / "_trainer"), seed=seed, data_seed=seed, max_length=int(sft["max_length"]),
        completion_only_loss=True, packing=False, learning_rate=float(sft["learning_rate"]),
        num_train_epochs=float(sft["epochs"]), per_device_train_batch_size=batch, per_device_eval_batch_size=batch,
        gradient_accumulation_steps=accum, lr_scheduler_type=str(sft["lr_scheduler"]),
        warmup_steps=float(sft["warmup_ratio"]), weight_decay=float(sft["weight_decay"]),
        gradient_checkpointing=bool(sft.get("gradient_checkpointing")), bf16=bool(sft.get("bf16")), report_to="none",
        logging_steps=1, disable_tqdm=True, save_strategy="steps" if use_eval else "no",
        eval_strategy="steps" if use_eval else "no", eval_steps=eval_steps, save_steps=eval_steps,
        save_total_limit=2 if use_eval else None, load_best_model_at_end=bool(use_eval and sft.get("load_best")),
        metric_for_best_model="eval_loss", greater_is_better=False, dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(), save_only_model=True)
    total = steps_per_epoch * math.ceil(float(sft["epochs"]))
    with contextlib.ExitStack() as stack:
        callbacks = [ProgressCallback(stack.enter_context(progress(total, f"sft {out.name}")))] if progress else []
        recorder = CurvesCallback(out, "SFTTrainer")
        callbacks.append(recorder)
        trainer = SFTTrainer(model=model, args=args, processing_class=tok, peft_config=lora_config(sft),
                             train_dataset=Dataset.from_list([dict(r) for r in rows]),
                             eval_dataset=Dataset.from_list([dict(r) for r in val_rows]) if use_eval else None,
                             callbacks=callbacks)
        trainer.remove_callback(PrinterCallback)
        probe = trainer.train_dataset.select(range(min(64, len(trainer.train_dataset))))
        initial = float(trainer.evaluate(eval_dataset=probe, metric_key_prefix="probe")["probe_loss"])
        result = trainer.train()
        final = float(trainer.evaluate(eval_dataset=probe, metric_key_prefix="probe")["probe_loss"])
    count_training(int(result.global_step), trained_tokens(trainer.train_dataset, {"input_ids": 1}, trainer.state.epoch or 0.0))
    recorder.extra.update(initial_loss=initial, final_loss=final)
    recorder.write()
    merged = trainer.model.merge_and_unload()
    merged.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    shutil.rmtree(out / "_trainer", ignore_errors=True)
    metrics = {"sft_from": model_ref, "initial_loss": initial, "final_loss": final, "steps": int(result.global_step),
               "n_rows": len(rows), "n_val_rows": len(val_rows) if use_eval else 0,
               "best_eval_loss": trainer.state.best_metric if use_eval else None,
               "sft_seconds": round(time.time() - t0, 3)}
    if log:
        log(f"SFT of {model_ref} on {len(rows)} rows, {metrics['steps']} steps, loss {initial:.4f} -> {final:.4f}")
    return metrics
