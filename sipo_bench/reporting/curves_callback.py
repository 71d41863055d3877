"""The `TrainerCallback` that keeps a training stage's curves (imports transformers).

Add :class:`CurvesCallback` to any transformers / trl trainer of a stage, with the stage's
output dir: every `on_log` (loss, rewards/margins, rewards/accuracies, KL, learning rate, ...
exactly as the trainer logs them) and every evaluation is kept, and at the end of training
`curves.json` (:mod:`sipo_bench.reporting.curves`) is written into the stage's artefacts, so the curves
are cached and resumed with the stage. It only observes: it never changes what the trainer
computes (no RNG, no control flags).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .curves import write_curves


class CurvesCallback(TrainerCallback):
    """Records the trainer's logs and writes `out/curves.json` when training ends.

    `extra` holds values the caller measured outside the trainer (e.g. `initial_val_loss`, the
    validation loss before the first step), written with the curves.
    """

    def __init__(self, out: Path | str, trainer_name: str | None = None):
        self.out = Path(out)
        self.trainer_name = trainer_name
        self.logs: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self.selection: dict[str, Any] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.logs.append({"step": int(state.global_step), **{k: _plain(v) for k, v in logs.items()}})

    def on_train_end(self, args, state, control, **kwargs):
        best = getattr(state, "best_global_step", None)
        if best is None and state.best_model_checkpoint:
            tail = Path(state.best_model_checkpoint).name.rsplit("-", 1)[-1]
            best = int(tail) if tail.isdigit() else None
        self.selection = {
            "load_best": bool(getattr(args, "load_best_model_at_end", False)),
            "metric": getattr(args, "metric_for_best_model", None),
            "greater_is_better": getattr(args, "greater_is_better", None),
            "selected_step": int(best) if best is not None and args.load_best_model_at_end else None,
            "global_step": int(state.global_step),
        }
        self.write()

    def write(self) -> None:
        """(Re)write `curves.json` with what has been recorded so far."""
        write_curves(self.out, self.logs, trainer=self.trainer_name, selection=self.selection, extra=self.extra)


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return str(v)
