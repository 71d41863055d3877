"""The tables of a report, as (header, rows) of text cells, from `summary.json` only: the main
table, per seed, the paired comparisons and their ranking line, compute, evaluation noise,
extra scorers."""

from __future__ import annotations

import statistics
from typing import Any, Iterable, Sequence

from ..execution import compute
from ..scoring import stats
from .text import count as _count, num as _num, vec as _vec


def named_vec(summary: dict, values: Sequence[float]) -> str:
    return ", ".join(f"{o['name']}={_num(v)}" for o, v in zip(summary["objectives"], values))


def _interval_text(iv: dict | None) -> str:
    return f"[{_num(iv['lo'])}, {_num(iv['hi'])}]" if iv else ""


def interval_kinds(ivs: Iterable[dict | None]) -> list[str]:
    return sorted({stats.interval_label(iv) for iv in ivs if iv})


def hv_intervals(summary: dict, key: str) -> list[dict]:
    return [(m.get(key) or {}).get("interval") for m in summary["methods"].values()]


def kind_suffix(kinds: list[str]) -> str:
    """Header suffix naming the interval: one kind -> ` [95% t]`; several -> each cell names its own."""
    if not kinds:
        return ""
    return f" [{kinds[0]}]" if len(kinds) == 1 else " [interval: kind per cell]"


def _hv_cell(hv: dict | None, n_seeds: int, mixed: bool = False) -> str:
    if not hv:
        return "-"
    text = _num(hv["mean"])
    iv = hv.get("interval")
    if iv:
        text += " " + _interval_text(iv) + (f" ({stats.interval_label(iv)})" if mixed else "")
    n = len(hv.get("per_seed") or {})
    if n and n < n_seeds:
        text += f" ({n}/{n_seeds} seeds)"
    return text


def direction_text(o: dict) -> str:
    return "higher is better" if o["higher_is_better"] else "lower is better"


def extra_objective_list(summary: dict) -> list[dict]:
    """Objectives of the run's `extra_scorers`: reported, not in the weights, front or HV."""
    return list(summary.get("extra_objectives") or [])


def extra_lines(summary: dict) -> list[str]:
    extra = extra_objective_list(summary)
    if not extra:
        return []
    hv = ", ".join(summary.get("hv_objectives") or [o["name"] for o in summary["objectives"]])
    base = [v for v in ((summary.get("base_policy") or {}).get("extra_scores") or {}).values() if v]
    base_text = ("; base policy (mean over seeds): " + ", ".join(
        f"{o['name']}={_num(sum(b[o['name']] for b in base) / len(base))}" for o in extra if all(o["name"] in b for b in base))
        if base else "")
    return ["- Extra objectives (`extra_scorers`, scored on every point; reported only): "
            + ", ".join(f"{o['name']} ({direction_text(o)}; scorer {o.get('scorer')})" for o in extra) + base_text + ".",
            f"- The weight grid, fronts, HV and IGD+ cover the task's objectives only: {hv}."]


def has_floor(summary: dict) -> bool:
    return summary.get("floor") is not None


def label_columns(summary: dict) -> list[str]:
    """`trained on` / `variant` columns, when any method entry carries them (filled by methods)."""
    return [k for k in ("trained_on", "variant") if any(m.get(k) for m in summary["methods"].values())]


def header(summary: dict, *, with_ref: bool = True) -> list[str]:
    """Column names of table.md's main table: the reference point and the kind and level of
    the interval in each HV header. No timing column: table.md holds only what two runs of
    the same config share."""
    ref = f" {_vec(summary.get('ref_point'))}" if with_ref else ""
    cols = ["method", *[k.replace("_", " ") for k in label_columns(summary)], "status",
            f"HV vs ref{ref}{kind_suffix(interval_kinds(hv_intervals(summary, 'hypervolume')))}"]
    if has_floor(summary):
        floor = " " + _vec(summary["floor"]) if with_ref else ""
        cols.append(f"HV vs floor{floor}{kind_suffix(interval_kinds(hv_intervals(summary, 'hypervolume_floor')))}")
    cols += ["IGD+ (lower is better)"]
    if has_igd_seeds(summary):
        cols.append(f"IGD+ per seed (lower is better){kind_suffix(interval_kinds(hv_intervals(summary, 'igd_plus_per_seed')))}")
    cols += ["front points"]
    cols += [f"best {o['name']} ({'max' if o['higher_is_better'] else 'min'})" for o in summary["objectives"]]
    cols += [f"best {o['name']} ({'max' if o['higher_is_better'] else 'min'}; extra)" for o in extra_objective_list(summary)]
    return cols


