"""SIPO's stage functions. Each writes a human-readable JSONL artefact into `ctx.out` and
returns its counts. All generation and scoring is batched through the run's transformers
backend (`ctx.runtime.generator("transformers")`), which loads the base model once per process
and evaluates adapters on it.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sipo_bench.api import (DecodingConfig, ResolvedPolicy, StageContext, TaskData, as_response, read_jsonl,
                            response_body, score_texts, test_prompts, write_jsonl)

from .selection import (NEAR_DUPLICATE, best_per_prompt, dominates_both, is_conflicting, keep_rewrite, original_control_pairs,
                        precision_recall, self_control_pairs, true_dominance, word_similarity)

BACKEND = "transformers"


def _task(ctx: StageContext):
    return ctx.runtime.task(ctx.config["task"], ctx.config["task_options"])


def _endpoints(ctx: StageContext) -> list[Path]:
    k = len(ctx.config["objectives"])
    return [ctx.inputs[f"adapter{i}"] for i in range(k)]


def _policy(ctx: StageContext, w: Sequence[float]) -> ResolvedPolicy:
    """The base MOA method's policy at w over this round's endpoints."""
    adapters = tuple((a, float(x)) for a, x in zip(_endpoints(ctx), w))
    return ResolvedPolicy(ctx.inputs["base"], adapters, ctx.config["combine"], dict(ctx.config["options"]))


def _decoding(cfg: dict) -> DecodingConfig:
    max_length = cfg.get("max_length")
    return DecodingConfig(greedy=bool(cfg["greedy"]), max_new_tokens=int(cfg["max_new_tokens"]),
                          temperature=float(cfg["temperature"]), top_p=float(cfg["top_p"]),
                          batch_size=int(cfg["batch_size"]), max_length=None if max_length is None else int(max_length))


def _cut(text: str, stop: str | None) -> str:
    """A review or rewrite up to the task's stop text (released: "Question:"), stripped."""
    return (text.split(stop)[0] if stop else text).strip()


def _generate_by_weight(ctx: StageContext, rows: list[dict], prompt_of, seed: int, desc: str) -> list[str]:
    """Generate one response per row under the policy at the row's `w` (batched per w)."""
    gen = ctx.runtime.generator(BACKEND)
    dec = _decoding(ctx.config["decoding"])
    out: list[str] = [""] * len(rows)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[tuple(r["w"])].append(i)
    with ctx.progress(len(rows), desc) as advance:
        for j, (w, idx) in enumerate(sorted(groups.items())):
            texts = gen.generate(_policy(ctx, w), [prompt_of(rows[i]) for i in idx], dec, seed=seed * 7919 + j,
                                 progress=advance)
            for i, t in zip(idx, texts):
                out[i] = t[0]
    return out


# --- 2. Sampling ----------------------------------------------------------------------------


def sample_stage(ctx: StageContext) -> dict:
    """One candidate per conflicting training prompt, sample weight and repeat."""
    cfg, task = ctx.config, _task(ctx)
    objectives = cfg["objectives"]
    rows = read_jsonl(TaskData(ctx.inputs["data"]).train)
    conflicting = [r for r in rows if is_conflicting(r["labels"], objectives)]
    if cfg["max_prompts"]:
        conflicting = conflicting[: int(cfg["max_prompts"])]
    if not conflicting:  # nothing to self-improve on: the endpoints stay as they are
        ctx.log(f"no conflicting training pairs for objectives {objectives}: SIPO has nothing to rewrite")
        write_jsonl(ctx.out / "candidates.jsonl", [])
        return {"conflicting_prompts": 0, "candidates": 0}
    gen = ctx.runtime.generator(BACKEND)
    dec = _decoding(cfg["decoding"])
    n = int(cfg["candidates_per_weight"])
    prompts = [task.format_prompt(r["prompt"]) for r in conflicting]
    out = []
    with ctx.progress(len(prompts) * len(cfg["sample_weights"]), "sipo sample") as advance:
        for j, w in enumerate(cfg["sample_weights"]):
            texts = gen.generate(_policy(ctx, w), prompts, dec, num_return_sequences=n,
                                 seed=int(cfg["seed"]) * 7919 + 101 * int(cfg["round"]) + j, progress=advance)
            for pid, (r, cands) in enumerate(zip(conflicting, texts)):
                for c in cands:
                    out.append({"pid": pid, "prompt": r["prompt"], "responses": [as_response(x) for x in r["responses"]],
                                "labels": r["labels"], "w": list(w), "candidate": as_response(c)})
    write_jsonl(ctx.out / "candidates.jsonl", out)
    return {"conflicting_prompts": len(conflicting), "candidates": len(out)}


