"""`index.html`: one self-contained static page per run dir (no network, no external file).

Rendered from summary.json and the run's files beside it (`curves/<key>.json`,
`samples.json`): the front plot pooled over seeds and per seed (inline PNG data URIs), the
report's tables, a compute table, the curves of every training stage (inline SVG) with their
warning flags, and sample responses per method and weight with their scores, side by side and
filterable by method and weight (inline JS). A summary written before curves or samples were
recorded renders with "not recorded for this run" in those sections. Deterministic: the same
inputs give the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import curves as curves_mod
from . import figures, merge, tables

NOT_RECORDED = "not recorded for this run"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:0 1.2em 3em;color:#222}
h1{font-size:1.5em;margin:.8em 0 .2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
nav a{margin-right:1em}table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .5em;vertical-align:top}th{background:#f4f4f4;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#777}.flag{color:#b00020;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:1em}.card{border:1px solid #ddd;border-radius:6px;padding:.5em .7em;background:#fff}
.card h4{margin:.1em 0 .4em;font-size:.95em}figure{margin:.5em 0}img.front{max-width:100%;height:auto}
img.seed-front{width:420px;height:auto}.samples-wrap{overflow-x:auto}.samples td{min-width:18em;max-width:28em;white-space:pre-wrap}
.scores{font-size:.85em;color:#444}.filters label{margin-right:1em}svg.curve{background:#fff}
"""

SCRIPT = """
(function(){
  var m=document.getElementById('filter-method'), w=document.getElementById('filter-weight');
  if(!m||!w){return;}
  function apply(){
    var cells=document.querySelectorAll('[data-point]');
    for(var i=0;i<cells.length;i++){
      var c=cells[i];
      var show=(m.value==='*'||c.getAttribute('data-method')===m.value)&&(w.value==='*'||c.getAttribute('data-w')===w.value);
      c.style.display=show?'':'none';
    }
  }
  m.addEventListener('change',apply); w.addEventListener('change',apply); apply();
})();
"""

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
#: the logged metrics charted besides the losses, in this order, when a stage logged them
EXTRA_METRICS = ("rewards/margins", "rewards/accuracies", "kl", "objective/kl", "reward", "learning_rate")


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool) or isinstance(x, int):
        return str(x)
    x = float(x) + 0.0
    if not math.isfinite(x):
        return str(x)
    return f"{x:.4f}" if x == 0 or 1e-3 <= abs(x) < 1e6 else f"{x:.3e}"


def w_label(w: Sequence[float] | None) -> str:
    return "-" if w is None else "/".join(f"{float(v):g}" for v in w)


def table(cols: Sequence[str], body: Sequence[Sequence[Any]], n_labels: int = 1, cls: str = "") -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    rows = "".join("<tr>" + "".join(f"<td{'' if i < n_labels else ' class=num'}>{esc(v)}</td>" for i, v in enumerate(r))
                   + "</tr>" for r in body)
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def png_uri(fig: Any, dpi: int | None = None) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --- Fronts ---------------------------------------------------------------------------------


def seed_view(summary: Mapping[str, Any], seed: str) -> dict:
    """`summary` restricted to one seed: each method's points of that seed as its mean points
    and their front, that seed's reference point and base scores (for :func:`figures.front_figure`)."""
    from ..scoring import pareto

    maximize = [o["higher_is_better"] for o in summary["objectives"]]
    methods = {}
    for name, m in summary["methods"].items():
        pts = [{"w": p["w"], "scores": p["scores"], "n_seeds": 1} for p in m.get("points") or [] if str(p.get("seed")) == seed]
        front = [pts[i] for i in pareto.pareto_front([p["scores"] for p in pts], maximize)] if pts else []
        methods[name] = {**m, "mean_points": pts, "front": front}
    base = ((summary.get("base_policy") or {}).get("scores") or {}).get(seed)
    return {**summary, "methods": methods, "seeds": [seed],
            "ref_point": (summary.get("ref_points") or {}).get(seed, summary.get("ref_point")),
            "base_policy": {"scores": {seed: base}}}


def fronts_section(s: Mapping[str, Any]) -> str:
    parts = ["<h2 id='fronts'>Fronts</h2>",
             "<figure id='front-pooled'><img class='front' alt='front pooled over seeds' src='"
             + png_uri(figures.front_figure(s)) + "'><figcaption>Mean test scores per weight, pooled over seeds "
             "(filled: on the method's front).</figcaption></figure>"]
    seeds = [str(x) for x in s.get("seeds") or []]
    if len(seeds) > 1:
        figs = "".join(f"<figure class='card'><img class='seed-front' alt='front seed {esc(x)}' src='"
                       + png_uri(figures.front_figure(seed_view(s, x)), dpi=60) + f"'><figcaption>seed {esc(x)}</figcaption></figure>"
                       for x in seeds)
        parts.append(f"<details id='fronts-per-seed'><summary>Front per seed ({len(seeds)} seeds)</summary>"
                     f"<div class='grid'>{figs}</div></details>")
    return "\n".join(parts)