def rows(summary: dict, *, with_time: bool = False) -> list[list[str]]:
    """One row of text per method, in the summary's order; '-' where a value is absent.
    `with_time` appends the method's summed stage seconds (console only: it varies by run)."""
    n_seeds = len(summary.get("seeds") or [])
    mixed = {key: len(interval_kinds(hv_intervals(summary, key))) > 1 for key in stats.INDICATORS}
    out = []
    for name, m in summary["methods"].items():
        best = m.get("best") or {}
        row = [name, *[str(m.get(k) or "-") for k in label_columns(summary)], str(m.get("status")),
               _hv_cell(m.get("hypervolume"), n_seeds, mixed["hypervolume"])]
        if has_floor(summary):
            row.append(_hv_cell(m.get("hypervolume_floor"), n_seeds, mixed["hypervolume_floor"]))
        row += [_num(m.get("igd_plus"))]
        if has_igd_seeds(summary):
            row.append(_hv_cell(m.get("igd_plus_per_seed"), n_seeds, mixed["igd_plus_per_seed"]))
        row += [str(len(m.get("front") or []))]
        row += [_num(best.get(o["name"])) for o in summary["objectives"] + extra_objective_list(summary)]
        if with_time:
            row.append(_num(m.get("seconds")))
        out.append(row)
    return out


def has_igd_seeds(summary: dict) -> bool:
    """Whether the summary has IGD+ per seed (schema 3 and upgraded summaries)."""
    return any("igd_plus_per_seed" in m for m in summary["methods"].values())


def hv_refs(summary: dict) -> list[tuple[str, str]]:
    """(summary key, short name) of each HV reference the summary has."""
    return [("hypervolume", "ref")] + ([("hypervolume_floor", "floor")] if has_floor(summary) else [])


def per_seed_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Per-seed HVs (one row per method and reference), shown when an HV interval is a
    t-interval (fewer than 10 seeds): the values the interval is computed from."""
    ivs = [iv for key in stats.HV_KEYS for iv in hv_intervals(summary, key) if iv]
    if not any(iv["method"] == "t" for iv in ivs):
        return [], []
    seeds = [str(x) for x in summary.get("seeds") or []]
    body = []
    for name, m in summary["methods"].items():
        for key, ref in hv_refs(summary):
            per = (m.get(key) or {}).get("per_seed")
            if per:
                body.append([name, ref, *[_num(per.get(s)) for s in seeds]])
    return ["method", "HV vs", *[f"seed {s}" for s in seeds]], body


def _p_cell(p: dict | None) -> str:
    if not p:
        return "-"
    how = f"exact, {p['patterns']} patterns" if p.get("method") == "exact" else f"Monte Carlo, {p.get('draws')} draws"
    return f"{_num(p['p'])} ({how})"


def _compared(summary: dict) -> list[tuple[str, str, str]]:
    """(indicator key, Δ label, suffix) of each indicator the comparisons cover: HV vs each
    reference, then IGD+ per seed when the summary has it."""
    out = [(key, f"ΔHV vs {ref}", f"vs {ref}") for key, ref in hv_refs(summary)]
    if any("igd_plus_per_seed" in c for m in summary["methods"].values() for c in (m.get("comparisons") or {}).values()):
        out.append(("igd_plus_per_seed", "ΔIGD+", "IGD+"))
    return out


def comparison_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Paired comparisons: one row per declared (method, baseline) pair; for each HV reference
    (and IGD+ per seed, where a win is a lower IGD+) the mean difference with its paired
    interval, wins/ties/losses out of n, the sign-flip p and the Holm-adjusted p (family: the
    column's comparisons against that baseline)."""
    items = [(name, b, c) for name, m in summary["methods"].items() for b, c in (m.get("comparisons") or {}).items()]
    if not items:
        return [], []
    refs = _compared(summary)
    cols = ["method", "baseline"]
    for key, delta, ref in refs:
        kinds = interval_kinds((c.get(key) or {}).get("interval") for _, _, c in items)
        cols += [f"{delta}{kind_suffix(kinds)}", f"W/T/L {ref}", f"p {ref} (sign-flip)", f"p Holm {ref}"]
    body = []
    for name, b, c in items:
        row = [name, b]
        for key, _, _ in refs:
            d = c.get(key)
            if not d:
                row += ["-", "-", "-", "-"]
                continue
            mixed = len(interval_kinds((x.get(key) or {}).get("interval") for _, _, x in items)) > 1
            iv = d.get("interval")
            cell = _num(d["mean"]) + (" " + _interval_text(iv) if iv else "")
            cell += f" ({stats.interval_label(iv)})" if iv and mixed else ""
            row += [cell, f"{d['wins']}/{d['ties']}/{d['losses']} of {d['n']}", _p_cell(d.get("p_value")),
                    _num((d.get("p_holm") or {}).get("p"))]
        body.append(row)
    return cols, body


