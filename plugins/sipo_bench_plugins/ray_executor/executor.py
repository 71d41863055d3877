"""The `ray` executor: ready stages run in parallel as Ray tasks over one shared stage cache.

The driver (the `sipo-bench run` process) walks the graph: a stage whose inputs all finished
is skipped (an input failed), cached (already in the cache), or submitted as a Ray task that
asks for the stage's `Resources` (CPUs, GPUs, memory). A worker rebuilds the plugin runtime and
runs the same `execute_stage` as the local executor into the same cache directory, so stage
keys, artefacts and resumption are shared: a run started under one executor resumes under the
other. Only the driver writes the stage log and the progress display.

Failures: an exception raised by a stage comes back as a value (recorded like the local
executor: one line + traceback, dependents skipped, the rest goes on) and is never retried; a
lost worker process or node is retried by Ray up to `max_retries` times.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from sipo_bench.api import (Cache, ConfigError, Executor, Resources, Stage, StageGraph, StageLog, StageOutcome,
                            UsageError, atomic_write_text, build, did_you_mean, error_line, field, log_stage_failed)

from . import worker
from .worker import RUN_FILE, RUNNING, run_dir

GIB = 1024 ** 3
RESOURCE_FIELDS = ("cpus", "gpus", "memory_gb")
LOOPBACK = "127.0.0.1"
#: environment variables the driver hands to its workers (plugin allow-list etc.)
ENV_PREFIXES = ("SIPO_BENCH_",)


@dataclass
class RayExecutorConfig:
    """Options of the `ray` executor (`executor_options` in YAML; `--ray-address` sets `address`)."""

    address: str | None = field(None, help="Ray cluster to join: `auto` (the cluster started on this machine with "
                                           "`ray start`) or `HOST:PORT` of its head. None: start a private Ray "
                                           "instance on this machine, bound to 127.0.0.1 only.")
    num_cpus: int | None = field(None, help="CPUs of the private instance (default: all of this machine's). "
                                            "Only without `address`.")
    num_gpus: int | None = field(None, help="GPUs of the private instance (default: Ray detects them). "
                                            "Only without `address`.")
    max_retries: int = field(3, help="Times Ray reruns a stage whose worker process or node died. A stage "
                                     "that raises is never retried.")
    autoscaling: bool = field(False, help="Submit a stage that no current node can hold and wait for the "
                                          "autoscaler; default: fail it at once, naming what it asked for.")
    object_store_memory_mb: int | None = field(None, help="Object store of the private instance in MiB "
                                                          "(stage results are small JSON; artefacts go to the cache).")
    log_to_driver: bool = field(True, help="Show the workers' log lines on the driver's console.")
    poll_seconds: float = field(0.25, help="How often the driver looks for started and finished stages.")
    input_wait_seconds: float = field(60.0, help="How long a worker waits for the cache (and a finished input) "
                                                 "to become visible on its node: NFS clients cache directory "
                                                 "attributes for a few seconds.")
    resources: dict = field({}, help="Override what stages ask for, by stage kind (the name before `[`) or `*` "
                                     "for all: {kind: {cpus, gpus, memory_gb}}, e.g. {dpo: {gpus: 1}}. "
                                     "Unset fields keep the stage's own `Stage.resources`.")

    def stage_resources(self, stage: Stage) -> Resources:
        """The stage's declared resources with this run's overrides (`*`, then its kind) applied."""
        over = {**self.resources.get("*", {}), **self.resources.get(stage.kind, {})}
        return dataclasses.replace(stage.resources, **over) if over else stage.resources

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigError(f"`max_retries`: expected an integer >= 0, got {self.max_retries}")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError(f"`num_cpus`: expected an integer >= 1, got {self.num_cpus}")
        if self.num_gpus is not None and self.num_gpus < 0:
            raise ConfigError(f"`num_gpus`: expected an integer >= 0, got {self.num_gpus}")
        if self.input_wait_seconds < 0:
            raise ConfigError(f"`input_wait_seconds`: expected a number >= 0, got {self.input_wait_seconds}")
        if self.poll_seconds <= 0:
            raise ConfigError(f"`poll_seconds`: expected a number > 0, got {self.poll_seconds}")
        for kind, res in self.resources.items():
            if not isinstance(res, dict):
                raise ConfigError(f"`resources.{kind}`: expected a mapping of cpus/gpus/memory_gb, got {res!r}")
            for k, v in res.items():
                if k not in RESOURCE_FIELDS:
                    raise ConfigError(f"`resources.{kind}.{k}`: " + did_you_mean("resource", str(k), list(RESOURCE_FIELDS)))
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                    raise ConfigError(f"`resources.{kind}.{k}`: expected a number >= 0, got {v!r}")
        if self.address is not None:
            for name in ("num_cpus", "num_gpus", "object_store_memory_mb"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"`{name}`: only for the private instance started without `address`; "
                                      f"a cluster's nodes declare their resources with `ray start` "
                                      f"(got address {self.address!r})")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("executor 'ray' needs Ray: pip install 'sipo-bench[ray]' (ray[default]>=2.40)") from None
    return ray


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """While starting a private instance, make Ray take 127.0.0.1 as this node's address, so
    every Ray process (GCS, raylet, agents, workers) listens on loopback only. Ray does this on
    its own where it considers clusters unsupported (macOS, Windows); we ask for it on Linux."""
    from ray._private import ray_constants

    old = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old


def _is_loopback(address: str) -> bool:
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def _resolve_address(address: str) -> str:
    """`auto` -> the HOST:PORT Ray would pick ($RAY_ADDRESS, else the cluster last started here)."""
    if address != "auto":
        return address
    try:
        from ray._private.services import get_ray_address_from_environment

        return get_ray_address_from_environment("auto", None) or address
    except Exception:  # private API moved, or nothing found: let ray.init explain
        return address


def start_local(num_cpus: int | None = None, num_gpus: int | None = None, object_store_memory_mb: int | None = None,
                log_to_driver: bool = True) -> Any:
    """Start a private Ray instance on this machine, reachable on 127.0.0.1 only."""
    ray = _import_ray()
    kw: dict[str, Any] = {}
    if object_store_memory_mb is not None:
        kw["object_store_memory"] = int(object_store_memory_mb) * 1024 ** 2
    with _loopback_node():  # "local": never join a cluster found via $RAY_ADDRESS or a past `ray start`
        return ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=num_gpus, include_dashboard=False,
                        _node_ip_address=LOOPBACK, log_to_driver=log_to_driver, namespace="sipo-bench", **kw)


def _fits(res: Resources, nodes: list[dict]) -> bool:
    need = {"CPU": float(res.cpus), "GPU": float(res.gpus), "memory": float(res.memory_gb) * GIB}
    return any(all(n.get(k, 0.0) >= v for k, v in need.items() if v > 0) for n in nodes)


def _describe(res: Resources) -> str:
    parts = [f"{res.cpus:g} CPU"] + ([f"{res.gpus:g} GPU"] if res.gpus else []) + \
            ([f"{res.memory_gb:g} GiB memory"] if res.memory_gb else [])
    return ", ".join(parts)


def _node_summary(nodes: list[dict]) -> str:
    if not nodes:
        return "no live node"
    return "; ".join(f"{n.get('CPU', 0):g} CPU, {n.get('GPU', 0):g} GPU, {n.get('memory', 0) / GIB:.1f} GiB" for n in nodes)


class RayExecutor(Executor):
    name = "ray"
    description = "Runs ready stages in parallel as Ray tasks (local instance or cluster; shared cache)."
    config_class = RayExecutorConfig

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.config = build(self.config_class, options, "executor_options")
        _import_ray()  # fail at planning time, before anything runs, when the extra is missing

    # --- connection -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connected(self, runtime: Any) -> Iterator[Any]:
        """Use the caller's Ray connection, or join/start one for the run and close it after."""
        ray = _import_ray()
        c = self.config
        if ray.is_initialized():
            yield ray
            return
        if c.address is None:
            start_local(c.num_cpus, c.num_gpus, c.object_store_memory_mb, c.log_to_driver)
        else:
            # a head bound to 127.0.0.1 is joined as 127.0.0.1, not as this machine's public IP;
            # `auto` itself goes to Ray, which then also picks up the local token (auth) on its own
            loopback = _is_loopback(_resolve_address(c.address))
            try:
                with _loopback_node() if loopback else contextlib.nullcontext():
                    ray.init(address=c.address, log_to_driver=c.log_to_driver, namespace="sipo-bench")
            except ConnectionError as e:
                raise UsageError(f"`--ray-address`: cannot reach a Ray cluster at {c.address!r}: {e} (is it up? "
                                 f"With Ray's token authentication, an explicit address needs RAY_AUTH_MODE=token "
                                 f"and the head's token in ~/.ray/auth_token or $RAY_AUTH_TOKEN)") from None
        try:
            res = ray.cluster_resources()
            runtime.log(f"ray: {res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU on {len(self._nodes(ray))} node(s)"
                        + (" (private instance, 127.0.0.1)" if c.address is None else f" at {c.address}"))
            yield ray
        finally:
            ray.shutdown()

    @staticmethod
    def _nodes(ray: Any) -> list[dict]:
        return [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]

    # --- the graph --------------------------------------------------------------------------------

    def run(self, stages: list[Stage], runtime: Any, cache: Cache | None = None, log: StageLog | None = None,
            overall: Any = None) -> dict[str, StageOutcome]:
        if cache is None:
            raise ValueError("the ray executor needs the run's cache")
        log = log if log is not None else StageLog(None, uuid.uuid4().hex[:12])
        cache_root = str(Path(cache.root).resolve())
        rdir = run_dir(cache_root, f"{log.run_id}-{uuid.uuid4().hex[:6]}")
        atomic_write_text(rdir / RUN_FILE, json.dumps({"run_id": log.run_id, "driver_pid": os.getpid(),
                                                       "started": time.time()}))
        try:
            with self._connected(runtime) as ray:
                return _Driver(self.config, ray, stages, cache.with_root(cache_root), runtime, log, overall, rdir).run()
        finally:
            shutil.rmtree(rdir, ignore_errors=True)
            _gc_run_dirs(Path(cache_root) / "ray")


