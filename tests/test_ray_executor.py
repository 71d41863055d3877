"""The `ray` executor on a private 2-CPU Ray instance (127.0.0.1 only), with the dummy task.

Two dummy methods (`dummy`, and `dummy-b` from a throwaway plugins dir whose training stage
function is defined in that loose file, so workers must rebuild the runtime with the driver's
plugins dir and import the function from it), two seeds, training stages that sleep: the Ray run
must give the local executor's summary, run stages side by side, survive a SIGKILLed worker,
record a stage's own error exactly like the local executor, and share the cache both ways with
the local executor (a killed or half-failed run resumes under the other one).

The first test starts its own private instance through the CLI; the others share one instance
(module fixture), started after it so that two instances never compete for Ray's ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'sipo-bench[ray]')")
psutil = pytest.importorskip("psutil")

from sipo_bench.configs.run_config import make_config  # noqa: E402

from sipo_bench.planning.run import execute

from sipo_bench.reporting.summary import comparable
from sipo_bench.execution.runtime import Runtime  # noqa: E402
from sipo_bench.execution.stages import Cache, Resources, Stage, StageLog  # noqa: E402
from stage_events import events, max_concurrency, wait_for  # noqa: E402

# one Ray instance at a time: every Ray test runs in the same test process (pytest-xdist)
pytestmark = [pytest.mark.timeout(240), pytest.mark.xdist_group("ray")]

SLEEP = 1.0  # seconds per dummy training stage: long enough to overlap and to be killed
SIPO_BENCH = str(Path(sys.executable).with_name("sipo-bench"))
TRAIN = "sipo_bench_plugins.dummy:train_dummy_adapter"

PLUGIN = '''
import dataclasses

from sipo_bench.contract.hookspecs import hookimpl
from sipo_bench_plugins.dummy import DummyFamily, DummyMethod, train_dummy_adapter


def train_b(ctx):
    """dummy-b's stage function, defined in this loose file and passed as a function object:
    Ray workers must import it from the driver's plugins dir."""
    return train_dummy_adapter(ctx)


class DummyB(DummyMethod):
    name = "dummy-b"
    description = "The dummy method under a second name; its own options make its own stages."

    def fit(self, ctx):
        c = self.config
        return DummyFamily(ctx.base, [
            ctx.stage(f"dummy-train[{o.name},seed={ctx.seed}]", train_b,
                      {"objective_index": i, "strength": c.strength, "sleep": c.sleep, "fail": c.fail, "seed": ctx.seed},
                      {"base": ctx.base})
            for i, o in enumerate(ctx.objectives)])


class DummyGPU(DummyMethod):
    name = "dummy-gpu"
    description = "The dummy method with GPU stages: on a cuda run each training stage asks for one GPU."
    needs_model = False  # the dummy task has no model; the method declares its GPUs itself

    def fit(self, ctx):
        from sipo_bench.execution.device import stage_resources

        gpu = stage_resources(ctx.runtime.device, None, gpu=True)
        return super().fit(dataclasses.replace(ctx, resources=gpu))


@hookimpl
def sipo_bench_register_methods():
    return [DummyB, DummyGPU]
