"""The journal's files on disk, and sqlite3/OS failures translated to StorageError with a fix."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from matokit.errors import JournalCorruptError, StorageError
from matokit.private_files import make_private_dir

T = TypeVar("T")

BUSY_TIMEOUT: Final = 30.0


def aside_hint(path: Path) -> str:
    """The hint for a file that is not a usable journal: move it aside, never deleted by us."""
    return (
        f"MatoKit never deletes it: move it aside (mv {path} {path}.bad) and run again to "
        "start an empty journal, or point MATOKIT_DATA_DIR elsewhere"
    )


def storage_error(exc: OSError, path: Path, action: str) -> StorageError:
    """Translate a filesystem failure to `action` `path` into a StorageError naming the fix."""
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = f"free space on the disk holding {path.parent}"
    elif code == errno.EROFS:
        hint = f"{path.parent} is on a read-only filesystem; set MATOKIT_DATA_DIR to a writable one"
    elif code in (errno.EACCES, errno.EPERM):
        hint = f"make {path.parent} writable by this user, or set MATOKIT_DATA_DIR"
    elif code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        hint = f"something that is not a directory is in the way of {path}; move it aside"
    else:
        hint = "check the path, its permissions and the disk"
    reason = exc.strerror or str(exc)
    return StorageError(f"cannot {action} {path}: {reason}", path=str(path), hint=hint)


def sqlite_error(exc: sqlite3.Error, path: Path) -> StorageError:
    """Translate a sqlite3 failure into a StorageError (or JournalCorruptError) with its fix."""
    primary = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    where = str(path)
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return JournalCorruptError(
            f"the journal {path} is damaged ({exc})", path=where, hint=aside_hint(path)
        )
    if primary == sqlite3.SQLITE_FULL:
        return StorageError(
            f"the disk holding the journal {path} is full",
            path=where,
            hint=f"free space on the disk holding {path.parent}, then run again",
        )
    if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        if _on_read_only_filesystem(path):
            return StorageError(
                f"the journal {path} is on a read-only filesystem ({exc})",
                path=where,
                hint="set MATOKIT_DATA_DIR to a directory on a writable filesystem",
            )
        return StorageError(
            f"cannot write the journal {path} ({exc})",
            path=where,
            hint=f"make {path.parent} and the files in it writable by this user "
            "(SQLite also writes -wal and -shm files there), or set MATOKIT_DATA_DIR",
        )
    if primary == sqlite3.SQLITE_IOERR:
        return StorageError(
            f"disk I/O error on the journal {path} ({exc})",
            path=where,
            hint="check the disk and the filesystem (free space, dmesg), then run again",
        )
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StorageError(
            f"the journal {path} stayed locked by another process for over {BUSY_TIMEOUT:.0f}s",
            path=where,
            hint="another matokit process is holding it; run again when it has finished",
        )
    return StorageError(f"cannot use the journal {path}: {exc}", path=where)


def _on_read_only_filesystem(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def is_busy(exc: sqlite3.Error) -> bool:
    """True when SQLite gave up because another connection holds a lock."""
    primary = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    return primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def ensure_private_dir(path: Path) -> None:
    """Create `path` and any missing parents with mode 0700; existing directories are kept."""
    try:
        make_private_dir(path)
    except NotADirectoryError as exc:
        if exc.filename == str(path):
            raise storage_error(exc, path, "create the directory") from exc
        raise StorageError(
            f"{exc.filename} is a file, where the directory {path} should be",
            path=str(exc.filename),
            hint=f"move {exc.filename} aside, or set MATOKIT_DATA_DIR",
        ) from exc
    except OSError as exc:
        raise storage_error(exc, path, "create the directory") from exc


def fsync_dir(path: Path) -> None:
    """Make a new directory entry in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tighten_modes(path: Path) -> None:
    """Make the journal at `path` and its -wal and -shm files 0600 when they are ours."""
    # SQLite gives -wal and -shm the main file's mode; this repairs files copied in by hand.
    for name in (str(path), f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(OSError):
            info = os.stat(name)
            if info.st_uid == os.geteuid() and info.st_mode & 0o077:
                os.chmod(name, 0o600)


def transaction(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], *, begin: str
) -> T:
    """Run `fn` in one transaction (`begin`: "BEGIN" or "BEGIN IMMEDIATE"), retrying the whole
    of it while the file is busy, for up to BUSY_TIMEOUT; other sqlite3 errors are raised.

    busy_timeout already waits for locks; this covers the cases where SQLite returns
    SQLITE_BUSY without waiting (WAL recovery by another connection).
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            conn.execute(begin)
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            return result
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(random.uniform(0.005, 0.05))
