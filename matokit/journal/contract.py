"""The journal contract: what every journal backend (SQLite `Journal`, Redis `RedisJournal`)
offers, with the same guarantees; the delivery code and the commands use only this.

Guarantees (the contract tests in tests/test_journal*.py run against every backend):
- `enqueue` is durable when it returns, skips keys queued, dead, unattributed or delivered
  within the dedup window, and commits chunk by chunk (a failure leaves earlier chunks);
- a claim is a lease: claims of concurrent flushers never overlap, an expired lease makes its
  hits due again as maybe sent; every change of state is atomic (a hit is never in two states
  or none);
- ids sort like the hits' times; `mark`/`tally` count entries journaled after a watermark;
- hits awaiting a lookup (`verify`) are never claimed (exactly-once, ADR-0008).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from matokit.journal.reconciling import SiteRecord
from matokit.journal.records import (
    Adopted,
    DeliveredKey,
    EnqueueResult,
    Entry,
    EntryState,
    JournalStats,
    NewHit,
)

ENQUEUE_CHUNK = 1000
FLUSH_HISTORY = 20


class JournalStore(Protocol):
    """A profile's retry journal, whatever stores it."""

    @property
    def location(self) -> str:
        """Where it lives, as shown to people (a file path, or a Redis URL without password)."""
        ...

    @property
    def remote(self) -> bool:
        """Whether its work runs in another process (a server) while this one waits: a
        one-lane flush then claims the next batch while it sends. Otherwise (SQLite: the work
        is this process's own, CPU and fsync) the next claim carries the last bulk's
        acknowledgements instead, one write per bulk."""
        ...

    def close(self) -> None:
        """Release its connection (the object may not be used afterwards)."""
        ...

    def __enter__(self) -> JournalStore: ...

    def __exit__(self, *exc: object) -> None: ...

    def enqueue(self, hits: Iterable[NewHit], *, chunk_size: int = ENQUEUE_CHUNK) -> EnqueueResult:
        """Journal `hits`, skipping keys queued, dead, unattributed or recently delivered."""
        ...

    def enqueue_one(self, hit: NewHit) -> bool:
        """Journal one hit; False when its key is already known (a duplicate)."""
        ...

    def claim(
        self,
        owner: str,
        *,
        limit: int,
        lease_seconds: float,
        now: float | None = None,
        stamp: bool = False,
        ack: Sequence[str] = (),
    ) -> list[Entry]:
        """Lease up to `limit` due hits to `owner`, oldest first, counting one attempt each;
        first, in the same write, acknowledge the hits `ack` names (as `ack()` does)."""
        ...

    def ack(self, ids: Sequence[str]) -> int:
        """Mark hits delivered: delete them, remember their keys for the dedup window; how many."""
        ...

    def reschedule(
        self,
        ids: Sequence[str],
        *,
        error: str,
        next_attempt_at: float,
        sent_unconfirmed: bool = False,
    ) -> int:
        """Put hits back to wait until `next_attempt_at`, noting `error`."""
        ...

    def release(self, ids: Sequence[str]) -> int:
        """Hand inflight hits back as due without counting the attempt (none was made); how many."""
        ...

    def kill(self, items: Sequence[tuple[str, str]]) -> int:
        """Give up on hits: each `(id, reason)` becomes dead with that reason; how many changed."""
        ...

    def mark_unattributed(self, ids: Sequence[str], *, reason: str) -> int:
        """Set queued hits aside, never re-sent, when Matomo's counts cannot say which failed."""
        ...

    def retry_dead(self, ids: Sequence[str] | None = None) -> int:
        """Make dead hits due again; None means every dead hit."""
        ...

    def purge_dead(self, *, older_than: float | None = None, now: float | None = None) -> int:
        """Delete dead hits; with `older_than` (seconds), only hits older than that."""
        ...

    def retry_unattributed(self, ids: Sequence[str] | None = None) -> int:
        """Make unattributed hits due again; None means every unattributed hit."""
        ...

    def purge_unattributed(
        self, *, older_than: float | None = None, now: float | None = None
    ) -> int:
        """Delete unattributed hits; with `older_than` (seconds), only hits older than that."""
        ...

    def match_ids(self, prefixes: Sequence[str], *, state: EntryState | str) -> list[str]:
        """Whole ids of the entries in `state` that `prefixes` (ids or unique prefixes) name."""
        ...

    def short_ids(self, ids: Sequence[str]) -> dict[str, str]:
        """Each id's shortest prefix (at least 8 characters) that names no other entry."""
        ...

    def entries(
        self, *, states: Collection[EntryState] | None = None, limit: int | None = None
    ) -> list[Entry]:
        """Entries in the given states (all when None), oldest first."""
        ...

    def iter_entries(self, *, states: Collection[EntryState] | None = None) -> Iterator[Entry]:
        """Stream entries oldest first, a page at a time, for exports of any size."""
        ...

    def mark(self) -> int:
        """A watermark: entries journaled after this call have a larger rowid (see `tally`)."""
        ...

    def tally(self, mark: int) -> dict[tuple[bool, str], int]:
        """(journaled after `mark`, state) -> how many entries: counted by SQLite, so an import"""
        ...

    def has_key(self, key: str) -> bool:
        """True when `key` is in the journal or was delivered within the dedup window."""
        ...

    def find(self, key: str) -> Entry | None:
        """The entry journaled under idempotency key `key`, or None."""
        ...

    def remember_delivered(self, keys: Sequence[str]) -> int:
        """Remember keys of hits delivered without being journaled (a direct `track`)."""
        ...

    def stats(self, *, now: float | None = None) -> JournalStats:
        """Counts, ages and sizes for `queue status` and the health checks."""
        ...

    def record_flush(self, result: Mapping[str, Any]) -> None:
        """Keep the outcome of a flush (JSON-able values) with the time; the last 20 are kept."""
        ...

    def last_flush(self) -> dict[str, Any] | None:
        """The last recorded flush result plus its `recorded_at` time, or None."""
        ...

    def flush_history(self, *, limit: int = FLUSH_HISTORY) -> list[dict[str, Any]]:
        """The recorded flush results, newest first, each with its `recorded_at` time."""
        ...

    def await_lookup(
        self, ids: Sequence[str], *, error: str, settle: float, alone: bool = False
    ) -> int:
        """Set hits aside until Matomo is asked for them: `settle` seconds after their send."""
        ...

    def enqueue_uncertain(
        self, hit: NewHit, *, dimension: int, sent_at: float, settle: float, error: str
    ) -> bool:
        """Journal a hit whose one send (`track`) is uncertain, awaiting its lookup, in one"""
        ...

    def due_lookups(self, *, now: float | None = None, limit: int = 1000) -> list[Entry]:
        """Hits awaiting a lookup whose send has settled, oldest first."""
        ...

    def awaiting_lookup(self) -> tuple[int, float | None]:
        """How many hits await a lookup, and when the next of them is due."""
        ...

    def confirm(self, ids: Sequence[str]) -> int:
        """Matomo has these hits: delivered (by lookup), not sent again; how many."""
        ...

    def lookup_missing(self, ids: Sequence[str]) -> int:
        """Matomo does not have these hits: due again now, their uncertain send settled."""
        ...

    def lookup_failed(self, ids: Sequence[str], *, error: str, next_attempt_at: float) -> int:
        """The lookup could not be made: ask again at `next_attempt_at`; nothing is guessed."""
        ...

    def give_up_lookup(self, ids: Sequence[str], *, error: str) -> int:
        """Lookups are impossible: fall back to at-least-once (due again now), except hits of"""
        ...

    def hold(self, ids: Sequence[str], *, error: str, until: float) -> int:
        """Hand claimed hits back unsent, not due before `until` (attempt not counted)."""
        ...

    def set_dimension(self, ids: Sequence[str], dimension: int | None) -> int:
        """Record the key dimension the next send of claimed hits carries (None: none)."""
        ...

    def remember_dimension(self, site: int, dimension_id: int | None) -> None:
        """Record `site`'s usable `matokit_key` dimension (None: it has none), as of now."""
        ...

    def mark_lookups_unavailable(self, site: int, reason: str) -> None:
        """Matomo refused lookups on `site` (Live off, no view access): remember why, a day."""
        ...

    def site_dimensions(self) -> dict[int, SiteRecord]:
        """Every site's remembered key dimension record."""
        ...


