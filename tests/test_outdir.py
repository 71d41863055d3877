"""Issue 14 items 4 and 5: OUT is a transaction (full disk, read-only filesystem, a kill while
writing the report), OUT of another config is refused unless --overwrite, one stage log per run,
no stale failures, no hidden temp files; a failure anywhere in the graph makes the run exit 1
(a failing base score stage, SystemExit in a stage, SIGTERM)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sipo_bench.cli import main
from sipo_bench.execution.fsio import TMP_MARK

from fsfaults import fill, tmpfs  # noqa: E402

REPORT = ("summary.json", "table.md", "points.csv", "front.png")


def run(out: Path, cache: Path, *extra: str) -> int:
    return main(["run", "--task", "dummy", "--out", str(out), "--cache-dir", str(cache), "--quiet", *extra])


def report_bytes(out: Path) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in REPORT}


def temp_names(*dirs: Path) -> list[str]:
    return [p.name for d in dirs if d.is_dir() for p in d.iterdir() if TMP_MARK in p.name]


def log_rows(out: Path) -> list[dict]:
    return [json.loads(l) for l in (out / "logs" / "stages.jsonl").read_text().splitlines()]


def test_full_disk_while_writing_the_report_keeps_the_previous_one(tmp_path, capsys):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        out, cache = disk / "out", tmp_path / "cache"
        assert run(out, cache) == 0
        before = report_bytes(out)
        filler = fill(disk, leave_bytes=24 * 1024)  # room for the logs, not for front.png
        capsys.readouterr()
        assert run(out, cache) == 1
        err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("sipo-bench: error")]
        assert err == [f"sipo-bench: error: cannot write the report into {str(out)!r}: No space left on device; "
                       f"the previous report there, if any, is unchanged"]
        assert report_bytes(out) == before
        assert temp_names(disk, out, out / "logs") == []
        filler.unlink()
        assert run(out, cache) == 0


def test_read_only_filesystem_while_writing_the_report(tmp_path, monkeypatch, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert run(out, cache) == 0
    before = report_bytes(out)

    def erofs(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("sipo_bench.reporting.outdir.make_temp_dir", erofs)  # the mount went read-only mid-run
    assert run(out, cache) == 1
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("sipo-bench: error")]
    assert err == [f"sipo-bench: error: cannot write the report into {str(out)!r}: Read-only file system; "
                   f"the previous report there, if any, is unchanged"]
    assert report_bytes(out) == before


KILL_AT = textwrap.dedent("""
    import os, signal, sys
    import sipo_bench.reporting.outdir as o
    where = sys.argv[1]
    if where == "swap":
        o.swap_dirs = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    else:
        real = o._write_new
        def write(path, data):
            if path.name == "front.png":
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, data)
        o._write_new = write
    from sipo_bench.cli import main
    main(sys.argv[2:])
