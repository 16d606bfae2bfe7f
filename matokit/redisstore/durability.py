"""Durability checked, not assumed: what the Redis server does with an acknowledged write.

A hit `track` acknowledged must survive a Redis restart. That takes the append-only file
(`appendonly yes`) written to disk before each answer (`appendfsync always`; `everysec` may
lose the last second on a crash of the host, `no` leaves it to the OS), and a server that never
evicts keys (`maxmemory-policy noeviction`: an evicted journal key is lost hits; a `volatile-*`
policy may evict the flush lock, which has an expiry). `read_durability` asks the server with
`CONFIG GET`, once per process and minute (`health serve` sees a change within a minute). A
server that refuses CONFIG (managed services rename or forbid it) gives "unknown", not an
error: MatoKit then cannot vouch for durability, and `health` says so.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Final, NamedTuple

from matokit.redisstore.connection import RedisTarget, redis_errors

MAX_AGE: Final = 60.0
NO_EVICTION: Final = "noeviction"
_PARAMETERS: Final = ("appendonly", "appendfsync", "maxmemory-policy", "maxmemory")

_cache: dict[str, tuple[float, Durability]] = {}
_cache_lock = threading.Lock()


class Problem(NamedTuple):
    """One way the server may lose acknowledged hits: `critical` (it will, under pressure) or
    not (it may, on a crash), what and the fix."""

    critical: bool
    text: str
    hint: str


@dataclass(frozen=True)
class Durability:
    """The server's persistence settings (None: unknown), or why they could not be read."""

    appendonly: str | None = None
    appendfsync: str | None = None
    maxmemory_policy: str | None = None
    maxmemory: int | None = None
    refused: str | None = None

    @property
    def known(self) -> bool:
        """Whether the server told its settings."""
        return self.refused is None

    @property
    def fsync_always(self) -> bool | None:
        """Every acknowledged write is on disk (AOF, appendfsync always); None if unknown."""
        if not self.known:
            return None
        return self.appendonly == "yes" and self.appendfsync == "always"

    @property
    def evicts(self) -> bool | None:
        """The server may evict keys when memory runs out; None if unknown."""
        if not self.known or self.maxmemory_policy is None:
            return None
        return self.maxmemory_policy != NO_EVICTION

    def problems(self) -> list[Problem]:
        """What may lose acknowledged hits, most serious first."""
        if not self.known:
            return [
                Problem(
                    False,
                    f"durability unknown: the server refuses CONFIG GET ({self.refused})",
                    "Check in the service's console that AOF is on with appendfsync always "
                    "and maxmemory-policy is noeviction.",
                )
            ]
        found: list[Problem] = []
        if self.evicts:
            limit = f"maxmemory {self.maxmemory}" if self.maxmemory else "no maxmemory yet"
            found.append(
                Problem(
                    True,
                    f"maxmemory-policy {self.maxmemory_policy} ({limit}) lets Redis evict keys: "
                    "an evicted journal key is lost hits",
                    "CONFIG SET maxmemory-policy noeviction, and set it in redis.conf.",
                )
            )
        if self.appendonly != "yes":
            found.append(
                Problem(
                    False,
                    "AOF is off (appendonly no): a Redis restart loses the hits written since "
                    "the last snapshot",
                    "CONFIG SET appendonly yes and appendfsync always, and set them in redis.conf.",
                )
            )
        elif self.appendfsync != "always":
            found.append(
                Problem(
                    False,
                    f"appendfsync {self.appendfsync}: a crash of the Redis host can lose "
                    "acknowledged hits (up to a second with everysec)",
                    "CONFIG SET appendfsync always, and set it in redis.conf.",
                )
            )
        return found


def read_durability(target: RedisTarget, *, max_age: float = MAX_AGE) -> Durability:
    """The server's persistence settings (cached `max_age` seconds per process and URL).

    A refused CONFIG GET is a `Durability` with `refused` set; a Redis failure (down, wrong
    password) is a StorageError.
    """
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(target.url)
    if cached is not None and now - cached[0] < max_age:
        return cached[1]
    found = _ask(target)
    with _cache_lock:
        _cache[target.url] = (now, found)
    return found


def forget_durability() -> None:
    """Drop the cached settings (tests, after CONFIG SET)."""
    with _cache_lock:
        _cache.clear()


def _ask(target: RedisTarget) -> Durability:
    import redis.exceptions as rex

    from matokit.redact import redact

    with redis_errors(target, "read the server's persistence settings"):
        try:
            values = target.client().config_get(*_PARAMETERS)
        except rex.ResponseError as exc:
            # Renamed or forbidden by ACL: the server does not tell; that is not a failure.
            return Durability(refused=redact(str(exc))[:120] or type(exc).__name__)
    settings = {_text(k): _text(v) for k, v in dict(values).items()}
    memory = settings.get("maxmemory")
    return Durability(
        appendonly=settings.get("appendonly"),
        appendfsync=settings.get("appendfsync"),
        maxmemory_policy=settings.get("maxmemory-policy"),
        maxmemory=int(memory) if memory and memory.isdigit() else None,
    )


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
