"""The committed `results/`: the statistics a report derives from their summaries.

These read the committed summary.json files only (no training): the ranking line of the main
table names the comparisons whose direction depends on the reference point, and (below) the
hypervolumes agree with an independent implementation.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sipo_bench.reporting import report
from sipo_bench.reporting import merge
from sipo_bench.reporting import tables

RESULTS = Path(__file__).resolve().parents[1] / "results"
SUMMARIES = sorted(RESULTS.glob("**/summary.json"))


def test_there_are_committed_summaries():
    assert len(SUMMARIES) >= 4, SUMMARIES


def test_main_table_says_where_the_ranking_depends_on_the_reference_point():
    s = merge.load_summaries([RESULTS / "synthetic-main"])[0]
    line = tables.ranking_line(s)
    # tuned MODPO beats SIPO against the SFT reference point on 7 of 10 seeds and loses against the floor
    assert "modpo vs sipo: + vs ref, − vs floor, − by IGD+: ranking depends on the reference point" in line
    assert "dpo-lw vs sipo: + vs ref, + vs floor, − by IGD+: IGD+ disagrees with HV" in line
    assert "the same in 19 of 24 comparisons" in line
    c = s["methods"]["sipo"]["comparisons"]["mod"]
    assert c["hypervolume"]["interval"]["method"] == "paired t" and c["hypervolume"]["p_holm"]["m"] == 8
    assert c["igd_plus_per_seed"]["wins"] == 9 and c["igd_plus_per_seed"]["n"] == 10
    # SIPO's compute-matched controls: the same optimizer steps as SIPO, compared with it seed by seed
    steps = {m: s["methods"][m]["compute"]["optimizer_steps"] for m in ("sipo", "sipo@control=original-pairs",
                                                                      "sipo@control=self-pairs")}
    assert len(set(steps.values())) == 1, steps
    for control in ("sipo@control=original-pairs", "sipo@control=self-pairs"):
        assert s["methods"][control]["comparisons"]["sipo"]["hypervolume"]["n"] == 10


def _hv_cases():
    """(summary, method, reference kind, seed, points, reference point, stored HV) of every
    per-seed HV of every ok method in every committed summary, against both references."""
    import json

    for path in SUMMARIES:
        s = json.loads(path.read_text())
        maximize = [bool(o["higher_is_better"]) for o in s["objectives"]]
        for name, m in s["methods"].items():
            if m.get("status") != "ok":
                continue
            for key, refs in (("hypervolume", s.get("ref_points") or {}),
                              ("hypervolume_floor", {seed: s.get("floor") for seed in s.get("ref_points") or {}})):
                for seed, stored in ((m.get(key) or {}).get("per_seed") or {}).items():
                    pts = [p["scores"] for p in m["points"] if str(p["seed"]) == seed]
                    yield (f"{path.parent.relative_to(RESULTS)}:{name}:{key}:{seed}", pts, refs[seed], maximize, stored)


def test_hypervolume_agrees_with_moocore_on_every_committed_summary():
    """Every per-seed HV of the committed results, recomputed by moocore (an independent C
    implementation) from the summary's points and reference points, equals the stored value
    and today's `pareto.hypervolume` to 1e-12 relative (they agree exactly today)."""
    moocore = pytest.importorskip("moocore", reason="moocore is a dev dependency: pip install -e '.[dev]'")
    from sipo_bench.scoring import pareto

    cases = list(_hv_cases())
    assert len(cases) >= 642, len(cases)  # main, ablation, reference and 4 sweep points: methods x seeds x 2 references
    bad, exact, positive = [], 0, 0
    for label, pts, ref, maximize, stored in cases:
        theirs = float(moocore.hypervolume(pts, ref=ref, maximise=maximize))
        ours = pareto.hypervolume(pts, ref, maximize)
        if not (math.isclose(theirs, stored, rel_tol=1e-12, abs_tol=0.0) and math.isclose(ours, stored, rel_tol=1e-12, abs_tol=0.0)):
            bad.append((label, stored, ours, theirs))
        exact += theirs == stored
        positive += stored > 0
    assert not bad, bad[:5]
    assert positive > len(cases) // 2  # not a comparison of zeros


@pytest.mark.parametrize("path", SUMMARIES, ids=lambda p: str(p.parent.relative_to(RESULTS)))
def test_committed_tables_are_rendered_from_their_summaries(path):
    """Each committed table.md is what `sipo-bench report` renders from the summary beside it
    today (re-render after changing a renderer: `sipo-bench report results/<dir>`)."""
    s = merge.load_summaries([path.parent])[0]
    assert (path.parent / "table.md").read_text() == report.table_md(s)


def test_committed_sweep_report_is_rendered_from_its_points():
    from sipo_bench.reporting.sweep_report import load_sweep, sweep_md

    d = RESULTS / "synthetic-conflict-sweep"
    index, summaries = load_sweep(d)
    assert (d / "sweep.md").read_text() == sweep_md(index, summaries)


def test_main_preset_uses_the_settings_the_committed_tuning_chose():
    """presets/synthetic-main.yaml runs every tuned method at the trial results/synthetic-tune
    chose on validation HV (the tuning protocol, issue 22), and that choice is the best trial."""
    import json

    import yaml

    s = json.loads((RESULTS / "synthetic-tune" / "summary.json").read_text())
    assert s["evaluation"]["split"] == "val"
    preset = yaml.safe_load((RESULTS.parent / "presets" / "synthetic-main.yaml").read_text())
    for method, t in s["tuning"].items():
        ok = [x for x in t["trials"] if x["hv_val"] is not None]
        if t["chosen"] is None:  # nothing to choose (all tied): the preset keeps the task default
            assert len({x["hv_val"] for x in ok}) == 1 and method not in preset.get("method_options", {})
            continue
        best = max(ok, key=lambda x: x["hv_val"])
        assert t["chosen"] == best["label"] and t["chosen_values"] == best["values"]
        assert preset["method_options"][method] == t["chosen_values"], method
