"""The results directory OUT: who owns it, where a run logs, and the report as one transaction.

Layout:

| path | what |
|---|---|
| `summary.json`, `table.md`, `points.csv`, `front.png` | the report (written together, see below) |
| `logs/failures/<key>.txt` | tracebacks of the report's failed stages (part of the report) |
| `logs/run.json` | the run that owns OUT: its run id and config |
| `logs/stages.jsonl` | stage events of the latest run only |
| `logs/runs/<run_id>.jsonl` | stage events of earlier runs of the same config (resumed runs) |

Transaction: the report files and `logs/failures/` are written into a temp dir beside OUT (in
its parent), the rest of OUT is hard-linked in, and the temp dir replaces OUT in one atomic
exchange (:func:`sipo_bench.execution.fsio.swap_dirs`). A kill, a full disk or a read-only filesystem
while writing leaves the previous OUT as it was; nothing can hold a `summary.json` without its
`front.png`. Where OUT's parent cannot take the temp dir (OUT is a mount point, or only OUT is
writable) the files are renamed into OUT one by one, the old `summary.json` removed first and
the new one renamed in last, so a `summary.json` still means a complete report.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from ..errors import SipoBenchError, UsageError
from ..execution.fsio import TMP_MARK, atomic_write_text, make_dir, make_temp_dir, owner_alive, probe_writable, swap_dirs

REPORT_FILES = ("front.png", "points.csv", "table.md", "index.html", "summary.json")  # the order of an in-place commit
LOGS = "logs"
FAILURES = "failures"
RUN_FILE = "run.json"
STAGE_LOG = "stages.jsonl"
PAST_RUNS = "runs"


class ReportWriteError(SipoBenchError):
    """The report could not be written (full disk, read-only filesystem): exit 1."""


class ResultsDir:
    def __init__(self, path: Path | str, flag: str = "--out"):
        self.path = Path(path)
        self.flag = flag

    @property
    def logs(self) -> Path:
        return self.path / LOGS

    @property
    def stage_log(self) -> Path:
        return self.logs / STAGE_LOG

    # --- before anything is written -------------------------------------------------------

    def check_writable(self) -> None:
        """Usage error unless OUT is (or can be created as) a writable directory; creates nothing."""
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"`{self.flag}`: expected a directory, got {str(self.path)!r} (a file)")
        why = probe_writable(self.path)
        if why:
            raise UsageError(f"`{self.flag}`: expected a writable directory, got {str(self.path)!r} ({why})")

    def owner(self) -> dict | None:
        """The config of the run that owns OUT (`logs/run.json`, else `summary.json`); None for
        a missing or empty OUT. A non-empty OUT that sipo-bench did not write is a usage error:
        it is never replaced, not even with `--overwrite`."""
        if not self.path.is_dir() or not any(self._own_entries()):
            return None
        for path, key in ((self.logs / RUN_FILE, "config"), (self.path / "summary.json", "config")):
            with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
                data = json.loads(path.read_text())
                if isinstance(data, dict) and isinstance(data.get(key), dict):
                    return data[key]
        raise UsageError(f"`{self.flag}`: expected a new or empty directory, or one written by sipo-bench, got "
                         f"{str(self.path)!r} (it holds other files)")

    def _own_entries(self):
        return (p for p in self.path.iterdir() if TMP_MARK not in p.name)

    # --- a run starts ----------------------------------------------------------------------

    def start(self, run_id: str, config: Mapping[str, Any], *, same_owner: bool) -> Path:
        """Create OUT, remove what dead writers left, file away the previous run's stage log
        (kept under `logs/runs/` when it is a run of the same config, dropped otherwise) and
        claim OUT for this run. Returns the path of this run's stage log."""
        make_dir(self.logs)
        self.clean_stale()
        past = self.logs / PAST_RUNS
        if not same_owner:
            with contextlib.suppress(FileNotFoundError):
                self.stage_log.unlink()
            shutil.rmtree(past, ignore_errors=True)
        elif self.stage_log.exists():
            previous = _first_run_id(self.stage_log) or f"unknown-{int(self.stage_log.stat().st_mtime)}"
            make_dir(past)
            os.replace(self.stage_log, past / f"{previous}.jsonl")
        atomic_write_text(self.logs / RUN_FILE, json.dumps({"run_id": run_id, "config": dict(config)}, indent=1) + "\n")
        return self.stage_log

    def clean_stale(self) -> list[Path]:
        """Remove temp files and dirs of dead writers in OUT, its logs and OUT's parent."""
        removed: list[Path] = []
        places = [self.path, self.logs, self.logs / FAILURES, self.path.parent]
        for d in places:
            if not d.is_dir():
                continue
            for p in d.iterdir():
                if TMP_MARK not in p.name or (d == self.path.parent and not p.name.startswith(f".{self.path.name}.")):
                    continue
                if owner_alive(p.name) is False:
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        with contextlib.suppress(OSError):
                            p.unlink()
                    removed.append(p)
        return removed

    # --- the report --------------------------------------------------------------------------

    def commit(self, files: Mapping[str, bytes], failures: Mapping[str, str] | None) -> None:
        """Replace the report: `files` (name -> bytes, names from :data:`REPORT_FILES`) and,
        unless `failures` is None, `logs/failures/` (file name -> text). Everything else in
        OUT is kept. Raises :class:`ReportWriteError` (previous report intact) on failure."""
        try:
            make_dir(self.path.parent)
            try:
                tmp = make_temp_dir(self.path.parent, f".{self.path.name}.report")
            except PermissionError:
                return self._commit_in_place(files, failures)
            try:
                self._fill(tmp, files, failures)
                if self.path.exists():
                    _link_tree(self.path, tmp, skip=self._replaced(files, failures))
                try:
                    swap_dirs(tmp, self.path)
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.EBUSY):
                        raise
                    shutil.rmtree(tmp, ignore_errors=True)
                    return self._commit_in_place(files, failures)  # OUT is a mount point
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        except OSError as e:
            raise ReportWriteError(f"cannot write the report into {str(self.path)!r}: {e.strerror or e}"
                                   f"{' (' + e.filename + ')' if getattr(e, 'filename', None) else ''}; "
                                   f"the previous report there, if any, is unchanged") from None

    @staticmethod
    def _replaced(files: Mapping[str, bytes], failures: Mapping[str, str] | None) -> set[str]:
        skip = {name.split("/", 1)[0] for name in files}  # a folder of the report (curves/) is replaced whole
        if failures is not None:
            skip.add(f"{LOGS}/{FAILURES}")
        return skip

    @staticmethod
    def _fill(d: Path, files: Mapping[str, bytes], failures: Mapping[str, str] | None) -> None:
        for name in _commit_order(files):
            _write_new(d / name, files[name])
        if failures:
            make_dir(d / LOGS / FAILURES)
            for name, text in failures.items():
                _write_new(d / LOGS / FAILURES / name, text.encode("utf-8"))

    def _commit_in_place(self, files: Mapping[str, bytes], failures: Mapping[str, str] | None) -> None:
        make_dir(self.path)
        stage = make_temp_dir(self.path, ".report")
        try:
            self._fill(stage, files, failures)
            with contextlib.suppress(FileNotFoundError):
                (self.path / "summary.json").unlink()  # from here on OUT does not look finished
            if failures is not None:
                shutil.rmtree(self.logs / FAILURES, ignore_errors=True)
                if failures:
                    make_dir(self.logs)
                    os.rename(stage / LOGS / FAILURES, self.logs / FAILURES)
            for folder in sorted({n.split("/", 1)[0] for n in files if "/" in n}):
                shutil.rmtree(self.path / folder, ignore_errors=True)
                os.rename(stage / folder, self.path / folder)
            for name in _commit_order(files):  # summary.json last
                if "/" not in name:
                    os.replace(stage / name, self.path / name)
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def _commit_order(files: Mapping[str, bytes]) -> list[str]:
    """Names of `files`: the run's other files (curves/, samples.json) first, then the report
    files in :data:`REPORT_FILES` order (summary.json last)."""
    for name in files:
        if name.startswith("/") or ".." in name.split("/") or not name:
            raise ValueError(f"report file name must be a relative path inside OUT, got {name!r}")
    return sorted(n for n in files if n not in REPORT_FILES) + [n for n in REPORT_FILES if n in files]