# --- 3. Review ------------------------------------------------------------------------------


def review_stage(ctx: StageContext) -> dict:
    """The review model writes suggestions for every candidate: the task's (one-shot) review
    prompt with the candidate inserted as stored (response convention, as the released code
    inserts the decoded text after `ASSISTANT:`), the task's forced review start appended (the
    model continues it) and kept as the review's first words; the review is cut at the task's
    stop text."""
    cfg, task = ctx.config, _task(ctx)
    rows = read_jsonl(ctx.inputs["candidates"] / "candidates.jsonl")
    if not rows:
        write_jsonl(ctx.out / "reviews.jsonl", [])
        return {"reviews": 0}
    template, prefix, stop = task.review_template(), task.review_prefix(), task.refine_stop()
    prompts = [task.format_prompt(template.format(prompt=r["prompt"], response=r["candidate"])) + prefix for r in rows]
    reviewer = ResolvedPolicy(ctx.inputs["base"], ((ctx.inputs["reviewer"], 1.0),), "soup", {})
    with ctx.progress(len(rows), "sipo review") as advance:
        texts = ctx.runtime.generator(BACKEND).generate(reviewer, prompts, _decoding(cfg["decoding"]),
                                                        seed=int(cfg["seed"]) * 7919 + 7, progress=advance)
    for r, t in zip(rows, texts):
        r["review"] = _cut(prefix + response_body(t[0]), stop)
    write_jsonl(ctx.out / "reviews.jsonl", rows)
    return {"reviews": len(rows)}


# --- 4. Rewrite -----------------------------------------------------------------------------


def rewrite_stage(ctx: StageContext) -> dict:
    """The same MOA policy, at the candidate's own weight, rewrites it following the review."""
    task = _task(ctx)
    rows = read_jsonl(ctx.inputs["reviews"] / "reviews.jsonl")
    if not rows:
        write_jsonl(ctx.out / "rewrites.jsonl", [])
        return {"rewrites": 0}
    template, stop = task.rewrite_template(), task.refine_stop()
    texts = _generate_by_weight(
        ctx, rows, lambda r: task.format_prompt(template.format(prompt=r["prompt"], response=r["candidate"],
                                                                review=r["review"])),
        int(ctx.config["seed"]) + 13, "sipo rewrite")
    for r, t in zip(rows, texts):
        r["rewrite"] = as_response(_cut(t, stop))
    write_jsonl(ctx.out / "rewrites.jsonl", rows)
    return {"rewrites": len(rows)}


# --- 5. Combine -----------------------------------------------------------------------------


def _implicit(ctx: StageContext, prompts: list[str], responses: list[str]) -> np.ndarray:
    """(n, k) implicit rewards of the endpoints (reference: the base model)."""
    gen = ctx.runtime.generator(BACKEND)
    with ctx.progress(len(responses), f"implicit rewards {ctx.stage.kind}") as advance:
        r = gen.implicit_rewards(ctx.inputs["base"], _endpoints(ctx), prompts, responses, float(ctx.config["beta"]),
                                 batch_size=int(ctx.config["batch_size"]), progress=advance)
    return np.asarray(r).T


def combine_stage(ctx: StageContext) -> dict:
    """Keep the rewrite unless it scores <= the original on every implicit reward."""
    task = _task(ctx)
    rows = read_jsonl(ctx.inputs["rewrites"] / "rewrites.jsonl")
    if not rows:
        write_jsonl(ctx.out / "combined.jsonl", [])
        return {"rewrites": 0, "rewrites_kept": 0}
    prompts = [task.format_prompt(r["prompt"]) for r in rows]
    both = _implicit(ctx, prompts * 2, [r["candidate"] for r in rows] + [r["rewrite"] for r in rows])
    orig, rew = both[: len(rows)], both[len(rows):]
    keep = keep_rewrite(orig, rew)
    for r, k in zip(rows, keep):
        r["kept_rewrite"] = bool(k)
        r["final"] = r["rewrite"] if k else r["candidate"]
    write_jsonl(ctx.out / "combined.jsonl", rows)
    return {"rewrites": len(rows), "rewrites_kept": int(keep.sum())}


# --- 6. Filter ------------------------------------------------------------------------------


