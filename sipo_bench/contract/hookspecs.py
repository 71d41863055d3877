"""The hooks a sipo-bench plugin can implement.

Every `register_*` hook returns a list; the plugin manager chains the lists of all plugins.
An entry is either the class itself or a lazy :class:`~sipo_bench.api.Lazy` reference
(`Lazy("name", "package.module:Class")`) so that listing plugins never imports torch.

A plugin module may declare the API version it was written for, `SIPO_BENCH_API = "0.2"`;
`sipo-bench plugins` shows it (a plugin without it is taken as written for 0.1).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("sipo_bench")
hookimpl = pluggy.HookimplMarker("sipo_bench")

#: the version of the plugin API (`sipo_bench.api`): hooks, interfaces, conventions
API_VERSION = "0.2"
#: the API version of a plugin that declares none (`SIPO_BENCH_API` absent)
LEGACY_API_VERSION = "0.1"


# --- Data -----------------------------------------------------------------------------------


@hookspec
def sipo_bench_register_tasks() -> list:
    """Return task classes (subclasses of :class:`sipo_bench.contract.interfaces.Task`) or `Lazy` refs.

    A task bundles a preference dataset, its objectives, the scorers that grade them and the
    recipe of its base (SFT) model.
    """


@hookspec
def sipo_bench_register_objectives() -> list:
    """Return :class:`sipo_bench.contract.interfaces.Objective` instances.

    Objectives are small value objects (name, direction, description); tasks refer to them by
    name, and `sipo-bench ls objectives` lists them.
    """


# --- Models ---------------------------------------------------------------------------------


@hookspec
def sipo_bench_register_scorers() -> list:
    """Return scorer classes (subclasses of :class:`sipo_bench.contract.interfaces.Scorer`) or `Lazy` refs.

    A scorer (reward model) maps batches of (prompt, response) to one score per objective it
    covers.
    """


@hookspec
def sipo_bench_register_methods() -> list:
    """Return alignment method classes (subclasses of :class:`sipo_bench.contract.interfaces.Method`).

    A method has a config dataclass and a `fit` that plans stages and returns a policy family.
    """


@hookspec
def sipo_bench_register_generators() -> list:
    """Return generation backends (subclasses of :class:`sipo_bench.contract.interfaces.Generator`).

    A backend realises a :class:`~sipo_bench.contract.interfaces.PolicySpec` and generates batches of
    responses and response log-probabilities.
    """


# --- Execution ------------------------------------------------------------------------------


@hookspec
def sipo_bench_register_executors() -> list:
    """Return executors (subclasses of :class:`sipo_bench.contract.interfaces.Executor`).

    An executor runs the ready stages of a run's graph: in-process, or spread over a cluster.
    """
