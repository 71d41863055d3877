"""`sipo-bench cache verify` and `sipo-bench cache gc`: whole-cache integrity and garbage.

- verify: every stage's files against the sha256s its marker recorded (what a run checks on
  reuse is cheaper, see :mod:`sipo_bench.execution.integrity`); `--remove` deletes the damaged stages
  so the next run recomputes them.
- gc: a run records the stage keys it uses in `CACHE/runs/<run_id>.json`. A record is *live*
  while its process runs, or while its OUT still names that run (`OUT/logs/run.json`);
  records of runs on another host whose OUT is not visible here are kept (liveness unknown).
  gc removes dead records, every stage no live record references, temp dirs of builders that
  are gone (free flock) and leftovers of interrupted swaps. It needs the cache to itself: a
  running `sipo-bench run` holds `CACHE/gc.lock` shared, gc takes it exclusively.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import SipoBenchError, UsageError
from .fsio import TMP_MARK, held_lock, hostname, human_bytes, owner_alive, pid_alive, tree_size
from .stages import Cache


@dataclass
class VerifyReport:
    checked: int = 0
    bytes: int = 0
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (key, problem)
    refreshed: int = 0  # markers whose recorded mtimes were brought up to date
    removed: int = 0


def _stage_dirs(cache: Cache) -> list[Path]:
    root = cache.root / "stages"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and TMP_MARK not in p.name)


def verify(cache: Cache, *, remove: bool = False, say: Callable[[str], None] = print) -> VerifyReport:
    """Hash every file of every stage; report (and with `remove`, delete) the damaged ones."""
    from .fsio import atomic_write_text
    from .integrity import full_check
    from .stages import DONE

    rep = VerifyReport()
    for d in _stage_dirs(cache):
        key = d.name
        rep.checked += 1
        marker, problem = cache.inspect(key, full=True)
        if marker is None:
            name = _name_of(d)
            rep.damaged.append((key, problem or "unreadable"))
            say(f"damaged: stage {name} ({key}): {problem}")
            if remove:
                shutil.rmtree(d, ignore_errors=True)
                rep.removed += 1
            continue
        rep.bytes += sum(int(e["size"]) for e in marker["files"].values())
        _, stale = full_check(d, marker["files"], skip=(DONE,))
        if stale:  # content matches, mtime moved (a copied cache): record the new mtimes
            for rel in stale:
                with contextlib.suppress(OSError):
                    marker["files"][rel]["mtime_ns"] = (d / rel).stat().st_mtime_ns
            with contextlib.suppress(OSError):
                atomic_write_text(d / DONE, json.dumps(marker, indent=1))
                rep.refreshed += 1
    return rep


def _name_of(d: Path) -> str:
    from .stages import DONE

    with contextlib.suppress(OSError, ValueError, UnicodeDecodeError, AttributeError):
        return str(json.loads((d / DONE).read_text()).get("name") or d.name)
    return d.name


@dataclass
class GcReport:
    removed: list[tuple[str, int]] = field(default_factory=list)  # (what, bytes)
    kept_stages: int = 0
    live_runs: list[str] = field(default_factory=list)
    unknown_runs: list[str] = field(default_factory=list)  # other hosts: kept

    @property
    def bytes(self) -> int:
        return sum(b for _, b in self.removed)


def _run_is_live(rec: dict) -> bool | None:
    """True/False, or None when it cannot be known here (a run on another host, OUT not visible)."""
    out = Path(str(rec.get("out") or ""))
    run_file = out / "logs" / "run.json"
    here = rec.get("host") == hostname()
    if here and not rec.get("ended") and isinstance(rec.get("pid"), int) and pid_alive(rec["pid"]):
        return True  # still running (or its pid was reused: keeping is the safe mistake)
    if run_file.is_file():
        with contextlib.suppress(OSError, ValueError, UnicodeDecodeError, AttributeError):
            return json.loads(run_file.read_text()).get("run_id") == rec.get("run_id")
        return True  # unreadable: keep
    if not here and not out.parent.exists():
        return None
    return False


def gc(cache: Cache, *, dry_run: bool = False, say: Callable[[str], None] = print) -> GcReport:
    """Remove what no live run references (see module docstring). `dry_run` removes nothing."""
    rep = GcReport()
    if not cache.root.is_dir():
        raise UsageError(f"`--cache-dir`: expected a sipo-bench cache directory, got {str(cache.root)!r} (not found)")
    with held_lock(cache.root / "gc.lock", blocking=False) as got:
        if not got:
            raise SipoBenchError(f"cache {cache.root} is in use by a running sipo-bench run; run `cache gc` when it "
                                 f"has finished")
        referenced: set[str] = set()
        runs = sorted(cache.runs_root.glob("*.json")) if cache.runs_root.is_dir() else []
        for p in runs:
            try:
                rec = json.loads(p.read_text())
                keys = rec["keys"]
                if not isinstance(keys, list):
                    raise TypeError
            except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError):
                rec, keys, live = None, [], False
            else:
                live = _run_is_live(rec)
            if live is None:
                rep.unknown_runs.append(p.stem)
                referenced.update(str(k) for k in keys)
            elif live:
                rep.live_runs.append(p.stem)
                referenced.update(str(k) for k in keys)
            else:
                _remove(p, f"run record {p.stem}" + (f" (results {rec.get('out')} gone or replaced)" if rec else " (damaged)"),
                        rep, dry_run, say)
        for d in _stage_dirs(cache):
            if d.name in referenced:
                rep.kept_stages += 1
            else:
                _remove(d, f"stage {_name_of(d)} ({d.name})", rep, dry_run, say)
        stages_root = cache.root / "stages"
        if stages_root.is_dir():  # leftovers of a replaced stage whose deletion was interrupted
            for p in stages_root.iterdir():
                if TMP_MARK in p.name and owner_alive(p.name) is False:
                    _remove(p, f"leftover {p.name}", rep, dry_run, say)
        if dry_run:
            for p in _dead_tmp(cache):
                _remove(p, f"temp dir {p.name}", rep, True, say)
        else:
            for p, size in cache.clean_tmp():
                rep.removed.append((f"temp dir {p.name}", size))
                say(f"removed temp dir {p.name} ({human_bytes(size)})")
    return rep


def _dead_tmp(cache: Cache) -> list[Path]:
    from .fsio import lock_is_free

    out = []
    if cache.tmp_root.is_dir():
        for p in cache.tmp_root.iterdir():
            if p.suffix != ".lock" and lock_is_free(cache.tmp_root / f"{p.name}.lock"):
                out.append(p)
    return out


def _remove(p: Path, what: str, rep: GcReport, dry_run: bool, say: Callable[[str], None]) -> None:
    size = tree_size(p)
    if not dry_run:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    rep.removed.append((what, size))
    say(f"{'would remove' if dry_run else 'removed'} {what} ({human_bytes(size)})")