def _sign(d: dict | None, higher_is_better: bool) -> str | None:
    """'+' when the method is better than the baseline on average, '−' when worse, '=' on a tie."""
    if not d:
        return None
    mean = float(d["mean"]) * (1.0 if higher_is_better else -1.0)
    return "=" if abs(mean) <= stats.TIE_TOL else "+" if mean > 0 else "−"


def ranking_line(summary: dict) -> str:
    """Whether each comparison's direction (method better or worse than its baseline, by the
    sign of the mean paired difference) is the same against both HV references and by IGD+,
    naming every comparison where it flips and what it depends on. '' without comparisons."""
    refs = _compared(summary)
    items = [(name, b, c) for name, m in summary["methods"].items() for b, c in (m.get("comparisons") or {}).items()]
    if not items or len(refs) < 2:
        return ""
    names = {"hypervolume": "vs ref", "hypervolume_floor": "vs floor", "igd_plus_per_seed": "by IGD+"}
    full = {"hypervolume": "HV vs ref", "hypervolume_floor": "HV vs floor", "igd_plus_per_seed": "IGD+"}
    what = " and ".join([", ".join(full[k] for k, _, _ in refs[:-1]), full[refs[-1][0]]])
    flips, checked = [], 0
    for name, b, c in items:
        signs = {k: _sign(c.get(k), stats.INDICATORS[k]) for k, _, _ in refs}
        signs = {k: v for k, v in signs.items() if v is not None}
        if len(signs) < 2:
            continue
        checked += 1
        if len(set(signs.values())) == 1:
            continue
        hv = {k: signs[k] for k in stats.HV_KEYS if k in signs}
        igd = signs.get("igd_plus_per_seed")
        if len(set(hv.values())) > 1:
            why = "ranking depends on the reference point"
            same = [full[k] for k, v in hv.items() if v == igd]
            why += f" (IGD+ sides with {same[0]})" if igd is not None and same else ""
        else:
            why = "IGD+ disagrees with HV"
        flips.append(f"{name} vs {b}: " + ", ".join(f"{v} {names[k]}" for k, v in signs.items()) + f": {why}")
    if not checked:
        return ""
    head = (f"Ranking across {what} (the sign of each mean paired difference; + = the method is better): ")
    if not flips:
        return head + f"the same in all {checked} comparisons."
    return head + f"the same in {checked - len(flips)} of {checked} comparisons; it flips for " + "; ".join(flips) + "."


def holm_text(summary: dict) -> str:
    """What the `p Holm` columns adjust over: each family's baseline, indicator and size."""
    fams: dict[str, int] = {}
    for m in summary["methods"].values():
        for c in (m.get("comparisons") or {}).values():
            for d in c.values():
                h = (d or {}).get("p_holm")
                if h:
                    fams[h["family"]] = h["m"]
    if not fams:
        return ""
    names = {"hypervolume": "HV vs ref", "hypervolume_floor": "HV vs floor", "igd_plus_per_seed": "IGD+"}

    def label(f: str) -> str:
        key, _, b = f.partition(" vs ")
        return f"{names.get(key, key)} vs {b}: {fams[f]}"

    return ("p Holm: the sign-flip p adjusted by Holm's step-down method within its family, the comparisons of one "
            "column against one baseline (family sizes: " + "; ".join(label(f) for f in fams) + ").")


COMPUTE_LABELS = {"optimizer_steps": "optimizer steps", "tokens_trained": "training tokens",
                  "tokens_generated": "tokens generated", "scorer_calls": "scorer calls"}


