"""The divergence guard every trainer uses: a non-finite loss, gradient norm or weight fails the
stage, naming the step and the knob to lower, instead of a NaN model being cached as done.

- :class:`DivergenceGuard`: a transformers `TrainerCallback` for `Trainer`-based training
  (the DPO family's `PreferenceTrainer`, RLOO, learned reward models). It checks the logged
  `loss` and `grad_norm` (pass `logging_steps=1` and `logging_nan_inf_filter=False`, or
  transformers averages NaN losses away) and, after every optimiser step, the trainable
  parameters, which catches a divergence whatever the logging settings.
- :func:`check_finite_loss` / :func:`check_finite_parameters`: the same checks as plain
  functions, for hand-written loops (the synthetic SFT) and for the final model before it is
  saved.

Both raise :class:`TrainingDiverged`; the stage fails (exit 1), and because a stage is moved into
the cache only when its function returns, nothing of it is cached.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from transformers import TrainerCallback


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss, gradient norm or parameter."""


def _knobs_text(knobs: Mapping[str, Any]) -> str:
    if not knobs:
        return "lower the learning rate"
    return "lower " + " or ".join(f"`{k}` (now {v!r})" for k, v in knobs.items())


def _where(step: int | None, total: int | None) -> str:
    if step is None:
        return ""
    return f" at step {step}" + (f" of {total}" if total else "")


def diverged(what: str, problem: str, step: int | None, total: int | None, knobs: Mapping[str, Any]) -> TrainingDiverged:
    """The error, one line: `DPO training diverged at step 3 of 40: loss is nan; lower ...`."""
    return TrainingDiverged(f"{what} diverged{_where(step, total)}: {problem}; {_knobs_text(knobs)}")


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return True  # not a number (e.g. a string in the logs): not ours to judge


def check_finite_loss(loss: Any, *, step: int | None = None, total: int | None = None,
                      knobs: Mapping[str, Any] = {}, what: str = "training", name: str = "loss") -> None:
    """Raise :class:`TrainingDiverged` if `loss` (a float or a 0-d tensor) is NaN or infinite."""
    value = float(loss.detach()) if hasattr(loss, "detach") else loss
    if value is not None and not _finite(value):
        raise diverged(what, f"{name} is {value}", step, total, knobs)


def non_finite_parameters(model: Any, *, trainable_only: bool = True) -> list[str]:
    """Names of the parameters holding a NaN or an infinity."""
    import torch

    bad = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if trainable_only and not p.requires_grad:
                continue
            if not bool(torch.isfinite(p).all()):
                bad.append(name)
    return bad


def check_finite_parameters(model: Any, *, step: int | None = None, total: int | None = None,
                            knobs: Mapping[str, Any] = {}, what: str = "training", trainable_only: bool = True) -> None:
    """Raise :class:`TrainingDiverged` if any (trainable) parameter is non-finite: call it
    before saving a model."""
    bad = non_finite_parameters(model, trainable_only=trainable_only)
    if bad:
        more = f" and {len(bad) - 1} more tensor(s)" if len(bad) > 1 else ""
        raise diverged(what, f"non-finite weights in {bad[0]}{more}", step, total, knobs)


class DivergenceGuard(TrainerCallback):
    """Fail training at the first non-finite logged loss / grad norm or trainable weight.

    `knobs`: the settings to lower, shown in the error (e.g. `{"learning_rate": 1e-3,
    "beta": 0.1}`); `what`: the training's name in the error (`"DPO training"`)."""

    def __init__(self, knobs: Mapping[str, Any] | None = None, what: str = "training", check_parameters: bool = True):
        self.knobs = dict(knobs or {})
        self.what = what
        self.check_parameters = check_parameters

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm"):
            if logs and key in logs and not _finite(logs[key]):
                name = "loss" if key == "loss" else "gradient norm"
                raise diverged(self.what, f"{name} is {logs[key]}", state.global_step, state.max_steps or None, self.knobs)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.check_parameters and model is not None:
            check_finite_parameters(model, step=state.global_step, total=state.max_steps or None, knobs=self.knobs,
                                    what=self.what)
