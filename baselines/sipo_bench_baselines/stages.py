"""Stage functions of the baseline methods (run by the executor; they import torch).

Every function reads its stage config (see the planning code in the method modules), builds
preference pairs from the task's `train.jsonl` / `val.jsonl`, trains one LoRA adapter and saves
it at the root of `ctx.out`, and returns the training metrics.

Pair construction (`labels[o]` is the index of the response objective `o` prefers, null = tie):
- DPO on objective o: chosen = responses[labels[o]]; ties dropped.
- MODPO: DPO pairs of the main objective, plus column `margins` = r_j(y_w) − r_j(y_l) for every
  other objective j with w_j > 0 (implicit rewards of j's DPO model, precomputed once with the
  generation backend's `implicit_rewards`; responses with EOS, exactly as trained).
- DPO-LW: chosen/rejected = responses[0]/[1], column `signs` = +1/−1/0 per objective (0 = tie);
  pairs where every objective with w_i > 0 ties are dropped (their loss is 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from sipo_bench.api import StageContext, TaskData, count

from .pairs import dpo_pairs, lw_pairs, split_rows, task_of


#: the generation backend that scores implicit rewards (any generator with `implicit_rewards`)
BACKEND = "transformers"


def add_margins(pairs: list[dict], gen: Any, base_dir: Path, adapter_dirs: Sequence[Path], beta: float, batch_size: int,
                progress: Any = None) -> list[dict]:
    """Column `margins` = [r_j(chosen) − r_j(rejected) for each adapter j] (MODPO), the implicit
    rewards scored by `gen` (a generator with `implicit_rewards`, e.g. `runtime.generator("transformers")`)."""
    if not pairs:
        return pairs
    n = len(pairs)
    prompts = [p["prompt"] for p in pairs] * 2
    responses = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    r = gen.implicit_rewards(base_dir, list(adapter_dirs), prompts, responses, beta, batch_size=batch_size,
                         progress=progress)  # (k-1, 2n)
    margins = r[:, :n] - r[:, n:]
    return [{**p, "margins": [float(x) for x in margins[:, i]]} for i, p in enumerate(pairs)]


def _train(ctx: StageContext, train_rows: list[dict], val_rows: list[dict], loss) -> dict:
    from .trainer import train_preference_adapter

    cfg = ctx.config
    return train_preference_adapter(ctx.out, ctx.inputs["base"], train_rows, val_rows, loss, cfg["train"],
                                    int(cfg["seed"]), progress=ctx.progress, log=ctx.log)


def dpo_stage(ctx: StageContext) -> dict:
    """config: task, task_options, seed, objective, beta, train; inputs: data, base."""
    from .losses import DPOLoss

    cfg, task = ctx.config, task_of(ctx)
    data = ctx.inputs["data"]
    train = dpo_pairs(split_rows(data, "train"), cfg["objective"], task.format_prompt)
    val = dpo_pairs(split_rows(data, "val"), cfg["objective"], task.format_prompt)
    return {"objective": cfg["objective"], **_train(ctx, train, val, DPOLoss(beta=float(cfg["beta"])))}


def modpo_stage(ctx: StageContext) -> dict:
    """config: task, task_options, seed, w, main, others (names, aligned with inputs
    `margin0`, `margin1`, ...), w_main, w_others, beta, margin_batch_size, train;
    inputs: data, base, margin<j> (the other objectives' DPO adapters)."""
    from .losses import MODPOLoss

    cfg, task = ctx.config, task_of(ctx)
    data, base = ctx.inputs["data"], ctx.inputs["base"]
    adapters = [ctx.inputs[f"margin{j}"] for j in range(len(cfg["others"]))]
    beta = float(cfg["beta"])
    train = dpo_pairs(split_rows(data, "train"), cfg["main"], task.format_prompt)
    val = dpo_pairs(split_rows(data, "val"), cfg["main"], task.format_prompt)
    if cfg["train"].get("max_pairs"):
        train = train[: int(cfg["train"]["max_pairs"])]
    use_val = float(cfg["train"].get("eval_every") or 0) > 0
    with ctx.progress(2 * (len(train) + (len(val) if use_val else 0)), f"margins {ctx.stage.name}") as advance:
        gen = ctx.runtime.generator(BACKEND)
        train = add_margins(train, gen, base, adapters, cfg["margin_beta"], int(cfg["margin_batch_size"]), advance)
        val = add_margins(val, gen, base, adapters, cfg["margin_beta"], int(cfg["margin_batch_size"]), advance) if use_val else []
    loss = MODPOLoss(beta=beta, w_main=float(cfg["w_main"]), w_others=tuple(float(x) for x in cfg["w_others"]))
    return {"w": cfg["w"], "main": cfg["main"], **_train(ctx, train, val, loss)}


def dpo_lw_stage(ctx: StageContext) -> dict:
    """config: task, task_options, seed, w, objectives, beta, train; inputs: data, base."""
    from .losses import DPOLWLoss

    cfg, task = ctx.config, task_of(ctx)
    data = ctx.inputs["data"]
    objs, w = list(cfg["objectives"]), [float(x) for x in cfg["w"]]
    train = lw_pairs(split_rows(data, "train"), objs, w, task.format_prompt)
    val = lw_pairs(split_rows(data, "val"), objs, w, task.format_prompt)
    return {"w": w, **_train(ctx, train, val, DPOLWLoss(beta=float(cfg["beta"]), weights=tuple(w)))}


def rl_stage(ctx: StageContext) -> dict:
    """config: task, task_options, seed, objective, higher_is_better, scorers, reward_source, rl;
    inputs: data, base, and with reward_source `learned` the objective's `reward_model` stage.

    `learned`: the reward is the learned reward model's standardised score (it ranks by the
    objective's pair labels, so higher is always better). `judge`: the score of the first of
    the task's scorers that covers the objective, in its own direction. On oracle tasks the
    judge's mean score of the rollouts is also recorded with a learned reward (diagnostic only:
    it never reaches the gradient)."""
    from .rl import train_rloo_adapter

    cfg, task = ctx.config, task_of(ctx)
    objective, source = cfg["objective"], cfg["reward_source"]
    rows = split_rows(ctx.inputs["data"], "train")
    prompts = list(dict.fromkeys(r["prompt"] for r in rows))  # distinct, in file order
    judge = None
    if source == "judge" or task.oracle:
        judge = next((s for s in (ctx.runtime.scorer(n, o) for n, o in cfg["scorers"]) if objective in s.objectives()),
                     None)
        if judge is None:
            raise RuntimeError(f"no scorer of task {cfg['task']!r} covers objective {objective!r}")

    def judge_scores(raw_prompts: list[str], responses: list[str]) -> list[float]:
        count("scorer_calls", len(responses))
        return [float(x) for x in judge.score(raw_prompts, responses)[objective]]

    observed: list[float] = []
    if source == "learned":
        from .reward_model import LearnedRewardModel

        rm = LearnedRewardModel(ctx.inputs["base"], ctx.inputs["reward_model"])
        higher_is_better = True

        def reward(raw_prompts: list[str], responses: list[str]) -> list[float]:
            if judge is not None:  # what the rollouts truly score: recorded, not trained on
                observed.append(sum(judge_scores(raw_prompts, responses)) / max(1, len(responses)))
            return rm.rewards([task.format_prompt(p) for p in raw_prompts], responses)
    elif source == "judge":
        reward, higher_is_better = judge_scores, bool(cfg["higher_is_better"])
    else:
        raise ValueError(f"`reward_source`: expected 'learned' or 'judge', got {source!r}")

    metrics = train_rloo_adapter(ctx.out, ctx.inputs["base"], prompts, task.format_prompt, reward, cfg["rl"],
                                 int(cfg["seed"]), higher_is_better=higher_is_better, progress=ctx.progress,
                                 log=ctx.log)
    out = {"objective": objective, "reward_source": source, **metrics}
    if observed:
        k = max(1, len(observed) // 4)
        out["judge_early_mean"] = sum(observed[:k]) / k
        out["judge_late_mean"] = sum(observed[-k:]) / k
    return out
