"""What a finished stage wrote, and whether its directory still holds exactly that.

A stage's `_DONE.json` marker carries a *file record*: for every file under the stage
directory (relative path, POSIX separators) its size, sha256 and mtime. Two checks:

- :func:`quick_check`, on every reuse: the set of files is the recorded set (nothing missing,
  nothing extra), every size matches, and every *small* file (<= :data:`SMALL_FILE` bytes, e.g.
  `result.json`, generations, scores, tiny adapters) matches its sha256. A large file is hashed
  only when its mtime differs from the record (an edit in place). Cost: one directory walk,
  one `stat` per file and reading the small files.
- :func:`full_check`, `sipo-bench cache verify`: every file's sha256.

A damaged record (not a mapping, wrong types) is itself a finding: callers recompute.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Mapping

#: files up to this size are hashed on every reuse (measured cost in docs/architecture.md)
SMALL_FILE = 1 << 20
CHUNK = 1 << 22


def sha256_file(path: Path, *, fsync: bool = False) -> str:
    """Hex sha256 of a file's bytes; with `fsync`, also flush it to disk (the stage's
    artefacts are durable before the marker that vouches for them is written)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            h.update(chunk)
        if fsync:
            os.fsync(f.fileno())
    return h.hexdigest()


def list_files(root: Path, skip: tuple[str, ...] = ()) -> dict[str, Path]:
    """Relative POSIX path -> absolute path of every file under `root` (symlinks to files
    count as files), except top-level names in `skip`."""
    out: dict[str, Path] = {}
    root = Path(root)
    for dirpath, _dirs, files in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in files:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            if rel in skip:
                continue
            out[rel] = Path(dirpath) / name
    return out


def record_files(root: Path, skip: tuple[str, ...] = (), *, fsync: bool = True) -> dict[str, dict]:
    """The file record of `root`: {relative path: {size, sha256, mtime_ns}}."""
    record: dict[str, dict] = {}
    for rel, path in sorted(list_files(root, skip).items()):
        st = path.stat()
        record[rel] = {"size": st.st_size, "sha256": sha256_file(path, fsync=fsync), "mtime_ns": st.st_mtime_ns}
    return record


def valid_record(record: Any) -> bool:
    """Whether `record` has the shape :func:`record_files` writes."""
    if not isinstance(record, dict):
        return False
    for rel, entry in record.items():
        if not isinstance(rel, str) or not isinstance(entry, dict):
            return False
        if not isinstance(entry.get("size"), int) or isinstance(entry.get("size"), bool):
            return False
        if not isinstance(entry.get("sha256"), str) or len(entry["sha256"]) != 64:
            return False
    return True


def _compare(root: Path, record: Mapping[str, dict], skip: tuple[str, ...],
             must_hash: Callable[[dict, os.stat_result], bool]) -> tuple[str | None, list[str]]:
    """(first problem or None, files whose recorded mtime is stale although their hash matches)."""
    present = list_files(root, skip)
    missing = sorted(set(record) - set(present))
    if missing:
        return f"{missing[0]} is missing", []
    extra = sorted(set(present) - set(record))
    if extra:
        return f"{extra[0]} is not in its record (an extra file)", []
    stale: list[str] = []
    for rel in sorted(record):
        entry, path = record[rel], present[rel]
        try:
            st = path.stat()
        except OSError as e:
            return f"{rel} cannot be read ({e.strerror})", []
        if st.st_size != entry["size"]:
            return f"{rel} has {st.st_size} bytes, its record says {entry['size']}", []
        if must_hash(entry, st):
            try:
                digest = sha256_file(path)
            except OSError as e:
                return f"{rel} cannot be read ({e.strerror})", []
            if digest != entry["sha256"]:
                return f"{rel} does not match its recorded sha256 (changed since the stage wrote it)", []
            if entry.get("mtime_ns") != st.st_mtime_ns:
                stale.append(rel)
    return None, stale


def quick_check(root: Path, record: Mapping[str, dict], skip: tuple[str, ...] = ()) -> str | None:
    """The reuse check (see module docstring): None if `root` matches `record`, else the
    first problem, naming the file."""
    def must_hash(entry: dict, st: os.stat_result) -> bool:
        return st.st_size <= SMALL_FILE or entry.get("mtime_ns") != st.st_mtime_ns

    problem, _ = _compare(root, record, skip, must_hash)
    return problem


def full_check(root: Path, record: Mapping[str, dict], skip: tuple[str, ...] = ()) -> tuple[str | None, list[str]]:
    """Every file's hash: (first problem or None, files whose mtime changed but content did not)."""
    return _compare(root, record, skip, lambda entry, st: True)
