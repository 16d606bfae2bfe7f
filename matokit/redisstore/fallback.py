"""When Redis fails, the shared token memory and pause fall back to this host's files.

The rejected-token memory and Matomo's pause protect Matomo (and the host's IP) from MatoKit:
losing them because Redis is down would be worse than keeping them per host for a while. So
on a Redis failure they warn once per process (on stderr, through logging) and use the
profile's own files for the rest of the process; the journal and the flush lock do not fall
back (they fail with exit 74), and `health`'s journal check is CRITICAL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from matokit.errors import StorageError

T = TypeVar("T")

log = logging.getLogger("matokit.redisstore")
_warned: set[str] = set()
_warned_lock = threading.Lock()


class Fallback:
    """Runs a Redis operation, or, once Redis failed in this process, the file one."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.down = False

    def run(self, on_redis: Callable[[], T], on_file: Callable[[], T]) -> T:
        """`on_redis()`; after its StorageError (and for the rest of the process), `on_file()`."""
        if not self.down:
            try:
                return on_redis()
            except StorageError as exc:
                self.down = True
                warn_once(self.what, exc)
        return on_file()


def warn_once(what: str, exc: StorageError) -> None:
    """Log (once per process and `what`) that `what` uses this host's file instead of Redis."""
    with _warned_lock:
        if what in _warned:
            return
        _warned.add(what)
    log.warning(
        "%s: %s; using this host's file instead until the next run (%s)",
        what,
        exc.message,
        exc.hint or "see `matokit health --check journal`",
    )


def forget_warnings() -> None:
    """Warn again about every failure (tests)."""
    with _warned_lock:
        _warned.clear()
