"""Stage functions shared by every task: build the data, build the base (SFT) model."""

from __future__ import annotations

from typing import Any

from ..contract.interfaces import Task, TaskData
from ..execution.stages import Resources, Stage, StageContext


def plan_task_stages(task: Task, seed: int, data_resources: Resources | None = None,
                     base_resources: Resources | None = None) -> tuple[Stage, Stage]:
    """The task's `data[seed]` and `base[seed]` stages, keyed by the options each reads
    (`Task.stage_config(kind)`); the base stage takes the data stage as input only if the
    task's base reads it. Every caller (a run, `sipo-bench conflicts`, figure scripts) plans
    them here, so they share cache keys. A task that `shares_data_across_seeds` gets the
    seed-0 stages for every seed."""
    if task.shares_data_across_seeds:
        seed = 0
    kw: dict[str, Any] = {"resources": data_resources} if data_resources is not None else {}
    # the core's stage functions keep their 0.1 names: part of every key (sipo_bench.compat)
    data = Stage(f"data[seed={seed}]", "sipo_bench.taskstages:data_stage", {**task.stage_config("data"), "seed": seed}, **kw)
    kw = {"resources": base_resources} if base_resources is not None else {}
    base = Stage(f"base[seed={seed}]", "sipo_bench.taskstages:base_stage", {**task.stage_config("base"), "seed": seed},
                 {"data": data} if task.base_reads_data else {}, **kw)
    return data, base


def _task(ctx: StageContext):
    return ctx.runtime.task(ctx.config["task"], ctx.config["task_options"])


def data_stage(ctx: StageContext):
    """config: task, task_options, seed -> train/val/test JSONL in ctx.out."""
    return _task(ctx).build_data(ctx.out, int(ctx.config["seed"]), ctx)


def base_stage(ctx: StageContext):
    """config: task, task_options, seed; inputs: data (unless the task's base does not read
    it: then `data` is None) -> the base model in ctx.out."""
    data = TaskData(ctx.inputs["data"]) if "data" in ctx.inputs else None
    return _task(ctx).build_base(data, ctx.out, int(ctx.config["seed"]), ctx)
