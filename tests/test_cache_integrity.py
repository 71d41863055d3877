"""Issue 14 items 2 and 7: the cache trusts only what matches the record its stage wrote, says
which stage and file it distrusts, `cache verify` hashes everything, `cache gc` removes what no
run references; shared caches: live temp dirs survive, `--no-cache` swaps atomically, modes
follow the umask."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sipo_bench.execution import integrity
from sipo_bench.cli import main
from sipo_bench.reporting.summary import comparable
from sipo_bench.execution.stages import DONE, RESULT, Cache, Stage, execute_stage

FN = "tests.stage_fns:"


def run(out: Path, cache: Path, *extra: str) -> int:
    return main(["run", "--task", "dummy", "--out", str(out), "--cache-dir", str(cache), "--quiet", *extra])


def stage_dir(cache: Path, name: str) -> Path:
    for d in (cache / "stages").iterdir():
        if json.loads((d / DONE).read_text())["name"] == name:
            return d
    raise AssertionError(f"no stage {name} in {cache}")


def events(out: Path) -> list[dict]:
    return [json.loads(l) for l in (out / "logs" / "stages.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """One clean dummy run: its cache (copied by each test) and its summary."""
    base = tmp_path_factory.mktemp("clean")
    assert run(base / "out", base / "cache") == 0
    return base / "cache", json.loads((base / "out" / "summary.json").read_text())


def _edit_same_size(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text and len(old) == len(new)
    path.write_text(text.replace(old, new, 1))


SCORE = "score[dummy,w=0.5/0.5,seed=0]"
TRAIN = "dummy-train[a,seed=0]"
DAMAGE = {
    "marker garbage": (SCORE, lambda d: (d / DONE).write_bytes(b"\x00\x01garbage"), "_DONE.json is damaged (not valid JSON)"),
    "marker empty": (SCORE, lambda d: (d / DONE).write_text(""), "_DONE.json is damaged (not valid JSON)"),
    "marker list": (SCORE, lambda d: (d / DONE).write_text("[]"), "_DONE.json is damaged (a JSON list, not an object)"),
    "marker {}": (SCORE, lambda d: (d / DONE).write_text("{}"), "_DONE.json is damaged (no valid record of the stage's files)"),
    "marker gone": (SCORE, lambda d: (d / DONE).unlink(), "_DONE.json is missing"),
    "result deleted": (SCORE, lambda d: (d / RESULT).unlink(), "result.json is missing"),
    "result edited": (SCORE, lambda d: _edit_same_size(d / RESULT, "0.5", "0.1"),
                      "result.json does not match its recorded sha256"),
    "adapter flipped": (TRAIN, lambda d: _edit_same_size(d / "adapter.json", "0.9", "0.1"),
                        "adapter.json does not match its recorded sha256"),
    "extra file": (SCORE, lambda d: (d / "stray.txt").write_text("x"), "stray.txt is not in its record (an extra file)"),
    "resized": (SCORE, lambda d: (d / "scores.jsonl").open("a").write("\n"), "scores.jsonl has "),
    "old marker format": (SCORE, lambda d: (d / DONE).write_text(json.dumps({"name": SCORE, "key": d.name, "seconds": 0})),
                          "_DONE.json was written by an older sipo-bench"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_stage_is_recomputed_with_one_warning(tmp_path, clean, capsys, case):
    src, reference = clean
    cache = tmp_path / "cache"
    shutil.copytree(src, cache)
    name, damage, message = DAMAGE[case]
    d = stage_dir(cache, name)
    key = d.name
    damage(d)
    out = tmp_path / "out"
    capsys.readouterr()
    assert run(out, cache) == 0
    warnings = [l for l in capsys.readouterr().err.splitlines() if "is not trusted" in l]
    assert len(warnings) == 1, warnings
    assert f"stage {name} ({key}) is not trusted: {message}" in warnings[0] or (
        f"({key}) is not trusted: {message}" in warnings[0]), warnings[0]  # a damaged marker may lose the name
    assert [e["event"] for e in events(out) if e["key"] == key] == ["start", "done"]
    summary = json.loads((out / "summary.json").read_text())
    assert comparable(summary) == comparable(reference)  # e.g. HV vs floor stays 0.41, not 0.37 or 0.0
    assert summary["methods"]["dummy"]["hypervolume_floor"]["mean"] == pytest.approx(0.41)
    assert Cache(cache).inspect(key, full=True)[0] is not None  # repaired


def test_reuse_checks_sizes_and_mtimes_of_large_files_and_verify_hashes_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(integrity, "SMALL_FILE", 64)  # big.bin (4 KiB) is "large" here
    cache = Cache(tmp_path / "cache")
    s = Stage("big", FN + "write_big", {"kib": 4})
    assert execute_stage(s, cache, None)[0] == "done"
    marker = json.loads((cache.path(s) / DONE).read_text())
    assert set(marker["files"]) == {"big.bin", "sub/small.txt", "result.json"}
    assert marker["files"]["big.bin"]["size"] == 4096 and len(marker["files"]["big.bin"]["sha256"]) == 64
    big = cache.path(s) / "big.bin"
    st = big.stat()
    data = bytearray(big.read_bytes())
    data[100] ^= 0xFF  # bit rot: same size, mtime put back
    big.write_bytes(bytes(data))
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert Cache(cache.root).is_valid(s)  # reuse does not hash large files whose mtime is unchanged...
    assert main(["cache", "verify", "--cache-dir", str(cache.root)]) == 1  # ...`cache verify` does
    out = capsys.readouterr().out
    assert f"damaged: stage big ({s.key}): big.bin does not match its recorded sha256" in out
    assert "verified 1 stage(s)" in out and "1 damaged" in out
    os.utime(big, None)  # an edit in place moves the mtime: reuse hashes the file and distrusts it
    warned = []
    assert not Cache(cache.root, warn=warned.append).is_valid(s)
    assert warned == [f"cache: stage big ({s.key}) is not trusted: big.bin does not match its recorded sha256 "
                      f"(changed since the stage wrote it); it will be recomputed"]
    assert main(["cache", "verify", "--cache-dir", str(cache.root), "--remove"]) == 0
    assert not cache.path(s).exists()
    assert execute_stage(s, Cache(cache.root), None)[0] == "done"
    assert main(["cache", "verify", "--cache-dir", str(cache.root)]) == 0
    assert "0 damaged" in capsys.readouterr().out


def test_verify_refreshes_mtimes_of_a_copied_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(integrity, "SMALL_FILE", 64)
    cache = Cache(tmp_path / "cache")
    s = Stage("big", FN + "write_big", {"kib": 4})
    execute_stage(s, cache, None)
    copy = tmp_path / "copy"
    shutil.copytree(cache.root, copy, copy_function=shutil.copyfile)  # new mtimes, same bytes
    assert main(["cache", "verify", "--cache-dir", str(copy)]) == 0
    assert "refreshed the recorded mtimes of 1 stage(s)" in capsys.readouterr().out
    marker = json.loads((copy / "stages" / s.key / DONE).read_text())
    assert marker["files"]["big.bin"]["mtime_ns"] == (copy / "stages" / s.key / "big.bin").stat().st_mtime_ns


def test_gc_removes_what_no_run_references(tmp_path, capsys):
    cache = tmp_path / "cache"
    assert run(tmp_path / "a", cache) == 0
    assert run(tmp_path / "b", cache, "--seeds", "1") == 0
    runs = sorted(p.stem for p in (cache / "runs").glob("*.json"))
    assert len(runs) == 2
    n_stages = len(list((cache / "stages").iterdir()))
    assert n_stages == 34  # 17 per seed (16 + the HV evaluation-noise stage), nothing shared between seeds
    capsys.readouterr()
    assert main(["cache", "gc", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "removed 0 item(s), 0 B; kept 34 stage(s) referenced by 2 run(s)" in out
    shutil.rmtree(tmp_path / "b")  # results of run b deleted: its stages are garbage
    assert main(["cache", "gc", "--cache-dir", str(cache), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "would remove 18 item(s)" in dry and len(list((cache / "stages").iterdir())) == 34
    assert main(["cache", "gc", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    removed = [l for l in out.splitlines() if l.startswith("removed stage ")]
    assert len(removed) == 17 and all("seed=1" in l for l in removed)
    assert any(l.startswith("removed run record") for l in out.splitlines())
    total = out.splitlines()[-1]
    assert total.startswith("removed 18 item(s), ") and "kept 17 stage(s) referenced by 1 run(s)" in total
    assert run(tmp_path / "a", cache) == 0  # run a is still fully cached
    assert {e["event"] for e in events(tmp_path / "a")} == {"cached"}


def test_gc_waits_for_no_run_and_verify_needs_a_cache(tmp_path, capsys):
    cache = Cache(tmp_path / "cache")
    cache.root.mkdir()
    with cache.in_use():  # a running `sipo-bench run` holds this shared
        assert main(["cache", "gc", "--cache-dir", str(cache.root)]) == 1
    assert "is in use by a running sipo-bench run" in capsys.readouterr().err
    assert main(["cache", "verify", "--cache-dir", str(tmp_path / "nope")]) == 2
    assert "`--cache-dir`: expected a sipo-bench cache directory" in capsys.readouterr().err


BUILDER = textwrap.dedent("""
    import sys, time
    from sipo_bench.execution.stages import Cache, Stage
    with Cache(sys.argv[1]).building(Stage("long", "tests.stage_fns:write", {"v": 9})) as tmp:
        (tmp / "partial.bin").write_bytes(b"x" * 1000)
        print(tmp, flush=True)
        time.sleep(120)
