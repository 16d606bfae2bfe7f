"""When Redis fails, the shared token memory and pause fall back to this host's files.

The rejected-token memory and Matomo's pause protect Matomo (and the host's IP) from MatoKit:
losing them because Redis is down would be worse than keeping them per host for a while. So
on a Redis failure they warn (once per failure, on stderr through logging) and use the
profile's own files; Redis is tried again after `RETRY_SECONDS` (a long-running `health serve`
returns to it; a host that cannot reach Redis does not wait for its time-out on every request).
The journal and the flush lock do not fall back (they fail with exit 74), and `health`'s
journal check is CRITICAL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar

from matokit.errors import StorageError

T = TypeVar("T")

RETRY_SECONDS: Final = 30.0

log = logging.getLogger("matokit.redisstore")
# (Redis URL, what) -> monotonic time of the last failure; present while failing.
_failed: dict[tuple[str, str], float] = {}
_lock = threading.Lock()


class Fallback:
    """Runs an operation on Redis, or on the file while Redis recently failed for it."""

    def __init__(self, what: str, url: str) -> None:
        self.what = what
        self._key = (url, what)

    def run(self, on_redis: Callable[[], T], on_file: Callable[[], T]) -> T:
        """`on_redis()`; after its StorageError (and for `RETRY_SECONDS`), `on_file()`."""
        with _lock:
            failed_at = _failed.get(self._key)
        if failed_at is None or time.monotonic() - failed_at >= RETRY_SECONDS:
            try:
                result = on_redis()
            except StorageError as exc:
                with _lock:
                    first = self._key not in _failed
                    _failed[self._key] = time.monotonic()
                if first:
                    _warn(self.what, exc)
            else:
                if failed_at is not None:
                    with _lock:
                        _failed.pop(self._key, None)
                    log.info("%s: Redis answers again", self.what)
                return result
        return on_file()


def _warn(what: str, exc: StorageError) -> None:
    log.warning(
        "%s: %s; using this host's file instead (%s)",
        what,
        exc.message,
        exc.hint or "see `matokit health --check journal`",
    )


def forget_failures() -> None:
    """Try Redis again at once, and warn again (tests)."""
    with _lock:
        _failed.clear()