""")


@pytest.mark.parametrize("where", ["swap", "front.png"])
def test_killed_while_writing_the_report(tmp_path, where):
    out, cache = tmp_path / "out", tmp_path / "cache"
    if where == "swap":
        assert run(out, cache) == 0  # a previous, complete report
    before = report_bytes(out) if out.exists() else None
    args = ["run", "--task", "dummy", "--out", str(out), "--cache-dir", str(cache), "--quiet"]
    proc = subprocess.run([sys.executable, "-c", KILL_AT, where, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    if before is not None:
        assert report_bytes(out) == before  # the old report, whole
    else:
        assert not (out / "summary.json").exists()  # never a summary.json without its front.png
    assert temp_names(tmp_path)  # the killed writer's temp dir is left beside OUT...
    assert run(out, cache) == 0  # ...and the next run removes it
    assert temp_names(tmp_path, out, out / "logs") == []
    assert all((out / n).is_file() for n in REPORT)


def test_out_of_another_config_is_refused_unless_overwrite(tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert run(out, cache) == 0
    before = report_bytes(out)
    capsys.readouterr()
    assert run(out, cache, "--seeds", "1") == 2
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert lines == [f"sipo-bench: error: `--out`: expected a new directory or the results of this same config, got "
                     f"{str(out)!r} (it holds the results of a run with another config); pass --overwrite to replace "
                     f"them, or choose another --out"]
    assert report_bytes(out) == before
    assert run(out, cache, "--seeds", "1", "--overwrite") == 0
    first = log_rows(out)[0]["run_id"]
    assert json.loads((out / "summary.json").read_text())["seeds"] == [1]
    assert not (out / "logs" / "runs").exists()  # the other config's logs went with its report
    # the same config again (how it runs may differ): resumes, one stage log per run
    assert run(out, tmp_path / "cache", "--seeds", "1") == 0
    rows = log_rows(out)
    assert {r["run_id"] for r in rows} == {json.loads((out / "summary.json").read_text())["run"]["run_id"]} != {first}
    assert {r["event"] for r in rows} == {"cached"}
    assert [p.name for p in (out / "logs" / "runs").iterdir()] == [f"{first}.jsonl"]


def test_a_directory_sipo_bench_did_not_write_is_never_replaced(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    for extra in ((), ("--overwrite",)):
        assert run(out, tmp_path / "cache", *extra) == 2
        assert "(it holds other files)" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


FLAKY = textwrap.dedent("""
    import os
    from sipo_bench.contract.hookspecs import hookimpl
    from sipo_bench_plugins.dummy import DummyMethod, train_dummy_adapter

    def flaky_train(ctx):
        if os.environ.get("FLAKY_FAIL"):
            raise RuntimeError("transient failure")
        return train_dummy_adapter(ctx)

    def quit_train(ctx):
        raise SystemExit(3)

    class Flaky(DummyMethod):
        name = "flaky"
        tasks = None
        def fit(self, ctx):
            fam = super().fit(ctx)
            for s in fam.adapters:
                s.fn = "sipo_bench_local_plugins.faults:flaky_train"
            return fam

    class Quitter(Flaky):
        name = "quitter"
        def fit(self, ctx):
            fam = super().fit(ctx)
            for s in fam.adapters:
                s.fn = "sipo_bench_local_plugins.faults:quit_train"
            return fam

    @hookimpl
    def sipo_bench_register_methods():
        return [Flaky, Quitter]
""")


@pytest.fixture
def faults(tmp_path):
    d = tmp_path / "plugs"
    d.mkdir()
    (d / "faults.py").write_text(FLAKY)
    return d


def test_stale_failures_do_not_survive_a_rerun(tmp_path, faults, monkeypatch, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["--methods", "dummy,flaky", "--plugins-dir", str(faults)]
    monkeypatch.setenv("FLAKY_FAIL", "1")
    assert run(out, cache, *args) == 1
    assert len(list((out / "logs" / "failures").iterdir())) == 2
    monkeypatch.delenv("FLAKY_FAIL")
    assert run(out, cache, *args) == 0  # same config: resumes and retries the failed stages
    assert not (out / "logs" / "failures").exists()
    s = json.loads((out / "summary.json").read_text())
    assert s["methods"]["flaky"]["status"] == "ok" and s["failed_stages"] == []
    assert "Failed" not in (out / "table.md").read_text()


def test_system_exit_in_a_stage_is_a_stage_failure(tmp_path, faults, capsys):
    out = tmp_path / "out"
    assert run(out, tmp_path / "cache", "--methods", "dummy,quitter", "--plugins-dir", str(faults)) == 1
    s = json.loads((out / "summary.json").read_text())
    assert s["methods"]["dummy"]["status"] == "ok"
    assert s["methods"]["quitter"]["status"] == "failed"
    assert "SystemExit: 3 (raised by the stage function)" in s["methods"]["quitter"]["error"]
    tb = next((out / "logs" / "failures").iterdir()).read_text()
    assert "SystemExit: 3" in tb and "StageAborted" in tb


BAD_BASE = textwrap.dedent("""
    from sipo_bench.contract.hookspecs import hookimpl
    from sipo_bench_plugins.dummy import DummyScorer, DummyTask

    class PickyScorer(DummyScorer):
        name = "picky"
        def score(self, prompts, responses, progress=None):
            if any(r == "aaaaabbbbb" for r in responses):  # what the base policy writes
                raise RuntimeError("scorer cannot grade the base policy")
            return super().score(prompts, responses, progress)

    class BadBaseTask(DummyTask):
        name = "bad-base"
        def scorers(self):
            return [("picky", {})]

    @hookimpl
    def sipo_bench_register_tasks():
        return [BadBaseTask]

    @hookimpl
    def sipo_bench_register_scorers():
        return [PickyScorer]
