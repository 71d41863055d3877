"""Number and Markdown text shared by the report renderers (`report`, the sweep report): one
formatting rule for every number a table shows, and Markdown tables."""

from __future__ import annotations

import math
from typing import Any, Sequence


def num(x: Any) -> str:
    """Stable number text: 4 decimals in [1e-3, 1e6), else 4 significant digits in e-notation."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    x = float(x) + 0.0  # no "-0.0000"
    if not math.isfinite(x):
        return str(x)
    if x == 0 or 1e-3 <= abs(x) < 1e6:
        return f"{x:.4f}"
    return f"{x:.3e}"


def vec(values: Sequence[float] | None) -> str:
    return "-" if values is None else "(" + ", ".join(num(v) for v in values) + ")"


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def md_cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def md_table(cols: list[str], body: list[list[str]], n_labels: int) -> list[str]:
    """A Markdown table; the first `n_labels` columns are left-aligned text, the rest numbers."""
    lines = ["| " + " | ".join(md_cell(c) for c in cols) + " |",
             "|" + "|".join("---" if i < n_labels else "--:" for i in range(len(cols))) + "|"]
    return lines + ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in body]
