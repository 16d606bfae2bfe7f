"""Opening a profile's journal: the SQLite file by default, Redis when `redis_url` is set.

`open_journal`/`journal_exists` take the settings; `open_store`/`store_exists` take the two
things that decide (the file, the Redis target), for code that holds them rather than the
settings (`Delivery`, the import helper process).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.journal.contract import JournalStore
    from matokit.redisstore.connection import RedisTarget


def open_journal(settings: Settings, *, clock: Callable[[], float] | None = None) -> JournalStore:
    """The profile's journal (SQLite file, or the Redis journal under the profile's namespace)."""
    from matokit.redisstore.connection import RedisTarget

    return open_store(
        settings.journal_path,
        RedisTarget.from_settings(settings),
        clock=clock,
        dedup_window=settings.dedup_window,
    )


def journal_exists(settings: Settings) -> bool:
    """Whether the profile has a journal to read (read-only commands never create one).

    On Redis the journal is always there to ask (an empty one reads as empty).
    """
    if settings.redis_url:
        return True
    return settings.journal_path.exists()


def journal_location(settings: Settings) -> str:
    """Where the profile's journal is, as shown to people: its file, or on Redis the server
    (never its password) and the journal's keys."""
    if not settings.redis_url:
        return str(settings.journal_path)
    from matokit.redact import display_url, redact
    from matokit.redisstore.keys import Keys

    server = display_url(settings.redis_url) or redact(settings.redis_url)
    return f"{server} {Keys(settings.redis_namespace).journal('*')}"


def open_store(
    path: Path,
    redis: RedisTarget | None,
    *,
    clock: Callable[[], float] | None = None,
    dedup_window: float,
) -> JournalStore:
    """The journal on `redis` when given, else the SQLite file at `path` (created if missing)."""
    import time

    now = clock or time.time
    if redis is None:
        from matokit.journal import Journal

        return Journal(path, clock=now, dedup_window=dedup_window)
    from matokit.redisstore.journal import RedisJournal

    return RedisJournal(redis, clock=now, dedup_window=dedup_window)


def store_exists(path: Path, redis: RedisTarget | None) -> bool:
    """Whether there is a journal to read at `path` or on `redis` (see `journal_exists`)."""
    return redis is not None or Path(path).exists()
