"""Stage functions shared by every task: build the data, build the base (SFT) model."""

from __future__ import annotations

from .interfaces import TaskData
from .stages import StageContext


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
