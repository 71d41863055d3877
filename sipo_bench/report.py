"""Reports rendered only from `summary.json`: console table, table.md, points.csv, front.png."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from .stages import atomic_write_text


def _hv_text(hv: dict | None) -> str:
    if not hv:
        return "-"
    s = f"{hv['mean']:.4f}"
    if hv.get("ci95"):
        lo, hi = hv["ci95"]
        s += f" [{lo:.4f}, {hi:.4f}]"
    return s


def rows(summary: dict) -> list[list[str]]:
    objs = [o["name"] for o in summary["objectives"]]
    out = []
    for name, m in summary["methods"].items():
        best = m.get("best") or {}
        out.append([name, m["status"], _hv_text(m.get("hypervolume")),
                    _hv_text(m.get("hypervolume_floor")),
                    "-" if m.get("igd_plus") is None else f"{m['igd_plus']:.4f}",
                    str(len(m.get("front") or [])),
                    *[("-" if o not in best else f"{best[o]:.4f}") for o in objs]])
    return out


def header(summary: dict) -> list[str]:
    ref = summary.get("ref_point")
    ref_s = "ref " + ("/".join(f"{x:.3f}" for x in ref) if ref else "?")
    return ["method", "status", f"HV ({ref_s})", "HV (floor)", "IGD+", "front", *[
        f"best {o['name']} ({'max' if o['higher_is_better'] else 'min'})" for o in summary["objectives"]]]


def table_md(summary: dict) -> str:
    h = header(summary)
    lines = [f"# {summary['task']}", "",
             f"Reference point: {summary.get('ref_point')} ({summary.get('ref_point_source')}).", "",
             "| " + " | ".join(h) + " |", "|" + "---|" * len(h)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(summary)]
    return "\n".join(lines) + "\n"


def points_csv(summary: dict) -> str:
    objs = [o["name"] for o in summary["objectives"]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "seed", *[f"w_{o}" for o in objs], *objs])
    for name, m in summary["methods"].items():
        for p in m.get("points", []):
            w.writerow([name, p["seed"], *p["w"], *p["scores"]])
    return buf.getvalue()


def console_table(summary: dict) -> Any:
    from rich.table import Table

    t = Table(title=f"sipo-bench: {summary['task']}")
    for col in header(summary):
        t.add_column(col)
    for r in rows(summary):
        t.add_row(*r)
    return t


def render_files(summary: dict, out: Path) -> None:
    out = Path(out)
    atomic_write_text(out / "table.md", table_md(summary))
    atomic_write_text(out / "points.csv", points_csv(summary))