@runtime_checkable
class Transferable(JournalStore, Protocol):
    """A journal `queue migrate` can copy from and into (`matokit.journal.migrate`).

    Each method is idempotent, so a migration killed at any point and run again neither loses
    nor duplicates a hit: entries are written only under keys the journal does not hold yet,
    and deleted from the source only as they were copied.
    """

    def delivered_keys(self) -> Iterator[DeliveredKey]:
        """Every delivery remembered within the dedup window, a page at a time."""
        ...

    def adopt_entries(self, entries: Sequence[Entry]) -> Adopted:
        """Write `entries` exactly as given (id, key, state and history) in one atomic step,
        skipping keys queued or delivered within the dedup window; an id already used by
        another key gets a fresh one of the same time."""
        ...

    def adopt_delivered(self, records: Sequence[DeliveredKey]) -> int:
        """Remember deliveries as given (the later of two for one key wins); how many keys
        were new."""
        ...

    def adopt_flushes(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Add flush records (each with its `recorded_at`) not already kept, keeping the last
        FLUSH_HISTORY by time; how many were added."""
        ...

    def adopt_sites(self, records: Sequence[SiteRecord]) -> int:
        """Remember sites' key dimensions where the journal's own record is older or absent;
        how many changed."""
        ...

    def discard(self, entries: Sequence[Entry]) -> int:
        """Delete entries still as given (same id, key, state and attempts), once another
        journal holds them; how many went."""
        ...
