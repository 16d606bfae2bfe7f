"""The journal contract's backends: tests asking for `journal_backend` run on SQLite and on Redis.

`redis_target` is None on SQLite and the profile's target on the shared test redis-server
(emptied per test) otherwise; `store_opener` opens a new handle on the test's journal, whichever
backend (the test module provides the SQLite `path` fixture). `stored_bytes` is everything the
backend wrote (files, or every Redis value), for leak checks; `journal_spec` describes the
journal to a subprocess (argv JSON) and `OPEN_FROM_SPEC` opens it there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from matokit.journal.connection import DEFAULT_DEDUP_WINDOW
from matokit.journal.contract import JournalStore
from matokit.journal.opening import open_store
from matokit.redisstore.connection import RedisTarget

BACKENDS = ["sqlite", "redis"]
NAMESPACE = "matokit:{test}"

StoreOpener = Callable[..., JournalStore]

# Python code a subprocess runs to open the journal described by the JSON in sys.argv[1].
OPEN_FROM_SPEC = """
import json, sys
from pathlib import Path
from matokit.journal.opening import open_store
from matokit.redisstore.connection import RedisTarget
_spec = json.loads(sys.argv[1])
def open_journal():
    target = RedisTarget(**_spec["redis"]) if _spec["redis"] else None
    return open_store(Path(_spec["path"]), target, dedup_window=7 * 86400.0)
"""


@pytest.fixture(params=BACKENDS)
def journal_backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: "sqlite" or "redis"."""
    return str(request.param)


@pytest.fixture
def redis_target(journal_backend: str, request: pytest.FixtureRequest) -> RedisTarget | None:
    """None on SQLite; on Redis, the test profile's target on the shared test server."""
    if journal_backend == "sqlite":
        return None
    url = request.getfixturevalue("redis_url")
    return RedisTarget(url=url, namespace=NAMESPACE)


@pytest.fixture
def store_opener(path: Path, redis_target: RedisTarget | None) -> StoreOpener:
    """opener(clock=..., dedup_window=...) -> a new handle on the test's journal."""

    def opener(
        *, clock: Callable[[], float] = time.time, dedup_window: float = DEFAULT_DEDUP_WINDOW
    ) -> JournalStore:
        return open_store(path, redis_target, clock=clock, dedup_window=dedup_window)

    return opener


def journal_spec(path: Path, target: RedisTarget | None) -> str:
    """The journal as the JSON argument `OPEN_FROM_SPEC` reads."""
    redis = None if target is None else {"url": target.url, "namespace": target.namespace}
    return json.dumps({"path": str(path), "redis": redis})


def redis_client(target: RedisTarget) -> object:
    """A plain client on the target's server, for looking at what the journal wrote."""
    import redis

    return redis.Redis.from_url(target.url)


def stored_bytes(path: Path, target: RedisTarget | None) -> Iterator[bytes]:
    """Every file the SQLite journal wrote, or every value under the Redis namespace."""
    if target is None:
        for file in path.parent.iterdir():
            yield file.read_bytes()
        return
    import redis

    client = redis.Redis.from_url(target.url)
    try:
        for key in client.scan_iter(match=f"{target.namespace}:*"):
            yield key
            dumped = client.dump(key)
            if dumped is not None:
                yield dumped
            kind = client.type(key)
            if kind == b"hash":
                for field, value in client.hgetall(key).items():
                    yield field + b"=" + value
            elif kind == b"zset":
                yield b" ".join(client.zrange(key, 0, -1))
            elif kind == b"list":
                yield b" ".join(client.lrange(key, 0, -1))
    finally:
        client.close()


def journal_written(path: Path, target: RedisTarget | None) -> bool:
    """Whether anything of a journal exists (a file, or keys under the namespace)."""
    if target is None:
        return path.exists()
    import redis

    client = redis.Redis.from_url(target.url)
    try:
        return any(True for _ in client.scan_iter(match=f"{target.namespace}:*"))
    finally:
        client.close()