def _gc_run_dirs(root: Path, older_than_s: float = 7 * 24 * 3600) -> None:
    """Remove bookkeeping left by drivers that were killed (a live driver touches its
    `run.json` every 10 minutes)."""
    if not root.is_dir():
        return
    now = time.time()
    for d in root.iterdir():
        with contextlib.suppress(OSError):
            if now - (d / RUN_FILE).stat().st_mtime > older_than_s:
                shutil.rmtree(d, ignore_errors=True)


class _Driver:
    """One pass over the graph: submit ready stages, collect finished ones, record everything."""

    def __init__(self, config: RayExecutorConfig, ray: Any, stages: list[Stage], cache: Cache, runtime: Any,
                 log: StageLog, overall: Any, rdir: Path):
        self.c, self.ray, self.cache, self.runtime, self.log, self.rdir = config, ray, cache, runtime, log, rdir
        self.overall = overall or (lambda n=1: None)
        self.graph = StageGraph(stages)
        self.stages = self.graph.stages
        self.outcomes: dict[str, StageOutcome] = {}
        self.ready = deque(self.graph.initially_ready())  # topological order kept
        self.in_flight: dict[Any, str] = {}  # object ref -> stage key
        self.submitted_at: dict[str, float] = {}
        self.seen_markers: set[str] = set()
        self.started: dict[str, dict] = {}  # key -> latest attempt's marker
        self.attempts: dict[str, int] = {}
        self.touched = time.time()
        self.bar: dict[str, contextlib.ExitStack] = {}
        self.nodes = RayExecutor._nodes(ray)
        env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
        plugins_dir = str(Path(runtime.plugins_dir).resolve()) if getattr(runtime, "plugins_dir", None) else None
        # `recompute` (--no-cache): the driver found the stage not done for this run; the worker
        # must then rebuild it even though an older copy is in the cache
        self.task_args = (str(cache.root), rdir.name, plugins_dir, env, config.input_wait_seconds, cache.recompute)
        self.remote = ray.remote(worker.run_stage)
        # Ray's policy for GPU tasks, which it applies only to functions declared with GPUs: a
        # fresh worker process per GPU stage, so the GPU memory of one stage's models is freed
        self.remote_gpu = ray.remote(max_calls=1)(worker.run_stage)

    def run(self) -> dict[str, StageOutcome]:
        try:
            while self.ready or self.in_flight:
                while self.ready:
                    self._dispatch(self.stages[self.ready.popleft()])
                if self.in_flight:
                    done, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=self.c.poll_seconds)
                    self._scan_markers()
                    self._keep_alive()
                    if done:  # collect everything finished by now in one go
                        done, _ = self.ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=0)
                    for ref in done:
                        self._collect(ref)
        except BaseException:
            for ref in list(self.in_flight):  # Ctrl-C: stop our tasks on a shared cluster too
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref, force=True)
            raise
        finally:
            for stack in self.bar.values():
                stack.close()
        return self.outcomes

    # --- one stage's life ---------------------------------------------------------------------

    def _dispatch(self, stage: Stage) -> None:
        res = self.c.stage_resources(stage)
        bad = [d for d in stage.inputs.values() if d.key in self.outcomes and self.outcomes[d.key].status in ("failed", "skipped")]
        if bad:
            self._finish(stage, StageOutcome("skipped", error=f"input {bad[0].name} failed"),
                         "skipped", reason=f"input {bad[0].name} failed")
        elif self.cache.is_done(stage):
            self._finish(stage, StageOutcome("cached", self.cache.result(stage), self.cache.meta(stage).get("seconds", 0.0)),
                         "cached")
        elif not self.c.autoscaling and not _fits(res, self.nodes) and not _fits(res, self._refresh_nodes()):
            line = (f"UnschedulableStage: {stage.name} asks for {_describe(res)}; no node of the Ray "
                    f"cluster has that ({_node_summary(self.nodes)})")
            self._finish(stage, StageOutcome("failed", error=line, traceback=line + "\n"), "failed", error=line,
                         traceback=line + "\n")
            log_stage_failed(self.runtime, stage, line)
        else:
            opts: dict[str, Any] = {"num_cpus": res.cpus, "num_gpus": res.gpus, "max_retries": self.c.max_retries,
                                    "retry_exceptions": False, "name": stage.name}
            if res.memory_gb:
                opts["memory"] = int(res.memory_gb * GIB)
            ref = (self.remote_gpu if res.gpus > 0 else self.remote).options(**opts).remote(stage, *self.task_args)
            self.in_flight[ref] = stage.key
            self.submitted_at[stage.key] = time.time()

    def _keep_alive(self) -> None:
        """Touch `run.json` now and then: other runs clean up only bookkeeping a week old."""
        now = time.time()
        if now - self.touched > 600:
            self.touched = now
            with contextlib.suppress(OSError):
                os.utime(self.rdir / RUN_FILE)

    def _refresh_nodes(self) -> list[dict]:
        self.nodes = RayExecutor._nodes(self.ray)
        return self.nodes

    def _scan_markers(self) -> None:
        """Record a `start` event (worker pid, host) for each attempt that began since last look."""
        d = self.rdir / RUNNING
        if not d.is_dir():
            return
        with contextlib.suppress(OSError):
            for p in d.iterdir():
                if p.name in self.seen_markers or p.name.startswith("."):
                    continue
                try:
                    info = json.loads(p.read_text())
                except (OSError, ValueError):
                    continue  # vanished already, or being written: next look
                key = p.name.rsplit("-", 1)[0]
                if key in self.stages and key not in self.outcomes:
                    self.seen_markers.add(p.name)
                    self._started(self.stages[key], info)

    def _started(self, stage: Stage, info: dict) -> None:
        n = self.attempts[stage.key] = self.attempts.get(stage.key, 0) + 1
        self.started[stage.key] = info
        self.log.write(stage, "start", pid=info["pid"], host=info["host"], started=info["started"], attempt=n,
                       executor="ray", gpus=info.get("gpus", []))
        where = f"ray worker pid {info['pid']} on {info['host']}" + (f", attempt {n}" if n > 1 else "")
        if self.runtime.quiet:
            self.runtime.log(f"stage {stage.name} ... ({where})")
        else:
            old = self.bar.pop(stage.key, None)
            if old is not None:
                old.close()
            stack = contextlib.ExitStack()
            stack.enter_context(self.runtime.progress(None, f"{stage.name} ({where})"))
            self.bar[stage.key] = stack
            if n > 1:
                self.runtime.log(f"[yellow]stage {stage.name}: worker lost, retrying ({where})[/yellow]")

    def _collect(self, ref: Any) -> None:
        key = self.in_flight.pop(ref)
        stage = self.stages[key]
        try:
            r = self.ray.get(ref)
        except Exception as e:  # the worker or node was lost more than max_retries times, or Ray failed
            line, tb = error_line(e), f"{e}\n"
            line = f"{line} (after {self.c.max_retries} retries)" if "WorkerCrashed" in line or "NodeDied" in line else line
            outcome = StageOutcome("failed", seconds=time.time() - self.submitted_at[key], error=line, traceback=tb)
            self._finish(stage, outcome, "failed", error=line, traceback=tb)
            log_stage_failed(self.runtime, stage, line)
            return
        info = self.started.get(key)
        if info is None or info.get("pid") != r["pid"]:  # finished between two looks: log its start now
            self._started(stage, {"pid": r["pid"], "host": r["host"], "started": r["started"]})
        where = {"pid": r["pid"], "host": r["host"], "started": r["started"], "ended": r["ended"],
                 "attempt": self.attempts.get(key, 1), "executor": "ray", "gpus": r.get("gpus", [])}
        if r["ok"]:
            self._finish(stage, StageOutcome(r["status"], r["result"], r["seconds"]), "done", seconds=r["seconds"], **where)
        else:
            outcome = StageOutcome("failed", seconds=r["ended"] - r["started"], error=r["error"], traceback=r["traceback"])
            self._finish(stage, outcome, "failed", error=r["error"], traceback=r["traceback"], **where)
            log_stage_failed(self.runtime, stage, r["error"])

    def _finish(self, stage: Stage, outcome: StageOutcome, event: str, **extra: Any) -> None:
        self.outcomes[stage.key] = outcome
        self.log.write(stage, event, **extra)
        bar = self.bar.pop(stage.key, None)
        if bar is not None:
            bar.close()
        self.overall()
        self.ready.extend(self.graph.finished(stage.key))
