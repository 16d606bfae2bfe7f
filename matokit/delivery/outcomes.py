"""What delivery reports: the outcome of a `track` hit, of a flush, of an import."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from matokit.errors import MatokitError
from matokit.flushrecord import FlushRecord, StopReason

if TYPE_CHECKING:
    from matokit.config import Settings

DEFAULT_LEASE: Final = 600.0
# A bulk's JSON body stays under this by default: nginx's default client_max_body_size is 1 MiB.
DEFAULT_MAX_PAYLOAD: Final = 1_000_000

Progress = Callable[[int], None]


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
    concurrency: int | None = 1  # lanes of bulks in flight; None: auto (delivery/lanes.py)
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD  # a bulk's body stays under this
    exactly_once: str = "off"  # auto|on|off (the profile's `exactly_once`; see exactlyonce/)
    settle: float = 300.0  # seconds before an uncertain send is looked up

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> FlushOptions:
        """The profile's batch_size, max_attempts, max_age, exactly_once and settle time; an
        override that is None keeps the profile's value (or the default)."""
        keys = ("batch_size", "max_attempts", "max_age", "exactly_once", "settle")
        values = {k: getattr(settings, k) for k in keys}
        values["concurrency"] = settings.lanes
        values["max_payload_bytes"] = settings.max_payload_bytes
        return cls(**{**values, **{k: v for k, v in overrides.items() if v is not None}})


@dataclass
class FlushResult:
    """What one flush did, while it runs; `record()` is what the journal, `queue status` and
    health read back. `error` is why it stopped early, when an error was the reason."""

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
    concurrency: int = 1  # the most lanes that sent at once
    rollbacks: int = 0  # bulks Matomo rolled back (deadlock), sent again
    # Exactly-once: keys looked up, found (delivered without a re-send), missing (sent again),
    # lookups that failed (asked again later), hits held under exactly_once = on, and hits
    # left awaiting a lookup; `lookups_unavailable`: site -> why lookups cannot work there.
    looked_up: int = 0
    confirmed: int = 0
    missing: int = 0
    lookup_failed: int = 0
    held: int = 0
    awaiting_lookup: int = 0
    next_lookup_at: float | None = None
    lookups_unavailable: dict[int, str] = field(default_factory=dict)
    stopped_reason: StopReason = StopReason.DONE
    error: MatokitError | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)
    remaining_queued: int = 0
    remaining_due: int = 0
    next_attempt_at: float | None = None
    paused_until: float | None = None

    @property
    def refused_access(self) -> bool:
        """Matomo refused the token (invalid, cooling down, locked out, or lacking access)."""
        return self.stopped_reason.access_refused

    @property
    def stopped_early(self) -> bool:
        """The flush stopped before running out of due hits."""
        return self.stopped_reason.early

    @property
    def retry_after(self) -> float | None:
        """The delay Matomo asked for (Retry-After) when that stopped the flush."""
        value = getattr(self.error, "retry_after", None)
        return float(value) if isinstance(value, int | float) else None

    def record(self) -> FlushRecord:
        """The frozen flush record (its `to_json()` is also the `--format json` output)."""
        return FlushRecord(
            started_at=self.started_at,
            finished_at=self.finished_at,
            requests=self.requests,
            sent=self.sent,
            delivered=self.delivered,
            rejected=self.rejected,
            unattributed=self.unattributed,
            rescheduled=self.rescheduled,
            sent_unconfirmed=self.sent_unconfirmed,
            dead=self.dead,
            recovered=self.recovered,
            concurrency=self.concurrency,
            rollbacks=self.rollbacks,
            looked_up=self.looked_up,
            confirmed=self.confirmed,
            missing=self.missing,
            lookup_failed=self.lookup_failed,
            held=self.held,
            awaiting_lookup=self.awaiting_lookup,
            next_lookup_at=self.next_lookup_at,
            stopped_reason=self.stopped_reason,
            remaining_queued=self.remaining_queued,
            remaining_due=self.remaining_due,
            next_attempt_at=self.next_attempt_at,
            paused_until=self.paused_until,
            error=self.error.message if self.error is not None else None,
            retry_after=self.retry_after,
            warnings=tuple(self.warnings),
        )


@dataclass
class ImportResult:
    """What `track import` did: lines read, invalid, newly queued, duplicates, and its flush.

    The flush sends the whole journal, so `tally` tells the file's hits from older ones.
    """

    read: int = 0
    invalid: int = 0
    added: int = 0
    duplicates: int = 0
    flush: FlushResult | None = None
    flush_busy: str | None = None
    queued: int = 0
    interrupted: bool = False  # a signal stopped the journaling: the rest was not read
    mark: int = 0  # the journal's watermark before it (`Journal.mark`): older entries are below
    own_left: dict[str, int] = field(default_factory=dict)  # the file's hits left, by state
    older_queued: int = 0  # older hits still queued after the import

    def tally(self, counts: Mapping[tuple[bool, str], int]) -> None:
        """Where the hits ended, from `Journal.tally(mark)` after the import and its flush.

        Entries added meanwhile by another process count as the file's: the mark is all we have.
        """
        own = {state: n for (after, state), n in counts.items() if after}
        self.own_left = own
        older = (n for (after, state), n in counts.items() if not after and state in _QUEUED)
        self.older_queued = sum(older)
        self.queued = sum(own.get(state, 0) for state in _QUEUED)

    @property
    def sent(self) -> int:
        """The file's hits this import delivered (they left the journal)."""
        if self.flush is None:
            return 0
        delivered = self.flush.delivered + self.flush.confirmed
        return max(0, min(self.added - sum(self.own_left.values()), delivered))

    def summary(self) -> dict[str, Any]:
        """The end-of-import summary (stderr for people, stdout with `--format json`).

        Its counts are the file's lines; `older` is what the flush did to hits queued before.
        """
        flush = self.flush
        own = self.own_left
        data: dict[str, Any] = {
            "read": self.read,
            "valid": self.read - self.invalid,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "journaled": self.added,
            "sent": self.sent,
            "rejected": own.get("dead", 0),
            "unattributed": own.get("unattributed", 0),
            "sent_unconfirmed": own.get("sent_unconfirmed", 0),
            "awaiting_lookup": own.get(AWAITING_LOOKUP, 0),
            "queued": self.queued,
            "older": self.older(),
        }
        if self.interrupted:
            data["interrupted"] = True
        if flush is not None:
            data["flush"] = flush.record().to_json()
        if self.flush_busy:
            data["flush_busy"] = self.flush_busy
        return data

    def older(self) -> dict[str, int]:
        """What the flush did to hits queued before this import, and how many stay queued."""
        flush = self.flush
        own = self.own_left
        return {
            "sent": flush.delivered + flush.confirmed - self.sent if flush else 0,
            "dead": max(0, flush.dead - own.get("dead", 0)) if flush else 0,
            "unattributed": (
                max(0, flush.unattributed - own.get("unattributed", 0)) if flush else 0
            ),
            "recovered": flush.recovered if flush else 0,
            "queued": self.older_queued,
        }


# `Journal.tally` counts hits awaiting a lookup under this name instead of their state.
AWAITING_LOOKUP: Final = "awaiting_lookup"
_QUEUED: Final = ("pending", "inflight", "sent_unconfirmed", AWAITING_LOOKUP)
