"""A run's common training budget (`budget:` in the run config): the fields every training
method is described by, set once for all of them.

`budget: {epochs: 1, max_pairs: 256, eval_every: 0.25, load_best: true}` sets those fields of
every method config of the run that has them (the DPO endpoints MOD, DPO soups, MODPO and SIPO
build on, DPO-LW, MODPO, SIPO's re-alignment validation), over the task's per-method defaults.
A method declares which fields it meets (`Method.budget_fields`, itself or through the models
it uses); a run whose budget names a field one of its methods cannot meet is a usage error
naming both, and so is a `method_options` or variant value that contradicts the budget.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..configs.schema import ConfigError

#: the budget fields and what each must be
BUDGET_FIELDS: dict[str, str] = {
    "epochs": "a number > 0 (epochs over the training pairs)",
    "max_pairs": "an integer >= 1 (training pairs per model)",
    "eval_every": "a fraction of an epoch in [0, 1] (validation cadence; 0: never)",
    "load_best": "true or false (keep the checkpoint with the lowest validation loss)",
}


def _ok(name: str, v: Any) -> bool:
    if name == "load_best":
        return isinstance(v, bool)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return False
    if name == "epochs":
        return v > 0
    if name == "max_pairs":
        return isinstance(v, int) and v >= 1
    return 0 <= v <= 1


def check_budget(budget: Any) -> None:
    """A usage error naming the first bad field of a run's `budget`."""
    if not isinstance(budget, dict):
        raise ConfigError(f"`budget`: expected a mapping of {', '.join(BUDGET_FIELDS)} to values, got {budget!r}")
    for name, v in budget.items():
        if name not in BUDGET_FIELDS:
            raise ConfigError(f"`budget.{name}`: expected one of {', '.join(BUDGET_FIELDS)}, got {name!r}")
        if not _ok(name, v):
            raise ConfigError(f"`budget.{name}`: expected {BUDGET_FIELDS[name]}, got {v!r}")
    if budget.get("load_best") and budget.get("eval_every", 1) == 0:
        raise ConfigError("`budget.load_best`: expected false when budget.eval_every is 0 (there is no validation "
                          "checkpoint to keep), got True")


def config_fields(config_class: type) -> set[str]:
    """The fields a config sets from options (init fields)."""
    return {f.name for f in dataclasses.fields(config_class) if f.init}


def honoured(method_class: type) -> tuple[str, ...]:
    """The budget fields a method meets: its declared `budget_fields`, else those its config has."""
    declared = getattr(method_class, "budget_fields", None)
    if declared is not None:
        return tuple(declared)
    return tuple(f for f in BUDGET_FIELDS if f in config_fields(method_class.config_class))


def check_honoured(budget: dict, label: str, method_class: type) -> None:
    """A usage error when method `label` cannot meet a field of the run's budget."""
    for name in budget:
        if name not in honoured(method_class):
            raise ConfigError(
                f"`budget.{name}`: method {label!r} cannot meet it ({method_class.__name__} meets "
                f"{', '.join(honoured(method_class)) or 'no budget field'}); expected a budget every "
                f"method of the run meets: leave {label} out of the run or {name} out of the budget")


def apply_budget(budget: dict, config_class: type, overrides: dict, where: str) -> dict:
    """`overrides` with the budget's fields that `config_class` has; an override that
    contradicts the budget is a usage error named `where.<field>`."""
    fields = config_fields(config_class)
    out = dict(overrides)
    for name, v in budget.items():
        if name not in fields:
            continue
        if name in overrides and overrides[name] != v:
            raise ConfigError(f"`{where}.{name}`: expected {v!r} (the run's budget.{name}) or nothing, got "
                              f"{overrides[name]!r}")
        out[name] = v
    return out