def _filter_rewards(ctx: StageContext, prompts: list[str], responses: list[str]) -> np.ndarray:
    """(n, s) filter rewards: per-objective implicit rewards, optionally also the soups' at the
    sample weights (β·(log π_soup − log π_ref))."""
    cols = [_implicit(ctx, prompts, responses)]
    if ctx.config["filter_scorers"] == "objectives+soups":
        gen = ctx.runtime.generator(BACKEND)
        beta, bs = float(ctx.config["beta"]), int(ctx.config["batch_size"])
        ref = np.asarray(gen.logprobs(ResolvedPolicy(ctx.inputs["base"], (), "soup", {}), prompts, responses, batch_size=bs))
        for w in ctx.config["sample_weights"]:
            soup = ResolvedPolicy(ctx.inputs["base"], tuple(zip(_endpoints(ctx), map(float, w))), "soup", {})
            lp = np.asarray(gen.logprobs(soup, prompts, responses, batch_size=bs))
            cols.append((beta * (lp - ref))[:, None])
    return np.concatenate(cols, axis=1)


def filter_stage(ctx: StageContext) -> dict:
    """Keep candidates strictly better than both original responses on every filter reward;
    per prompt the highest summed reward; prompts without a survivor are dropped. On oracle
    tasks, also measure every decision against the truth."""
    cfg, task = ctx.config, _task(ctx)
    src = ctx.inputs["candidates"]
    rows = read_jsonl(src / ("combined.jsonl" if (src / "combined.jsonl").exists() else "candidates.jsonl"))
    upstream = ctx.input_results.get("candidates") or {}
    if not rows:
        write_jsonl(ctx.out / "selected.jsonl", [])
        write_jsonl(ctx.out / "pairs.jsonl", [])
        return {"candidates": 0, "rewrites_kept": upstream.get("rewrites_kept") if cfg["refine"] else None,
                "survivors": 0, "prompts": 0, "prompts_covered": 0, "new_pairs": 0}
    finals = [r.get("final", r["candidate"]) for r in rows]
    # originals: score each prompt's two responses once
    first: dict[int, int] = {}
    for i, r in enumerate(rows):
        first.setdefault(r["pid"], i)
    pids = sorted(first)
    o_prompts = [task.format_prompt(rows[first[p]]["prompt"]) for p in pids]
    n = len(rows)
    all_prompts = [task.format_prompt(r["prompt"]) for r in rows] + o_prompts * 2
    all_resp = finals + [rows[first[p]]["responses"][0] for p in pids] + [rows[first[p]]["responses"][1] for p in pids]
    rewards = _filter_rewards(ctx, all_prompts, all_resp)
    cand = rewards[:n]
    pos = {p: j for j, p in enumerate(pids)}
    r0 = rewards[n: n + len(pids)][[pos[r["pid"]] for r in rows]]
    r1 = rewards[n + len(pids):][[pos[r["pid"]] for r in rows]]
    mask = dominates_both(cand, r0, r1)
    best = best_per_prompt([r["pid"] for r in rows], cand, mask)
    selected, pairs = [], []
    for pid, i in sorted(best.items()):
        r = rows[i]
        selected.append({"prompt": r["prompt"], "w": r["w"], "response": finals[i], "responses": r["responses"],
                         "rewards": cand[i].tolist(), "rewards_original": [r0[i].tolist(), r1[i].tolist()]})
        for other in r["responses"]:  # y* and y_w / y_l in one response convention (sipo_bench.contract.responses)
            pairs.append({"prompt": task.format_prompt(r["prompt"]), "chosen": as_response(finals[i]),
                          "rejected": as_response(other)})
    write_jsonl(ctx.out / "selected.jsonl", selected)
    write_jsonl(ctx.out / "pairs.jsonl", pairs)
    result: dict[str, Any] = {
        "candidates": n,
        "rewrites_kept": upstream.get("rewrites_kept") if cfg["refine"] else None,
        "survivors": int(mask.sum()),
        "prompts": len(pids),
        "prompts_covered": len(best),
        "new_pairs": len(pairs),
    }
    if "rewrite" in rows[0]:
        result.update(_rewrite_diagnostics(ctx, task, rows))
    if task.oracle:
        result.update(_oracle(ctx, task, rows, finals, mask, best))
    ctx.log(", ".join(f"{k}={v}" for k, v in result.items() if not isinstance(v, float)))
    return result


