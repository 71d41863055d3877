"""SIPO: self-improvement towards Pareto optimality (Li et al., ACL Findings 2025).

The method plugin `sipo` (stages in `.stages`, planning in `.method`, decision rules in
`.selection`). Registered lazily: listing plugins does not import torch.
"""

from __future__ import annotations

from sipo_bench.api import Lazy, hookimpl

__version__ = "0.1.0"
SIPO_BENCH_API = "0.2"  # the sipo_bench.api version this plugin is written for


@hookimpl
def sipo_bench_register_methods() -> list:
    return [Lazy("sipo", "sipo_bench_plugins.sipo.method:SIPOMethod",
                 "SIPO: sample, review, rewrite, keep Pareto-optimal responses, re-align (Li et al. 2025).")]
