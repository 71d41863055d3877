"""Learned Bradley-Terry reward models: the reward RL methods train against on tasks whose
evaluation scorer must stay unseen (`reward_source: learned`).

One cached stage per objective and seed, `reward-model[objective,seed=s]`: a scalar score head
on the base model (`AutoModelForSequenceClassification`, num_labels=1) with a LoRA on the
attention projections, trained with trl's `RewardTrainer` (loss −log σ(r(x, y_w) − r(x, y_l)))
on the objective's training pairs (ties dropped, `dpo_pairs`: the pairs first-round DPO sees),
then measured on the objective's validation pairs (accuracy = share of pairs whose preferred
response scores higher; also before training, where a random head sits near 0.5).

The stage dir holds the peft adapter (LoRA + the score head, peft's `modules_to_save`) and
`reward_model.json` with the mean and standard deviation of the trained model's scores over
the training responses: :class:`LearnedRewardModel` returns rewards standardised with them, so
RL's KL coefficient meets rewards of unit scale whatever the head's raw scale.

Text convention (one place, used for training and scoring): the formatted prompt, one space,
the response without surrounding whitespace, the tokenizer's EOS (trl appends it; the score is
read at the last non-pad token, i.e. at EOS).

Planning (`reward_model_stages`) is torch-free; the stage function imports torch when it runs.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from sipo_bench.api import Stage, StageContext, after_prompt, count_training, trained_tokens

FN = "sipo_bench_baselines.reward_model:reward_model_stage"
META = "reward_model.json"


def reward_model_stages(ctx: Any, options: Mapping[str, Any]) -> dict[str, Stage]:
    """{objective: the `reward-model[objective,seed]` stage} of a method's fit context, one per
    objective in task order; `options` is `RewardedSoupsConfig.reward_model()` (its cache key
    holds only these, the task and the seed)."""
    from .common import task_config

    return {o.name: ctx.stage(f"reward-model[{o.name},seed={ctx.seed}]", FN,
                              {**task_config(ctx), "seed": ctx.seed, "objective": o.name, "rm": dict(options)},
                              {"data": ctx.data, "base": ctx.base})
            for o in ctx.objectives}


def response_text(prompt: str, response: str) -> str:
    """The response as the reward model reads it after the formatted `prompt`: one leading space,
    no other surrounding whitespace (dataset responses keep their conventional leading space,
    generations come `.strip()`-ed: both end up the same), the body alone after a prompt that
    ends in whitespace (`after_prompt`)."""
    return after_prompt(prompt, " " + str(response).strip())


# --- Scoring --------------------------------------------------------------------------------


def _score_texts(model: Any, tok: Any, texts: Sequence[str], batch_size: int,
                 progress: Callable[[int], Any] | None = None) -> list[float]:
    """Scalar scores of full texts (prompt + response + EOS), right-padded as trl's reward
    collator pads, in batches of `batch_size` (longest first, so padding stays small)."""
    import torch

    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = [0.0] * len(texts)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                enc = tok([texts[i] for i in idx], padding=True, return_tensors="pt")
                logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                               use_cache=False).logits
                for i, v in zip(idx, logits.squeeze(-1).float().tolist()):
                    out[i] = float(v)
                if progress is not None:
                    progress(len(idx))
    finally:
        model.train(was_training)
    return out


def _load(base_dir: Path | str, dtype: Any = None):
    """(sequence-classification model with a fresh one-output head, right-padding tokenizer)."""
    import torch
    from sipo_bench.api import resolve_model_path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    model_id, tok_id = resolve_model_path(base_dir, with_tokenizer=True)
    tok = AutoTokenizer.from_pretrained(tok_id)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    with suppress_seqcls_warning():
        model = AutoModelForSequenceClassification.from_pretrained(model_id, num_labels=1,
                                                                    dtype=dtype or torch.float32)
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


class LearnedRewardModel:
    """A trained `reward-model` stage dir, loaded for scoring: `rewards(prompts, responses)`
    gives standardised scores ((r − mean) / std over the training responses)."""

    def __init__(self, base_dir: Path | str, rm_dir: Path | str, batch_size: int = 32):
        import torch
        from peft import PeftModel

        from sipo_bench.api import inference_dtype, torch_device

        meta = json.loads((Path(rm_dir) / META).read_text())
        device = torch_device()
        model, self.tok = _load(base_dir, inference_dtype(device))
        self.model = PeftModel.from_pretrained(model, str(rm_dir)).to(device).eval()
        self.model.requires_grad_(False)
        self.mean, self.std = float(meta["mean"]), float(meta["std"])
        self.batch_size = batch_size

    def scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Raw scores of (formatted prompt, response) pairs."""
        texts = [p + response_text(p, r) + self.tok.eos_token for p, r in zip(prompts, responses)]
        return _score_texts(self.model, self.tok, texts, self.batch_size)

    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Standardised scores: the RL reward."""
        return [(s - self.mean) / self.std for s in self.scores(prompts, responses)]


# --- Training -------------------------------------------------------------------------------


def _accuracy(model: Any, tok: Any, rows: Sequence[Mapping[str, str]], batch_size: int) -> float | None:
    if not rows:
        return None
    texts = [r["prompt"] + r[k] + tok.eos_token for k in ("chosen", "rejected") for r in rows]
    s = _score_texts(model, tok, texts, batch_size)
    n = len(rows)
    return sum(s[i] > s[n + i] for i in range(n)) / n


def train_reward_model(out: Path, base_dir: Path | str, train_rows: list[dict], val_rows: list[dict],
                       rm: Mapping[str, Any], seed: int, *, progress: Callable[..., Any] | None = None,
                       log: Callable[[str], None] | None = None, callbacks: Sequence[Any] = ()) -> dict:
    """Train a Bradley-Terry reward model on `train_rows` ({"prompt": formatted, "chosen",
    "rejected"}) with trl's `RewardTrainer` and save it (adapter + score head) at the root of
    `out` with `reward_model.json`. `rm`: the options of `RewardedSoupsConfig.reward_model()`.
    Returns metrics: training and validation accuracy before and after, loss, steps, counts."""
    import math
    import shutil

    import numpy as np
    import torch
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar
    from peft import LoraConfig
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import RewardConfig, RewardTrainer

    from sipo_bench.api import CurvesCallback, torch_device

    from .divergence import DivergenceGuard, check_finite_parameters
    from .trainer import ProgressCallback

    t0 = time.time()
    out = Path(out)
    if rm.get("max_pairs"):
        train_rows = train_rows[: int(rm["max_pairs"])]
    if not train_rows:
        raise ValueError("no training pairs for the reward model (every pair was a tie for this objective?)")
    rows = [{"prompt": r["prompt"], "chosen": response_text(r["prompt"], r["chosen"]),
             "rejected": response_text(r["prompt"], r["rejected"])}
            for r in train_rows]
    val = [{"prompt": r["prompt"], "chosen": response_text(r["prompt"], r["chosen"]),
             "rejected": response_text(r["prompt"], r["rejected"])}
           for r in val_rows]
    disable_progress_bar()
    set_seed(seed)  # the score head is initialised at random when the model loads
    model, tok = _load(base_dir, torch.bfloat16 if rm.get("bf16") else torch.float32)
    batch = int(rm["batch_size"])
    steps = max(1, math.ceil(math.ceil(len(rows) / batch) * float(rm["epochs"])))
    args = RewardConfig(
        output_dir=str(out / "_trainer"), seed=seed, data_seed=seed, learning_rate=float(rm["learning_rate"]),
        num_train_epochs=float(rm["epochs"]), per_device_train_batch_size=batch, per_device_eval_batch_size=batch,
        max_length=int(rm["max_length"]), lr_scheduler_type="cosine", warmup_steps=0.1, weight_decay=0.0,
        gradient_checkpointing=bool(rm.get("gradient_checkpointing")), bf16=bool(rm.get("bf16")),
        report_to="none", logging_steps=1, logging_nan_inf_filter=False, disable_tqdm=True, save_strategy="no",
        eval_strategy="no", dataloader_num_workers=0, use_cpu=torch_device().type != "cuda", dataset_num_proc=None)
    peft_config = LoraConfig(r=int(rm["lora_r"]), lora_alpha=float(rm["lora_alpha"]),
                             lora_dropout=float(rm["lora_dropout"]), target_modules=list(rm["target_modules"]),
                             bias="none", task_type="SEQ_CLS")
    with contextlib.ExitStack() as stack:
        guard = DivergenceGuard({"rm_learning_rate": rm["learning_rate"]}, what="reward-model training")
        recorder = CurvesCallback(out, "RewardTrainer")
        cbs = [*callbacks, guard, recorder]
        if progress is not None:
            cbs.append(ProgressCallback(stack.enter_context(progress(steps, f"reward model {out.name}"))))
        trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                                peft_config=peft_config, callbacks=cbs)
        trainer.remove_callback(PrinterCallback)
        probe = rows[:256]
        initial_train_acc = _accuracy(trainer.model, tok, probe, batch)
        initial_val_acc = _accuracy(trainer.model, tok, val, batch)
        result = trainer.train()
    count_training(int(result.global_step),
                   trained_tokens(trainer.train_dataset, {"chosen_ids": 1, "rejected_ids": 1}, trainer.state.epoch or 0.0))
    model = trainer.model
    check_finite_parameters(model, knobs=guard.knobs, what=guard.what)
    train_acc = _accuracy(model, tok, probe, batch)
    val_acc = _accuracy(model, tok, val, batch)
    recorder.extra.update(initial_train_accuracy=initial_train_acc, train_accuracy=train_acc,
                          initial_val_accuracy=initial_val_acc, val_accuracy=val_acc)
    recorder.write()
    train_scores = np.asarray(_score_texts(model, tok, [r["prompt"] + r[k] + tok.eos_token for r in rows
                                                        for k in ("chosen", "rejected")], batch))
    if not np.all(np.isfinite(train_scores)):
        raise RuntimeError("the reward model's scores are not finite after training (lower rm_learning_rate)")
    std = float(train_scores.std())
    if std <= 0:
        raise RuntimeError("the reward model gives every training response the same score: it cannot rank")
    model.save_pretrained(str(out))
    (out / META).write_text(json.dumps({"objective_pairs": len(rows), "mean": float(train_scores.mean()), "std": std,
                                        "text": "formatted prompt + ' ' + response.strip() + eos"}, indent=1))
    shutil.rmtree(out / "_trainer", ignore_errors=True)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    k = max(1, len(losses) // 4)
    metrics = {
        "n_train_pairs": len(rows), "n_val_pairs": len(val), "steps": int(result.global_step),
        "initial_train_accuracy": initial_train_acc, "train_accuracy": train_acc,
        "initial_val_accuracy": initial_val_acc, "val_accuracy": val_acc,
        "early_loss": sum(losses[:k]) / k if losses else None, "late_loss": sum(losses[-k:]) / k if losses else None,
        "score_mean": float(train_scores.mean()), "score_std": std, "seconds": round(time.time() - t0, 3),
    }
    if log:
        log(f"{len(rows)} pairs, {metrics['steps']} steps, val accuracy {initial_val_acc} -> {val_acc} "
            f"({len(val)} val pairs) in {metrics['seconds']:.1f}s")
    return metrics


def reward_model_stage(ctx: StageContext) -> dict:
    """config: task, task_options, seed, objective, rm; inputs: data, base."""
    from .pairs import dpo_pairs, split_rows, task_of

    cfg, task = ctx.config, task_of(ctx)
    data = ctx.inputs["data"]
    train = dpo_pairs(split_rows(data, "train"), cfg["objective"], task.format_prompt)
    val = dpo_pairs(split_rows(data, "val"), cfg["objective"], task.format_prompt)
    return {"objective": cfg["objective"], **train_reward_model(
        ctx.out, ctx.inputs["base"], train, val, cfg["rm"], int(cfg["seed"]), progress=ctx.progress, log=ctx.log)}