def _rewrite_diagnostics(ctx: StageContext, task: Any, rows: list[dict]) -> dict:
    """What review and rewrite did, on any task, measured by the task's own scorers: the share of
    rewrites that are their candidate word for word (`rewrites_identical`) or nearly
    (`rewrites_near_duplicate`: word similarity >= NEAR_DUPLICATE, identical ones included), and
    per objective the share that the task's scorer rates strictly better than their candidate."""
    cands = [response_body(r["candidate"]) for r in rows]
    rewrites = [response_body(r["rewrite"]) for r in rows]
    out: dict[str, Any] = {
        "rewrites_identical": float(np.mean([a == b for a, b in zip(rewrites, cands)])),
        "rewrites_near_duplicate": float(np.mean([word_similarity(a, b) >= NEAR_DUPLICATE
                                                  for a, b in zip(rewrites, cands)])),
    }
    n = len(rows)
    flat = score_texts(ctx.runtime, task, [r["prompt"] for r in rows] * 2,
                       [r["rewrite"] for r in rows] + [r["candidate"] for r in rows])
    for o in task.objectives():
        a, b = flat[o.name][:n], flat[o.name][n:]
        out[f"rewrites_improving_{o.name}"] = float(np.mean(a > b if o.higher_is_better else a < b))
    return out


def _oracle(ctx: StageContext, task: Any, rows: list[dict], finals: list[str], mask: np.ndarray, best: dict) -> dict:
    """The truth behind each decision, from the task's oracle scorers."""
    names = task.objective_names
    maximize = [o.higher_is_better for o in task.objectives()]
    texts = {"candidate": [r["candidate"] for r in rows], "final": finals,
             "r0": [r["responses"][0] for r in rows], "r1": [r["responses"][1] for r in rows]}
    has_rewrite = "rewrite" in rows[0]
    if has_rewrite:
        texts["rewrite"] = [r["rewrite"] for r in rows]
    prompts = [r["prompt"] for r in rows]
    keys = list(texts)
    flat = score_texts(ctx.runtime, task, prompts * len(keys), [t for k in keys for t in texts[k]])
    n = len(rows)
    s = {k: np.stack([flat[o][i * n:(i + 1) * n] for o in names], axis=1) for i, k in enumerate(keys)}
    true_sampled = true_dominance(s["candidate"], s["r0"], s["r1"], maximize)
    true_final = true_dominance(s["final"], s["r0"], s["r1"], maximize)
    pr = precision_recall(mask, true_final)
    chosen_idx = list(best.values())
    out = {
        "oracle_sampled_truly_dominating": float(true_sampled.mean()),
        "oracle_final_truly_dominating": float(true_final.mean()),
        "oracle_filter_precision": pr["precision"],
        "oracle_filter_recall": pr["recall"],
        "oracle_selected_truly_dominating": float(true_final[chosen_idx].mean()) if chosen_idx else None,
    }
    if has_rewrite:
        sign = np.where(np.asarray(maximize), 1.0, -1.0)
        a, b = s["rewrite"] * sign, s["candidate"] * sign
        improves = np.all(a >= b, axis=1) & np.any(a > b, axis=1)
        out["oracle_rewrites_improving"] = float(improves.mean())
        kept = np.array([r["kept_rewrite"] for r in rows], bool)
        out["oracle_kept_rewrites_improving"] = float(improves[kept].mean()) if kept.any() else None
    return out


# --- 6b. Compute-matched controls ----------------------------------------------------------


def _control_rng(cfg: dict, salt: str) -> np.random.Generator:
    import zlib

    return np.random.default_rng([int(cfg["seed"]), int(cfg["round"]), zlib.crc32(salt.encode())])


def control_stage(ctx: StageContext) -> dict:
    """The pairs of a compute-matched control (SIPOConfig.control), as many per objective as
    SIPO's filter kept this round, written to `pairs_<objective>.jsonl` for the re-alignment:
    the same endpoints, loss and training budget then get different data."""
    from sipo_bench_baselines.stages import dpo_pairs, split_rows

    cfg, task = ctx.config, _task(ctx)
    n = len(read_jsonl(ctx.inputs["filter"] / "pairs.jsonl"))
    out: dict[str, Any] = {"control": cfg["control"], "sipo_pairs": n}
    if cfg["control"] == "original-pairs":
        for o in cfg["objectives"]:
            pool = dpo_pairs(split_rows(ctx.inputs["data"], "train"), o, task.format_prompt)
            if cfg.get("pool_max_pairs"):
                pool = pool[: int(cfg["pool_max_pairs"])]  # the pairs the endpoint was trained on
            pairs = original_control_pairs(pool, n, _control_rng(cfg, o))
            write_jsonl(ctx.out / f"pairs_{o}.jsonl", pairs)
            out[f"pairs_{o}"] = len(pairs)
    elif cfg["control"] == "self-pairs":
        rows = read_jsonl(ctx.inputs["candidates"] / "candidates.jsonl")
        rewards = (_filter_rewards(ctx, [task.format_prompt(r["prompt"]) for r in rows], [r["candidate"] for r in rows])
                   if rows and n else np.zeros((len(rows), 1)))
        pairs = self_control_pairs(rows, rewards, n, _control_rng(cfg, "self-pairs"), task.format_prompt)
        for o in cfg["objectives"]:
            write_jsonl(ctx.out / f"pairs_{o}.jsonl", pairs)
            out[f"pairs_{o}"] = len(pairs)
    else:
        raise ValueError(f"`control`: expected 'original-pairs' or 'self-pairs', got {cfg['control']!r}")
    ctx.log(", ".join(f"{k}={v}" for k, v in out.items()))
    return out


