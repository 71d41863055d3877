"""Real filesystem faults for tests: a small tmpfs (ENOSPC) and read-only mounts (EROFS).

Mounting needs root (or CAP_SYS_ADMIN), which the CI container has; elsewhere the tests that
need a mount are skipped with the reason."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "2m", *, read_only: bool = False) -> Iterator[Path]:
    """Mount a tmpfs of `size` at `path` (created) for the block; skip the test if we cannot."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size},mode=0777" + (",ro" if read_only else "")
    r = _mount("-t", "tmpfs", "-o", opts, "tmpfs", str(path))
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.stdout.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, mode: str) -> None:
    """`mode`: "ro" or "rw" (the mount at `path` from :func:`tmpfs`)."""
    r = _mount("-o", f"remount,{mode}", str(path))
    assert r.returncode == 0, r.stderr


def fill(path: Path, leave_bytes: int) -> Path:
    """Fill the filesystem holding `path` until about `leave_bytes` are free."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    filler = path / "filler.bin"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return filler
