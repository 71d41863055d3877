"""The local executor with `--jobs N`: worker processes, the same summary as one job, one
ordered stage log, a SIGKILLed parent leaves no worker and resumes, a killed worker fails only
its stage.

Every test looks only at processes it started itself (its own children), so the file runs side
by side with other tests (pytest-xdist)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sipo_bench.configs.run_config import default_jobs, make_config

from sipo_bench.planning.run import execute

from sipo_bench.reporting.summary import comparable
from sipo_bench.execution.runtime import Runtime
from sipo_bench.execution.stages import Cache, Resources, Stage, StageLog, read_jsonl
from stage_events import events, max_concurrency, wait_for

psutil = pytest.importorskip("psutil")

pytestmark = pytest.mark.timeout(300)

SLEEP = 0.8  # seconds per dummy training stage: long enough to overlap and to be killed


def config(tmp: Path, name: str, jobs: int, *, seeds=(0, 1), sleep: float = SLEEP, cache: Path | None = None,
           **extra) -> dict:
    return {"task": "dummy", "methods": ["dummy"], "seeds": list(seeds), "quiet": True, "jobs": jobs,
            "method_options": {"dummy": {"sleep": sleep}}, "out": str(tmp / f"out-{name}"),
            "cache_dir": str(cache or tmp / f"cache-{name}"), **extra}


def run(data: dict) -> tuple[dict, Path]:
    cfg = make_config(data)
    return execute(cfg, Runtime(plugins_dir=cfg.plugins_dir, quiet=True))


def spans(evs: list[dict], prefix: str = "") -> list[tuple[float, float]]:
    start = {e["key"]: e["time"] for e in evs if e["event"] == "start"}
    return [(start[e["key"]], e["time"]) for e in evs if e["event"] == "done" and e["stage"].startswith(prefix)]


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> dict:
    """The in-process (jobs 1) summary of the shared config."""
    summary, _ = run(config(tmp_path_factory.mktemp("serial"), "serial", 1))
    assert summary["methods"]["dummy"]["status"] == "ok"
    return summary


def test_default_jobs_divides_the_cores_by_the_threads_per_stage(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    assert default_jobs(1) == 6 and default_jobs(2) == 3 and default_jobs(4) == 1 and default_jobs(8) == 1
    assert default_jobs(None) == 1  # torch's default threads already use every core
    assert make_config({"cpu_threads": 3}).effective_jobs() == 2
    assert make_config({"jobs": 5}).effective_jobs() == 5


def test_two_jobs_same_summary_stages_side_by_side_one_ordered_log(serial, tmp_path):
    summary, out = run(config(tmp_path, "jobs2", 2))
    assert comparable(summary) == comparable(serial)
    evs = events(out)
    assert [e["time"] for e in evs] == sorted(e["time"] for e in evs)  # one file, in order
    assert len({e["run_id"] for e in evs}) == 1
    starts = {e["key"]: e for e in evs if e["event"] == "start"}
    done = [e for e in evs if e["event"] == "done"]
    assert len(done) == summary["run"]["stages"]["total"] == len(starts)
    assert all(evs.index(starts[e["key"]]) < evs.index(e) for e in done)  # start before done
    # stages ran in two worker processes, reused from stage to stage (not one process each)
    pids = {e["pid"] for e in done}
    assert len(pids) == 2 and os.getpid() not in pids
    assert {e["worker"] for e in starts.values()} == {0, 1}
    train = spans(evs, "dummy-train")
    assert len(train) == 4 and all(b - a >= SLEEP * 0.9 for a, b in train)
    assert max_concurrency(train) == 2 and max_concurrency(spans(evs)) == 2
    # the workers are gone once the run returns
    _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)
    assert not alive


def test_rerun_is_cached_without_starting_workers(serial, tmp_path):
    data = config(tmp_path, "warm", 2, sleep=0.0)
    run(data)
    summary, out = run({**data, "out": str(tmp_path / "out-warm2")})
    evs = events(out)
    assert {e["event"] for e in evs} == {"cached"} and all(e["pid"] == os.getpid() for e in evs)


def test_failures_are_recorded_like_in_process(tmp_path):
    """A stage that raises in a worker: same summary and failure files as one job."""
    failing = {"method_options": {"dummy": {"sleep": 0.0, "fail": True}}}
    one, out1 = run({**config(tmp_path, "fail1", 1), **failing})
    two, out2 = run({**config(tmp_path, "fail2", 2), **failing})
    assert comparable(two) == comparable(one)
    assert two["methods"]["dummy"]["error"].endswith("RuntimeError: dummy method asked to fail")
    failed = [e for e in events(out2) if e["event"] == "failed"]
    assert len(failed) == 4 and all('raise RuntimeError("dummy method asked to fail")' in e["traceback"] for e in failed)
    assert sorted(os.listdir(out2 / "logs" / "failures")) == sorted(os.listdir(out1 / "logs" / "failures"))
    kinds = lambda out: sorted((e["event"], e["stage"]) for e in events(out) if e["event"] in ("failed", "skipped"))  # noqa: E731
    assert kinds(out2) == kinds(out1)


def test_sigkilled_parallel_run_leaves_no_worker_and_resumes(serial, tmp_path):
    data = config(tmp_path, "killed", 2)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps(data))  # JSON is YAML
    out = Path(data["out"])
    proc = subprocess.Popen([sys.executable, "-m", "sipo_bench.cli", "run", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        me = psutil.Process(proc.pid)
        wait_for(lambda: sum(e["event"] == "done" and e["stage"].startswith("dummy-train") for e in events(out)) >= 2,
                 120, "two finished training stages", proc)
        workers = me.children(recursive=True)
        assert workers, "the run should have worker processes"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, f"workers outlived their parent: {[(p.pid, p.name()) for p in alive]}"
    first = events(out)
    finished = {e["key"] for e in first if e["event"] == "done"}
    assert finished and not (out / "summary.json").exists()

    summary, _ = run(data)  # the same command again resumes
    assert comparable(summary) == comparable(serial)
    second = [e for e in events(out) if e["run_id"] != first[0]["run_id"]]
    assert finished <= {e["key"] for e in second if e["event"] == "cached"}
    assert not finished & {e["key"] for e in second if e["event"] == "start"}


def test_worker_killed_mid_stage_fails_only_its_stage(serial, tmp_path):
    data = config(tmp_path, "victim", 2, sleep=2.0)
    out = Path(data["out"])
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(result=run(data)), daemon=True)
    t.start()
    victim = wait_for(lambda: next((e for e in events(out) if e["event"] == "start"
                                    and e["stage"] == "dummy-train[a,seed=0]"), None), 60, "the stage to start")
    time.sleep(0.3)
    os.kill(victim["pid"], signal.SIGKILL)
    t.join(120)
    assert not t.is_alive() and "result" in box
    summary, _ = box["result"]
    evs = events(out)
    failed = [e for e in evs if e["event"] == "failed"]
    assert [e["stage"] for e in failed] == ["dummy-train[a,seed=0]"]
    assert failed[0]["error"] == (f"WorkerDied: the worker process (pid {victim['pid']}) running stage "
                                  "dummy-train[a,seed=0] was killed by SIGKILL (the kernel's out-of-memory "
                                  "killer sends SIGKILL)")
    skipped = {e["stage"] for e in evs if e["event"] == "skipped"}  # w=0/1 does not use adapter a
    assert skipped == {f"{k}[dummy,w={w},seed=0]" for k in ("generate", "score")
                       for w in ("0.25/0.75", "0.5/0.5", "0.75/0.25", "1/0")} | {"eval-noise[dummy,seed=0]"}
    done = {e["stage"] for e in evs if e["event"] == "done"}
    assert {"dummy-train[b,seed=0]", "dummy-train[a,seed=1]", "score[dummy,w=1/0,seed=1]", "score[base,seed=0]"} <= done
    m = summary["methods"]["dummy"]
    assert m["status"] == "failed" and m["error"].startswith("stage dummy-train[a,seed=0]: WorkerDied:")
    assert sorted((p["seed"], p["w"][0]) for p in m["points"]) == [(0, 0.0)] + [(1, w) for w in (0, 0.25, 0.5, 0.75, 1)]
    # a fresh worker took the dead one's place; the rerun completes the run (with the serial
    # run's results: only the sleep differs)
    summary, _ = run(data)
    without_config = lambda s: {**comparable(s), "config": None, "methods": {  # noqa: E731
        n: {**m, "config": None} for n, m in comparable(s)["methods"].items()}}
    assert without_config(summary) == without_config(serial)


def test_resources_limit_what_runs_together(tmp_path):
    """A stage asking for every thread of the run runs alone; memory requests add up."""
    from sipo_bench.execution.executors import LocalExecutor

    train = "sipo_bench_plugins.dummy:train_dummy_adapter"

    def stage(name: str, seed: int, **res) -> Stage:
        return Stage(name, train, {"objective_index": 0, "strength": 0.9, "sleep": 0.6, "fail": False, "seed": seed},
                     resources=Resources(**res))

    big = [stage(f"big[{i}]", i, cpus=2) for i in range(2)]
    small = [stage(f"small[{i}]", 10 + i) for i in range(2)]
    runtime = Runtime(quiet=True, jobs=2, cpu_threads=1)
    log = StageLog(tmp_path / "stages.jsonl", "res")
    ticks = []
    outcomes = LocalExecutor().run(big + small, runtime, Cache(tmp_path / "cache"), log, lambda n=1: ticks.append(n))
    assert [o.status for o in outcomes.values()] == ["done"] * 4 and len(ticks) == 4
    evs = read_jsonl(tmp_path / "stages.jsonl")
    iv = {e["stage"]: e for e in evs}
    done = {e["stage"]: (next(x["time"] for x in evs if x["event"] == "start" and x["key"] == e["key"]), e["time"])
            for e in evs if e["event"] == "done"}
    for s in big:
        assert all(max_concurrency([done[s.name], other]) == 1 for n, other in done.items() if n != s.name), done
    assert max_concurrency([done[s.name] for s in small]) == 2
    assert iv  # the log holds every stage


def test_gpu_stages_run_one_per_visible_gpu(tmp_path, monkeypatch):
    """On a cuda run with GPUs "3" and "5" and 3 jobs: two GPU slots, each worker seeing only
    its own GPU (CUDA_VISIBLE_DEVICES) as device cuda, so two GPU stages at a time; a CPU slot
    (no GPU visible, device cpu) for the stages that ask for none. No GPU is touched."""
    import sipo_bench.execution.device
    from sipo_bench.execution.executors import LocalExecutor

    monkeypatch.setattr(sipo_bench.execution.device, "cuda_device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")

    def stage(name: str, gpus: int, sleep: float) -> Stage:
        return Stage(name, "tests.stage_fns:where", {"v": name, "sleep": sleep}, resources=Resources(gpus=gpus))

    gpu = [stage(f"gpu[{i}]", 1, 0.8) for i in range(4)]
    cpu = [stage(f"cpu[{i}]", 0, 0.2) for i in range(3)]
    runtime = Runtime(quiet=True, jobs=3, cpu_threads=1, device="cuda")
    log = StageLog(tmp_path / "stages.jsonl", "gpu")
    outcomes = LocalExecutor().run(gpu + cpu, runtime, Cache(tmp_path / "cache"), log)
    assert all(o.status == "done" for o in outcomes.values()), {k: o.error for k, o in outcomes.items()}
    evs = read_jsonl(tmp_path / "stages.jsonl")
    starts = {e["stage"]: e for e in evs if e["event"] == "start"}
    for s in gpu:
        r = outcomes[s.key].result
        assert r["device"] == "cuda" and r["cuda_visible_devices"] == starts[s.name]["gpu"] in ("3", "5")
    for s in cpu:
        assert outcomes[s.key].result == {"cuda_visible_devices": "", "device": "cpu"} and "gpu" not in starts[s.name]
    done = {e["stage"]: e["time"] for e in evs if e["event"] == "done"}
    gpu_spans = [(starts[s.name]["time"], done[s.name]) for s in gpu]
    assert max_concurrency(gpu_spans) == 2
    for a in gpu:  # GPU stages that overlapped had different GPUs
        for b in gpu:
            if a is not b and max_concurrency([(starts[a.name]["time"], done[a.name]),
                                               (starts[b.name]["time"], done[b.name])]) == 2:
                assert starts[a.name]["gpu"] != starts[b.name]["gpu"]