# --- 7. Re-align ----------------------------------------------------------------------------


def realign_stage(ctx: StageContext) -> dict:
    """Merge the endpoint into the base (the new reference), train a fresh LoRA on the new
    pairs with DPO + α·NLL, and save the endpoint + new delta as one adapter. With
    `eval_every` > 0 the same loss is measured on the objective's original validation pairs
    (the DPO pairs of val.jsonl) and, with `load_best`, the best checkpoint is kept, as the
    released `Iterative_DPO.py` does; no validation pairs then is an error, not a no-op."""
    from sipo_bench_baselines.losses import SIPOLoss
    from sipo_bench_baselines.stages import dpo_pairs
    from sipo_bench_baselines.trainer import train_preference_adapter

    cfg = ctx.config
    val: list[dict] = []
    if float(cfg["train"].get("eval_every") or 0) > 0:
        vfile = TaskData(ctx.inputs["data"]).val
        val = dpo_pairs(read_jsonl(vfile) if vfile.is_file() else [], cfg["objective"], _task(ctx).format_prompt)
        if not val:
            raise ValueError(f"`eval_every`: expected validation pairs of objective {cfg['objective']!r} to evaluate "
                             f"the re-alignment on, got none in val.jsonl (set eval_every: 0 and load_best: false)")
    own = ctx.inputs["pairs"] / f"pairs_{cfg['objective']}.jsonl"  # a control's pairs for this objective
    pairs = read_jsonl(own if own.is_file() else ctx.inputs["pairs"] / "pairs.jsonl")
    if not pairs:
        # nothing survived the filter: the endpoint is unchanged (said in the result)
        for f in Path(ctx.inputs["endpoint"]).iterdir():
            if f.is_file() and f.name not in ("_DONE.json", "result.json"):
                shutil.copy2(f, ctx.out / f.name)
        ctx.log("no Pareto-optimal pairs survived the filter: endpoint kept as it was")
        return {"new_pairs": 0, "unchanged": True}
    metrics = train_preference_adapter(
        ctx.out, ctx.inputs["base"], pairs, val,
        SIPOLoss(beta=float(cfg["beta"]), alpha=float(cfg["alpha"]),
                 nll_normalization=cfg.get("nll_normalization", "response_tokens")),
        cfg["train"], int(cfg["seed"]), progress=ctx.progress, ref_adapter_dir=ctx.inputs["endpoint"], log=ctx.log)
    return {"new_pairs": len(pairs), "unchanged": False, **metrics}


# --- 8. Diagnostics: how the endpoints moved ------------------------------------------------


def endpoints_stage(ctx: StageContext) -> dict:
    """Greedy test-prompt scores of each objective's endpoint before (DPO) and after SIPO."""
    cfg, task = ctx.config, _task(ctx)
    names = cfg["objectives"]
    prompts = test_prompts(ctx.inputs["data"], None)
    formatted = [task.format_prompt(p) for p in prompts]
    gen = ctx.runtime.generator(BACKEND)
    dec = _decoding(cfg["decoding"])
    out: dict[str, float] = {}
    with ctx.progress(2 * len(names) * len(prompts), "sipo endpoints") as advance:
        for i, o in enumerate(names):
            means = {}
            for when in ("before", "after"):
                pol = ResolvedPolicy(ctx.inputs["base"], ((ctx.inputs[f"{when}{i}"], 1.0),), "soup", {})
                texts = [t[0] for t in gen.generate(pol, formatted, dec, seed=int(cfg["seed"]), progress=advance)]
                scores = score_texts(ctx.runtime, task, prompts, texts)
                means[when] = {j: float(np.mean(scores[j])) for j in names}
            for j in names:
                out[f"{o}_endpoint_{j}_before"] = means["before"][j]
                out[f"{o}_endpoint_{j}_after"] = means["after"][j]
                out[f"{o}_endpoint_{j}_delta"] = means["after"][j] - means["before"][j]
    return out
