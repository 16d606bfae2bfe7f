"""Matomo's "not before": a Retry-After is a statement about the server, kept per profile.

When Matomo or its proxy answers 429 or 503 with `Retry-After`, no process of the profile may
send it a tracking request before that moment: not the flush that got the answer, not a second
flush started a second later, not a cron `track`, not the health probe. So the moment is kept
in one small JSON file in the profile's data directory, shared by every process: each of them
checks it before sending (`ServerPausedError` when paused) and records the server's answer.

Rules: a pause never shortens a later one already recorded (the later end wins); a Retry-After
longer than `MAX_PAUSE` (1 h) is capped, so a misconfigured proxy cannot stop delivery for days;
a pause ending more than `MAX_PAUSE` from now (a damaged file, a clock set back) is ignored.
Writes are atomic and serialized by a lock file; a missing or damaged file means no pause.

With `redis_url` set, the pause is kept on Redis for every host of the profile
(`matokit.redisstore.pause.RedisServerPause`, same rules); `matokit.shared.server_pause`
picks the one the settings ask for. Both satisfy `PauseKeeper`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from matokit.durations import format_duration
from matokit.errors import ServerPausedError, StorageError
from matokit.private_files import make_private_dir, write_atomic
from matokit.times import utc_text

FILE_NAME: Final = "server-pause.json"
# The longest pause a Retry-After can impose (the journal's own retry delay is capped alike).
MAX_PAUSE: Final = 3600.0
_FORMAT = 1


@dataclass(frozen=True)
class Pause:
    """Matomo asked for no requests before `until` (at `recorded_at`, answering `status`)."""

    until: float
    recorded_at: float
    status: int | None = None
    method: str | None = None

    def as_dict(self, now: float) -> dict[str, Any]:
        """JSON-able form for `queue status` and `health` (with the seconds left at `now`)."""
        return {**asdict(self), "remaining": round(max(0.0, self.until - now), 3)}

    def describe(self, now: float) -> str:
        """One line for people: what Matomo said, when, and when the pause ends."""
        said = f"HTTP {self.status}" if self.status else "an answer"
        return (
            f"Matomo asked at {utc_text(self.recorded_at)} ({said} with Retry-After) for no "
            f"requests before {utc_text(self.until)} ({format_duration(self.until - now)} from now)"
        )

    def error(self, now: float) -> ServerPausedError:
        """The error for a request not sent because of this pause."""
        return ServerPausedError(
            f"{self.describe(now)}; MatoKit sends it nothing until then.",
            until=self.until,
            retry_after=max(0.0, self.until - now),
            status=self.status,
            hint="Nothing to fix: queued hits are sent by the first `matokit queue flush` after "
            "the pause (`matokit queue status` shows when it ends).",
        )


class PauseKeeper(Protocol):
    """Where the profile's pause is kept: a file per host, or Redis per fleet."""

    def current(self) -> Pause | None:
        """The pause in force now, or None."""
        ...

    def check(self) -> None:
        """Raise `ServerPausedError` while a pause is in force."""
        ...

    def record(
        self, seconds: float, *, status: int | None = None, method: str | None = None
    ) -> Pause | None:
        """Keep Matomo's Retry-After of `seconds`; the later end wins."""
        ...


class ServerPause:
    """The profile's "not before" for Matomo, in one small JSON file of its data directory."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        cap: float = MAX_PAUSE,
    ) -> None:
        self.path = Path(path)
        self.cap = cap
        self._clock = clock

    def current(self) -> Pause | None:
        """The pause in force now, or None."""
        pause = self._load()
        if pause is None or not self._active(pause, self._clock()):
            return None
        return pause

    def check(self) -> None:
        """Raise `ServerPausedError` while a pause is in force."""
        pause = self.current()
        if pause is not None:
            raise pause.error(self._clock())

    def record(
        self, seconds: float, *, status: int | None = None, method: str | None = None
    ) -> Pause | None:
        """Keep Matomo's Retry-After of `seconds` (capped); a later pause already kept stays.

        Returns the pause in force afterwards (None for a Retry-After of 0).
        """
        if not seconds > 0:
            return self.current()
        with self._locked():
            now = self._clock()
            wanted = Pause(now + min(seconds, self.cap), now, status, method)
            kept = self._load()
            if kept is not None and self._active(kept, now) and kept.until >= wanted.until:
                return kept
            self._write(wanted)
            return wanted

    def _active(self, pause: Pause, now: float) -> bool:
        return now < pause.until <= now + self.cap

    def _load(self) -> Pause | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # missing, unreadable or damaged: no pause; the next one rewrites it
        return _parse(data)

    def _write(self, pause: Pause) -> None:
        payload = {"format": _FORMAT, **asdict(pause)}
        try:
            write_atomic(self.path, json.dumps(payload, indent=1) + "\n")
        except OSError as exc:
            raise _storage_error(exc, self.path) from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Two processes recording at once must not let the shorter pause replace the longer.
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            make_private_dir(self.path.parent)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise _storage_error(exc, lock) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _parse(data: Any) -> Pause | None:
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return None
    until: Any = data.get("until")
    at: Any = data.get("recorded_at")
    if not (_is_number(until) and _is_number(at)):
        return None
    status, method = data.get("status"), data.get("method")
    return Pause(
        float(until),
        float(at),
        status if isinstance(status, int) and not isinstance(status, bool) else None,
        method if isinstance(method, str) else None,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _storage_error(exc: OSError, path: Path) -> StorageError:
    return StorageError(
        f"Cannot write the server pause file: {exc.strerror or exc}.",
        path=str(path),
        hint="check that the profile's data directory is writable",
    )
