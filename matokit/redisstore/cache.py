"""The report cache on Redis: requests-cache's own `RedisCache`, MatoKit's answers beside it.

Same rules as on SQLite (`matokit.cache`): the same TTLs (requests-cache checks the expiry it
stores; Redis also deletes each response `TTL_OFFSET` seconds after it, and each of MatoKit's
answers exactly at it), the token in neither key nor value (`ignored_parameters` keeps it out
of the cache key and redacts it in the stored request; MatoKit's fast key never holds it).
Keys live under the profile's namespace (`matokit.redisstore.answers` names them), so every
host of a fleet configured with the same `redis_url` and profile shares one cache.

Responses are stored as JSON (requests-cache's `json` serializer), never pickled: a shared
server is written by many hosts, and unpickling what another writer put there would let
anyone with write access to Redis run code on every host.

Redis failing while `report` runs is not an error: the session warns once and goes on
without the cache (Matomo answers). `cache stats` and `cache clear` raise StorageError.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from matokit.redisstore.answers import (
    answer_key,
    cache_prefix,
    glob_escape,
    http_namespace,
    pack,
    stats_key,
)
from matokit.redisstore.connection import redis_errors, redis_storage_error

if TYPE_CHECKING:
    from matokit.redisstore.connection import RedisTarget

AnswerOf = Callable[[Any], tuple[str, str | None] | None]

log = logging.getLogger("matokit.cache")

TTL_OFFSET: Final = 60  # seconds Redis keeps a response past its expiry (requests-cache's offset)
_SCAN_COUNT: Final = 500
_HEAD: Final = 31  # bytes of a stored answer that hold its expiry


def location(target: RedisTarget) -> str:
    """`redis://host:6379/0 matokit:{PROFILE}:cache:*` (never the password)."""
    return f"{target.display} {cache_prefix(target.namespace)}:*"


def redis_backend(target: RedisTarget, *, answer_of: AnswerOf) -> Any:
    """requests-cache's Redis backend for the profile, as MatoKit's session uses it.

    `answer_of(response)` gives (fast key, JSON text or None) of an answer to remember, or None
    (`matokit.cache.answer_of`).
    """
    return _backend_class()(target, answer_of)


@functools.cache
def _backend_class() -> type[Any]:
    """The RedisCache subclass, built on first use (requests-cache and redis-py are heavy)."""
    import redis.exceptions as rex
    from requests_cache.backends.redis import RedisCache

    class ReportRedisCache(RedisCache):
        """requests-cache's RedisCache; each answer it stores also gets MatoKit's own key.

        After the first Redis failure it stops using Redis for the rest of the session
        (a warning says why once): reports are then asked from Matomo, never refused.
        """

        def __init__(self, target: RedisTarget, answer_of: AnswerOf) -> None:
            super().__init__(
                namespace=http_namespace(target.namespace),
                connection=target.client(),
                serializer="json",
                ttl=True,
                ttl_offset=TTL_OFFSET,
            )
            self.target = target
            self.answer_of = answer_of
            self.down = False

        def _failed(self, doing: str, exc: rex.RedisError) -> None:
            if not self.down:
                error = redis_storage_error(self.target, doing, exc)
                log.warning("%s Continuing without the report cache.", error.message)
            self.down = True

        def get_response(self, key: str, default: Any = None) -> Any:
            if self.down:
                return default
            try:
                return super().get_response(key, default)
            except rex.RedisError as exc:
                self._failed("read the report cache", exc)
                return default

        def save_response(
            self, response: Any, cache_key: str | None = None, expires: datetime | None = None
        ) -> None:
            if self.down:
                return
            try:
                super().save_response(response, cache_key, expires)
                self._remember(response, expires)
            except rex.RedisError as exc:
                self._failed("store a report in the cache", exc)

        def delete(self, *args: Any, **kwargs: Any) -> None:
            if self.down:
                return
            try:
                super().delete(*args, **kwargs)
            except rex.RedisError as exc:
                self._failed("delete from the report cache", exc)

        def _remember(self, response: Any, expires: datetime | None) -> None:
            answer = self.answer_of(response)
            if answer is None:
                return
            fast, body = answer
            at = None if expires is None else expires.timestamp()
            # A body that is not JSON is kept empty: counted, never served by the lean path.
            value = pack(at, body or "")
            key = answer_key(self.target.namespace, fast)
            client = self.target.client()
            if at is None:
                client.set(key, value)
            else:
                client.set(key, value, pxat=max(int(at * 1000), 1))

        def prepare(self) -> None:
            """Nothing to create on Redis."""

        def bump(self, name: str) -> None:
            """Count a hit or a miss; counters are a convenience, never a failure."""
            if self.down:
                return
            try:
                self.target.client().hincrby(stats_key(self.target.namespace), name, 1)
            except rex.RedisError as exc:
                log.debug("cache counters not updated: %s", exc)

        def close(self) -> None:
            """The client is the process's, shared with the journal: it stays open."""

    return ReportRedisCache


