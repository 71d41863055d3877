"""`extra_scorers`: more objectives on an existing task's evaluation, without a wrapper task.

A run config may add scorers to the task's own::

    extra_scorers:
      - name: example-length          # a registered scorer (`sipo-bench ls scorers`)
        options: {unit: words}        # its options (`sipo-bench show scorer example-length`)
        objectives: [length]          # optional: which of its objectives to add (default: all)

What they do (the contract, also in docs/architecture.md and docs/evaluation.md):

- Every evaluated point (each method's (w, seed) and the base policy of each seed) is scored by
  each extra scorer, in one `extra-score` stage per (point, scorer) that reads the point's
  generations. The task's own `score` stages are untouched (same config, same keys), so a run
  without extra scorers plans exactly the stages it did before, and adding a scorer to a cached
  run computes only the new scores.
- The weight grid, the front, the hypervolume and IGD+ stay over the task's objectives. The
  extra objectives are reported beside them, each with its direction: per point and per mean
  point (`extra_scores` in summary.json), in each method's `best`, in points.csv, table.md and
  the console table; `summary.json` lists them in `extra_objectives` and names the objectives
  the HV covers in `hv_objectives`.
- A failed `extra-score` stage fails the method whose point it scores (a value it should have
  reported is missing), like a failed `score` stage.

Everything is checked before any stage runs (exit 2, one line naming the field): the scorer
name ("Did you mean"), its options (its declared `options_class`, else its constructor), the
selected objectives, a clash with a task objective or another extra scorer, and a known
direction for each added objective (the scorer's `directions()`, else a registered objective
of that name). Scorer constructors must be cheap (load models on first `score`): one instance
per (name, options) is made at planning and reused by the stages of that process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..configs.schema import ConfigError, build, field
from ..errors import UsageError, did_you_mean
from ..contract.interfaces import Objective, Task
from ..execution.compute import count
from ..execution.stages import Stage, StageContext, write_jsonl

STAGE_FN = "sipo_bench.extra_scorers:extra_score_stage"  # its 0.1 name: part of the key (sipo_bench.compat)


@dataclass
class ExtraScorerConfig:
    """One entry of `extra_scorers` in a run config."""

    name: str = field(help="Scorer plugin name (`sipo-bench ls scorers`).")
    options: dict = field({}, help="The scorer's options (`sipo-bench show scorer NAME`).")
    objectives: list[str] | None = field(None, help="Which of the scorer's objectives to add; null = all of them.")


@dataclass(frozen=True)
class ExtraScorer:
    """A validated extra scorer: what its stages score and which objectives the run reports."""

    name: str
    options: dict
    objectives: tuple[Objective, ...]

    def summary(self) -> list[dict]:
        return [{"name": o.name, "higher_is_better": o.higher_is_better, "description": o.description,
                 "scorer": self.name} for o in self.objectives]


def resolve(entries: Sequence[ExtraScorerConfig], runtime: Any, task: Task) -> list[ExtraScorer]:
    """Check every entry against the registries and the task (UsageError naming the field)."""
    taken = {o: f"an objective of task {task.name!r}" for o in task.objective_names}
    out = []
    for i, e in enumerate(entries):
        where = f"extra_scorers[{i}]"
        reg = runtime.registries.scorers
        if e.name not in reg:
            raise ConfigError(f"`{where}.name`: " + did_you_mean("scorer", e.name, reg.names()))
        cls = reg.get(e.name)
        options_class = getattr(cls, "options_class", None)
        if options_class is not None:
            build(options_class, e.options, f"{where}.options")
        try:
            scorer = runtime.scorer(e.name, e.options)
        except UsageError as err:
            raise ConfigError(f"`{where}.options`: {err}") from None
        except TypeError as err:  # a constructor with fixed keyword arguments
            raise ConfigError(f"`{where}.options`: scorer {e.name!r} does not accept {e.options!r} ({err})") from None
        offered = list(scorer.objectives())
        chosen = offered if e.objectives is None else list(e.objectives)
        if not chosen:
            raise ConfigError(f"`{where}.objectives`: expected at least one of {offered}, got []")
        for j, o in enumerate(chosen):
            if o not in offered:
                raise ConfigError(f"`{where}.objectives[{j}]`: " + did_you_mean("objective", o, offered) + f" (of scorer {e.name!r})")
            if o in taken:
                hint = " (select others with `objectives`)" if e.objectives is None else ""
                raise ConfigError(f"`{where}`: objective {o!r} of scorer {e.name!r} is already {taken[o]}{hint}")
            taken[o] = f"added by extra_scorers[{i}]"
        out.append(ExtraScorer(e.name, dict(e.options), tuple(_objective(o, scorer, runtime, where) for o in chosen)))
    return out


def _objective(name: str, scorer: Any, runtime: Any, where: str) -> Objective:
    """The added objective with its direction: the scorer's `directions()`, else a registered
    objective of that name; a scorer that says neither is refused (no silent guess)."""
    declared = (scorer.directions() or {}).get(name)
    registered = runtime.registries.objectives.get(name) if name in runtime.registries.objectives else None
    if declared is None and registered is None:
        raise ConfigError(f"`{where}`: the direction of objective {name!r} is unknown: scorer {scorer.name!r} does "
                          "not declare it in `directions()` and no plugin registers that objective")
    if declared is not None and registered is not None and declared != registered.higher_is_better:
        raise ConfigError(f"`{where}`: scorer {scorer.name!r} scores {name!r} as "
                          f"{'higher' if declared else 'lower'} is better, but the registered objective says the opposite")
    hib = declared if declared is not None else registered.higher_is_better
    description = registered.description if registered is not None else (scorer.description or "")
    return Objective(name, bool(hib), description)


def plan_stage(extra: ExtraScorer, generations: Stage, tag: str, tags: dict, resources: Any = None) -> Stage:
    """The stage that scores `generations` (a `generate` stage) with one extra scorer. Its key
    holds the scorer and its options only: the objective selection is applied in the summary.
    `resources`: what it asks of a worker (`Resources`; default one CPU)."""
    kw = {"resources": resources} if resources is not None else {}
    return Stage(f"extra-score[{extra.name},{tag}]", STAGE_FN, {"scorer": extra.name, "options": extra.options},
                 {"generations": generations}, tags=tags, **kw)


def extra_score_stage(ctx: StageContext) -> dict:
    """config: scorer, options; inputs: generations. Writes scores.jsonl (prompt, response, one
    column per objective of the scorer); returns {"mean": {objective: mean}, "n"}."""
    from .evaluation import read_generations

    cfg = ctx.config
    prompts, responses = read_generations(ctx.inputs["generations"])
    scorer = ctx.runtime.scorer(cfg["scorer"], cfg["options"])
    with ctx.progress(len(prompts), f"score {ctx.stage.name}") as advance:
        count("scorer_calls", len(responses))
        raw = scorer.score(prompts, responses, progress=advance)
    scores = {o: np.asarray(v, dtype=float) for o, v in raw.items()}
    bad = {o: len(v) for o, v in scores.items() if len(v) != len(prompts)}
    if bad:
        raise RuntimeError(f"scorer {cfg['scorer']!r} returned {bad} scores for {len(prompts)} responses")
    write_jsonl(ctx.out / "scores.jsonl", [
        {"prompt": p, "response": r, **{o: float(v[i]) for o, v in scores.items()}}
        for i, (p, r) in enumerate(zip(prompts, responses))])
    return {"mean": {o: float(np.mean(v)) if len(v) else float("nan") for o, v in scores.items()}, "n": len(prompts)}


def point_scores(extras: Sequence[ExtraScorer], results: Sequence[dict | None]) -> dict[str, float] | None:
    """{objective: mean} of one point from its extra-score stage results (aligned with
    `extras`); None when a stage has no result."""
    out: dict[str, float] = {}
    for extra, r in zip(extras, results):
        if not r:
            return None
        for o in extra.objectives:
            out[o.name] = float(r["mean"][o.name])
    return out


def mean_scores(rows: Sequence[dict[str, float] | None]) -> dict[str, float] | None:
    """Objective-wise mean of several points' extra scores (None if any is missing)."""
    if not rows or any(r is None for r in rows):
        return None
    return {o: float(np.mean([r[o] for r in rows])) for o in rows[0]}


