"""What every process of a profile shares besides the journal: the rejected-token memory,
Matomo's pause and the flush lock. In the profile's data directory by default (one host); on
Redis, for every host of the profile, when `redis_url` is set.

Every place that builds one of them goes through here, so the settings alone decide. The Redis
token memory and pause fall back to the files when Redis fails (`matokit.redisstore.fallback`);
the Redis flush lock does not (a flush without its lock could overlap another host's).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.redisstore.connection import RedisTarget
    from matokit.serverpause import PauseKeeper
    from matokit.tokenmemory import RejectedTokens


def token_memory_for(
    settings: Settings, *, clock: Callable[[], float] = time.time
) -> RejectedTokens:
    """The profile's rejected-token memory: its file, or Redis (file as the fallback)."""
    from matokit.redisstore.connection import RedisTarget
    from matokit.tokenmemory import TokenMemory

    memory = TokenMemory(settings.token_memory_path, clock=clock, cooldown=settings.token_cooldown)
    target = RedisTarget.from_settings(settings)
    if target is None:
        return memory
    from matokit.redisstore.tokens import PROBE_SECONDS, RedisTokenMemory

    # The first sender's request may take its connect attempts and its read time-out.
    probe = max(PROBE_SECONDS, 3 * settings.connect_timeout + settings.timeout + 5)
    return RedisTokenMemory(
        target, fallback=memory, clock=clock, cooldown=settings.token_cooldown, probe=probe
    )


def server_pause(
    path: Path, *, redis: RedisTarget | None = None, clock: Callable[[], float] = time.time
) -> PauseKeeper:
    """The pause kept at `path`, or on Redis (`path` as the fallback) when `redis` is given."""
    from matokit.serverpause import ServerPause

    local = ServerPause(path, clock=clock)
    if redis is None:
        return local
    from matokit.redisstore.pause import RedisServerPause

    return RedisServerPause(redis, fallback=local, clock=clock)


def server_pause_for(settings: Settings, *, clock: Callable[[], float] = time.time) -> PauseKeeper:
    """The profile's pause, where its settings keep it."""
    from matokit.redisstore.connection import RedisTarget

    target = RedisTarget.from_settings(settings)
    return server_pause(settings.server_pause_path, redis=target, clock=clock)


def profile_flush_lock(
    directory: Path,
    *,
    redis: RedisTarget | None,
    wait: bool,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> contextlib.AbstractContextManager[object]:
    """The profile's flush lock: `flush.lock` in `directory`, or on Redis when `redis` is set
    (then shared by every host). Arguments and errors: those of `locking.flush_lock`."""
    if redis is None:
        from matokit.locking import LOCK_NAME, flush_lock

        return flush_lock(directory / LOCK_NAME, wait=wait, timeout=timeout, on_wait=on_wait)
    from matokit.redisstore.lock import redis_flush_lock

    return redis_flush_lock(redis, wait=wait, timeout=timeout, on_wait=on_wait)
