"""Filesystem primitives the cache and the results directory share.

- Everything created here honours the umask (``tempfile.mkdtemp`` / ``mkstemp`` make 0700 / 0600,
  which hides a group-shared cache or results directory from teammates).
- Writes that must survive a crash are fsync'ed before they are renamed into place.
- Temporary names carry the host and pid of their writer, and a builder holds an ``flock`` on a
  lock file beside its temp dir, so a cleaner removes only what a dead process left.
- :func:`swap_dirs` installs a new directory in place of an old one atomically where the kernel
  can (``renameat2(RENAME_EXCHANGE)``, Linux >= 3.15), else with two renames.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import socket
from pathlib import Path
from typing import Iterator

#: every temp name this package makes contains this marker (cleaners look for it)
TMP_MARK = ".sipo-tmp-"

def hostname() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


def owner_tag() -> str:
    """`host-pid`: who made a temp name (dots and dashes of the host are kept readable)."""
    return f"{hostname().replace('-', '_')}-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def owner_alive(name: str) -> bool | None:
    """For a name made with :func:`temp_name`: True/False when its writer runs on this host,
    None when it was made on another host (liveness unknown here) or is not such a name."""
    if TMP_MARK not in name:
        return None
    tail = name.split(TMP_MARK, 1)[1].split("-")
    if len(tail) < 3:
        return None
    host, pid = tail[0], tail[1]
    if host != hostname().replace("-", "_") or not pid.isdigit():
        return None
    return pid_alive(int(pid))


def temp_name(prefix: str) -> str:
    return f"{prefix}{TMP_MARK}{owner_tag()}-{secrets.token_hex(4)}"


def make_dir(path: Path) -> Path:
    """`mkdir` with the umask's mode (parents too)."""
    path.mkdir(mode=0o777, parents=True, exist_ok=True)
    return path


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A new, empty directory `parent/<prefix>.sipo-tmp-<host>-<pid>-<rand>` (umask mode)."""
    make_dir(parent)
    while True:
        p = parent / temp_name(prefix)
        try:
            os.mkdir(p, 0o777)
            return p
        except FileExistsError:
            continue


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable (no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write `data` to `path` via a temp file in the same directory and a rename: readers never
    see half a file; with `durable`, the data is fsync'ed before the rename."""
    path = Path(path)
    make_dir(path.parent)
    tmp = path.parent / temp_name(f".{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, *, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


# --- Atomic directory swap -----------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically; False where the kernel/libc/filesystem cannot."""
    global _renameat2
    if _renameat2 is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (OSError, AttributeError):
            _renameat2 = False
    if not _renameat2:
        return False
    import ctypes

    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_dirs(new: Path, final: Path) -> None:
    """Put directory `new` at `final`. If `final` exists it is replaced: atomically exchanged
    where supported (a reader sees the old or the new directory, never none), else renamed
    aside first; the old directory is then deleted. `new` must be on `final`'s filesystem."""
    new, final = Path(new), Path(final)
    try:
        os.rename(new, final)  # `final` absent (or an empty directory): plain atomic rename
        fsync_dir(final.parent)
        return
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.is_dir():
            raise
    if _exchange(new, final):
        fsync_dir(final.parent)
        shutil.rmtree(new, ignore_errors=True)  # now holds the old contents
        return
    old = final.parent / temp_name(f".{final.name}.old")
    os.rename(final, old)
    try:
        os.rename(new, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.rename(old, final)
        raise
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


# --- Liveness locks ------------------------------------------------------------------------


@contextlib.contextmanager
def held_lock(path: Path, *, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
    """Hold an `flock` on `path` (created with the umask's mode) for the block. Yields True,
    or False when `blocking=False` and another process holds it. The kernel drops the lock
    when the holder dies, so a free lock means its owner is gone."""
    import fcntl

    make_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        flags = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def lock_is_free(path: Path) -> bool:
    """True when nobody holds an flock on `path` (its owner died or finished, or it is gone)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


# --- Probing and sizes ---------------------------------------------------------------------


def nearest_existing(path: Path) -> Path:
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def probe_writable(path: Path) -> str | None:
    """Really create and remove a file in `path` (or in its nearest existing ancestor, where
    it would be created): None if that works, else why not (`Read-only file system`,
    `Permission denied`, `... is a file`). Root ignores permission bits, and a read-only
    mount only says so when written, so asking `os.access` is not enough."""
    where = nearest_existing(path)
    if not where.is_dir():
        return f"{str(where)!r} is not a directory"
    probe = where / temp_name(".probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"{e.strerror or e} in {str(where)!r}"
    return None


def tree_size(path: Path) -> int:
    """Bytes of every file under `path` (0 if it is gone)."""
    p = Path(path)
    if p.is_file() or p.is_symlink():
        with contextlib.suppress(OSError):
            return p.lstat().st_size
        return 0
    total = 0
    for root, _dirs, files in os.walk(p):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
