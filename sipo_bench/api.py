"""The public plugin API: everything a method, task, scorer, generator or executor plugin needs.

Import from here and nowhere else in `sipo_bench` (`from sipo_bench.api import hookimpl, Method,
Stage, ...`); the modules these names live in are internal and may move between releases. A
plugin may declare the API version it was written for as a module attribute
`SIPO_BENCH_API = "0.2"` (`sipo-bench plugins` shows it; none means 0.1).

Groups:

- hooks and registration: :data:`hookimpl`, :class:`Lazy` (a `"package.module:Class"` entry
  imported only when used, so listing plugins never imports torch);
- the interfaces a plugin implements and the types it receives: :class:`Objective`,
  :class:`Task` (:class:`TaskConfig`, :class:`TaskData`), :class:`Scorer`, :class:`Method`
  (:class:`MethodConfig`, :class:`FitContext`, :class:`PolicyFamily`, :class:`PolicySpec`,
  :class:`ResolvedPolicy`), :class:`Generator` (:class:`DecodingConfig`,
  :func:`new_token_budget`), :class:`Executor` (:class:`ExecutorConfig`, :class:`StageOutcome`);
- config dataclasses: :func:`field` (with `help`), :func:`build`, :func:`check`,
  :func:`to_dict`, :class:`ConfigError`;
- stages: :class:`Stage`, :class:`StageContext`, :class:`Resources`, :func:`read_jsonl`,
  :func:`write_jsonl`, :func:`write_json`, :func:`atomic_write_text`; :func:`plan_task_stages`
  (a task's data and base stages); a training stage's curves: :class:`CurvesCallback` (a
  transformers `TrainerCallback`, imported on first use) or :func:`write_curves`; what a stage
  spent: :func:`count`, :func:`count_training`, :func:`trained_tokens` (recorded in its marker); for executors :class:`Cache`, :class:`StageLog`,
  :class:`StageGraph`, :func:`execute_stage`, :func:`run_graph`, :func:`log_stage_failed`,
  :func:`error_line`, :func:`format_exception`, :data:`DONE`, :func:`default_cache_dir`;
- the process a stage runs in: :class:`Runtime`, :func:`on_release`; where torch runs:
  :func:`torch_device`, :func:`inference_dtype`, :func:`mixed_precision`, :func:`current`,
  :func:`using`;
- conventions: :func:`as_response` / :func:`response_body` (one leading space),
  preference weights (:func:`simplex_grid`, :func:`validate_weights`, :func:`is_vertex`,
  :func:`fmt`); scoring helpers :func:`score_texts`, :func:`test_prompts`; the base stage's
  output layout: :func:`resolve_model_path` (what to pass to `from_pretrained`);
- errors: :class:`SipoBenchError` (exit 1), :class:`UsageError` (exit 2), :class:`PluginError`,
  :class:`StageFailed`, :func:`did_you_mean`.
"""
from __future__ import annotations

from .configs.schema import ConfigError, build, check, field, to_dict
from .contract.base_model import resolve_model_path
from .contract.hookspecs import API_VERSION, hookimpl
from .contract.interfaces import (DecodingConfig, Executor, ExecutorConfig, FitContext, Generator, Method,
                                  MethodConfig, Objective, PolicyFamily, PolicySpec, ResolvedPolicy, Scorer,
                                  StageOutcome, Task, TaskConfig, TaskData, new_token_budget)
from .contract.responses import after_prompt, as_response, joined_pairs, response_body
from .contract.weights import fmt, is_vertex, simplex_grid, validate_weights
from .errors import PluginError, SipoBenchError, StageFailed, UsageError, did_you_mean
from .execution.compute import count, count_training, trained_tokens
from .execution.device import current, inference_dtype, mixed_precision, torch_device, using
from .execution.executors import run_graph
from .execution.graph import StageGraph, log_stage_failed
from .execution.runtime import Runtime, on_release
from .execution.stages import (DONE, Cache, Resources, Stage, StageContext, StageLog, atomic_write_text,
                               default_cache_dir, error_line, execute_stage, format_exception, read_jsonl,
                               write_json, write_jsonl)
from .planning.taskstages import plan_task_stages
from .plugin_host.registry import Lazy
from .reporting.curves import write_curves
from .scoring.evaluation import score_texts, test_prompts

#: names that import heavy libraries (transformers), loaded on first use so that importing this
#: module (and listing plugins) never imports torch
_HEAVY = {"CurvesCallback": "sipo_bench.reporting.curves_callback"}


def __getattr__(name: str):
    if name in _HEAVY:
        import importlib

        return getattr(importlib.import_module(_HEAVY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "API_VERSION",
    # hooks and registration
    "hookimpl", "Lazy",
    # interfaces
    "Objective", "Task", "TaskConfig", "TaskData", "Scorer", "Method", "MethodConfig", "FitContext",
    "PolicyFamily", "PolicySpec", "ResolvedPolicy", "Generator", "DecodingConfig", "new_token_budget",
    "Executor", "ExecutorConfig", "StageOutcome",
    # config dataclasses
    "field", "build", "check", "to_dict", "ConfigError",
    # stages
    "Stage", "StageContext", "Resources", "read_jsonl", "write_jsonl", "write_json", "atomic_write_text",
    "plan_task_stages", "write_curves", "count", "count_training", "trained_tokens", "CurvesCallback", "Cache", "StageLog", "StageGraph", "execute_stage", "run_graph", "log_stage_failed",
    "error_line", "format_exception", "DONE", "default_cache_dir",
    # runtime and device
    "Runtime", "on_release", "torch_device", "inference_dtype", "mixed_precision", "current", "using",
    # conventions and helpers
    "as_response", "response_body", "after_prompt", "joined_pairs", "simplex_grid", "validate_weights", "is_vertex", "fmt",
    "score_texts", "test_prompts", "resolve_model_path",
    # errors
    "SipoBenchError", "UsageError", "PluginError", "StageFailed", "did_you_mean",
]
