"""Hub-backed tasks of the SIPO paper: beavertails (PKU-SafeRLHF-10K) and helpsteer.

Registered lazily: listing plugins imports neither `datasets` nor `transformers`.
"""

from __future__ import annotations

from sipo_bench.api import Lazy, hookimpl

from .objectives import OBJECTIVES

__version__ = "0.1.0"
SIPO_BENCH_API = "0.2"  # the sipo_bench.api version this plugin is written for


@hookimpl
def sipo_bench_register_tasks() -> list:
    return [
        Lazy("beavertails", "sipo_bench_plugins.paper_tasks.beavertails:BeaverTailsTask",
             "PKU-SafeRLHF-10K (BeaverTails-10K): helpfulness vs harmlessness, beaver-7b reward/cost scorers."),
        Lazy("helpsteer", "sipo_bench_plugins.paper_tasks.helpsteer:HelpSteerTask",
             "nvidia/HelpSteer pairs: correctness vs verbosity (optionally helpfulness), dpa-rm scorer."),
    ]


@hookimpl
def sipo_bench_register_objectives() -> list:
    return list(OBJECTIVES.values())
