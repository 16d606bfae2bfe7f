"""Durable delivery: send-or-journal, import and flush. The only module joining client and journal.

Every hit ends in exactly one of: delivered (acknowledged by Matomo's bulk answer), queued in
the journal (pending, or sent_unconfirmed when an answer was lost after sending), dead (with a
reason an operator can act on), or unattributed (Matomo refused some hits of a batch without
saying which: the others are stored, so re-sending would count them twice).

Decisions, in the order a flush meets them:

* One flusher per profile (`flush_lock`). While it holds the lock, any `inflight` entry belongs
  to a flusher that died: it is made due again at once, counted as sent_unconfirmed.
* Hits are claimed oldest first under a lease, in batches of `batch_size`.
* Hits older than 24 h need a token with admin access on their site: the token is checked once
  per flush (`SitesManager.getSitesIdWithAdminAccess`) before any is replayed. An invalid token
  stops the flush with the hits pending; a valid token without admin access makes them dead.
* Only a superuser token gets `invalid_indices`, so with any other token a refused hit inside a
  bulk cannot be identified. Hits at risk of refusal (time near or past 24 h, or a site not yet
  seen to accept hits in this flush) are therefore sent alone; the others in full batches.
  Superuser-ness is learned from the answers themselves (no extra request with the token).
* A whole-batch failure reschedules the batch with capped exponential backoff and full jitter
  (at least Retry-After) and stops the flush: no hammering a Matomo that is down or throttling.
  A failure after sending (`maybe_stored`) marks the hits sent_unconfirmed before any re-send.
* An invalid token (or its cool-down, or a lockout) stops the flush after that one request,
  the hits released untouched.
* `max_attempts` and `max_age` end in dead letters, never in silent loss.

Core rules: no printing, no exiting; progress and warnings go through callbacks and results.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import secrets
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Protocol, TypeVar

from matokit.durations import format_duration
from matokit.errors import (
    AuthenticationError,
    ConfigError,
    DataError,
    HitValidationError,
    LockedOutError,
    MatokitError,
    MatomoError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    RejectedHitError,
    StorageError,
    UnavailableError,
)
from matokit.hits import Hit, hit_from_record, idempotency_key
from matokit.journal import Entry, EntryState, Journal, JournalStats, NewHit

if TYPE_CHECKING:
    from matokit.client import TrackResult
    from matokit.config import Settings

log = logging.getLogger("matokit.delivery")
T = TypeVar("T")
K = TypeVar("K")

# Matomo needs an admin token for hits older than this (24 h); a little margin for the trip.
OLD_HIT_AGE: Final = 86400.0 - 120.0
# Hits this old may cross the 24 h line before Matomo sees them: send them alone.
AT_RISK_AGE: Final = 23 * 3600.0
DEFAULT_LEASE: Final = 600.0
BACKOFF_BASE: Final = 2.0
BACKOFF_CAP: Final = 300.0
# A Retry-After beyond this is capped, so `queue flush --all` can always reach every hit.
MAX_DELAY: Final = 3600.0
ADMIN_METHOD: Final = "SitesManager.getSitesIdWithAdminAccess"
# Lines per journal transaction during an import: each commit is an fsync, so larger chunks
# import several times faster; memory stays bounded (one chunk at a time per process). A pipe
# may be fed slowly (`tail -f | matokit track import -`): smaller chunks commit sooner.
IMPORT_CHUNK: Final = 10000
PIPE_CHUNK: Final = 1000


class TrackingClient(Protocol):
    """What delivery needs of `MatomoClient` (tests pass fakes)."""

    def track(self, hits: Sequence[Hit]) -> TrackResult: ...

    def call(self, method: str, /, **params: Any) -> Any: ...


ClientFactory = Callable[[], TrackingClient]
Progress = Callable[[int], None]


# --- keys and conversions ---------------------------------------------------------------------


def hit_key(hit: Hit) -> str:
    """The journal key of a hit built by `track`: from `--idempotency-key`, else unique."""
    if hit.key is not None:
        return idempotency_key(hit)
    return secrets.token_hex(16)


def import_key(hit: Hit, record: Mapping[str, Any]) -> str:
    """The key of an import line: its `id`, else its content (and its time, when it gave one).

    A line without `at`/`cdt` is timed at import, so its key leaves the time out: re-running
    the import then finds the same key instead of a "new" hit. Identical untimed lines without
    an `id` are therefore one hit; give them ids to keep them apart.
    """
    if hit.key is not None:
        return idempotency_key(hit)
    params = record.get("params")
    timed = record.get("at") is not None or (isinstance(params, Mapping) and "cdt" in params)
    if timed:
        return idempotency_key(hit)
    untimed = {k: v for k, v in hit.params.items() if k != "cdt"}
    return idempotency_key(replace(hit, params=untimed))


def _hit_time(hit: Hit) -> float:
    """The hit's time for the journal (ids sort by it), to the millisecond when it is "now"."""
    cdt = hit.time
    return hit.created_at if int(hit.created_at) == cdt else float(cdt)


def new_hit(hit: Hit, key: str) -> NewHit:
    """The journal record of `hit` under `key`."""
    return NewHit(key=key, params=hit.params, created_at=_hit_time(hit))


