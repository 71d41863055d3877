"""The evaluation stages every method shares: generate on held-out prompts, score, and measure
the evaluation noise of each method's HV (a bootstrap over the test prompts)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..configs.schema import build
from ..contract.interfaces import DecodingConfig, ResolvedPolicy, TaskData
from ..execution.compute import count
from ..execution.stages import StageContext, read_jsonl, write_jsonl


def test_prompts(data_dir, limit: int | None) -> list[str]:
    rows = read_jsonl(TaskData(data_dir).test)
    return [r["prompt"] for r in (rows[:limit] if limit else rows)]


def eval_prompts(data_dir, limit: int | None, split: str = "test") -> list[str]:
    """The prompts a point is evaluated on: the test prompts, or (`eval_split: val`, for tuning)
    the distinct prompts of the validation pairs in their order; at most `limit`."""
    if split == "test":
        return test_prompts(data_dir, limit)
    path = TaskData(data_dir).val
    if not path.is_file():
        raise ValueError(f"`eval_split`: expected the task's data to hold val.jsonl to evaluate on, got none in {data_dir}")
    prompts = list(dict.fromkeys(r["prompt"] for r in read_jsonl(path)))
    if not prompts:
        raise ValueError(f"`eval_split`: expected validation pairs to evaluate on, got an empty {path.name}")
    return prompts[:limit] if limit else prompts


def generate_stage(ctx: StageContext):
    """config: policy, decoding, generator, task, task_options, seed, max_test_prompts.
    inputs: data + the policy's stages. Writes generations.jsonl: one row per (prompt, sample)
    `{prompt, response, prompt_index, sample}` (`decoding.samples_per_prompt` samples each)."""
    cfg = ctx.config
    task = ctx.runtime.task(cfg["task"], cfg["task_options"])
    prompts = eval_prompts(ctx.inputs["data"], cfg.get("max_test_prompts"), cfg.get("split", "test"))
    policy = ResolvedPolicy.from_config(cfg["policy"], ctx.inputs)
    decoding = build(DecodingConfig, cfg["decoding"], "decoding")
    n = decoding.samples_per_prompt
    gen = ctx.runtime.generator(cfg["generator"])
    gen.reserve(**dict(ctx.stage.tags.get("generator_hints") or {}))  # what the whole run asks (plan_run)
    with ctx.progress(len(prompts), f"generate {ctx.stage.name}") as advance:
        outs = gen.generate(policy, [task.format_prompt(p) for p in prompts], decoding, num_return_sequences=n,
                            seed=int(cfg["seed"]), progress=advance)
    if len(outs) != len(prompts) or any(len(o) != n for o in outs):
        raise RuntimeError(f"generator {cfg['generator']!r} returned {[len(o) for o in outs][:8]} responses for "
                           f"{len(prompts)} prompts; expected {n} per prompt")
    write_jsonl(ctx.out / "generations.jsonl", [{"prompt": p, "response": o[j], "prompt_index": i, "sample": j}
                                                for i, (p, o) in enumerate(zip(prompts, outs)) for j in range(n)])
    return {"n": len(prompts), "samples_per_prompt": n}


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
        count("scorer_calls", len(responses))
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
def per_prompt(rows: list[dict], scores: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """(n_prompts, k) array: each prompt's mean score over its samples (rows grouped by
    `prompt_index`, in order of first appearance; a row without one is its own prompt)."""
    groups: dict[Any, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.get("prompt_index", f"row{i}"), []).append(i)
    mat = np.stack([scores[o] for o in names], axis=1) if rows else np.zeros((0, len(names)))
    return np.array([mat[idx].mean(axis=0) for idx in groups.values()]).reshape(len(groups), len(names))


def score_stage(ctx: StageContext):
    """config: task, task_options; inputs: generations. Writes scores.jsonl (one row per
    response, with its `prompt_index`); returns per objective the mean over prompts of the
    per-prompt mean score (`mean`) and its standard error over prompts (`se`: sample sd / sqrt(n),
    None with one prompt), the number of prompts `n` and of responses `n_responses`."""
    cfg = ctx.config
    task = ctx.runtime.task(cfg["task"], cfg["task_options"])
    rows = read_jsonl(ctx.inputs["generations"] / "generations.jsonl")
    prompts, responses = [r["prompt"] for r in rows], [r["response"] for r in rows]
    with ctx.progress(len(rows), f"score {ctx.stage.name}") as advance:
        scores = score_texts(ctx.runtime, task, prompts, responses, progress=advance)
    names = task.objective_names
    write_jsonl(ctx.out / "scores.jsonl", [
        {"prompt": p, "response": r, "prompt_index": rows[i].get("prompt_index", i), **{o: float(scores[o][i]) for o in names}}
        for i, (p, r) in enumerate(zip(prompts, responses))
    ])
    by_prompt = per_prompt(rows, scores, names)
    n = by_prompt.shape[0]
    se = (by_prompt.std(axis=0, ddof=1) / np.sqrt(n)).tolist() if n > 1 else None
    return {"mean": by_prompt.mean(axis=0).tolist() if n else [float("nan")] * len(names), "se": se,
            "objectives": names, "n": n, "n_responses": len(rows)}


def read_prompt_scores(score_dir, names: list[str]) -> np.ndarray:
    """(n_prompts, k) per-prompt mean scores of a finished score stage (see :func:`per_prompt`)."""
    rows = read_jsonl(score_dir / "scores.jsonl")
    return per_prompt(rows, {o: np.array([float(r[o]) for r in rows]) for o in names}, names)


def hv_noise_stage(ctx: StageContext):
    """HV's evaluation-noise SE of one method on one seed: a bootstrap over test prompts
    (:func:`sipo_bench.scoring.stats.prompt_bootstrap_hv`), the same prompt resample applied to every
    point of the method and, when the reference point is the base policy's mean test scores
    (input `ref`), to the base policy's per-prompt scores too.

    config: objectives, maximize, ref_point (k-vector, or None = input `ref`), floor (or None),
    replicates, seed; inputs: `p0`, `p1`, ... the method's score stages on this seed (+ `ref`).
    Returns `{hypervolume: {se, ...}, hypervolume_floor: {se, ...} or None, n_prompts}`."""
    from .stats import prompt_bootstrap_hv

    cfg = ctx.config
    names, maximize = list(cfg["objectives"]), [bool(x) for x in cfg["maximize"]]
    points = [read_prompt_scores(ctx.inputs[f"p{j}"], names) for j in range(cfg["n_points"])]
    prompts = [[r["prompt"] for r in read_jsonl(ctx.inputs[f"p{j}"] / "scores.jsonl")] for j in range(cfg["n_points"])]
    ref = cfg["ref_point"]
    if ref is None:
        ref = read_prompt_scores(ctx.inputs["ref"], names)
        prompts.append([r["prompt"] for r in read_jsonl(ctx.inputs["ref"] / "scores.jsonl")])
    if any(p != prompts[0] for p in prompts):
        raise RuntimeError("the score stages of one method and seed were not made on the same test prompts; "
                           "a prompt bootstrap needs them aligned")
    out = {"n_prompts": int(points[0].shape[0]),
           "hypervolume": prompt_bootstrap_hv(points, ref, maximize, replicates=cfg["replicates"], seed=cfg["seed"]),
           "hypervolume_floor": None}
    if cfg.get("floor") is not None:
        out["hypervolume_floor"] = prompt_bootstrap_hv(points, cfg["floor"], maximize, replicates=cfg["replicates"],
                                                       seed=cfg["seed"])
    return out


def noise_stage(label: str, seed: int, scores: list, base_score, fixed_ref, task, replicates: int,
                resources: Any = None):
    """Plan the :func:`hv_noise_stage` of one method (`label`) on one seed over its score
    stages; `fixed_ref` is the config's or task's reference point, or None for the base
    policy's per-prompt scores (`base_score`, resampled with the points)."""
    from ..execution.stages import Stage

    objectives = task.objectives()
    inputs = {f"p{j}": s for j, s in enumerate(scores)}
    if fixed_ref is None:
        inputs["ref"] = base_score
    config = {"objectives": [o.name for o in objectives], "maximize": [o.higher_is_better for o in objectives],
              "ref_point": None if fixed_ref is None else [float(x) for x in fixed_ref],
              "floor": task.floor(), "replicates": int(replicates), "seed": int(seed), "n_points": len(scores)}
    return Stage(f"eval-noise[{label},seed={seed}]", "sipo_bench.evaluation:hv_noise_stage", config, inputs,
                 tags={"method": label, "seed": seed}, **({"resources": resources} if resources is not None else {}))