'''


# --- helpers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plugins_dir(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("ray-plugins")
    (d / "dummy_b.py").write_text(PLUGIN)
    return str(d)


def run_config(plugins_dir: str, tmp: Path, name: str, executor: str = "local", *, fail_b: bool = False,
               seeds=(0, 1), methods=("dummy", "dummy-b"), sleep: float = SLEEP, cache: Path | None = None) -> dict:
    return {
        "task": "dummy", "methods": list(methods), "seeds": list(seeds), "plugins_dir": plugins_dir, "quiet": True,
        "method_options": {"dummy": {"sleep": sleep}, "dummy-b": {"strength": 0.7, "sleep": sleep, "fail": fail_b}},
        "executor": executor, "out": str(tmp / f"out-{name}"), "cache_dir": str(cache or tmp / f"cache-{name}"),
    }


def run(data: dict) -> tuple[dict, Path]:
    cfg = make_config(data)
    return execute(cfg, Runtime(plugins_dir=cfg.plugins_dir, quiet=True))


def same_results(a: dict, b: dict) -> dict:
    """`comparable` minus what names the executor (and the commit, which others may move)."""
    out = comparable(a)
    out.pop("git_commit", None)
    out["config"].pop("executor", None)
    out["config"].pop("executor_options", None)
    return out


def keys_with(evs: list[dict], event: str) -> set[str]:
    return {e["key"] for e in evs if e["event"] == event}


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


@contextlib.contextmanager
def cli(config: Path, *extra: str) -> Iterator[subprocess.Popen]:
    """`sipo-bench run --config CONFIG ...`, SIGKILLed on the way out if still running."""
    proc = subprocess.Popen([SIPO_BENCH, "run", "--config", str(config), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def tree(proc: psutil.Process) -> set[psutil.Process]:
    with_children = {proc}
    try:
        with_children |= set(proc.children(recursive=True))
    except psutil.NoSuchProcess:
        pass
    return with_children


def assert_all_gone(procs: set[psutil.Process], timeout: float = 20) -> None:
    _, alive = psutil.wait_procs(list(procs), timeout=timeout)
    assert not alive, f"processes left behind: {[(p.pid, p.name()) for p in alive]}"


@pytest.fixture(scope="module")
def reference(plugins_dir, tmp_path_factory) -> dict:
    """The local executor's summary of the shared config, fresh cache."""
    tmp = tmp_path_factory.mktemp("ray-reference")
    summary, _ = run(run_config(plugins_dir, tmp, "local"))
    assert all(m["status"] == "ok" for m in summary["methods"].values())
    return summary


# --- the plugin itself ----------------------------------------------------------------------


def test_plugin_registers_lazily_without_importing_ray():
    code = ("import sys; from sipo_bench.plugin_host.manager import load; r = load(); "
            "print('ray' in r.executors.names(), 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "False"], out.stderr


def test_options_are_checked_before_anything_runs():
    from sipo_bench.configs.schema import ConfigError
    from sipo_bench_plugins.ray_executor.executor import RayExecutor

    with pytest.raises(ConfigError, match=r"`num_cpus`: only for the private instance"):
        RayExecutor(address="auto", num_cpus=2)
    with pytest.raises(ConfigError, match=r"Did you mean 'max_retries'"):
        RayExecutor(max_retrys=1)
    with pytest.raises(ConfigError, match=r"`resources.dpo.gpu`: .*Did you mean 'gpus'"):
        RayExecutor(resources={"dpo": {"gpu": 1}})
    with pytest.raises(ConfigError, match=r"`executor_options.max_retries`: expected an integer"):
        RayExecutor(max_retries="3")
    ex = RayExecutor(resources={"*": {"cpus": 2}, "dummy-train": {"gpus": 1}})
    s = Stage("dummy-train[a,seed=0]", TRAIN, {}, resources=Resources(cpus=1, memory_gb=4))
    assert ex.config.stage_resources(s) == Resources(cpus=2, gpus=1, memory_gb=4)
    assert ex.config.stage_resources(Stage("score[x]", TRAIN, {})) == Resources(cpus=2)


def test_worker_refuses_a_cache_its_node_does_not_see(tmp_path):
    """On a cluster without a shared cache the worker says so instead of failing obscurely."""
    from sipo_bench_plugins.ray_executor.worker import run_stage

    s = Stage("s", TRAIN, {"objective_index": 0, "strength": 0.9, "sleep": 0, "fail": False, "seed": 0})
    r = run_stage(s, str(tmp_path / "elsewhere"), "run-x", None, {})
    assert r["ok"] is False and r["error"].startswith("CacheNotShared: the stage cache")
    assert "shared filesystem" in r["error"] and not (tmp_path / "elsewhere").exists()

    # a cache that shows up late (NFS attribute caching) is waited for, within `wait_s`
    from sipo_bench_plugins.ray_executor.worker import RUN_FILE, run_dir

    late = run_dir(tmp_path / "late", "run-y") / RUN_FILE
    timer = threading.Timer(0.6, lambda: (late.parent.mkdir(parents=True), late.write_text("{}")))
    timer.start()
    try:
        r = run_stage(s, str(tmp_path / "late"), "run-y", None, {}, wait_s=10)
    finally:
        timer.cancel()
    assert r["ok"] is True and r["status"] == "done" and Cache(tmp_path / "late").is_done(s), r.get("traceback")
    assert not list((late.parent / "running").iterdir())  # the attempt's marker is gone


# --- the CLI with its own private instance (before the shared instance starts) ----------------


@pytest.mark.slow
def test_cli_ray_resumes_a_killed_local_run(plugins_dir, reference, tmp_path):
    """`sipo-bench run` under the local executor, SIGKILLed mid-run, then resumed with
    `--executor ray` (a private instance the CLI starts and stops): finished stages are not
    redone, results equal a clean local run, and no Ray process outlives the command."""
    assert not ray.is_initialized()
    cache = tmp_path / "cache"
    base = run_config(plugins_dir, tmp_path, "killed", cache=cache)
    out1 = Path(base["out"])
    with cli(write_yaml(tmp_path / "local.yaml", base)) as local:
        wait_for(lambda: sum(e["event"] == "done" and e["stage"].startswith("dummy-train") for e in events(out1)) >= 2,
                 60, "two finished training stages", local)
        local.send_signal(signal.SIGKILL)
    first = events(out1)
    done_before = keys_with(first, "done")
    assert done_before and "summary.json" not in os.listdir(out1)

    resumed = {**base, "out": str(tmp_path / "out-resumed"), "executor": "ray", "executor_options": {"num_cpus": 2}}
    seen: dict[psutil.Process, str] = {}
    with cli(write_yaml(tmp_path / "ray.yaml", resumed)) as proc:
        ps = psutil.Process(proc.pid)
        # Ray names the session of a private instance after the pid of the process that starts it
        # (/tmp/ray/session_<date>_<time>_<us>_<pid>): a Ray server of this command says so in its
        # command line, whatever other Ray instances run on the machine (other tests, other users)
        session = re.compile(rf"session_[0-9_-]+_{proc.pid}\b")

        def ours(p: psutil.Process) -> bool:
            try:
                return bool(session.search(" ".join(p.cmdline())))
            except psutil.Error:
                return False

        servers_seen: dict[psutil.Process, str] = {}
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:  # every process the command starts
            for p in tree(ps) - {ps} - set(seen):
                try:
                    seen[p] = p.name()
                except psutil.Error:
                    pass
            servers_seen.update({p: p.info["name"] for p in psutil.process_iter(["name"])
                                 if p.info["name"] in ("raylet", "gcs_server") and p not in servers_seen and ours(p)})
            time.sleep(0.1)
        output = proc.stdout.read()
    assert proc.returncode == 0, output
    assert "private instance, 127.0.0.1" in output
    # Ray's servers were observed, in the command's tree or reparented, and known as ours
    assert {"raylet", "gcs_server"} & (set(servers_seen.values()) | set(seen.values())), seen
    assert servers_seen, "no Ray server with this command's session name was seen"
    assert_all_gone(set(seen) | set(servers_seen))
    # ... and none of this command's Ray servers survives it, seen during the run or not
    survivors = [p for p in psutil.process_iter(["name"]) if p.info["name"] in ("raylet", "gcs_server") and ours(p)]
    assert not survivors, survivors

    second = events(resumed["out"])
    assert not done_before & (keys_with(second, "start") | keys_with(second, "done"))
    assert done_before <= keys_with(second, "cached")
    assert {e["pid"] for e in second if e["event"] == "done"} - {proc.pid}, "stages ran in Ray workers"
    summary = json.loads((Path(resumed["out"]) / "summary.json").read_text())
    assert same_results(summary, reference) == same_results(reference, reference)


# --- one shared private instance ------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """A private Ray instance on 127.0.0.1 with 2 CPUs and 2 fake GPUs (Ray hands out GPU ids
    it is told exist), stopped (and checked gone) after the module."""
    from sipo_bench_plugins.ray_executor.executor import start_local

    assert not ray.is_initialized()
    me = psutil.Process()
    before = tree(me)  # e.g. multiprocessing's resource tracker, started by earlier tests
    start_local(num_cpus=2, num_gpus=2, object_store_memory_mb=100, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        started = tree(me) - before
        ray.shutdown()
        assert_all_gone(started)


def test_private_instance_listens_on_loopback_only(cluster):
    me = psutil.Process()
    listening = []
    for p in tree(me):
        try:
            listening += [(p.name(), c.laddr.ip) for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue
    assert listening, "expected Ray's servers to listen somewhere"
    assert cluster.startswith("127.0.0.1:")
    assert all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for _, ip in listening), listening


def test_same_summary_as_local_with_stages_in_parallel(cluster, plugins_dir, reference, tmp_path):
    summary, out = run(run_config(plugins_dir, tmp_path, "ray", "ray"))
    assert same_results(summary, reference) == same_results(reference, reference)
    evs = events(out)
    done = [e for e in evs if e["event"] == "done"]
    assert len(done) == summary["run"]["stages"]["total"] and not keys_with(evs, "failed")
    assert all(e["executor"] == "ray" and e["pid"] != os.getpid() and e["ended"] >= e["started"] for e in done)
    train = [(e["started"], e["ended"]) for e in done if e["stage"].startswith("dummy-train")]
    assert len(train) == 8 and all(b - a >= SLEEP * 0.9 for a, b in train)
    # 2 CPUs, 1 CPU per stage: training stages ran two at a time, never more
    assert max_concurrency(train) == 2
    assert max_concurrency([(e["started"], e["ended"]) for e in done]) == 2
    starts = [e for e in evs if e["event"] == "start"]
    assert {e["key"] for e in starts} == {e["key"] for e in done} and all("pid" in e and "host" in e for e in starts)


def test_killed_worker_is_retried_and_the_run_completes(cluster, plugins_dir, reference, tmp_path):
    data = run_config(plugins_dir, tmp_path, "kill", "ray")
    out = Path(data["out"])
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(result=run(data)), daemon=True)
    t.start()
    victim = wait_for(lambda: next((e for e in events(out) if e["event"] == "start"
                                    and e["stage"].startswith("dummy-train")), None), 60, "a training stage to start")
    os.kill(victim["pid"], signal.SIGKILL)
    t.join(120)
    assert not t.is_alive() and "result" in box
    summary, _ = box["result"]
    assert same_results(summary, reference) == same_results(reference, reference)
    mine = [e for e in events(out) if e["key"] == victim["key"]]
    starts = [e for e in mine if e["event"] == "start"]
    assert len(starts) >= 2 and starts[-1]["pid"] != victim["pid"] and starts[-1]["attempt"] >= 2
    assert [e["event"] for e in mine if e["event"] != "start"] == ["done"]
    assert not psutil.pid_exists(victim["pid"]) or psutil.Process(victim["pid"]).status() == psutil.STATUS_ZOMBIE


def test_stage_error_recorded_like_local_then_fixed_under_local(cluster, plugins_dir, reference, tmp_path):
    """A raising stage: same summary as the local executor (error line, dependents skipped, the
    other method complete), never retried. Fixing it and rerunning under the local executor
    reuses every stage the Ray run finished."""
    failing_local, out_l = run(run_config(plugins_dir, tmp_path, "fail-local", fail_b=True))
    failing_ray, out_r = run(run_config(plugins_dir, tmp_path, "fail-ray", "ray", fail_b=True))
    assert same_results(failing_ray, failing_local) == same_results(failing_local, failing_local)
    b, a = failing_ray["methods"]["dummy-b"], failing_ray["methods"]["dummy"]
    assert b["status"] == "failed" and b["error"].endswith("RuntimeError: dummy method asked to fail")
    assert a["status"] == "ok" and len(a["points"]) == 10
    evs = events(out_r)
    failed = [e for e in evs if e["event"] == "failed"]
    assert len(failed) == 4 and all(e["error"] == "RuntimeError: dummy method asked to fail" for e in failed)
    assert all('raise RuntimeError("dummy method asked to fail")' in e["traceback"] for e in failed)
    for e in failed:  # an application error is not retried
        assert sum(x["event"] == "start" and x["key"] == e["key"] for x in evs) == 1
    assert len(keys_with(evs, "skipped")) == len(keys_with(events(out_l), "skipped")) > 0
    assert sorted(os.listdir(out_r / "logs" / "failures")) == sorted(os.listdir(out_l / "logs" / "failures"))

    fixed = run_config(plugins_dir, tmp_path, "fixed", "local", cache=tmp_path / "cache-fail-ray")
    summary, out_f = run(fixed)
    assert same_results(summary, reference) == same_results(reference, reference)
    done_by_ray = keys_with(evs, "done")
    rerun = events(out_f)
    assert done_by_ray <= keys_with(rerun, "cached") and not done_by_ray & keys_with(rerun, "start")
    assert {e["stage"].split("[")[0] for e in rerun if e["event"] == "done"} >= {"dummy-train", "generate", "score"}


def test_resources_decide_what_runs_together(cluster, tmp_path):
    """A stage asking for both CPUs runs alone; one asking for more GPUs than the cluster has
    fails at once with the reason (its dependent is skipped); `overall` ticks once per stage."""
    from sipo_bench_plugins.ray_executor.executor import RayExecutor

    def train(name: str, seed: int, sleep: float, **res) -> Stage:
        return Stage(name, TRAIN, {"objective_index": 0, "strength": 0.9, "sleep": sleep, "fail": False, "seed": seed},
                     resources=Resources(**res))

    big = [train(f"big[{i}]", i, 0.8, cpus=2) for i in range(2)]
    small = [train(f"small[{i}]", 10 + i, 0.5) for i in range(2)]
    gpu = train("gpu[0]", 20, 0.0, gpus=3)
    after = Stage("after[0]", TRAIN, {"objective_index": 1, "strength": 0.9, "sleep": 0, "fail": False, "seed": 21},
                  {"x": gpu})
    stages = big + small + [gpu, after]
    log = StageLog(tmp_path / "stages.jsonl", "res-test")
    ticks = []
    outcomes = RayExecutor().run(stages, Runtime(quiet=True), Cache(tmp_path / "cache"), log, lambda n=1: ticks.append(n))
    assert len(ticks) == len(stages)
    assert [outcomes[s.key].status for s in stages] == ["done"] * 4 + ["failed", "skipped"]
    assert outcomes[gpu.key].error.startswith("UnschedulableStage: gpu[0] asks for 1 CPU, 3 GPU")
    done = {e["stage"]: (e["started"], e["ended"]) for e in log.events if e["event"] == "done"}
    for s in big:  # a stage asking for both CPUs ran alone
        others = [iv for name, iv in done.items() if name != s.name]
        assert all(max_concurrency([done[s.name], iv]) == 1 for iv in others), (s.name, done)
    assert not (tmp_path / "cache" / "ray").exists() or not list((tmp_path / "cache" / "ray").iterdir())


def test_gpu_declarations_of_a_cuda_run_reach_ray(cluster, plugins_dir, tmp_path, monkeypatch):
    """A run planned with `device: cuda` (two GPUs claimed) on the 2-GPU instance: the stages
    of a model-based method ask Ray for one GPU each and get one GPU id each, at most two at
    a time; the model-free task's own stages ask for none and get none."""
    import sipo_bench.execution.device

    monkeypatch.setattr(sipo_bench.execution.device, "cuda_device_count", lambda: 2)
    data = {**run_config(plugins_dir, tmp_path, "gpu", "ray", methods=("dummy-gpu",), seeds=(0, 1, 2)),
            "device": "cuda", "method_options": {"dummy-gpu": {"sleep": 2 * SLEEP}},
            # half a CPU per training stage: only the two GPUs keep a third from starting
            "executor_options": {"resources": {"dummy-train": {"cpus": 0.5}}}}
    summary, out = run(data)
    assert summary["device"] == "cuda" and summary["methods"]["dummy-gpu"]["status"] == "ok"
    done = [e for e in events(out) if e["event"] == "done"]
    train = [e for e in done if e["stage"].startswith("dummy-train")]
    assert len(train) == 6 and all(len(e["gpus"]) == 1 for e in train)
    assert all(e["gpus"] == [] for e in done if not e["stage"].startswith("dummy-train"))
    spans = [(e["started"], e["ended"]) for e in train]
    assert max_concurrency(spans) == 2
    for a in train:  # stages that ran at the same time had different GPUs
        for b in train:
            if a is not b and max_concurrency([(a["started"], a["ended"]), (b["started"], b["ended"])]) == 2:
                assert a["gpus"] != b["gpus"]


@pytest.mark.slow
def test_killed_ray_driver_resumes_under_local(cluster, plugins_dir, reference, tmp_path):
    """`sipo-bench run --executor ray --ray-address HOST:PORT` joins the running instance;
    SIGKILLed mid-run, its finished stages are reused by a local rerun."""
    data = run_config(plugins_dir, tmp_path, "ray-killed", "ray")
    out1 = Path(data["out"])
    with cli(write_yaml(tmp_path / "ray.yaml", data), "--ray-address", cluster) as proc:
        wait_for(lambda: sum(e["event"] == "done" and e["stage"].startswith("dummy-train") for e in events(out1)) >= 2,
                 60, "two finished training stages", proc)
        proc.send_signal(signal.SIGKILL)
    done_before = keys_with(events(out1), "done")
    assert done_before and not (out1 / "summary.json").exists()

    summary, out2 = run({**data, "executor": "local", "out": str(tmp_path / "out-local")})
    assert same_results(summary, reference) == same_results(reference, reference)
    rerun = events(out2)
    assert done_before <= keys_with(rerun, "cached") and not done_before & keys_with(rerun, "start")


def test_system_exit_and_no_cache_under_ray(cluster, tmp_path):
    """Issue 14: a stage raising SystemExit is that stage's failure (the others run), and a
    `--no-cache` cache (`recompute`) makes the workers rebuild stages the cache already holds."""
    from sipo_bench_plugins.ray_executor.executor import RayExecutor

    train = Stage("train[0]", TRAIN, {"objective_index": 0, "strength": 0.9, "sleep": 0, "fail": False, "seed": 30})
    quit_ = Stage("quit[0]", "sys:exit", {"code": 3})  # sys.exit(ctx): SystemExit inside the worker
    cache = Cache(tmp_path / "cache")
    log = StageLog(None, "exit-test")
    outcomes = RayExecutor().run([train, quit_], Runtime(quiet=True), cache, log)
    assert outcomes[train.key].status == "done"
    assert outcomes[quit_.key].status == "failed" and outcomes[quit_.key].error.startswith("SystemExit: ")
    assert "StageAborted" in outcomes[quit_.key].traceback
    before = json.loads((cache.path(train) / "_DONE.json").read_text())["finished"]
    again = RayExecutor().run([train], Runtime(quiet=True), Cache(cache.root), StageLog(None, "cached"))
    assert again[train.key].status == "cached"
    fresh = RayExecutor().run([train], Runtime(quiet=True), Cache(cache.root, recompute=True), StageLog(None, "nc"))
    assert fresh[train.key].status == "done"
    assert json.loads((cache.path(train) / "_DONE.json").read_text())["finished"] > before