# --- Tables ---------------------------------------------------------------------------------


def tables_section(s: Mapping[str, Any]) -> str:
    labels = 2 + sum(1 for k in ("trained_on", "variant") if any(m.get(k) for m in s["methods"].values()))
    ref = s.get("ref_point")
    parts = ["<h2 id='tables'>Hypervolume and fronts</h2>",
             f"<p>HV reference point: {esc(', '.join(num(v) for v in ref) if ref else 'none')}; "
             f"source: {esc(s.get('ref_point_source'))}.</p>",
             table(tables.header(s), tables.rows(s), labels)]
    cols, body = tables.comparison_table(s)
    if body:
        parts += ["<h3>Paired comparisons</h3>", f"<p class='muted'>{esc(tables.COMPARISON_TEXT)}</p>",
                  f"<p class='muted'>{esc(tables.holm_text(s))}</p>", table(cols, body, 2)]
        if tables.ranking_line(s):
            parts.append(f"<p>{esc(tables.ranking_line(s))}</p>")
        if tables.budget_line(s):
            parts.append(f"<p>{esc(tables.budget_line(s))}</p>")
    cols, body = tables.tuning_table(s)
    if body:
        parts += ["<h3>Tuning</h3>", f"<p class='muted'>{esc(tables.TUNING_TEXT)}</p>", table(cols, body, 2)]
    for title, (cols, body), n, note in (("HV per seed", tables.per_seed_table(s), 2, None),
                                         ("Evaluation noise", tables.noise_table(s), 3, " ".join(tables.noise_lines(s))),
                                         ("Extra stage results", tables.extra_table(s), 3, None)):
        if body:
            parts += [f"<h3>{esc(title)}</h3>"] + ([f"<p class='muted'>{esc(note)}</p>"] if note else []) + [table(cols, body, n)]
    failed = [(n, m.get("error")) for n, m in s["methods"].items() if m.get("status") != "ok"]
    if failed:
        parts += ["<h3>Failed methods</h3><ul>"] + [f"<li><code>{esc(n)}</code>: {esc(e or 'no error recorded')}</li>"
                                                    for n, e in failed] + ["</ul>"]
    return "\n".join(parts)


def compute_section(s: Mapping[str, Any]) -> str:
    """The report's compute table (one counter a column) with each method's summed stage seconds."""
    cols, body = tables.compute_table(dict(s), with_time=True)
    if not cols:
        return "<h2 id='compute'>Compute</h2><p class='muted'>no methods</p>"
    return ("<h2 id='compute'>Compute</h2><p class='muted'>" + esc(tables.COMPUTE_TEXT) + " stage seconds: the "
            "method's summed stage seconds (a cached stage counts its first run).</p>" + table(cols, body, 1))


# --- Curves ---------------------------------------------------------------------------------


def svg_chart(title: str, lines: Mapping[str, Sequence[tuple[float, float]]], *, marker: float | None = None,
              width: int = 340, height: int = 190) -> str:
    """An inline SVG line chart of (x, y) series sharing axes; `marker`: a vertical line at x."""
    pts = [p for s in lines.values() for p in s]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    L, R, T, B = 52, 8, 18, 30
    sx = lambda x: L + (x - x0) / (x1 - x0) * (width - L - R)  # noqa: E731
    sy = lambda y: T + (y1 - y) / (y1 - y0) * (height - T - B)  # noqa: E731
    out = [f"<svg class='curve' role='img' aria-label='{esc(title)}' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'>",
           f"<text x='{L}' y='12' font-size='11' font-weight='600'>{esc(title)}</text>",
           f"<rect x='{L}' y='{T}' width='{width - L - R}' height='{height - T - B}' fill='none' stroke='#bbb'/>",
           f"<text x='{L - 4}' y='{T + 8}' font-size='9' text-anchor='end'>{esc(num(y1))}</text>",
           f"<text x='{L - 4}' y='{height - B}' font-size='9' text-anchor='end'>{esc(num(y0))}</text>",
           f"<text x='{L}' y='{height - B + 12}' font-size='9'>{esc(num(x0))}</text>",
           f"<text x='{width - R}' y='{height - B + 12}' font-size='9' text-anchor='end'>step {esc(num(x1))}</text>"]
    if marker is not None:
        out.append(f"<line x1='{sx(marker):.1f}' x2='{sx(marker):.1f}' y1='{T}' y2='{height - B}' stroke='#555' "
                   f"stroke-dasharray='3,3'><title>selected step {esc(marker)}</title></line>")
    lx = L
    for i, (name, series) in enumerate(lines.items()):
        color = COLORS[i % len(COLORS)]
        if len(series) == 1:
            x, y = series[0]
            out.append(f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='3' fill='{color}'/>")
        else:
            d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in series)
            out.append(f"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{d}'/>")
        out.append(f"<text x='{lx}' y='{height - 4}' font-size='9' fill='{color}'>{esc(name)}</text>")
        lx += 7 * len(name) + 12
    out.append("</svg>")
    return "".join(out)


