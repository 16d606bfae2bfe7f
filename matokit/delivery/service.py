"""`Delivery`: one profile's journal and client, and what they do together."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from matokit.closing import Closing
from matokit.config import DEFAULT_SETTLE
from matokit.delivery.flush import flush as flush_journal
from matokit.delivery.flush import reconcile_only
from matokit.delivery.importer import import_lines
from matokit.delivery.matomo import ClientFactory, TrackingClient
from matokit.delivery.outcomes import (
    FlushOptions,
    FlushResult,
    ImportResult,
    Progress,
    TrackOutcome,
)
from matokit.delivery.send import queue_hit, send_hit
from matokit.errors import FlushInProgressError
from matokit.hits import Hit
from matokit.journal import JournalStats
from matokit.journal.opening import open_store, store_exists
from matokit.serverpause import FILE_NAME as PAUSE_FILE
from matokit.serverpause import PauseKeeper
from matokit.shared import server_pause

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.journal.contract import JournalStore
    from matokit.redisstore.connection import RedisTarget
    from matokit.stopping import StopRequest


class Delivery(Closing):
    """Send-or-journal, import and flush for one profile's journal and client."""

    def __init__(
        self,
        *,
        journal_path: Path,
        client_factory: ClientFactory,
        has_token: bool,
        pause_path: Path | None = None,
        dedup_window: float = 7 * 86400.0,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        exactly_once: str = "off",
        settle: float = DEFAULT_SETTLE,
        redis: RedisTarget | None = None,
    ) -> None:
        self.journal_path = Path(journal_path)
        # The profile's Redis (`redis_url`): the journal, Matomo's pause and the flush lock live
        # there when it is set, else in the data directory's files.
        self.redis = redis
        self._client_factory = client_factory
        self._client: TrackingClient | None = None
        self.has_token = has_token
        self.dedup_window = dedup_window
        self.clock = clock
        self.rng = rng
        # `track`'s exactly-once mode and settle time (a flush takes them from FlushOptions).
        self.exactly_once = exactly_once
        self.settle = settle
        self._journal: JournalStore | None = None
        # Matomo's Retry-After, shared by every process of the profile (the client records it).
        self.pause: PauseKeeper = server_pause(
            pause_path or self.journal_path.parent / PAUSE_FILE, redis=redis, clock=clock
        )

    @classmethod
    def for_settings(cls, settings: Settings, **kwargs: Any) -> Delivery:
        """The delivery service of a profile (its journal, URL, token and timeouts)."""
        from matokit.redisstore.connection import RedisTarget

        def factory() -> TrackingClient:
            from matokit.connect import client_for

            return client_for(settings, need_token=False)

        return cls(
            journal_path=settings.journal_path,
            client_factory=factory,
            has_token=settings.has_token(),
            pause_path=settings.server_pause_path,
            dedup_window=settings.dedup_window,
            exactly_once=settings.exactly_once,
            settle=settings.settle,
            redis=RedisTarget.from_settings(settings),
            **kwargs,
        )

    def close(self) -> None:
        """Close the journal and the client, if they were opened."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        client, self._client = self._client, None
        close = getattr(client, "close", None)
        if callable(close):
            close()

    @property
    def journal(self) -> JournalStore:
        """The profile's journal (SQLite or Redis), opened (and created) on first use."""
        if self._journal is None:
            self._journal = open_store(
                self.journal_path, self.redis, clock=self.clock, dedup_window=self.dedup_window
            )
        return self._journal

    def client(self) -> TrackingClient:
        """The Matomo client, built on first use (ConfigError without a URL)."""
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def stats(self) -> JournalStats | None:
        """The journal's stats, or None when there is no journal yet (nothing is created)."""
        if self._journal is None and not store_exists(self.journal_path, self.redis):
            return None
        return self.journal.stats(now=self.clock())

    # -- track --

    def queue(self, hit: Hit, *, key: str | None = None) -> TrackOutcome:
        """Only journal `hit` (`track --queue`): queued, or duplicate when its key is known."""
        return queue_hit(self, hit, key=key)

    def send(self, hit: Hit, *, key: str | None = None) -> TrackOutcome:
        """Send `hit` now as a bulk of one; journal it when it cannot be delivered now.

        Rejected by Matomo: not journaled (re-sending cannot help). Refused token or a
        retryable failure: journaled, with the error in the outcome.
        """
        return send_hit(self, hit, key=key)

    # -- import --

    def import_lines(
        self,
        source: IO[bytes],
        *,
        site_id: int | None,
        strict: bool = False,
        flush: FlushOptions | None = None,
        on_invalid: Callable[[int, str], None] = lambda n, m: None,
        on_progress: Progress | None = None,
        on_flush_start: Callable[[int], None] | None = None,
        on_sent: Progress | None = None,
        stop: StopRequest | None = None,
    ) -> ImportResult:
        """`track import`: journal the JSON Lines of `source`, then flush with `flush` options.

        Each chunk of valid hits is committed before the next is read. With `strict`, every
        line is validated first and nothing is journaled if any is invalid (DataError). Once
        `stop` is requested, it ends after the chunk being committed (`interrupted`) and
        nothing is sent. The flush runs under the profile's lock (`on_flush_start` hears how
        many hits are due); when another flush holds it, `flush_busy` says so and that flush
        sends the hits. The result is complete: where the file's hits ended and what the flush
        did to older ones.
        """
        result = import_lines(
            self,
            source,
            site_id=site_id,
            strict=strict,
            on_invalid=on_invalid,
            on_progress=on_progress,
            stop=stop,
        )
        if flush is not None and not result.interrupted:
            try:
                result.flush = self.flush_locked(
                    flush, on_start=on_flush_start, on_progress=on_sent, stop=stop
                )
            except FlushInProgressError as exc:
                result.flush_busy = exc.message
        result.tally(self.journal.tally(result.mark))
        return result

    # -- flush --

    def flush_locked(
        self,
        options: FlushOptions,
        *,
        wait: bool = False,
        wait_timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
        on_start: Callable[[int], None] | None = None,
        on_progress: Progress | None = None,
        stop: StopRequest | None = None,
    ) -> FlushResult:
        """`flush` under the profile's flush lock (FlushInProgressError if another holds it).

        With `wait`, `on_wait` hears who holds the lock before waiting, for at most
        `wait_timeout` seconds when given (then FlushWaitTimeoutError). Waiting for the lock has
        nothing to drain: a `stop` then interrupts it at once.
        """
        lock = self._flush_lock(wait=wait, timeout=wait_timeout, on_wait=on_wait)
        with contextlib.ExitStack() as held:
            with stop.interruptible() if stop is not None else contextlib.nullcontext():
                held.enter_context(lock)
            return self.flush(options, on_start=on_start, on_progress=on_progress, stop=stop)

    def reconcile_locked(
        self,
        options: FlushOptions,
        *,
        wait: float | None = None,
        stop: StopRequest | None = None,
    ) -> FlushResult:
        """`queue reconcile`: look up uncertain hits under the flush lock, sending nothing.

        FlushInProgressError when a flush holds the lock (it reconciles itself).
        """
        with self._flush_lock(wait=False):
            return reconcile_only(self, options, wait=wait, stop=stop)

    def _flush_lock(
        self,
        *,
        wait: bool,
        timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> contextlib.AbstractContextManager[object]:
        """The profile's flush lock: next to the journal file, or on Redis for every host."""
        from matokit.shared import profile_flush_lock

        return profile_flush_lock(
            self.journal_path.parent, redis=self.redis, wait=wait, timeout=timeout, on_wait=on_wait
        )

    def flush(
        self,
        options: FlushOptions,
        *,
        on_start: Callable[[int], None] | None = None,
        on_progress: Progress | None = None,
        stop: StopRequest | None = None,
    ) -> FlushResult:
        """Deliver due hits (all with `include_not_due`); the caller holds the flush lock.

        Once `stop` is requested, the request in flight is answered and recorded, and no
        other is sent (`stopped_reason` "interrupted").
        """
        return flush_journal(self, options, on_start=on_start, on_progress=on_progress, stop=stop)
