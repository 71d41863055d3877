"""The committed `results/`: the statistics a report derives from their summaries.

These read the committed summary.json files only (no training): the ranking line of the main
table names the comparisons whose direction depends on the reference point, and (below) the
hypervolumes agree with an independent implementation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sipo_bench import report

RESULTS = Path(__file__).resolve().parents[1] / "results"
SUMMARIES = sorted(RESULTS.glob("**/summary.json"))


def test_there_are_committed_summaries():
    assert len(SUMMARIES) >= 4, SUMMARIES


def test_main_table_says_where_the_ranking_depends_on_the_reference_point():
    s = report.load_summaries([RESULTS / "synthetic-main"])[0]
    line = report.ranking_line(s)
    # MODPO beats MOD against the SFT reference point on 9 of 10 seeds and loses against the floor on 8 of 10
    assert "modpo vs mod: + vs ref, − vs floor, − by IGD+: ranking depends on the reference point" in line
    assert "the same in 8 of 12 comparisons" in line
    c = s["methods"]["sipo"]["comparisons"]["mod"]
    assert c["hypervolume"]["interval"]["method"] == "paired t" and c["hypervolume"]["p_holm"]["m"] == 6
    assert c["igd_plus_per_seed"]["wins"] == 7 and c["igd_plus_per_seed"]["n"] == 10
