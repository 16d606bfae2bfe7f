"""One importer per log file: an advisory lock per file path, in the profile's data directory.

Two runs over the same file (a slow first import and the next cron tick, or `--follow` and a
cron job) would both be correct (keys decide) but would read it twice; the second leaves the
file alone instead. The kernel drops the lock when its holder dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from matokit.journal.storage import ensure_private_dir, storage_error

LOCK_DIR: Final = "access-log-locks"


@contextlib.contextmanager
def file_lock(data_dir: Path, name: str) -> Iterator[bool]:
    """Hold the lock of the log `name` (a resolved path) while inside; yields False (without
    waiting) when another process holds it."""
    directory = data_dir / LOCK_DIR
    ensure_private_dir(directory)
    path = directory / (hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:32])
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise storage_error(exc, path, "create the lock file") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {name}\n".encode("utf-8", "surrogateescape"))
        yield True
    finally:
        os.close(fd)
