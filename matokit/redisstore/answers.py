"""The report cache's keys on Redis, and the lean lookup of a cached answer (standard library).

Under the profile's namespace (`matokit:{PROFILE}`, one hash tag per profile):

- `…:cache:http:<key>` requests-cache's responses (its `RedisCache`, JSON-serialised) and
  `…:cache:http-redirects` its redirect hash;
- `…:cache:answer:<fast key>` MatoKit's own copy of each JSON answer requests-cache stores,
  the Redis equivalent of the SQLite `matokit_answers` table: `"<expires>\\n<JSON text>"`,
  expiring at the same moment (Redis deletes it then);
- `…:cache:stats` a hash of the `hits` and `misses` counters.

The fast key is canonical JSON of URL, method, format and parameters without the token
(`matokit.cache.fast_key`), so neither a key nor a value holds the token. `lookup` reads one
answer with `matokit.redisstore.resp`, without importing redis-py. (Nothing here imports
`matokit.cache`: it imports this module.)
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from matokit.config import Settings

HTTP: Final = "http"
ANSWER: Final = "answer"
STATS: Final = "stats"


def cache_prefix(namespace: str) -> str:
    """`matokit:{PROFILE}:cache`: every key of the profile's report cache starts with it."""
    return f"{namespace}:cache"


def http_namespace(namespace: str) -> str:
    """requests-cache's namespace: its responses are `<this>:<key>`."""
    return f"{cache_prefix(namespace)}:{HTTP}"


def answer_key(namespace: str, fast: str) -> str:
    """The key of MatoKit's copy of one answer."""
    return f"{cache_prefix(namespace)}:{ANSWER}:{fast}"


def stats_key(namespace: str) -> str:
    """The hash of the hit and miss counters."""
    return f"{cache_prefix(namespace)}:{STATS}"


def glob_escape(text: str) -> str:
    """`text` as a literal in a SCAN MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def pack(expires: float | None, body: str) -> bytes:
    """An answer as stored: its expiry (Unix time, empty when none) and the JSON text."""
    head = "" if expires is None else f"{expires:.3f}"
    return f"{head}\n{body}".encode()


def unpack(value: bytes, *, now: float) -> Any | None:
    """The decoded JSON of a stored answer still fresh at `now`, else None."""
    head, sep, body = value.partition(b"\n")
    if not sep or not body:
        return None  # not an answer, or one in another format than JSON
    if head and float(head) <= now:
        return None
    return json.loads(body.decode("utf-8"))


def lookup(settings: Settings, fast: str, *, now: float | None = None) -> Any | None:
    """The cached, fresh JSON answer under fast key `fast` on the profile's Redis, or None.

    Standard library only; counts the hit. Any doubt (Redis unreachable, a URL option the lean
    client does not know, no answer, expired, garbled) is a miss, and the normal path decides.
    """
    from matokit.errors import MatokitError
    from matokit.redisstore.resp import LeanRedis, LeanUnsupported, RespError, parse

    if not settings.redis_url:
        return None
    moment = time.time() if now is None else now
    key = answer_key(settings.redis_namespace, fast)
    try:
        endpoint = parse(settings.redis_url, settings.redis_password())
        with LeanRedis.connect(endpoint) as redis:
            value = redis.call("GET", key)
            if not isinstance(value, bytes):
                return None
            data = unpack(value, now=moment)
            if data is None:
                return None
            # A read-only replica still answers: the counter is a convenience.
            with contextlib.suppress(RespError):
                redis.call("HINCRBY", stats_key(settings.redis_namespace), "hits", 1)
            return data
    except (OSError, LeanUnsupported, RespError, MatokitError, ValueError, UnicodeDecodeError):
        return None