COMPUTE_TEXT = (
    "What each method's stages spent, counted by the stages as they ran: optimizer steps and the tokens the training "
    "passes read (a preference pair: its prompt twice and both responses, per epoch), tokens generated (every "
    "generation, training-time and evaluation), texts sent to a scorer. The shared data, SFT model and base-policy "
    "evaluation are left out; a stage several methods use (e.g. the DPO endpoints) counts for each. "
    "\"not recorded\": the summary predates counting, or a stage it needs was cached before counting.")


def budget_text(summary: dict) -> str:
    """The run's common training budget (`budget:`), in one line; empty when it set none."""
    budget = (summary.get("config") or {}).get("budget") or {}
    if not budget:
        return ""
    return ("- Budget, set for every method (`budget:`; SIPO's re-alignment epochs are its own): "
            + ", ".join(f"{k} {v}" for k, v in budget.items()) + ".")


def split_text(summary: dict) -> str:
    """A line saying the points are validation numbers, when they are (`eval_split: val`)."""
    if (summary.get("evaluation") or {}).get("split") != "val":
        return ""
    return ("- Evaluated on the VALIDATION prompts (`eval_split: val`: for choosing settings); these are not test "
            "numbers and are not for reporting.")


def tuning_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the tuning section (no rows without `tuning`): every trial's validation
    HV, the chosen one marked, the choice's note on its row (on the first when none is chosen)."""
    rows = []
    for method, t in (summary.get("tuning") or {}).items():
        note_row = t["chosen"] or t["trials"][0]["label"]
        for trial in t["trials"]:
            values = ", ".join(f"{k}={v}" for k, v in trial["values"].items())
            hv = "failed" if trial["hv_val"] is None else _num(trial["hv_val"])
            rows.append([method, values, hv, "**chosen**" if trial["label"] == t["chosen"] else "",
                         (t.get("note") or "") if trial["label"] == note_row else ""])
    return ["method", "trial", "HV vs ref on validation (mean over seeds)", "chosen", "note"], rows


TUNING_TEXT = ("Each method ran once per trial of its declared search space (`tune`; the same number of trials "
               "for every method, sharing data, base model and DPO endpoints), evaluated on the validation prompts; "
               "the chosen trial has the highest mean validation HV vs the base policy's reference point (ties: the "
               "first). Copy the chosen values into `method_options` of the run that reports test numbers.")


def budget_line(summary: dict) -> str:
    """The declared comparisons whose two methods trained for different numbers of optimizer steps
    (summed over seeds, from the compute counters), as one line; "" when every compared pair is
    equal or a count is not recorded. A ΔHV between unequal budgets includes what the extra steps
    buy, so the report says so beside the comparison instead of leaving it to the reader."""
    methods = summary["methods"]

    def steps(name: str) -> int | None:
        c = (methods.get(name) or {}).get("compute") or {}
        return None if c.get("optimizer_steps") is None else int(c["optimizer_steps"])

    unequal = []
    for name, m in methods.items():
        for base in m.get("comparisons") or {}:
            a, b = steps(name), steps(base)
            if a is not None and b is not None and a != b:
                unequal.append(f"{name} {a:,} vs {base} {b:,}" + (f" (x{a / b:.2f})" if b else ""))
    if not unequal:
        return ""
    return ("Unequal training budgets (optimizer steps over all seeds, section Compute): " + "; ".join(unequal)
            + ". Each such ΔHV includes what the extra steps buy; it is not the method's effect at an equal budget.")


def compute_table(summary: dict, *, with_time: bool = False) -> tuple[list[str], list[list[str]]]:
    """Per method: the :mod:`sipo_bench.execution.compute` counters of its stages (`not recorded` for a
    summary without them); `with_time` adds their summed stage seconds (console only)."""
    if not summary["methods"]:
        return [], []
    cols = ["method", *COMPUTE_LABELS.values()] + (["stage seconds"] if with_time else [])
    body = []
    for name, m in summary["methods"].items():
        c = m.get("compute")
        row = [name] + [("not recorded" if not c or c.get(f) is None else f"{int(c[f]):,}") for f in compute.FIELDS]
        if with_time:
            row.append(_num(c.get("seconds")) if c else "not recorded")
        body.append(row)
    return cols, body


