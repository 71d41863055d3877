"""The Ray executor (extra `sipo-bench[ray]`): `sipo-bench run --executor ray [--ray-address ...]`.

Every stage whose inputs are ready runs as a Ray task sized by its `Stage.resources`, so
independent stages run in parallel on one machine or a cluster. Workers share the run's stage
cache (a shared filesystem on a cluster), so keys, artefacts and resumption are the local
executor's. See `docs/ray.md`.

Importing this module does not import ray: the executor is registered lazily.
"""

from __future__ import annotations

from sipo_bench.api import Lazy, hookimpl

__version__ = "0.1.0"
SIPO_BENCH_API = "0.2"  # the sipo_bench.api version this plugin is written for


@hookimpl
def sipo_bench_register_executors() -> list:
    return [Lazy("ray", "sipo_bench_plugins.ray_executor.executor:RayExecutor",
                 "Runs ready stages in parallel as Ray tasks (local instance or cluster; shared cache).")]
