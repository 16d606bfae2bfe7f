"""The per-profile flush lock: at most one `queue flush` per profile at a time.

An advisory `flock` on `<data_dir>/flush.lock`. The kernel drops it when the holder's last
descriptor closes, so a flusher killed with SIGKILL never leaves a stale lock behind; the file
itself stays (removing it would let two flushers lock two different files). The holder writes
its pid and start time into the file, so a refused or waiting flusher can say who holds it.

With `redis_url` set, the lock is on Redis for every host of the profile
(`matokit.redisstore.lock.redis_flush_lock`: a lease renewed while held);
`matokit.shared.profile_flush_lock` picks the one the settings ask for.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from matokit.durations import format_duration
from matokit.errors import FlushInProgressError, FlushWaitTimeoutError, StorageError
from matokit.journal import ensure_private_dir, storage_error
from matokit.times import utc_text

LOCK_NAME: Final = "flush.lock"
_POLL: Final = 0.1  # seconds between tries while waiting with a timeout


def _holder(fd: int) -> str:
    """Who holds the lock, from what it wrote into the file: "pid 42, since ..."; "" if unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = os.pread(fd, 64, 0).decode("ascii").split()
        text = f"pid {int(fields[0])}"
        if len(fields) > 1:
            since = float(fields[1])
            moment = utc_text(since)
            text += f", running since {moment} ({format_duration(time.time() - since)} ago)"
        return text
    return ""


@contextlib.contextmanager
def flush_lock(
    path: Path,
    *,
    wait: bool,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Hold the flush lock at `path` (a directory means `flush.lock` inside it).

    Without `wait`, raises FlushInProgressError at once if another process holds it; with
    `wait`, first calls `on_wait` with who holds it ("pid 42, running since ..."), then blocks
    until it is free, or raises FlushWaitTimeoutError after `timeout` seconds. Yields the lock
    file's path. The lock is per open file, so a second `flush_lock` on the same file
    conflicts even within one process.
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
            _acquire(fd, lock_path, wait=wait, timeout=timeout, on_wait=on_wait)
        except OSError as exc:
            raise StorageError(
                f"cannot lock {lock_path}: {exc.strerror or exc}",
                path=str(lock_path),
                hint="use a local filesystem for MATOKIT_DATA_DIR (flock is unsupported here)",
            ) from exc
        # Only informational (for the messages above): failing to write it must not stop a flush.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {time.time():.3f}\n".encode("ascii"), 0)
        yield lock_path
    finally:
        # Closing the descriptor releases the flock.
        os.close(fd)


def _acquire(
    fd: int,
    lock_path: Path,
    *,
    wait: bool,
    timeout: float | None,
    on_wait: Callable[[str], None] | None,
) -> None:
    """Take the flock on `fd`: at once, waiting without end, or waiting up to `timeout`."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        holder = _holder(fd)
    if not wait:
        raise FlushInProgressError(
            f"another queue flush is running for this profile{_paren(holder)}; lock {lock_path}",
            hint="wait for it to finish; the lock is freed as soon as that process exits",
        )
    if on_wait is not None:
        on_wait(holder)
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(_POLL, left))
    raise FlushWaitTimeoutError(
        f"another queue flush still holds the lock after waiting {_seconds(timeout)}"
        f"{_paren(_holder(fd))}; lock {lock_path}",
        hint="it is still delivering; run `matokit queue flush` again later, or raise "
        "--wait-timeout",
    )


def _seconds(value: float) -> str:
    return format_duration(value) if value >= 1 else f"{value:g}s"


def _paren(holder: str) -> str:
    return f" ({holder})" if holder else ""