def _entry_hit(entry: Entry) -> Hit:
    return Hit(params=entry.params, created_at=entry.created_at)


def _entry_time(entry: Entry) -> float:
    try:
        return float(entry.params["cdt"])
    except (KeyError, ValueError):
        return entry.created_at


def _site(entry: Entry) -> int:
    try:
        return int(entry.params.get("idsite", 0))
    except ValueError:
        return 0


def _short(error: BaseException) -> str:
    return str(error)[:500]


# --- results -----------------------------------------------------------------------------------


class TrackState(StrEnum):
    """What became of one `track` hit."""

    DELIVERED = "delivered"
    QUEUED = "queued"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    UNCONFIRMED = "unconfirmed"  # Matomo answered without accounting for the hit


@dataclass(frozen=True)
class TrackOutcome:
    """The outcome of `track`: the hit's key, its state, and why (an error when queued)."""

    key: str
    state: TrackState
    message: str | None = None
    error: MatokitError | None = None
    maybe_stored: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form for `--format json`."""
        data: dict[str, Any] = {"key": self.key, "state": str(self.state)}
        if self.message:
            data["message"] = self.message
        if self.error is not None:
            data["error"] = self.error.message
        if self.maybe_stored:
            data["maybe_stored"] = True
        return data


@dataclass(frozen=True)
class FlushOptions:
    """How a flush runs (the `queue flush` options and the profile's settings)."""

    batch_size: int = 100
    max_time: float | None = None
    max_events: int | None = None
    include_not_due: bool = False
    max_attempts: int = 20
    max_age: float = 7 * 86400.0
    lease_seconds: float = DEFAULT_LEASE


@dataclass
class FlushResult:
    """What one flush did; `record()` is what `queue status` and health read back."""

    started_at: float
    finished_at: float = 0.0
    requests: int = 0
    sent: int = 0
    delivered: int = 0
    rejected: int = 0
    unattributed: int = 0
    rescheduled: int = 0
    sent_unconfirmed: int = 0
    dead: int = 0
    recovered: int = 0
    released: int = 0
    stopped_reason: str = "done"
    auth_failed: bool = False
    error: str | None = None
    error_hint: str | None = None
    retry_after: float | None = None
    warnings: list[str] = field(default_factory=list)
    remaining_queued: int = 0
    remaining_due: int = 0
    next_attempt_at: float | None = None
    error_obj: MatokitError | None = field(default=None, repr=False)

    @property
    def refused_access(self) -> bool:
        """Matomo refused the token (invalid, cooling down, locked out, or lacking access)."""
        return self.stopped_reason in ("auth_failed", "locked_out", "permission_denied")

    @property
    def stopped_early(self) -> bool:
        """The flush stopped before running out of due hits."""
        return self.stopped_reason not in ("done", "nothing_due")

    def outcome(self) -> str:
        """One line for people and for the health check."""
        if self.auth_failed:
            return "stopped: Matomo rejected the token"
        text = f"{self.delivered} delivered"
        if self.stopped_early:
            text = f"stopped ({self.stopped_reason.replace('_', ' ')}) after {text}"
        if self.remaining_due:
            text += f", {self.remaining_due} due left"
        return text

    def record(self) -> dict[str, Any]:
        """The JSON-able flush record (also the `--format json` output)."""
        data = {
            "started_at": round(self.started_at, 3),
            "finished_at": round(self.finished_at, 3),
            "duration": round(max(self.finished_at - self.started_at, 0.0), 3),
            "requests": self.requests,
            "sent": self.sent,
            "delivered": self.delivered,
            "rejected": self.rejected,
            "unattributed": self.unattributed,
            "rescheduled": self.rescheduled,
            "sent_unconfirmed": self.sent_unconfirmed,
            "dead": self.dead,
            "recovered": self.recovered,
            "stopped_reason": self.stopped_reason,
            "auth_failed": self.auth_failed,
            "outcome": self.outcome(),
            "remaining_queued": self.remaining_queued,
            "remaining_due": self.remaining_due,
            "next_attempt_at": self.next_attempt_at,
        }
        if self.error:
            data["error"] = self.error
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        if self.warnings:
            data["warnings"] = list(self.warnings)
        return data


@dataclass
class ImportResult:
    """What `track import` did: lines read, invalid, newly queued, duplicates, and its flush."""

    read: int = 0
    invalid: int = 0
    added: int = 0
    duplicates: int = 0
    flush: FlushResult | None = None
    flush_busy: str | None = None
    queued: int = 0

    def summary(self) -> dict[str, Any]:
        """The end-of-import summary (stderr for people, stdout with `--format json`)."""
        flush = self.flush
        data: dict[str, Any] = {
            "read": self.read,
            "valid": self.read - self.invalid,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "journaled": self.added,
            "sent": flush.delivered if flush else 0,
            "rejected": flush.rejected if flush else 0,
            "unattributed": flush.unattributed if flush else 0,
            "sent_unconfirmed": flush.sent_unconfirmed if flush else 0,
            "recovered": flush.recovered if flush else 0,
            "queued": self.queued,
        }
        if flush is not None:
            data["flush"] = flush.record()
        if self.flush_busy:
            data["flush_busy"] = self.flush_busy
        return data


class _Stop(Exception):
    """Ends a flush early: `reason` goes in the record, `error` says what happened."""

    def __init__(self, reason: str, error: MatokitError | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


# --- the service --------------------------------------------------------------------------------


class Delivery:
    """Send-or-journal, import and flush for one profile's journal and client."""

    def __init__(
        self,
        *,
        journal_path: Path,
        client_factory: ClientFactory,
        has_token: bool,
        dedup_window: float = 7 * 86400.0,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.journal_path = Path(journal_path)
        self._client_factory = client_factory
        self._client: TrackingClient | None = None
        self.has_token = has_token
        self.dedup_window = dedup_window
        self.clock = clock
        self.rng = rng
        self._journal: Journal | None = None

    @classmethod
    def for_settings(cls, settings: Settings, **kwargs: Any) -> Delivery:
        """The delivery service of a profile (its journal, URL, token and timeouts)."""

        def factory() -> TrackingClient:
            from matokit.connect import client_for

            return client_for(settings, need_token=False)

        return cls(
            journal_path=settings.journal_path,
            client_factory=factory,
            has_token=settings.has_token(),
            dedup_window=float(settings.dedup_window),
            **kwargs,
        )

    def __enter__(self) -> Delivery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
    def journal(self) -> Journal:
        """The profile's journal, opened (and created) on first use."""
        if self._journal is None:
            self._journal = Journal(
                self.journal_path, clock=self.clock, dedup_window=self.dedup_window
            )
        return self._journal

    def client(self) -> TrackingClient:
        """The Matomo client, built on first use (ConfigError without a URL)."""
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def stats(self) -> JournalStats | None:
        """The journal's stats, or None when there is no journal yet (nothing is created)."""
        if self._journal is None and not self.journal_path.exists():
            return None
        return self.journal.stats(now=self.clock())

    # -- track --

    def queue(self, hit: Hit, *, key: str | None = None) -> TrackOutcome:
        """Only journal `hit` (`track --queue`): queued, or duplicate when its key is known."""
        key = key or hit_key(hit)
        added = self.journal.enqueue_one(new_hit(hit, key))
        if not added:
            return TrackOutcome(key, TrackState.DUPLICATE, "already queued or delivered")
        return TrackOutcome(key, TrackState.QUEUED, "journaled; `matokit queue flush` sends it")

    def send(self, hit: Hit, *, key: str | None = None) -> TrackOutcome:
        """Send `hit` now as a bulk of one; journal it when it cannot be delivered now.

        Rejected by Matomo: not journaled (re-sending cannot help). Refused token or a
        retryable failure: journaled, with the error in the outcome.
        """
        keyed = hit.key is not None
        key = key or hit_key(hit)
        if keyed and self.journal.has_key(key):
            return TrackOutcome(key, TrackState.DUPLICATE, "already queued or delivered")
        try:
            client = self.client()
            if self.clock() - hit.time >= OLD_HIT_AGE:
                self._check_old_hit_access(client, hit.site_id)
            result = client.track([hit])
        except (RejectedHitError, NotFoundError) as exc:
            if isinstance(exc, RejectedHitError):
                return TrackOutcome(key, TrackState.REJECTED, exc.message, exc)
            return self._journal_failed(hit, key, exc)
        except (MatomoError, _NoAdminAccess) as exc:
            error = exc.error if isinstance(exc, _NoAdminAccess) else exc
            return self._journal_failed(hit, key, error)
        outcome = result.outcomes[0]
        if outcome == "delivered":
            if keyed:
                self._remember_delivered(hit, key)
            return TrackOutcome(key, TrackState.DELIVERED)
        if outcome == "rejected":
            reason = "Matomo refused the hit (counted invalid in its bulk answer)"
            return TrackOutcome(key, TrackState.REJECTED, reason)
        # Counts that do not add up: it may or may not be stored; re-sending could double it.
        note = result.note or "Matomo's answer did not account for the hit"
        return TrackOutcome(key, TrackState.UNCONFIRMED, note)

    def _check_old_hit_access(self, client: TrackingClient, site: int) -> None:
        if not self.has_token:
            raise ConfigError(
                "The hit is older than 24 h: Matomo records such hits only with a token that "
                f"has admin access on site {site}, and no token is configured.",
                hint="Set MATOMO_TOKEN or --token-file (an admin or superuser token), "
                "or track the hit with a recent --at.",
            )
        if site not in _admin_sites(client):
            raise _NoAdminAccess(site)

    def _journal_failed(self, hit: Hit, key: str, error: MatokitError) -> TrackOutcome:
        maybe = isinstance(error, MatomoError) and _maybe_stored(error)
        try:
            added = self.journal.enqueue_one(new_hit(hit, key))
            if added and maybe:
                self._mark_unconfirmed(key, error)
        except StorageError as exc:
            raise StorageError(
                f"{exc.message}. The hit was NOT delivered ({error.message}) and NOT queued.",
                path=exc.path,
                hint=exc.hint,
            ) from exc
        if not added:
            return TrackOutcome(key, TrackState.DUPLICATE, "already queued or delivered")
        return TrackOutcome(key, TrackState.QUEUED, error.message, error, maybe_stored=maybe)

    def _mark_unconfirmed(self, key: str, error: MatokitError) -> None:
        entry = self.journal.find(key)
        if entry is not None and entry.state is EntryState.PENDING:
            self.journal.reschedule(
                [entry.id], error=_short(error), next_attempt_at=self.clock(), sent_unconfirmed=True
            )

    def _remember_delivered(self, hit: Hit, key: str) -> None:
        # A failure to remember is not a failure to deliver: the hit is in Matomo.
        try:
            self.journal.remember_delivered([key])
        except StorageError as exc:
            log.warning("delivered, but could not remember the idempotency key: %s", exc)

    # -- import --

    def import_lines(
        self,
        source: IO[bytes],
        *,
        site_id: int | None,
        strict: bool = False,
        on_invalid: Callable[[int, str], None] = lambda n, m: None,
        on_progress: Progress | None = None,
    ) -> ImportResult:
        """Validate JSON Lines from `source` and journal the valid hits, streaming.

        Each chunk of hits is committed before the next is read. With `strict`, every line is
        validated first and nothing is journaled if any is invalid (DataError).
        """
        result = ImportResult()
        if strict:
            source = self._strict_pass(source, site_id=site_id, on_invalid=on_invalid)
        parser = _LineParser(site_id=site_id, clock=self.clock, on_invalid=on_invalid)
        helper: _ImportHelper | None = None
        try:
            split = _split_point(source)
            lines: Iterable[bytes] = source
            if split is not None:
                try:
                    helper = _ImportHelper.start(
                        source, split, site_id=site_id, delivery=self, on_invalid=on_invalid
                    )
                except OSError as exc:  # no second process: one does it all, slower
                    log.info("import helper could not start (%s); importing alone", exc)
                else:
                    lines = _until(source, split[0])
            size = IMPORT_CHUNK if _tell(source) is not None else PIPE_CHUNK
            # One enqueue call per journal transaction, so `added` is exactly what is committed.
            for chunk in parser.chunks(lines, size):
                added = self.journal.enqueue(chunk, chunk_size=size)
                result.added += added.added
                result.duplicates += added.duplicates
                if helper is not None:
                    helper.poll()
                if on_progress is not None:
                    on_progress(parser.bytes_read + (helper.bytes_read if helper else 0))
            if helper is not None:
                helper.finish(result, on_progress=on_progress, base=parser.bytes_read)
        except StorageError as exc:
            if helper is not None:
                helper.stop(result)
            # Say exactly what is safe: the chunks committed before the failure, no more.
            raise StorageError(
                f"{exc.message}. {result.added} new hit(s) of this import were journaled "
                "before the error and stay queued; the following lines were NOT queued "
                "(re-run the import once fixed: journaled hits are skipped as duplicates).",
                path=exc.path,
                hint=exc.hint,
            ) from exc
        finally:
            if helper is not None:
                helper.close()
        result.read += parser.read
        result.invalid += parser.invalid
        return result

    def _strict_pass(
        self,
        source: IO[bytes],
        *,
        site_id: int | None,
        on_invalid: Callable[[int, str], None],
    ) -> IO[bytes]:
        start = _tell(source)
        spool: IO[bytes] | None = None
        if start is None:
            spool = tempfile.TemporaryFile()  # noqa: SIM115 - handed back to the caller
        parser = _LineParser(site_id=site_id, clock=self.clock, on_invalid=on_invalid)
        for _ in parser.hits(_tee(source, spool)):
            pass
        if parser.invalid:
            if spool is not None:
                spool.close()
            raise DataError(
                f"{parser.invalid} of {parser.read} lines are invalid; --strict: nothing was "
                "queued or sent.",
                hint="fix the lines reported above, or drop --strict to skip them",
            )
        if spool is not None:
            spool.seek(0)
            return spool
        source.seek(start or 0)
        return source

    # -- flush --

    def flush_locked(
        self,
        options: FlushOptions,
        *,
        wait: bool = False,
        on_start: Callable[[int], None] | None = None,
        on_progress: Progress | None = None,
    ) -> FlushResult:
        """`flush` under the profile's flush lock (FlushInProgressError if another holds it)."""
        from matokit.locking import LOCK_NAME, flush_lock

        with flush_lock(self.journal_path.parent / LOCK_NAME, wait=wait):
            return self.flush(options, on_start=on_start, on_progress=on_progress)

    def flush(
        self,
        options: FlushOptions,
        *,
        on_start: Callable[[int], None] | None = None,
        on_progress: Progress | None = None,
    ) -> FlushResult:
        """Deliver due hits (all with `include_not_due`); the caller holds the flush lock."""
        flusher = _Flusher(self, options, on_progress=on_progress)
        result = flusher.run(on_start=on_start)
        with contextlib.suppress(StorageError):
            self.journal.record_flush(result.record())
        return result


class _NoAdminAccess(Exception):
    """The token is valid but has no admin access on a site whose old hits need it."""

    def __init__(self, site: int) -> None:
        message = (
            f"The hit is older than 24 h and the token has no admin access on site {site}: "
            "Matomo records such hits only with an admin or superuser token."
        )
        super().__init__(message)
        self.site = site
        self.error = PermissionDeniedError(
            message, hint="Use a token with admin access on the site, then `matokit queue flush`."
        )


def _admin_sites(client: TrackingClient) -> frozenset[int]:
    """Sites on which the token may replay hits older than 24 h (raises for a bad token)."""
    try:
        answer = client.call(ADMIN_METHOD)
    except PermissionDeniedError:
        return frozenset()
    sites: set[int] = set()
    if isinstance(answer, list):
        for value in answer:
            with contextlib.suppress(TypeError, ValueError):
                sites.add(int(value))
    return frozenset(sites)


# --- import parsing -----------------------------------------------------------------------------


class _LineParser:
    """Turns JSON Lines into journal records, reporting invalid lines with their numbers."""

    def __init__(
        self,
        *,
        site_id: int | None,
        clock: Callable[[], float],
        on_invalid: Callable[[int, str], None],
        first_line: int = 1,
    ) -> None:
        self.site_id = site_id
        self.clock = clock
        self.on_invalid = on_invalid
        self.first_line = first_line
        self.read = 0
        self.invalid = 0
        self.bytes_read = 0

    def hits(self, lines: Iterable[bytes]) -> Iterator[NewHit]:
        """Valid lines as NewHits; the others go to `on_invalid` and are counted."""
        site_id, clock = self.site_id, self.clock
        for number, raw in enumerate(lines, self.first_line):
            self.bytes_read += len(raw)
            if not raw.strip():
                continue
            self.read += 1
            try:
                record = json.loads(raw)
                hit = hit_from_record(record, site_id=site_id, now=clock())
                key = import_key(hit, record)
            except HitValidationError as exc:
                self._invalid(number, f"{exc.field}: {exc.message}" if exc.field else exc.message)
                continue
            except (ValueError, RecursionError) as exc:  # JSON and UTF-8 errors
                self._invalid(number, f"not a JSON object: {_json_reason(exc)}")
                continue
            yield NewHit(key, hit.params, _hit_time(hit))

    def chunks(self, lines: Iterable[bytes], size: int) -> Iterator[list[NewHit]]:
        """`hits` in lists of up to `size` (the unit of one journal commit)."""
        chunk: list[NewHit] = []
        for hit in self.hits(lines):
            chunk.append(hit)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _invalid(self, number: int, message: str) -> None:
        self.invalid += 1
        self.on_invalid(number, message)


def _json_reason(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    return str(exc)[:200]


def _tell(source: IO[bytes]) -> int | None:
    """Where a seekable source is (to read it twice), or None for a pipe."""
    try:
        return source.tell() if source.seekable() else None
    except (OSError, ValueError):
        return None


def _tee(source: IO[bytes], spool: IO[bytes] | None) -> Iterator[bytes]:
    for line in source:
        if spool is not None:
            spool.write(line)
        yield line


# --- a second process for large files ------------------------------------------------------------

# A file this large is split in two halves, the second journaled by a helper process: parsing
# and validating is pure Python (one core), so two processes import nearly twice as fast.
PARALLEL_MIN_BYTES: Final = 4 << 20
_WORKER_MAX_INVALID_REPORTS: Final = 1000
_WORKER_CODE = (
    "import sys; from matokit.delivery import _import_worker; sys.exit(_import_worker(sys.argv[1]))"
)


def _split_point(source: IO[bytes]) -> tuple[int, int] | None:
    """Where a large regular file splits: (byte offset of a line start, its line number)."""
    if (os.cpu_count() or 1) < 2:
        return None
    start = _tell(source)
    name = getattr(source, "name", None)
    if start is None or not isinstance(name, str):
        return None
    try:
        size = os.fstat(source.fileno()).st_size
    except (OSError, ValueError, AttributeError):
        return None
    if size - start < PARALLEL_MIN_BYTES:
        return None
    source.seek(start + (size - start) // 2)
    source.readline()  # to the start of the next line
    split = source.tell()
    source.seek(start)
    lines, left = 1, split - start
    while left > 0:
        block = source.read(min(left, 1 << 20))
        if not block:
            break
        lines += block.count(b"\n")
        left -= len(block)
    source.seek(start)
    return (split, lines) if split < size else None


def _until(source: IO[bytes], end: int) -> Iterator[bytes]:
    """The lines of `source` up to byte offset `end` (a line start)."""
    position = source.tell()
    for line in source:
        yield line
        position += len(line)
        if position >= end:
            return


class _ImportHelper:
    """The process journaling the second half of a large import (`_import_worker`).

    It reports progress, invalid lines and its counts as JSON lines on its stdout; closing its
    stdin asks it to stop after the chunk it is committing.
    """

    def __init__(self, proc: subprocess.Popen[bytes], on_invalid: Callable[[int, str], None]):
        self.proc = proc
        self.on_invalid = on_invalid
        self.bytes_read = 0
        self.buffer = b""
        self.done: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None

    @classmethod
    def start(
        cls,
        source: IO[bytes],
        split: tuple[int, int],
        *,
        site_id: int | None,
        delivery: Delivery,
        on_invalid: Callable[[int, str], None],
    ) -> _ImportHelper:
        args = {
            "path": os.path.abspath(source.name),
            "start": split[0],
            "first_line": split[1],
            "site_id": site_id,
            "journal": str(delivery.journal_path),
            "dedup_window": delivery.dedup_window,
            "clock_offset": delivery.clock() - time.time(),
        }
        delivery.journal  # noqa: B018 - created before the helper opens it
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE, json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        return cls(proc, on_invalid)

    def poll(self, *, block: bool = False) -> bool:
        """Handle what the helper said so far; False once its output has ended."""
        stdout = self.proc.stdout
        assert stdout is not None
        while block or select.select([stdout], [], [], 0)[0]:
            data = os.read(stdout.fileno(), 1 << 16)
            if not data:
                self._lines(self.buffer)
                self.buffer = b""
                return False
            *complete, self.buffer = (self.buffer + data).split(b"\n")
            self._lines(b"\n".join(complete))
            if block:
                return True
        return True

    def _lines(self, data: bytes) -> None:
        for raw in data.splitlines():
            if not raw.strip():
                continue
            message = json.loads(raw)
            if "p" in message:
                self.bytes_read = int(message["p"])
            elif "i" in message:
                self.on_invalid(int(message["i"][0]), str(message["i"][1]))
            elif "d" in message:
                self.done = message["d"]
            elif "e" in message:
                self.error = message["e"]

    def finish(self, result: ImportResult, *, on_progress: Progress | None, base: int) -> None:
        """Wait for the helper, add its counts to `result`; StorageError if it failed."""
        while self.poll(block=True):
            if on_progress is not None:
                on_progress(base + self.bytes_read)
        self.proc.wait()
        self._add(result)
        if self.error is not None:
            raise StorageError(
                str(self.error.get("message")),
                path=self.error.get("path"),
                hint=self.error.get("hint"),
            )
        if self.done is None:
            raise StorageError(
                f"the import helper process ended without a result (exit {self.proc.returncode})",
                hint="re-run the import: what was journaled is skipped as duplicates",
            )

    def stop(self, result: ImportResult) -> None:
        """Ask the helper to stop after its current chunk and add what it committed."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        with contextlib.suppress(OSError, ValueError):
            while self.poll(block=True):
                pass
        self.proc.wait()
        self._add(result)

    def _add(self, result: ImportResult) -> None:
        counts = self.done or self.error or {}
        result.read += int(counts.get("read", 0))
        result.invalid += int(counts.get("invalid", 0))
        result.added += int(counts.get("added", 0))
        result.duplicates += int(counts.get("duplicates", 0))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()


def _import_worker(raw_args: str) -> int:
    """Entry point of the import helper process (see `_ImportHelper`)."""
    args = json.loads(raw_args)
    out = sys.stdout.buffer
    offset = float(args["clock_offset"])

    def say(message: Mapping[str, Any]) -> None:
        out.write(json.dumps(message).encode() + b"\n")
        out.flush()

    reported = [0]

    def invalid(number: int, message: str) -> None:
        reported[0] += 1
        if reported[0] <= _WORKER_MAX_INVALID_REPORTS:
            say({"i": [number, message]})

    def clock() -> float:
        return time.time() + offset

    parser = _LineParser(
        site_id=args["site_id"], clock=clock, on_invalid=invalid, first_line=args["first_line"]
    )
    counts = {"added": 0, "duplicates": 0}
    try:
        with (
            Journal(
                Path(args["journal"]), clock=clock, dedup_window=float(args["dedup_window"])
            ) as journal,
            open(args["path"], "rb") as source,
        ):
            source.seek(int(args["start"]))
            for chunk in parser.chunks(source, IMPORT_CHUNK):
                added = journal.enqueue(chunk, chunk_size=IMPORT_CHUNK)
                counts["added"] += added.added
                counts["duplicates"] += added.duplicates
                say({"p": parser.bytes_read})
                if select.select([sys.stdin], [], [], 0)[0]:
                    break  # stdin closed: the main process asks us to stop (or died)
    except StorageError as exc:
        say(
            {
                "e": {
                    "message": exc.message,
                    "path": exc.path,
                    "hint": exc.hint,
                    "read": parser.read,
                    "invalid": parser.invalid,
                    **counts,
                }
            }
        )
        return 1
    say({"d": {"read": parser.read, "invalid": parser.invalid, **counts}})
    return 0


# --- flush --------------------------------------------------------------------------------------


class _Flusher:
    """One flush: claim, send, apply outcomes, until nothing is due or a stop condition."""

    def __init__(
        self, delivery: Delivery, options: FlushOptions, *, on_progress: Progress | None
    ) -> None:
        self.d = delivery
        self.journal = delivery.journal
        self.options = options
        self.clock = delivery.clock
        self.on_progress = on_progress
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.result = FlushResult(started_at=self.clock())
        self.superuser: bool | None = None
        self.admin_sites: frozenset[int] | None = None
        self.seen_sites: set[int] = set()

    # -- the loop

    def run(self, *, on_start: Callable[[int], None] | None = None) -> FlushResult:
        result, options = self.result, self.options
        self._recover_orphans()
        if options.include_not_due:
            self._make_all_due()
        stats = self.journal.stats(now=self.clock())
        if on_start is not None:
            on_start(stats.due)
        if stats.due == 0:
            result.stopped_reason = "nothing_due"
        deadline = None if options.max_time is None else result.started_at + options.max_time
        budget = options.max_events
        try:
            while stats.due:
                if deadline is not None and self.clock() >= deadline:
                    raise _Stop("max_time")
                limit = options.batch_size if budget is None else min(options.batch_size, budget)
                if limit <= 0:
                    raise _Stop("max_events")
                entries = self.journal.claim(
                    self.owner, limit=limit, lease_seconds=options.lease_seconds
                )
                if not entries:
                    break
                if budget is not None:
                    budget -= len(entries)
                self._batch(entries)
        except _Stop as stop:
            result.stopped_reason = stop.reason
            if stop.error is not None:
                result.error_obj = stop.error
                result.error = stop.error.message
                result.error_hint = stop.error.hint
                result.retry_after = getattr(stop.error, "retry_after", None)
            result.auth_failed = stop.reason in ("auth_failed", "locked_out")
        finally:
            result.finished_at = self.clock()
        after = self.journal.stats(now=self.clock())
        result.remaining_queued = after.queued
        result.remaining_due = after.due
        result.next_attempt_at = after.next_attempt_at
        if result.unattributed:
            result.warnings.append(
                f"{result.unattributed} hit(s) set aside as unattributed: Matomo refused part "
                "of their batch without saying which (only superuser tokens get "
                "invalid_indices); they are not re-sent, to avoid counting the others twice"
            )
        if result.sent_unconfirmed:
            result.warnings.append(
                f"{result.sent_unconfirmed} hit(s) sent without an answer: Matomo may have "
                "stored them, so their re-send may count them twice"
            )
        return result

    def _recover_orphans(self) -> None:
        """Inflight hits while we hold the flush lock belong to a flusher that died."""
        orphans = self.journal.entries(states=[EntryState.INFLIGHT])
        if not orphans:
            return
        now = self.clock()
        for owner, group in _group_by(orphans, lambda e: e.lease_owner or "?").items():
            self.journal.reschedule(
                [e.id for e in group],
                error=f"flusher {owner} stopped before recording an answer (it may have sent it)",
                next_attempt_at=now,
                sent_unconfirmed=True,
            )
        self.result.recovered = len(orphans)

    def _make_all_due(self) -> None:
        now = self.clock()
        waiting = [
            e
            for e in self.journal.iter_entries(
                states=[EntryState.PENDING, EntryState.SENT_UNCONFIRMED]
            )
            if e.next_attempt_at > now
        ]
        for error, group in _group_by(waiting, lambda e: e.last_error or "").items():
            self.journal.reschedule([e.id for e in group], error=error, next_attempt_at=now)

    def _batch(self, entries: list[Entry]) -> None:
        """Send one claimed batch: dead letters first, then risky hits alone, then the rest."""
        now = self.clock()
        live = self._expire(entries, now)
        try:
            live = self._check_old(live, now)
            while live:
                risky = [e for e in live if self._risky(e, now)]
                group = risky[:1] if risky else live
                live = [e for e in live if e not in group] if risky else []
                self._send(group)
        except BaseException:
            # Hits not yet handed to a request go back untouched; a request cut short (Ctrl-C)
            # leaves its own hits inflight, recovered by the next flush as maybe sent.
            with contextlib.suppress(StorageError):
                self._release(live)
            raise

    def _expire(self, entries: list[Entry], now: float) -> list[Entry]:
        max_age = self.options.max_age
        limit = format_duration(max_age)
        self._kill_each(
            [e for e in entries if now - e.enqueued_at > max_age],
            lambda e: f"not delivered within max_age ({limit}); last error: {e.last_error}",
        )
        return [e for e in entries if now - e.enqueued_at <= max_age]

    def _check_old(self, entries: list[Entry], now: float) -> list[Entry]:
        old = [e for e in entries if now - _entry_time(e) >= OLD_HIT_AGE]
        if not old:
            return entries
        if not self.d.has_token:
            self._kill_each(old, _reason_no_token)
            return [e for e in entries if e not in old]
        if self.admin_sites is None:
            try:
                self.admin_sites = _admin_sites(self._client())
            except MatomoError as exc:
                raise self._stop_for(exc) from exc
        denied = [e for e in old if _site(e) not in self.admin_sites]
        self._kill_each(denied, _reason_no_admin)
        return [e for e in entries if e not in denied]

    def _risky(self, entry: Entry, now: float) -> bool:
        if self.superuser:
            return False
        return now - _entry_time(entry) >= AT_RISK_AGE or _site(entry) not in self.seen_sites

    def _client(self) -> TrackingClient:
        return self.d.client()

    # -- one request

    def _send(self, group: list[Entry]) -> None:
        hits = [_entry_hit(e) for e in group]
        try:
            client = self._client()
        except ConfigError:
            self._release(group)
            raise
        self.result.requests += 1
        self.result.sent += len(group)
        try:
            answer = client.track(hits)
        except RejectedHitError as exc:
            # The whole batch was refused and nothing stored: find the bad hit by halves.
            self.result.sent -= len(group)
            if len(group) == 1:
                self._kill([(group[0], f"Matomo refused the hit: {exc.message}")])
                self.result.rejected += 1
                return
            middle = len(group) // 2
            try:
                self._send(group[:middle])
            except _Stop:
                self._release(group[middle:])
                raise
            self._send(group[middle:])
            return
        except (AuthenticationError, LockedOutError, PermissionDeniedError, NotFoundError) as exc:
            self.result.sent -= len(group)
            self._release(group)
            raise self._stop_for(exc) from exc
        except MatomoError as exc:
            unconfirmed = _maybe_stored(exc)
            self._reschedule(group, exc, unconfirmed=unconfirmed)
            raise self._stop_for(exc) from exc
        self._apply(group, answer)
        if self.on_progress is not None:
            self.on_progress(len(group))

    def _apply(self, group: list[Entry], answer: TrackResult) -> None:
        if answer.invalid_indices is not None:
            self.superuser = True
        elif answer.tracked + answer.invalid > 0 and self.superuser is None:
            self.superuser = False
        by_outcome = _group_by(zip(group, answer.outcomes, strict=True), lambda p: str(p[1]))
        delivered = [e for e, _ in by_outcome.get("delivered", [])]
        rejected = [e for e, _ in by_outcome.get("rejected", [])]
        aside = [e for e, _ in by_outcome.get("batch_invalid", [])]
        aside += [e for e, _ in by_outcome.get("unconfirmed", [])]
        if delivered:
            self.journal.ack([e.id for e in delivered])
            self.result.delivered += len(delivered)
            self.seen_sites.update(_site(e) for e in delivered)
        if rejected:
            self._kill([(e, _rejected_reason(e, self.clock())) for e in rejected])
            self.result.rejected += len(rejected)
        if aside:
            reason = answer.note or "Matomo's answer did not account for these hits"
            self.journal.mark_unattributed([e.id for e in aside], reason=reason[:500])
            self.result.unattributed += len(aside)

    # -- journal updates

    def _reschedule(self, group: list[Entry], error: MatomoError, *, unconfirmed: bool) -> None:
        limit = self.options.max_attempts
        self._kill_each(
            [e for e in group if e.attempts >= limit],
            lambda e: f"gave up after {e.attempts} attempts (max_attempts); last error: {error}",
        )
        rest = [e for e in group if e.attempts < limit]
        if not rest:
            return
        attempt = max(e.attempts for e in rest)
        from matokit.policy import backoff_delay

        retry_after = getattr(error, "retry_after", None)
        delay = backoff_delay(
            attempt, base=BACKOFF_BASE, cap=BACKOFF_CAP, retry_after=retry_after, rng=self.d.rng
        )
        self.journal.reschedule(
            [e.id for e in rest],
            error=_short(error),
            next_attempt_at=self.clock() + min(delay, MAX_DELAY),
            sent_unconfirmed=unconfirmed,
        )
        self.result.rescheduled += len(rest)
        if unconfirmed:
            self.result.sent_unconfirmed += len(rest)

    def _release(self, entries: list[Entry]) -> None:
        if entries:
            self.result.released += self.journal.release([e.id for e in entries])

    def _kill_each(self, entries: list[Entry], reason: Callable[[Entry], str]) -> None:
        self._kill([(e, reason(e)) for e in entries])

    def _kill(self, items: list[tuple[Entry, str]]) -> None:
        if items:
            self.journal.kill([(e.id, reason[:1000]) for e, reason in items])
            self.result.dead += len(items)

    @staticmethod
    def _stop_for(exc: MatomoError) -> _Stop:
        if isinstance(exc, LockedOutError):
            return _Stop("locked_out", exc)
        if isinstance(exc, AuthenticationError):
            return _Stop("auth_failed", exc)
        if isinstance(exc, PermissionDeniedError):
            return _Stop("permission_denied", exc)
        if isinstance(exc, RateLimitedError):
            return _Stop("rate_limited", exc)
        if isinstance(exc, UnavailableError):
            return _Stop("unavailable", exc)
        if isinstance(exc, ProtocolError):
            return _Stop("protocol_error", exc)
        return _Stop("error", exc)


def _maybe_stored(exc: MatomoError) -> bool:
    """Whether Matomo may have stored a batch whose request failed with `exc`."""
    if isinstance(exc, UnavailableError):
        return exc.maybe_stored
    if isinstance(exc, ProtocolError):
        # A garbled 2xx answer came after processing; a redirect or error page did not.
        return exc.status is None or 200 <= exc.status < 300
    return False


def _reason_no_token(entry: Entry) -> str:
    return (
        f"older than 24 h: Matomo records it only with a token that has admin access on site "
        f"{_site(entry)}, and no token is configured (set one, then `matokit queue retry-dead`)"
    )


def _reason_no_admin(entry: Entry) -> str:
    return (
        f"older than 24 h and the token has no admin access on site {_site(entry)}: Matomo "
        "records such hits only with an admin or superuser token (use one, then "
        "`matokit queue retry-dead`)"
    )


def _rejected_reason(entry: Entry, now: float) -> str:
    reason = "Matomo refused this hit (counted invalid in its bulk answer)"
    if now - _entry_time(entry) >= AT_RISK_AGE:
        reason += (
            "; its time is about 24 h old or older, which Matomo accepts only with a token "
            f"that has admin access on site {_site(entry)}"
        )
    return reason


def _group_by(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    groups: dict[K, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups
