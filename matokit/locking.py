"""The per-profile flush lock: at most one `queue flush` per profile at a time.

An advisory `flock` on `<data_dir>/flush.lock`. The kernel drops it when the holder's last
descriptor closes, so a flusher killed with SIGKILL never leaves a stale lock behind; the file
itself stays (removing it would let two flushers lock two different files).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from matokit.errors import FlushInProgressError, StorageError
from matokit.journal import ensure_private_dir, storage_error

LOCK_NAME: Final = "flush.lock"


def _holder(fd: int) -> str:
    """The pid the holder wrote into the lock file, for the error message; "" if unknown."""
    with contextlib.suppress(OSError, ValueError):
        return f" (pid {int(os.pread(fd, 32, 0).decode('ascii').strip())})"
    return ""


@contextlib.contextmanager
def flush_lock(path: Path, *, wait: bool) -> Iterator[Path]:
    """Hold the flush lock at `path` (a directory means `flush.lock` inside it).

    Without `wait`, raises FlushInProgressError at once if another process holds it; with
    `wait`, blocks until it is free. Yields the lock file's path. The lock is per open file,
    so a second `flush_lock` on the same file conflicts even within one process.
    """
    lock_path = Path(path)
    if lock_path.is_dir():
        lock_path = lock_path / LOCK_NAME
    ensure_private_dir(lock_path.parent)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise storage_error(exc, lock_path, "open the flush lock") from exc
    try:
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, 0o600)  # the umask may have cut it further, or an old file was wider
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise FlushInProgressError(
                f"another queue flush is running for this profile{_holder(fd)}; lock {lock_path}",
                hint="wait for it to finish; the lock is freed as soon as that process exits",
            ) from None
        except OSError as exc:
            raise StorageError(
                f"cannot lock {lock_path}: {exc.strerror or exc}",
                path=str(lock_path),
                hint="use a local filesystem for MATOKIT_DATA_DIR (flock is unsupported here)",
            ) from exc
        # Only informational (for the message above): failing to write it must not stop a flush.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield lock_path
    finally:
        # Closing the descriptor releases the flock.
        os.close(fd)
