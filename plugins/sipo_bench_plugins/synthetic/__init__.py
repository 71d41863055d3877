"""The embedded synthetic task family (synthetic-hh, synthetic-cv, synthetic-3obj).

Tasks and the `synthetic-oracle` scorer are registered lazily; the SFT model (torch) is only
imported when a base stage runs. See docs/synthetic_task.md.
"""

from __future__ import annotations

from sipo_bench.api import Lazy, Objective, hookimpl

__version__ = "0.1.0"
SIPO_BENCH_API = "0.2"  # the sipo_bench.api version this plugin is written for

_MODULE = "sipo_bench_plugins.synthetic.task"


@hookimpl
def sipo_bench_register_tasks() -> list:
    return [
        Lazy("synthetic-hh", f"{_MODULE}:SyntheticHH", "Synthetic BeaverTails-like task: helpful vs. harmless."),
        Lazy("synthetic-cv", f"{_MODULE}:SyntheticCV", "Synthetic HelpSteer-like task: correct vs. concise."),
        Lazy("synthetic-3obj", f"{_MODULE}:Synthetic3Obj", "Synthetic three-objective task: helpful, harmless, concise."),
    ]


@hookimpl
def sipo_bench_register_objectives() -> list:
    from .grammar import OBJECTIVE_DESCRIPTIONS

    return [Objective(name, True, f"synthetic oracle: {desc}") for name, desc in OBJECTIVE_DESCRIPTIONS.items()]


@hookimpl
def sipo_bench_register_scorers() -> list:
    return [Lazy("synthetic-oracle", f"{_MODULE}:OracleScorer",
                 "Exact oracle of the synthetic tasks: parses the response text (no model).")]
