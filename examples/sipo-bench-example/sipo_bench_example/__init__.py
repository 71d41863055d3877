"""A small, complete third-party sipo-bench plugin (the template to copy).

It registers:

- the method `example-expo` (:mod:`sipo_bench_example.expo`): ExPO-style *model extrapolation*
  of another method's per-objective models (default: the shared `dpo` adapters, reused through
  `ctx.method("dpo")` so they are trained once per run), mixed per preference weight as a soup
  or by MOD decoding. It has a config dataclass with help text, a stage function of its own
  (passed as a function object) and a policy family;
- the scorer `example-length` (:mod:`sipo_bench_example.length`): response length, a
  lower-is-better objective to add to any task's evaluation with `extra_scorers`.

Both are registered lazily (`Lazy("name", "module:Class", "description")`): listing plugins
imports nothing but this file. Plugin modules must not import torch at import time; stage
functions import what they need when they run.
"""

from __future__ import annotations

from sipo_bench.api import Lazy, hookimpl

__version__ = "0.2.0"
SIPO_BENCH_API = "0.2"  # the sipo_bench.api version this plugin is written for


@hookimpl
def sipo_bench_register_methods() -> list:
    return [Lazy("example-expo", "sipo_bench_example.expo:ExPOMethod",
                 "ExPO: another method's per-objective models extrapolated away from the base, then mixed per weight.")]


@hookimpl
def sipo_bench_register_scorers() -> list:
    return [Lazy("example-length", "sipo_bench_example.length:LengthScorer",
                 "Response length in words or characters (lower is better).")]
