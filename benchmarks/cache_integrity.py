"""What the verified cache costs on a multi-GB stage (docs/architecture.md, "Cache integrity").

    python benchmarks/cache_integrity.py            # one 2 GiB file, in a temp dir on /tmp
    python benchmarks/cache_integrity.py --gib 4 --dir /data/scratch

A stage writes one large file (plus a small one). Printed, each against a naive baseline
measured in the same run:
- seal: recording the stage's files when it finishes (sha256 + fsync of every file, marker),
  against the stage writing its artefact (no fsync) and against a plain `fsync` of it;
- reuse check: what every later run pays before trusting the stage (a fresh process view: file
  list, sizes, mtimes, hashes of the small files), against opening the result and nothing else;
- `cache verify`: every file's sha256, against reading the file once (`cat > /dev/null`).
With `--drop-caches` (root; it empties the whole machine's page cache) the verify and read
timings start cold; the output says which.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sipo_bench.execution.cache_admin import verify  # noqa: E402
from sipo_bench.execution.stages import Cache, Stage, execute_stage  # noqa: E402

CHUNK = 64 << 20


def write_big(ctx) -> dict:
    """Stage function: `gib` GiB of incompressible bytes in `big.bin`, plus `small.json`."""
    t0 = time.perf_counter()
    block = os.urandom(CHUNK)
    with open(ctx.out / "big.bin", "wb") as f:
        for _ in range(int(ctx.config["gib"] * (1 << 30) // CHUNK)):
            f.write(block)
    (ctx.out / "small.json").write_text('{"ok": true}')
    return {"write_seconds": time.perf_counter() - t0}


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def read_all(path: Path) -> float:
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(CHUNK):
            pass
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=2.0, help="size of the stage's large file in GiB")
    ap.add_argument("--dir", help="where to put the cache (default: a temp dir)")
    ap.add_argument("--drop-caches", action="store_true", help="drop the page cache before reading (root)")
    ns = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sipo-integrity-", dir=ns.dir))
    try:
        cache = Cache(work / "cache")
        stage = Stage("big", f"{__name__}:write_big", {"gib": ns.gib})
        t0 = time.perf_counter()
        _, result, _ = execute_stage(stage, cache, None)
        total = time.perf_counter() - t0
        write = result["write_seconds"]
        big = cache.path(stage) / "big.bin"
        size = big.stat().st_size
        # naive baseline for the seal: fsync alone (the data is already durable now, so write a copy)
        copy = work / "copy.bin"
        shutil.copyfile(big, copy)
        t0 = time.perf_counter()
        fd = os.open(copy, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        fsync_only = time.perf_counter() - t0
        copy.unlink()

        t0 = time.perf_counter()
        assert Cache(cache.root).is_valid(stage)
        reuse = time.perf_counter() - t0
        t0 = time.perf_counter()
        Cache(cache.root).result(stage)
        open_result = time.perf_counter() - t0

        cold = ns.drop_caches and drop_page_cache()
        t0 = time.perf_counter()
        rep = verify(Cache(cache.root), say=lambda m: None)
        full = time.perf_counter() - t0
        assert not rep.damaged
        if cold:
            drop_page_cache()
        plain = read_all(big)

        gib = size / (1 << 30)
        print(f"stage: one {gib:.2f} GiB file + one small file; page cache "
              f"{'dropped before reads' if cold else 'kept: reads may come from memory (see --drop-caches)'}")
        print(f"stage writes its artefact (no fsync):   {write:7.2f} s")
        print(f"seal (sha256 + fsync + marker):         {total - write:7.2f} s   "
              f"(plain fsync of the same bytes: {fsync_only:.2f} s)")
        print(f"reuse check (every later run):          {reuse * 1000:7.2f} ms  "
              f"(reading result.json alone: {open_result * 1000:.2f} ms)")
        print(f"cache verify (every sha256):            {full:7.2f} s   "
              f"({gib / full:.2f} GiB/s; reading the file once: {plain:.2f} s, {gib / plain:.2f} GiB/s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