""")


def test_a_failed_base_score_stage_leaves_no_hypervolume(tmp_path, capsys):
    plugs = tmp_path / "plugs"
    plugs.mkdir()
    (plugs / "badbase.py").write_text(BAD_BASE)
    out = tmp_path / "out"
    args = ["--task", "bad-base", "--methods", "dummy", "--weights", "1", "--plugins-dir", str(plugs),
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(["run", *args, "--out", str(out)]) == 1
    s = json.loads((out / "summary.json").read_text())
    m = s["methods"]["dummy"]
    assert m["status"] == "failed" and m["hypervolume"] is None and m["hypervolume_floor"] is None
    assert m["error"] == ("no HV reference point for seed(s) 0 (stage score[base,seed=0]: RuntimeError: scorer "
                          "cannot grade the base policy)")
    assert len(m["points"]) == 2  # the method's own points are there; what is missing is said
    assert [f["stage"] for f in s["failed_stages"]] == ["score[base,seed=0]"]
    assert s["ref_point"] is None and s["base_policy"]["scores"] == {"0": None}
    # with a reference point from the config the methods have their HV, and the run still fails
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ref_point: [0.0, 0.0]\n")
    capsys.readouterr()
    assert main(["run", *args, "--config", str(cfg), "--out", str(tmp_path / "out2")]) == 1
    s = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert s["methods"]["dummy"]["status"] == "ok" and s["methods"]["dummy"]["hypervolume"] is not None
    err = capsys.readouterr().err
    key = s["failed_stages"][0]["key"]
    assert (f"sipo-bench: stage score[base,seed=0] failed: RuntimeError: scorer cannot grade the base policy "
            f"(traceback in {tmp_path / 'out2'}/logs/failures/{key}.txt)") in err


def test_sigterm_cleans_up_says_so_and_resumes(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: dummy\nseeds: [0, 1]\nmethod_options: {dummy: {sleep: 1.0}}\n")
    args = [sys.executable, "-m", "sipo_bench.cli", "run", "--config", str(cfg), "--out", str(out), "--cache-dir",
            str(cache), "--quiet"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        rows = log_rows(out) if (out / "logs" / "stages.jsonl").exists() else []
        starts = [r for r in rows if r["event"] == "start" and r["stage"].startswith("dummy-train")]
        if any(r["event"] == "done" for r in rows if r["stage"].startswith("dummy-train")) and len(starts) >= 2:
            break
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    time.sleep(0.3)  # inside a training stage
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 143, err
    assert ("sipo-bench: terminated (SIGTERM); temp files removed, finished stages are cached: rerun the same "
            "command to resume") in err
    assert "Traceback" not in err
    assert [p.name for p in (cache / "tmp").iterdir()] == []
    assert temp_names(tmp_path, out, out / "logs") == [] and not (out / "summary.json").exists()
    finished = {r["key"] for r in log_rows(out) if r["event"] == "done"}
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    rows = log_rows(out)
    assert finished <= {r["key"] for r in rows if r["event"] == "cached"}


@pytest.mark.parametrize("in_place", [False, True])
def test_report_folders_are_replaced_whole_and_other_files_kept(tmp_path, monkeypatch, in_place):
    """curves/ of a new report replaces the old folder (no stale curve survives); files the
    report does not name (notes, tracking/) are kept; both the swap and the in-place commit."""
    from sipo_bench.reporting.outdir import ResultsDir

    out = tmp_path / "out"
    r = ResultsDir(out)
    r.commit({"curves/a.json": b"1", "samples.json": b"s", "summary.json": b"{}"}, None)
    (out / "notes.txt").write_text("mine")
    used: list[str] = []
    if in_place:  # OUT's parent refuses the temp dir: the files are renamed into OUT one by one
        import sipo_bench.reporting.outdir as outdir

        real = outdir.make_temp_dir

        def temp_dir(parent, prefix):
            if Path(parent) != out:
                raise PermissionError("parent not writable")
            used.append(prefix)
            return real(parent, prefix)

        monkeypatch.setattr(outdir, "make_temp_dir", temp_dir)
    r.commit({"curves/b.json": b"2", "summary.json": b"{\"n\": 2}"}, None)
    assert sorted(p.name for p in (out / "curves").iterdir()) == ["b.json"]
    assert (out / "notes.txt").read_text() == "mine" and (out / "samples.json").read_bytes() == b"s"
    assert (out / "summary.json").read_bytes() == b"{\"n\": 2}"
    assert used == ([".report"] if in_place else [])
    with pytest.raises(ValueError, match="relative path inside OUT"):
        r.commit({"../escape.json": b"x"}, None)