def stage_charts(record: Mapping[str, Any]) -> list[str]:
    train, evals = record.get("train") or [], record.get("eval") or []
    ekey = curves_mod.eval_key(record)
    sel = (record.get("selection") or {}).get("selected_step")
    losses = {k: v for k, v in (("train loss", curves_mod.series(train, "loss")), (ekey, curves_mod.series(evals, ekey))) if v}
    charts = [svg_chart("loss", losses, marker=sel)] if losses else []
    for key in EXTRA_METRICS:
        s = curves_mod.series(train, key)
        if s:
            charts.append(svg_chart(key, {key: s}))
    return [c for c in charts if c]


def training_section(s: Mapping[str, Any], files: Mapping[str, bytes]) -> str:
    head = "<h2 id='training'>Training curves</h2>"
    training = s.get("training")
    if not isinstance(training, dict):
        return head + f"<p class='muted' id='training-none'>Training curves: {NOT_RECORDED}.</p>"
    stages = training.get("stages") or {}
    if not stages:
        return head + "<p class='muted' id='training-none'>No stage of this run trained a model with a recorded curve.</p>"
    flagged = [(st, st["flags"]) for st in stages.values() if st.get("flags")]
    parts = [head, "<p>Each card is one training stage (shared stages once, with the methods that use them). "
             "Flags: " + "; ".join(f"<span class='flag'>{esc(t)}</span>" for t in curves_mod.FLAGS.values()) + ".</p>"]
    if flagged:
        parts.append("<ul id='training-flags'>" + "".join(
            f"<li><code>{esc(st['stage'])}</code> ({esc(', '.join(st.get('methods') or []))}): "
            f"<span class='flag'>{esc(curves_mod.flag_text(f))}</span></li>" for st, f in flagged) + "</ul>")
    else:
        parts.append(f"<p id='training-flags'>No training stage flagged ({len(stages)} recorded).</p>")
    cards = []
    for key, st in stages.items():
        data = files.get(st.get("file", ""))
        record = json.loads(data) if data is not None else None
        charts = stage_charts(record) if record else []
        body = "".join(charts) if charts else f"<p class='muted'>curves file {esc(st.get('file'))}: {NOT_RECORDED}</p>"
        flags = (f"<div class='flag'>{esc(curves_mod.flag_text(st['flags']))}</div>" if st.get("flags") else "")
        meta = (f"<div class='muted'>{esc(st.get('trainer') or '')} · {esc(st.get('steps'))} steps · loss "
                f"{esc(num(st.get('first_loss')))} → {esc(num(st.get('last_loss')))}"
                + (f" · selected step {esc(st['selected_step'])}" if st.get("selected_step") is not None else "")
                + f" · methods: {esc(', '.join(st.get('methods') or []))}</div>")
        cards.append(f"<div class='card stage' data-stage='{esc(key)}'><h4>{esc(st['stage'])}</h4>{meta}{flags}"
                     f"<div class='grid'>{body}</div></div>")
    parts.append("<div class='grid' id='training-stages'>" + "".join(cards) + "</div>")
    return "\n".join(parts)


# --- Samples --------------------------------------------------------------------------------


