"""Opening a profile's journal: the SQLite file by default, Redis when `redis_url` is set."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.journal.contract import JournalStore


def open_journal(settings: Settings, *, clock: Callable[[], float] | None = None) -> JournalStore:
    """The profile's journal (SQLite file, or the Redis journal under the profile's namespace)."""
    import time

    from matokit.redisstore.connection import RedisTarget

    target = RedisTarget.from_settings(settings)
    now = clock or time.time
    if target is None:
        from matokit.journal import Journal

        return Journal(settings.journal_path, clock=now, dedup_window=settings.dedup_window)
    # (helper "journal" replaces this with RedisJournal; the base branch never reaches main)
    raise NotImplementedError("the Redis journal is being built")


def journal_exists(settings: Settings) -> bool:
    """Whether the profile has a journal to read (read-only commands never create one).

    On Redis the journal is always there to ask (an empty one reads as empty).
    """
    if settings.redis_url:
        return True
    return settings.journal_path.exists()
