"""The multi-run report of a sweep (:mod:`sipo_bench.configs.sweep`), rendered from the points'
`summary.json` files only (`sipo-bench report OUT` re-renders it): rows are the methods (and
variants), columns the sweep points; HV with its interval against each reference, and the paired
ΔHV of every declared comparison (`compare_to`) with its interval, wins and p-value. The plot
shows each declared pair's ΔHV against the swept value, with its interval."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..configs.sweep import fmt_value
from ..errors import UsageError
from ..scoring import stats


def load_sweep(d: Path) -> tuple[dict, list[dict]]:
    """`sweep.json` of `d` and every point's summary (via :func:`report.load_summaries`)."""
    from .merge import load_summaries

    path = Path(d) / "sweep.json"
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"`{d}`: cannot read sweep.json ({e})") from None
    if not isinstance(index, dict) or index.get("kind") != "sweep" or not isinstance(index.get("points"), list):
        raise UsageError(f"`{d}`: sweep.json is not a sipo-bench sweep index (expected kind 'sweep' and points)")
    return index, load_summaries([Path(d) / p["dir"] for p in index["points"]])


def _refs(summaries: list[dict]) -> list[tuple[str, str]]:
    return [("hypervolume", "ref")] + ([("hypervolume_floor", "floor")]
                                       if any(s.get("floor") is not None for s in summaries) else [])


def _methods(summaries: list[dict]) -> list[str]:
    return list(dict.fromkeys(m for s in summaries for m in s["methods"]))


def _pairs(summaries: list[dict]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(tuple(p) for s in summaries for p in s.get("compare_to") or []))


def _cell(d: dict | None, with_counts: bool = False) -> str:
    from ..reporting.text import num

    if not d:
        return "-"
    iv = d.get("interval")
    text = num(d["mean"]) + (f" [{num(iv['lo'])}, {num(iv['hi'])}]" if iv else "")
    if with_counts:
        p, holm = d.get("p_value") or {}, d.get("p_holm")
        text += f" ({d['wins']}/{d['ties']}/{d['losses']}, p {num(p.get('p'))}"
        text += f", p Holm {num(holm['p'])})" if holm else ")"
    return text


def _kind(ds: list[dict | None]) -> str:
    kinds = sorted({stats.interval_label(d.get("interval")) for d in ds if d and d.get("interval")})
    return "" if not kinds else f" [{kinds[0]}]" if len(kinds) == 1 else f" [{' / '.join(kinds)}]"