def samples_section(s: Mapping[str, Any], files: Mapping[str, bytes]) -> str:
    head = "<h2 id='samples'>Sample responses</h2>"
    data = files.get(((s.get("samples") or {}).get("file")) or "samples.json")
    if data is None:
        return head + f"<p class='muted' id='samples-none'>Sample responses: {NOT_RECORDED}.</p>"
    samples = json.loads(data)
    points = samples.get("points") or []
    if not points:
        return head + "<p class='muted' id='samples-none'>No evaluated point has samples.</p>"
    objectives = samples.get("objectives") or []
    methods = list(dict.fromkeys(p["method"] for p in points))
    weights = list(dict.fromkeys(w_label(p.get("w")) for p in points))
    opts = lambda vals: "<option value='*'>all</option>" + "".join(  # noqa: E731
        f"<option value='{esc(v)}'>{esc(v)}</option>" for v in vals)
    filters = (f"<div class='filters'><label>method <select id='filter-method'>{opts(methods)}</select></label>"
               f"<label>weight <select id='filter-weight'>{opts(weights)}</select></label></div>")
    n_rows = max(len(p.get("samples") or []) for p in points)

    def attrs(p: Mapping[str, Any]) -> str:
        return f" data-point='1' data-method='{esc(p['method'])}' data-w='{esc(w_label(p.get('w')))}'"

    head_row = "<th>prompt</th>" + "".join(f"<th{attrs(p)}>{esc(p['method'])} @ w={esc(w_label(p.get('w')))}</th>"
                                           for p in points)
    rows = []
    for i in range(n_rows):
        first = next((p["samples"][i] for p in points if len(p.get("samples") or []) > i), {})
        cells = [f"<td>{esc(first.get('prompt', ''))}</td>"]
        for p in points:
            smp = (p.get("samples") or [])[i] if len(p.get("samples") or []) > i else None
            if smp is None:
                cells.append(f"<td{attrs(p)} class='muted'>-</td>")
                continue
            sc = ", ".join(f"{esc(o)}={esc(num((smp.get('scores') or {}).get(o)))}" for o in objectives)
            cells.append(f"<td{attrs(p)}>{esc(smp.get('response', ''))}<div class='scores'>{sc}</div></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (head + f"<p class='muted'>Seed {esc(samples.get('seed'))}: the first response to each of the first "
            f"{esc(samples.get('per_point'))} test prompts, per method and weight, with its scores.</p>" + filters
            + f"<div class='samples-wrap'><table class='samples' id='samples-table'><thead><tr>{head_row}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


# --- The page -------------------------------------------------------------------------------


def render_html(summary: Mapping[str, Any], files: Mapping[str, bytes] | None = None) -> str:
    """The page for `summary` (as normalised by :func:`merge.normalize`) and the run's files."""
    s = merge.normalize(dict(summary))
    files = files or {}
    run = s.get("run") or {}
    objs = ", ".join(f"{o['name']} ({'higher' if o['higher_is_better'] else 'lower'} is better)" for o in s["objectives"])
    meta = (f"<p>{esc(s.get('task_description') or '')}</p><p>Objectives: {esc(objs)}. Seeds: "
            f"{esc(', '.join(str(x) for x in s.get('seeds') or []))}. Weights: {len(s.get('weights') or [])}. "
            f"Run {esc(run.get('run_id', '-'))}, {esc(run.get('date', '-'))}; git {esc(s.get('git_commit') or '-')}.</p>")
    for line in (tables.budget_text(s), tables.split_text(s)):
        if line:
            meta += f"<p>{esc(line[2:])}</p>"
    nav = ("<nav><a href='#fronts'>fronts</a><a href='#tables'>tables</a><a href='#compute'>compute</a>"
           "<a href='#training'>training</a><a href='#samples'>samples</a></nav>")
    body = "\n".join([f"<h1>sipo-bench: {esc(s['task'])}</h1>", meta, nav, fronts_section(s), tables_section(s),
                      compute_section(s), training_section(s, files), samples_section(s, files)])
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>sipo-bench: {esc(s['task'])}</title><style>{CSS}</style></head>\n<body>\n{body}\n"
            f"<script>{SCRIPT}</script>\n</body></html>\n")


def run_dir_files(d: Path) -> dict[str, bytes]:
    """The run files of an OUT dir that the page shows (curves/, samples.json)."""
    d = Path(d)
    files: dict[str, bytes] = {}
    if (d / "curves").is_dir():
        for p in sorted((d / "curves").glob("*.json")):
            files[f"curves/{p.name}"] = p.read_bytes()
    if (d / "samples.json").is_file():
        files["samples.json"] = (d / "samples.json").read_bytes()
    return files


def render_sweep_html(index: Mapping[str, Any], md: str, png: bytes) -> str:
    """The page of a sweep dir: its figure, its tables (sweep.md) and a link to each point's page."""
    task = esc(index.get("task", ""))
    links = "".join(f"<li><a href='{esc(p['dir'])}/index.html'>{esc(p['label'])}</a></li>" for p in index.get("points") or [])
    img = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    body = (f"<h1>sipo-bench sweep: {task}</h1><figure id='front-pooled'><img class='front' alt='sweep figure' "
            f"src='{img}'></figure><h2>Points</h2><ul>{links}</ul><h2>Tables</h2><pre>{esc(md)}</pre>")
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>sipo-bench sweep: {task}</title>"
            f"<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")