def add_to_summary(summary: dict, plan: Any, result: Any) -> None:
    """Add the extra objectives to `summary` (in place; nothing when the run has none):
    `extra_objectives`, `hv_objectives`, the base policy's and every point's `extra_scores`,
    each mean point's (so each front point's) mean over seeds, and each method's `best`."""
    extras = plan.extra_scorers
    if not extras:
        return
    objectives = [o for e in extras for o in e.objectives]
    summary["extra_objectives"] = [d for e in extras for d in e.summary()]
    summary["hv_objectives"] = [o["name"] for o in summary["objectives"]]
    summary["base_policy"]["extra_scores"] = {
        str(seed): point_scores(extras, [result(s) for s in ep.extra]) for seed, ep in plan.reference.items()}
    for name, mp in plan.methods.items():
        entry = summary["methods"][name]
        by_point = {(tuple(p.w), p.seed): point_scores(extras, [result(s) for s in p.extra]) for p in mp.points}
        for pt in entry["points"]:
            pt["extra_scores"] = by_point.get((tuple(pt["w"]), pt["seed"]))
        for m in entry["mean_points"]:  # the front's entries are these same dicts
            m["extra_scores"] = mean_scores([pt["extra_scores"] for pt in entry["points"] if pt["w"] == m["w"]])
        for o in objectives:
            values = [m["extra_scores"][o.name] for m in entry["mean_points"] if m["extra_scores"]]
            if values:
                entry["best"][o.name] = (max if o.higher_is_better else min)(values)