""")


def test_a_starting_run_never_deletes_a_live_builders_temp_dir(tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", BUILDER, str(cache)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parent.parent)
    try:
        tmp = Path(proc.stdout.readline().strip())
        assert tmp.is_dir()
        old = time.time() - 7 * 3600  # older than the previous 6 h cut-off: age alone proves nothing
        os.utime(tmp, (old, old))
        assert run(tmp_path / "out", cache) == 0  # cleans the cache's temp dirs on start
        assert tmp.is_dir() and (tmp / "partial.bin").is_file()
    finally:
        proc.kill()
        proc.wait()
    assert tmp.is_dir()  # SIGKILL: the builder could not clean up; its flock is gone with it
    assert run(tmp_path / "out", cache) == 0
    assert not tmp.exists() and not Path(f"{tmp}.lock").exists()


def test_no_cache_swaps_stages_without_disturbing_concurrent_readers(tmp_path):
    cache = tmp_path / "cache"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: dummy\nmethod_options: {dummy: {sleep: 0.4}}\n")
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "a"), "--cache-dir", str(cache), "--quiet"]) == 0
    keys = [d.name for d in (cache / "stages").iterdir()]
    before = {k: json.loads((cache / "stages" / k / DONE).read_text())["finished"] for k in keys}
    proc = subprocess.Popen([sys.executable, "-m", "sipo_bench.cli", "run", "--config", str(cfg), "--out",
                             str(tmp_path / "b"), "--cache-dir", str(cache), "--quiet", "--no-cache"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    looks = 0
    reader = Cache(cache)
    while proc.poll() is None:  # a concurrent run reads every stage the whole time
        for k in keys:
            reader._verified.clear()
            assert reader.inspect(k)[0] is not None, f"stage {k} vanished or was torn during --no-cache"
        looks += 1
    assert proc.returncode == 0, proc.stderr.read()
    assert looks > 5
    assert {e["event"] for e in events(tmp_path / "b")} == {"start", "done"}  # everything recomputed
    after = {k: json.loads((cache / "stages" / k / DONE).read_text())["finished"] for k in keys}
    assert all(after[k] > before[k] for k in keys)
    assert not any((cache / "stages").glob(".*"))  # the replaced copies are gone


def test_cache_and_results_follow_the_umask(tmp_path):
    old = os.umask(0o002)  # a group-shared cache
    try:
        assert run(tmp_path / "out", tmp_path / "cache") == 0
    finally:
        os.umask(old)

    def modes(root: Path) -> set[tuple[str, int]]:
        return {("d" if p.is_dir() else "f", stat.S_IMODE(p.stat().st_mode)) for p in [root, *root.rglob("*")]
                if not p.name.endswith(".lock")}

    assert modes(tmp_path / "cache" / "stages") == {("d", 0o775), ("f", 0o664)}
    assert modes(tmp_path / "out") == {("d", 0o775), ("f", 0o664)}