def _write_new(path: Path, data: bytes) -> None:
    make_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _link_tree(src: Path, dst: Path, skip: set[str], rel: str = "") -> None:
    """Hard-link (else copy) every entry of `src` into `dst`, except relative paths in `skip`
    and temp names."""
    for p in src.iterdir():
        r = f"{rel}{p.name}"
        if r in skip or TMP_MARK in p.name:
            continue
        target = dst / p.name
        if p.is_dir() and not p.is_symlink():
            make_dir(target)
            _link_tree(p, target, skip, r + "/")
        elif p.is_symlink():
            os.symlink(os.readlink(p), target)
        else:
            try:
                os.link(p, target)
            except OSError:
                shutil.copy2(p, target)


def _first_run_id(path: Path) -> str | None:
    with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
        with open(path) as f:
            for line in f:
                if line.strip():
                    rid = json.loads(line).get("run_id")
                    return str(rid) if rid and "/" not in str(rid) else None
    return None


def write_report(out: Path | str, summary: dict, failures: Mapping[str, str] | None, run_files: Mapping[str, bytes] | None = None,
                 flag: str = "--out") -> None:
    """Render `summary` (summary.json, table.md, points.csv, front.png, index.html) and commit it
    to `out` with the run's other files (`run_files`: relative path -> bytes, e.g. curves/)."""
    from . import report
    from .figures import front_png_bytes
    from .merge import normalize
    from .html_report import render_html
    from ..execution.stages import json_default

    s = normalize(summary)
    run_files = dict(run_files or {})
    files = {
        **run_files,
        "summary.json": (json.dumps(summary, indent=2, sort_keys=False, default=json_default) + "\n").encode("utf-8"),
        "table.md": report.table_md(s).encode("utf-8"),
        "points.csv": report.points_csv(s).encode("utf-8"),
        "front.png": front_png_bytes(s),
        "index.html": render_html(s, run_files).encode("utf-8"),
    }
    ResultsDir(out, flag).commit(files, failures)


def render_files(summary: dict, out: Path, extra: Mapping[str, bytes] | None = None) -> None:
    """Write table.md, points.csv and front.png (and `extra`, e.g. index.html) into `out`
    together (one transaction, :meth:`ResultsDir.commit`); summary.json and the rest of
    `out` are kept."""
    from . import report
    from .figures import front_png_bytes
    from .merge import normalize

    s = normalize(summary)
    ResultsDir(out).commit({"table.md": report.table_md(s).encode("utf-8"), "points.csv": report.points_csv(s).encode("utf-8"),
                            "front.png": front_png_bytes(s), **(extra or {})}, None)


__all__ = ["ResultsDir", "ReportWriteError", "write_report", "render_files", "REPORT_FILES"]