# --- stats and clear ---------------------------------------------------------------------


def _keys(client: Any, pattern: str) -> Iterator[bytes]:
    yield from client.scan_iter(match=pattern, count=_SCAN_COUNT)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _expiry(head: bytes) -> float | None:
    text = head.partition(b"\n")[0]
    try:
        return float(text) if text else None
    except ValueError:
        return None


@dataclass(frozen=True)
class RedisCacheCounts:
    """What `stats` finds: answers (all, fresh), bytes used, counters, whether any key exists."""

    exists: bool
    entries: int
    fresh: int
    size_bytes: int
    hits: int
    misses: int


def stats(target: RedisTarget, *, now: float | None = None) -> RedisCacheCounts:
    """Entries (fresh/expired), memory used and hit counters of the profile's cache on Redis."""
    moment = time.time() if now is None else now
    client = target.client()
    prefix = glob_escape(cache_prefix(target.namespace))
    with redis_errors(target, "read the report cache"):
        answers = list(_keys(client, f"{prefix}:answer:*"))
        heads = _pipelined(client, answers, lambda pipe, key: pipe.getrange(key, 0, _HEAD))
        every = list(_keys(client, f"{prefix}:*"))
        sizes = _memory(client, every)
        raw = client.hgetall(stats_key(target.namespace))
    counters = {_text(k): int(v) for k, v in raw.items()}
    expiries = [_expiry(head) for head in heads if isinstance(head, bytes) and head]
    fresh = sum(1 for at in expiries if at is None or at > moment)
    return RedisCacheCounts(
        exists=bool(every),
        entries=len(expiries),
        fresh=fresh,
        size_bytes=sizes,
        hits=counters.get("hits", 0),
        misses=counters.get("misses", 0),
    )


def _pipelined(client: Any, keys: list[bytes], add: Any) -> list[Any]:
    results: list[Any] = []
    for start in range(0, len(keys), _SCAN_COUNT):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + _SCAN_COUNT]:
            add(pipe, key)
        results.extend(pipe.execute())
    return results


def _memory(client: Any, keys: list[bytes]) -> int:
    """Bytes the keys use in Redis (MEMORY USAGE; their lengths where an ACL refuses it)."""
    import redis.exceptions as rex

    try:
        used = _pipelined(client, keys, lambda pipe, key: pipe.memory_usage(key))
    except rex.ResponseError:
        used = _pipelined(client, keys, lambda pipe, key: pipe.strlen(key))
    return sum(int(n) for n in used if isinstance(n, int))


def clear(target: RedisTarget, *, expired_only: bool = False, now: float | None = None) -> int:
    """Delete every key of the profile's report cache (or only expired answers); how many
    answers went. Redis deletes expired entries by itself, so `expired_only` finds few."""
    moment = time.time() if now is None else now
    client = target.client()
    prefix = glob_escape(cache_prefix(target.namespace))
    with redis_errors(target, "clear the report cache"):
        answers = list(_keys(client, f"{prefix}:answer:*"))
        if expired_only:
            heads = _pipelined(client, answers, lambda pipe, key: pipe.getrange(key, 0, _HEAD))
            stale = [
                key
                for key, head in zip(answers, heads, strict=True)
                if isinstance(head, bytes)
                and head
                and (at := _expiry(head)) is not None
                and at <= moment
            ]
            return _delete(client, stale)
        removed = _delete(client, answers)
        _delete(client, list(_keys(client, f"{prefix}:*")))
        return removed


def _delete(client: Any, keys: list[bytes]) -> int:
    gone = 0
    for start in range(0, len(keys), _SCAN_COUNT):
        gone += int(client.unlink(*keys[start : start + _SCAN_COUNT]))
    return gone
