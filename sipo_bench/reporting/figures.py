"""The front plot of a report (`front.png`), from `summary.json` only."""

from __future__ import annotations

import io
import math
from itertools import combinations
from pathlib import Path
from typing import Any

from ..execution.fsio import atomic_write_bytes
from .merge import normalize
from .tables import direction_text


def _vertex_only(m: dict) -> bool:
    """True when every evaluated weight is a simplex vertex (e.g. `dpo`'s endpoints): a line
    between such points would suggest policies the method never produced."""
    ws = [p.get("w") for p in m.get("mean_points") or []]
    return bool(ws) and all(w is not None and sorted(w)[:-1] == [0.0] * (len(w) - 1) for w in ws)


def front_figure(summary: dict) -> Any:
    """The matplotlib `Figure` of front.png (no pyplot, so no global state; Agg renders it):
    each method's mean points per weight (filled: on its front, hollow: dominated, x: failed
    method) and, for k = 2, its front line (gid `front:<method>`; none for vertex-only methods);
    pairwise panels for k >= 3; the HV reference point marked; axis labels give directions."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    s = normalize(summary)
    objs = s["objectives"]
    k = len(objs)
    pairs = list(combinations(range(k), 2)) if k >= 2 else [(0, None)]
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    n_methods = len(s["methods"])
    side_legend = ncols == 1  # one panel: legend on the right; several: a row of entries below
    legend_rows = 0 if side_legend else math.ceil((n_methods + 3) / 6)
    fig = Figure(figsize=(5.0 * ncols + (3.2 if side_legend else 0), 4.4 * nrows + 0.3 * legend_rows + 0.4),
                 dpi=110, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    cmap = colormaps["tab10"]
    handles: list[Any] = []
    any_dominated = False
    for idx, (name, m) in enumerate(s["methods"].items()):
        color = cmap(idx % 10)
        ok = m.get("status") == "ok"
        mean = m.get("mean_points") or []
        front = {tuple(p["scores"]) for p in m.get("front") or []}
        line = ok and k == 2 and len(front) >= 2 and not _vertex_only(m)
        for ax, (i, j) in zip(axes, pairs):
            ys_of = (lambda p: p["scores"][j]) if j is not None else (lambda p: idx)
            on = [p for p in mean if tuple(p["scores"]) in front]
            off = [p for p in mean if tuple(p["scores"]) not in front]
            if not ok:
                ax.scatter([p["scores"][i] for p in mean], [ys_of(p) for p in mean], marker="x", color=color, s=45, zorder=3)
                continue
            if line:
                pts = sorted((p["scores"][i], p["scores"][j]) for p in on)
                ax.plot([x for x, _ in pts], [y for _, y in pts], "-", color=color, lw=1.6, alpha=0.85, zorder=2,
                        gid=f"front:{name}")
            ax.scatter([p["scores"][i] for p in on], [ys_of(p) for p in on], color=color, s=38, zorder=3,
                       edgecolors="white", linewidths=0.6)
            if off:
                any_dominated = True
                ax.scatter([p["scores"][i] for p in off], [ys_of(p) for p in off], facecolors="none",
                           edgecolors=color, s=38, zorder=3)
        label = name + ("" if ok else " (failed)")
        handles.append(Line2D([], [], color=color, marker="x" if not ok else "o", lw=1.6 if line else 0, label=label))
    ref = s.get("ref_point")
    source = str(s.get("ref_point_source") or "")
    ref_label = ("HV reference point:\nbase policy (mean over seeds)" if source.startswith("base policy")
                 else f"HV reference point:\n{source}")
    base = [v for v in ((s.get("base_policy") or {}).get("scores") or {}).values() if v is not None]
    base_mean = [sum(c) / len(base) for c in zip(*base)] if base else None
    for ax, (i, j) in zip(axes, pairs):
        if ref is not None:
            if j is None:
                ax.axvline(ref[i], color="black", ls=":", lw=1)
            else:
                ax.axvline(ref[i], color="0.6", ls=":", lw=0.9, zorder=1)
                ax.axhline(ref[j], color="0.6", ls=":", lw=0.9, zorder=1)
                ax.scatter([ref[i]], [ref[j]], marker="*", s=190, color="black", zorder=4)
        if base_mean is not None and not source.startswith("base policy") and j is not None:
            ax.scatter([base_mean[i]], [base_mean[j]], marker="D", s=45, color="0.45", zorder=4)
        ax.set_xlabel(f"{objs[i]['name']} ({direction_text(objs[i])})")
        if j is not None:
            ax.set_ylabel(f"{objs[j]['name']} ({direction_text(objs[j])})")
        else:
            ax.set_yticks(range(n_methods), list(s["methods"]))
        ax.grid(True, alpha=0.25)
    if ref is not None:
        handles.append(Line2D([], [], color="black", marker="*" if k >= 2 else None, ms=12, lw=0 if k >= 2 else 1,
                              ls=":" if k < 2 else "", label=ref_label))
    if base_mean is not None and not source.startswith("base policy") and k >= 2:
        handles.append(Line2D([], [], color="0.45", marker="D", lw=0, label="base policy (mean over seeds)"))
    if any_dominated:
        handles.append(Line2D([], [], color="0.3", marker="o", mfc="none", lw=0, label="dominated mean point"))
    n = len(s.get("seeds") or [])
    title = f"{s['task']}: mean test scores per preference weight ({n} seed{'s' if n != 1 else ''})"
    if side_legend:
        axes[0].set_title(title, fontsize="medium")
    else:
        fig.suptitle(title)
    if side_legend:
        fig.legend(handles=handles, loc="outside right upper", frameon=False)
    else:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), frameon=False)
    return fig


def figure_png_bytes(fig: Any) -> bytes:
    """A matplotlib `Figure` as PNG bytes, without timestamp metadata (same figure, same bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def front_png_bytes(summary: dict) -> bytes:
    """:func:`front_figure` as PNG bytes."""
    return figure_png_bytes(front_figure(summary))


def plot_front(summary: dict, path: Path) -> None:
    """Write :func:`front_figure` as a PNG to `path` atomically."""
    plot_figure(front_figure(summary), path)


def plot_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib `Figure` as a PNG to `path` atomically."""
    atomic_write_bytes(Path(path), figure_png_bytes(fig))
