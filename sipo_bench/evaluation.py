"""The evaluation stages every method shares: generate on held-out prompts, then score."""

from __future__ import annotations

import numpy as np

from .config import build
from .interfaces import DecodingConfig, ResolvedPolicy, TaskData
from .stages import StageContext, read_jsonl, write_jsonl


def test_prompts(data_dir, limit: int | None) -> list[str]:
    rows = read_jsonl(TaskData(data_dir).test)
    return [r["prompt"] for r in (rows[:limit] if limit else rows)]


def generate_stage(ctx: StageContext):
    """config: policy, decoding, generator, task, task_options, seed, max_test_prompts.
    inputs: data + the policy's stages. Writes generations.jsonl (prompt, response)."""
    cfg = ctx.config
    task = ctx.runtime.task(cfg["task"], cfg["task_options"])
    prompts = test_prompts(ctx.inputs["data"], cfg.get("max_test_prompts"))
    policy = ResolvedPolicy.from_config(cfg["policy"], ctx.inputs)
    decoding = build(DecodingConfig, cfg["decoding"], "decoding")
    gen = ctx.runtime.generator(cfg["generator"])
    gen.reserve(**dict(ctx.stage.tags.get("generator_hints") or {}))  # what the whole run asks (plan_run)
    with ctx.progress(len(prompts), f"generate {ctx.stage.name}") as advance:
        outs = gen.generate(policy, [task.format_prompt(p) for p in prompts], decoding,
                            seed=int(cfg["seed"]), progress=advance)
    write_jsonl(ctx.out / "generations.jsonl", [{"prompt": p, "response": o[0]} for p, o in zip(prompts, outs)])
    return {"n": len(prompts)}


def score_texts(runtime, task, prompts, responses, progress=None) -> dict[str, np.ndarray]:
    """Scores of every objective of `task`, from its scorers, as arrays aligned with inputs."""
    scores: dict[str, np.ndarray] = {}
    declared = {o.name: o.higher_is_better for o in task.objectives()}
    for name, options in task.scorers():
        scorer = runtime.scorer(name, options)
        for obj, hib in (scorer.directions() or {}).items():
            if obj in declared and declared[obj] != hib:
                raise RuntimeError(f"scorer {name!r} scores {obj!r} as {'higher' if hib else 'lower'} is better, "
                                   f"but task {task.name!r} declares the opposite")
        for obj, vals in scorer.score(prompts, responses, progress=progress).items():
            if obj in task.objective_names:
                scores[obj] = np.asarray(vals, dtype=float)
    missing = [o for o in task.objective_names if o not in scores]
    if missing:
        raise RuntimeError(f"task {task.name!r}: no scorer covers objective(s) {missing}")
    return scores


def read_generations(generations_dir) -> tuple[list[str], list[str]]:
    """(raw prompts, responses) of a `generate` stage, aligned (what extra scorers read)."""
    rows = read_jsonl(generations_dir / "generations.jsonl")
    return [r["prompt"] for r in rows], [r["response"] for r in rows]


def score_stage(ctx: StageContext):
    """config: task, task_options; inputs: generations. Writes scores.jsonl; returns the means."""
    cfg = ctx.config
    task = ctx.runtime.task(cfg["task"], cfg["task_options"])
    rows = read_jsonl(ctx.inputs["generations"] / "generations.jsonl")
    prompts, responses = [r["prompt"] for r in rows], [r["response"] for r in rows]
    with ctx.progress(len(rows), f"score {ctx.stage.name}") as advance:
        scores = score_texts(ctx.runtime, task, prompts, responses, progress=advance)
    names = task.objective_names
    write_jsonl(ctx.out / "scores.jsonl", [
        {"prompt": p, "response": r, **{o: float(scores[o][i]) for o in names}}
        for i, (p, r) in enumerate(zip(prompts, responses))
    ])
    return {"mean": [float(np.mean(scores[o])) if len(rows) else float("nan") for o in names],
            "objectives": names, "n": len(rows)}