def noise_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Evaluation noise vs seed-to-seed spread of HV, per method and reference."""
    body = []
    for name, m in summary["methods"].items():
        for key, ref in hv_refs(summary):
            n = (m.get(key) or {}).get("noise")
            if n:
                share = n["eval_var"] / n["seed_var"] if n.get("seed_var") else None
                body.append([name, ref, n.get("advice") or "-", _num(n.get("seed_sd")), _num(n["eval_se"]),
                             _num(n.get("ratio")), _num(share)])
    if not body:
        return [], []
    return ["method", "HV vs", "to narrow", "seed sd", "eval SE (rms)", "eval SE / seed sd", "eval var / seed var"], body


def noise_lines(summary: dict) -> list[str]:
    """What the evaluation-noise table means, and the verdict over methods."""
    ev = summary.get("evaluation") or {}
    reps = ev.get("noise_replicates")
    n_prompts = sorted({v for v in (ev.get("test_prompts") or {}).values() if v})
    lines = [f"HV's evaluation-noise SE per method and seed: a bootstrap over the test prompts ({reps} replicates; "
             "each replicate resamples the prompts once and applies the same resample to every point of the method "
             "and to the base policy's reference point), reported as the root mean square over seeds. seed sd: the sd "
             "of the per-seed HVs, which contains the evaluation noise. When eval SE / seed sd > 0.25 evaluation "
             "noise is a sizeable share of the spread between seeds: more test prompts narrow the intervals; below, "
             "training variation dominates: more seeds do."]
    if n_prompts:
        lines[0] += f" Test prompts per seed: {', '.join(str(x) for x in n_prompts)}"
        spp = ev.get("samples_per_prompt") or 1
        lines[0] += f" ({spp} samples each)." if spp > 1 else "."
    for key, ref in hv_refs(summary):
        ratios = [m[key]["noise"]["ratio"] for m in summary["methods"].values()
                  if (m.get(key) or {}).get("noise") and m[key]["noise"].get("ratio") is not None]
        if ratios:
            med = statistics.median(ratios)
            verdict = "add test prompts" if med > 0.25 else "add seeds"
            lines.append(f"HV vs {ref}: eval SE / seed sd has median {_num(med)} over {_count(len(ratios), 'method')} "
                         f"(range {_num(min(ratios))}-{_num(max(ratios))}): {verdict}.")
    return lines


def is_timing_key(key: str) -> bool:
    """Fields that measure time differ between reruns of the same config: kept out of
    table.md (they stay in summary.json and the console)."""
    return key == "seconds" or key.endswith("_seconds")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def extra_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """Flat numeric fields of each method's extra stage results, one row per (method, stage,
    field), one column per seed (plus their mean with several seeds). Nested values and text
    are left to summary.json. ([], []) when no method has any."""
    seeds: list[str] = []
    table: dict[tuple[str, str, str], dict[str, float]] = {}
    for name, m in summary["methods"].items():
        for seed, stages in (m.get("extra") or {}).items():
            for stage, result in (stages or {}).items():
                for field, value in (result or {}).items() if isinstance(result, dict) else ():
                    if _is_number(value) and not is_timing_key(field):
                        table.setdefault((name, stage, field), {})[str(seed)] = value
                        if str(seed) not in seeds:
                            seeds.append(str(seed))
    if not table:
        return [], []
    seeds.sort(key=lambda s: (not s.lstrip("-").isdigit(), int(s) if s.lstrip("-").isdigit() else 0, s))
    cols = ["method", "stage", "field", *[f"seed {s}" for s in seeds]] + (["mean"] if len(seeds) > 1 else [])
    out = []
    for (name, stage, field), by_seed in table.items():
        vals = [by_seed.get(s) for s in seeds]
        row = [name, stage, field, *[_num(v) for v in vals]]
        if len(seeds) > 1:
            present = [float(v) for v in vals if v is not None]
            row.append(_num(sum(present) / len(present)))
        out.append(row)
    return cols, out


COMPARISON_TEXT = (
    "ΔHV = HV(method) − HV(baseline) per seed, over the seeds both have (the seeds share data, base "
    f"model and DPO endpoints, so the comparison is paired): the mean with a paired 95% interval (paired t 95% CI, "
    f"Student t on the n per-seed differences, up to {stats.MIN_BOOTSTRAP - 1} pairs; percentile bootstrap 95% CI from "
    f"{stats.MIN_BOOTSTRAP}), wins/ties/losses out of n seeds, "
    "and the two-sided sign-flip permutation p-value (exact over all 2^n sign patterns up to n = 16, Monte Carlo "
    "beyond, the number of draws stated). ΔIGD+ likewise from IGD+ per seed (each seed's points against that "
    "seed's union front); lower IGD+ is better, so a win is ΔIGD+ < 0.")
