"""What each delivery operation needs of `Delivery`: narrow protocols, so none imports it.

`send`, `flush`, `importer` and `importhelper` take one of these; `Delivery` (in `service`)
satisfies them all, and tests may pass anything that does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from matokit.delivery.matomo import TrackingClient
    from matokit.journal.contract import JournalStore
    from matokit.redisstore.connection import RedisTarget
    from matokit.serverpause import PauseKeeper


class Journaling(Protocol):
    """A profile's journal and the clock its records are dated by."""

    @property
    def journal(self) -> JournalStore: ...

    @property
    def clock(self) -> Callable[[], float]: ...


class Importing(Journaling, Protocol):
    """`track import`: the journal, and where it lives for the helper process to open it."""

    @property
    def journal_path(self) -> Path: ...

    @property
    def redis(self) -> RedisTarget | None: ...

    @property
    def dedup_window(self) -> float: ...


class Sending(Journaling, Protocol):
    """`track` and the flush: the journal, the client, Matomo's pause and whether a token is set."""

    @property
    def pause(self) -> PauseKeeper: ...

    @property
    def has_token(self) -> bool: ...

    @property
    def exactly_once(self) -> str: ...

    @property
    def settle(self) -> float: ...

    def client(self) -> TrackingClient: ...


class Flushing(Sending, Protocol):
    """The flush: what sending needs, and randomness for the backoff's jitter."""

    @property
    def rng(self) -> Callable[[], float]: ...
