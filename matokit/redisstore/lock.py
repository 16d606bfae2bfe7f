"""The profile's flush lock on Redis: at most one `queue flush` per profile on all hosts.

One key, `{namespace}:flush:lock`, set with `SET NX PX`: its value names the holder (a random
token, pid, host, start time). The lock is a lease: a thread renews it every third of
`LEASE_SECONDS` while it is held, so a holder killed with SIGKILL (or cut off from Redis)
loses it within one lease; it is released only by its holder (compare-and-delete in Lua), and
renewed only while still its holder's (compare-and-expire). A holder that loses it (stalled
longer than the lease) logs an error; the journal's own claim leases still keep two flushers
from sending the same hits.

The same interface as `matokit.locking.flush_lock`: refuse at once, or wait (saying who holds
it first), with an optional time-out; the messages name the holder as "pid N on host H,
running since T".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from matokit.durations import format_duration
from matokit.errors import FlushInProgressError, FlushWaitTimeoutError, StorageError
from matokit.redisstore.connection import RedisTarget, redis_errors
from matokit.times import utc_text

LEASE_SECONDS: Final = 30.0
POLL_SECONDS: Final = 0.1

log = logging.getLogger("matokit.locking")

_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@contextlib.contextmanager
def redis_flush_lock(
    target: RedisTarget,
    *,
    wait: bool,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    lease: float = LEASE_SECONDS,
) -> Iterator[str]:
    """Hold the profile's flush lock on Redis; yields where it is ("redis://... key K").

    Without `wait`, raises FlushInProgressError at once if another process holds it; with
    `wait`, first calls `on_wait` with who holds it, then waits until it is free, or raises
    FlushWaitTimeoutError after `timeout` seconds. Every Redis failure is a StorageError.
    """
    lock = _Lease(target, lease)
    lock.acquire(wait=wait, timeout=timeout, on_wait=on_wait)
    try:
        yield lock.where
    finally:
        lock.release()


class _Lease:
    """One attempt to hold the lock: its value, the renewing thread, the release."""

    def __init__(self, target: RedisTarget, lease: float) -> None:
        self.target = target
        self.key = target.keys.flush_lock
        self.lease_ms = max(1, int(lease * 1000))
        self.where = f"{target.display} key {self.key}"
        self.value = json.dumps(
            {
                "token": secrets.token_hex(16),
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": round(time.time(), 3),
            }
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(
        self, *, wait: bool, timeout: float | None, on_wait: Callable[[str], None] | None
    ) -> None:
        if self._try():
            self._start_renewing()
            return
        holder = self._holder()
        if not wait:
            raise FlushInProgressError(
                f"another queue flush is running for this profile{_paren(holder)}; "
                f"lock {self.where}",
                hint="wait for it to finish; the lock is freed when it ends, or "
                f"{format_duration(self.lease_ms / 1000)} after it died",
            )
        if on_wait is not None:
            on_wait(holder)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            time.sleep(POLL_SECONDS if left is None else min(POLL_SECONDS, left))
            if self._try():
                self._start_renewing()
                return
        raise FlushWaitTimeoutError(
            f"another queue flush still holds the lock after waiting {_seconds(timeout or 0)}"
            f"{_paren(self._holder())}; lock {self.where}",
            hint="it is still delivering; run `matokit queue flush` again later, or raise "
            "--wait-timeout",
        )

    def release(self) -> None:
        """Stop renewing and delete the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            with redis_errors(self.target, "release the flush lock"):
                client = self.target.client()
                client.register_script(_RELEASE)(keys=[self.key], args=[self.value])
        except StorageError as exc:
            # The flush itself is done; the lease ends on its own.
            log.warning("%s; it expires within %s", exc.message, _seconds(self.lease_ms / 1000))

    def _try(self) -> bool:
        with redis_errors(self.target, "take the flush lock"):
            client = self.target.client()
            if client.set(self.key, self.value, nx=True, px=self.lease_ms):
                return True
            # A holder on this host whose process is gone (kill -9) left its lease: take it
            # over at once rather than after the lease, deleting only that very value.
            raw = client.get(self.key)
            if raw is None or not _dead_here(raw):
                return False
            client.register_script(_RELEASE)(keys=[self.key], args=[raw])
            return bool(client.set(self.key, self.value, nx=True, px=self.lease_ms))

    def _holder(self) -> str:
        """Who holds it: "pid 42 on host web-1, running since ..."; "" when unknown or free."""
        with redis_errors(self.target, "read the flush lock"):
            raw = self.target.client().get(self.key)
        return holder_text(raw)

    def _start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew, name="matokit-flush-lock", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        """Every third of the lease, extend it while it is still ours."""
        import redis.exceptions as rex

        interval = self.lease_ms / 3000
        renew = self.target.client().register_script(_RENEW)
        warned = False
        while not self._stop.wait(interval):
            try:
                if not renew(keys=[self.key], args=[self.value, self.lease_ms]):
                    log.error(
                        "the flush lock %s expired while this flush held it (stalled longer "
                        "than %s?): another flush may start; the journal's leases still keep "
                        "them from sending the same hits",
                        self.where,
                        format_duration(self.lease_ms / 1000),
                    )
                    return
                warned = False
            except rex.RedisError as exc:
                if not warned:
                    log.warning("cannot renew the flush lock %s: %s", self.where, exc)
                    warned = True


def holder_text(raw: Any) -> str:
    """The holder named by a lock value: "pid 42 on host web-1, running since ... (3s ago)"."""
    try:
        data = json.loads(raw)
        pid, host, since = int(data["pid"]), str(data["host"]), float(data["since"])
    except (TypeError, ValueError, KeyError):
        return ""
    moment = utc_text(since)
    return (
        f"pid {pid} on host {host}, running since {moment} "
        f"({format_duration(max(0.0, time.time() - since))} ago)"
    )


def _seconds(value: float) -> str:
    return format_duration(value) if value >= 1 else f"{value:g}s"


def _paren(holder: str) -> str:
    return f" ({holder})" if holder else ""


def _dead_here(raw: bytes | str) -> bool:
    """Whether a lock value names a process of this host that no longer exists."""
    try:
        holder = json.loads(raw)
        pid = int(holder["pid"])
        host = str(holder["host"])
    except (ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False
