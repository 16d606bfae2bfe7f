"""Matomo's "not before" on Redis: one 429 with Retry-After pauses every host of the profile.

The same rules as `matokit.serverpause.ServerPause` (a pause never shortens a later one, a
Retry-After is capped at `MAX_PAUSE`, a pause ending beyond the cap from now or a damaged value
is no pause), kept in one hash, `{namespace}:pause` (`until`, `recorded_at`, `status`,
`method`), that expires when the pause ends. Recording is one Lua script, so two hosts
recording at once cannot let the shorter pause replace the longer.

When Redis fails, the pause falls back to the profile's file (`matokit.redisstore.fallback`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from matokit.redisstore.connection import RedisTarget, redis_errors
from matokit.redisstore.fallback import Fallback
from matokit.serverpause import MAX_PAUSE, Pause, ServerPause

if TYPE_CHECKING:
    from redis.commands.core import Script

# ARGV: now, until, cap, status ('' for none), method ('' for none), ttl ms.
# Returns the pause in force afterwards: until, recorded_at, status, method.
_RECORD: Final = """
local h = KEYS[1]
local now, wanted, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local f = redis.call('HMGET', h, 'until', 'recorded_at', 'status', 'method')
local u, at = tonumber(f[1]), tonumber(f[2])
if u and at and now < u and u <= now + cap and u >= wanted then
  return {f[1], f[2], f[3] or '', f[4] or ''}
end
redis.call('HSET', h, 'format', '1', 'until', ARGV[2], 'recorded_at', ARGV[1])
redis.call('HDEL', h, 'status', 'method')
if ARGV[4] ~= '' then redis.call('HSET', h, 'status', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', h, 'method', ARGV[5]) end
redis.call('PEXPIRE', h, ARGV[6])
return {ARGV[2], ARGV[1], ARGV[4], ARGV[5]}
"""


class RedisServerPause:
    """The profile's "not before" for Matomo, shared by every host through Redis."""

    def __init__(
        self,
        target: RedisTarget,
        *,
        fallback: ServerPause,
        clock: Callable[[], float] = time.time,
        cap: float = MAX_PAUSE,
    ) -> None:
        self.target = target
        self.key = target.keys.pause
        self.fallback = fallback
        self.cap = cap
        self._clock = clock
        self._script: Script | None = None
        self._redis = Fallback("the shared Matomo pause", target.url)

    @property
    def location(self) -> str:
        """Where the pause lives, as shown to people."""
        return f"{self.target.display} key {self.key}"

    def current(self) -> Pause | None:
        """The pause in force now, or None."""
        return self._redis.run(self._current, self.fallback.current)

    def check(self) -> None:
        """Raise `ServerPausedError` while a pause is in force."""
        pause = self.current()
        if pause is not None:
            raise pause.error(self._clock())

    def record(
        self, seconds: float, *, status: int | None = None, method: str | None = None
    ) -> Pause | None:
        """Keep Matomo's Retry-After of `seconds` (capped) for every host; a later pause
        already kept stays. Returns the pause in force afterwards (None for 0)."""
        if not seconds > 0:
            return self.current()
        return self._redis.run(
            lambda: self._record(seconds, status, method),
            lambda: self.fallback.record(seconds, status=status, method=method),
        )

    def _current(self) -> Pause | None:
        with redis_errors(self.target, "read Matomo's pause"):
            raw = self.target.client().hmget(self.key, ["until", "recorded_at", "status", "method"])
        pause = _parse(raw)
        if pause is None or not self._active(pause, self._clock()):
            return None
        return pause

    def _record(self, seconds: float, status: int | None, method: str | None) -> Pause | None:
        now = self._clock()
        until = now + min(seconds, self.cap)
        ttl = max(1, math.ceil((until - now) * 1000)) + 1000
        args = [repr(now), repr(until), repr(self.cap), str(status or ""), method or "", str(ttl)]
        with redis_errors(self.target, "record Matomo's pause"):
            if self._script is None:
                self._script = self.target.client().register_script(_RECORD)
            raw = self._script(keys=[self.key], args=args)
        return _parse(raw)

    def _active(self, pause: Pause, now: float) -> bool:
        return now < pause.until <= now + self.cap


def _parse(raw: Any) -> Pause | None:
    """A Pause from the hash's four fields (bytes or None); None when missing or damaged."""
    until, at, status, method = (_text(v) for v in raw)
    try:
        end, recorded = float(until or ""), float(at or "")
    except ValueError:
        return None
    if not (math.isfinite(end) and math.isfinite(recorded)):
        return None
    code = int(status) if status and status.isdigit() else None
    return Pause(end, recorded, code, method or None)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
