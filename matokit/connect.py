"""Builds the one MatomoClient a command uses from the resolved Settings of its profile."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from matokit.config import Settings

if TYPE_CHECKING:
    import requests

    from matokit.client import MatomoClient


def client_for(
    settings: Settings,
    *,
    session: requests.Session | None = None,
    need_token: bool = True,
    clock: Callable[[], float] = time.time,
    allow_write: bool = False,
    allowed_writes: Iterable[str] = (),
) -> MatomoClient:
    """A client for the profile: URL, token, timeouts, TLS, rate limit, token memory, pause
    (the last two on Redis, shared by every host, when `redis_url` is set).

    `need_token=False` lets a command run without a token when none is configured (tracking
    recent hits works without one); a configured token is always loaded and used.
    `allow_write=True` lets Reporting API methods that change Matomo through (`api --allow-write`);
    `allowed_writes` lets only the methods it names through (`setup exactly-once`).
    """
    from matokit.client import MatomoClient
    from matokit.shared import server_pause_for, token_memory_for

    url = settings.require_url()
    token = settings.token() if need_token or settings.has_token() else None
    memory = token_memory_for(settings, clock=clock)
    return MatomoClient(
        base_url=url,
        token=token,
        session=session,
        timeout=settings.timeout,
        connect_timeout=settings.connect_timeout,
        ca_bundle=str(settings.ca_bundle) if settings.ca_bundle else None,
        rate_limit=settings.rate_limit,
        token_memory=memory,
        server_pause=server_pause_for(settings, clock=clock),
        clock=clock,
        queuedtracking=settings.queuedtracking,
        logger=logging.getLogger("matokit.client"),
        allow_write=allow_write,
        allowed_writes=allowed_writes,
    )