def sweep_tables(index: dict, summaries: list[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, columns, rows) of every multi-run table: HV per method, and paired ΔHV per
    declared pair, against each reference; one column per sweep point."""
    labels = [p["label"] for p in index["points"]]
    tables = []
    for key, ref in _refs(summaries):
        cells = {m: [s["methods"].get(m, {}).get(key) for s in summaries] for m in _methods(summaries)}
        kind = _kind([d for ds in cells.values() for d in ds])
        tables.append((f"HV vs {ref}{kind}", ["method", *labels], [[m, *[_cell(d) for d in ds]] for m, ds in cells.items()]))
        pairs = _pairs(summaries)
        if pairs:
            diffs = {(m, b): [((s["methods"].get(m, {}).get("comparisons") or {}).get(b) or {}).get(key) for s in summaries]
                     for m, b in pairs}
            kind = _kind([d for ds in diffs.values() for d in ds])
            tables.append((f"paired ΔHV vs {ref}{kind} (wins/ties/losses, sign-flip p, Holm p)", ["method − baseline", *labels],
                           [[f"{m} − {b}", *[_cell(d, True) for d in ds]] for (m, b), ds in diffs.items()]))
    return tables


def sweep_md(index: dict, summaries: list[dict]) -> str:
    from .tables import ranking_line
    from ..reporting.text import count, md_table, vec

    first = summaries[0]
    seeds = sorted({int(x) for s in summaries for x in s.get("seeds") or []})
    lines = [f"# sipo-bench sweep: {first['task']}", "",
             "- Sweep: " + "; ".join(f"`{k}` = {', '.join(fmt_value(v) for v in vs)}" for k, vs in index["sweep"].items())
             + f" ({count(len(index['points']), 'point')}; each point's own report is in its folder).",
             f"- Seeds: {', '.join(str(x) for x in seeds)}; objectives: "
             + ", ".join(f"{o['name']} ({'higher' if o['higher_is_better'] else 'lower'} is better)" for o in first["objectives"]) + ".",
             f"- HV per seed against that seed's reference point ({first.get('ref_point_source')})"
             + (f" and against the floor {vec(first.get('floor'))}" if first.get("floor") is not None else "")
             + f"; mean over seeds with a 95% interval (t 95% CI up to {stats.MIN_BOOTSTRAP - 1} seeds, percentile "
               f"bootstrap 95% CI from {stats.MIN_BOOTSTRAP}).",
             "- Paired ΔHV = HV(method) − HV(baseline) per seed over shared seeds, for each pair `compare_to` declares: "
             "mean [paired t 95% CI up to "
             f"{stats.MIN_BOOTSTRAP - 1} seeds] (wins/ties/losses, two-sided exact sign-flip p, and that p Holm-adjusted "
             "over the point's comparisons against the same baseline on the same indicator).", ""]
    for title, cols, body in sweep_tables(index, summaries):
        lines += [f"## {title}", ""] + md_table(cols, body, 1) + [""]
    ranking = [(p["label"], ranking_line(s)) for p, s in zip(index["points"], summaries)]
    if any(text for _, text in ranking):
        lines += ["## Ranking across references and IGD+", ""]
        lines += [f"- {label}: {text}" for label, text in ranking if text] + [""]
    return "\n".join(lines)


def sweep_csv(index: dict, summaries: list[dict]) -> str:
    """Long format: one row per (point, method or pair, reference)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    paths = list(index["sweep"])
    w.writerow(["point", *paths, "quantity", "method", "baseline", "reference", "mean", "lo", "hi", "interval",
                "level", "n", "wins", "ties", "losses", "p", "p_method", "p_holm"])
    for point, s in zip(index["points"], summaries):
        vals = [fmt_value(point["values"][p]) for p in paths]
        for key, ref in _refs(summaries):
            for m, e in s["methods"].items():
                rows = [("hv", m, "", e.get(key))]
                rows += [("delta_hv", m, b, c.get(key)) for b, c in (e.get("comparisons") or {}).items()]
                for quantity, name, b, d in rows:
                    if not d:
                        continue
                    iv, p = d.get("interval") or {}, d.get("p_value") or {}
                    n = d.get("n", len(d.get("per_seed") or {}))
                    w.writerow([point["label"], *vals, quantity, name, b, ref, d["mean"], iv.get("lo", ""), iv.get("hi", ""),
                                iv.get("method", ""), iv.get("level", ""), n, d.get("wins", ""), d.get("ties", ""),
                                d.get("losses", ""), p.get("p", ""), p.get("method", ""),
                                (d.get("p_holm") or {}).get("p", "")])
    return buf.getvalue()


def sweep_figure(index: dict, summaries: list[dict]) -> Any:
    """Paired ΔHV of each declared pair against the swept value, one panel per HV reference,
    error bars = the paired interval. Without declared pairs, each method's HV instead. The x
    axis is the swept value when one numeric option is swept, else the point labels."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    paths = list(index["sweep"])
    numeric = len(paths) == 1 and all(isinstance(p["values"][paths[0]], (int, float)) and
                                      not isinstance(p["values"][paths[0]], bool) for p in index["points"])
    xs = [float(p["values"][paths[0]]) for p in index["points"]] if numeric else list(range(len(index["points"])))
    refs = _refs(summaries)
    pairs = _pairs(summaries)
    series = ([(f"{m} − {b}", lambda s, key, m=m, b=b: ((s["methods"].get(m, {}).get("comparisons") or {}).get(b) or {}).get(key))
               for m, b in pairs] if pairs else
              [(m, lambda s, key, m=m: s["methods"].get(m, {}).get(key)) for m in _methods(summaries)])
    fig = Figure(figsize=(5.2 * len(refs) + 0.4, 4.4), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(refs), squeeze=False).ravel()
    cmap = colormaps["tab10"]
    span = (max(xs) - min(xs)) if len(xs) > 1 else 1.0
    for ax, (key, ref) in zip(axes, refs):
        kinds = set()
        for i, (name, get) in enumerate(series):
            off = (i - (len(series) - 1) / 2) * 0.012 * span  # small dodge so bars do not overlap
            pts = [(x + off, get(s, key)) for x, s in zip(xs, summaries)]
            pts = [(x, d) for x, d in pts if d]
            if not pts:
                continue
            ys = [d["mean"] for _, d in pts]
            lo = [d["mean"] - d["interval"]["lo"] if d.get("interval") else 0.0 for _, d in pts]
            hi = [d["interval"]["hi"] - d["mean"] if d.get("interval") else 0.0 for _, d in pts]
            kinds |= {stats.interval_label(d["interval"]) for _, d in pts if d.get("interval")}
            ax.errorbar([x for x, _ in pts], ys, yerr=[lo, hi], marker="o", capsize=3, color=cmap(i % 10), label=name,
                        gid=f"series:{name}")
        if pairs:
            ax.axhline(0.0, color="0.4", lw=0.9, ls=":")
        what = "paired ΔHV" if pairs else "HV"
        ax.set_ylabel(f"{what} vs {ref}" + (f" ({', '.join(sorted(kinds))})" if kinds else ""))
        ax.set_xlabel(paths[0] if numeric else "sweep point")
        if not numeric:
            ax.set_xticks(xs, [p["label"] for p in index["points"]], rotation=20, ha="right")
        ax.grid(True, alpha=0.25)
    axes[0].legend(frameon=False, fontsize="small")
    n = len({x for s in summaries for x in s.get("seeds") or []})
    fig.suptitle(f"{summaries[0]['task']}: {'paired ΔHV' if pairs else 'HV'} across the sweep ({n} seed{'s' if n != 1 else ''})")
    return fig


def render_sweep(out: Path, index: dict | None = None, *, html: bool = True) -> tuple[dict, list[dict]]:
    """(Re-)write sweep.md, sweep.csv and sweep.png (and with `html` index.html, linking each
    point's page) of the sweep in `out` from its points' summary.json files."""
    from ..execution.fsio import atomic_write_text
    from .figures import plot_figure
    from .merge import load_summaries

    out = Path(out)
    if index is None:
        index, summaries = load_sweep(out)
    else:
        summaries = load_summaries([out / p["dir"] for p in index["points"]])
    atomic_write_text(out / "sweep.md", sweep_md(index, summaries))
    atomic_write_text(out / "sweep.csv", sweep_csv(index, summaries))
    plot_figure(sweep_figure(index, summaries), out / "sweep.png")
    if html:
        from .html_report import render_sweep_html

        atomic_write_text(out / "index.html", render_sweep_html(index, sweep_md(index, summaries),
                                                                (out / "sweep.png").read_bytes()))
    return index, summaries


def is_sweep_dir(d: Path) -> bool:
    return (Path(d) / "sweep.json").is_file() and not (Path(d) / "summary.json").is_file()


def sweep_console(index: dict, summaries: list[dict]) -> Any:
    """The multi-run tables as rich renderables (what `sipo-bench run`/`report` print)."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    for title, cols, body in sweep_tables(index, summaries):
        t = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, collapse_padding=True)
        for i, c in enumerate(cols):
            t.add_column(c, justify="left" if i == 0 else "right")
        for r in body:
            t.add_row(*[Text(c.replace(" [", "\n[").replace(" (", "\n(") if i else c) for i, c in enumerate(r)])
        parts.append(t)
    return Group(*parts)


def failures(index: dict, summaries: list[dict]) -> list[tuple[str, str, str | None]]:
    """(point label, method, error) of every failed method of every point."""
    return [(p["label"], n, m.get("error")) for p, s in zip(index["points"], summaries)
            for n, m in s["methods"].items() if m.get("status") != "ok"]
