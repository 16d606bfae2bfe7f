"""The flush record: why a flush stopped and what it did, as written to the journal and read back.

`FlushRecord.to_json()` is the `queue flush --format json` output and what the journal keeps;
`FlushRecord.from_json()` reads it back for `queue status` and `health`, tolerating records
written by older versions (missing keys, unknown reasons). Pure: no I/O, stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, TypeGuard


class StopReason(StrEnum):
    """Why a flush ended; the values are the `stopped_reason` strings users see in JSON."""

    DONE = "done"  # nothing due is left
    NOTHING_DUE = "nothing_due"  # nothing was due when it started
    MAX_TIME = "max_time"
    MAX_EVENTS = "max_events"
    INTERRUPTED = "interrupted"  # SIGINT/SIGTERM: the request in flight was answered
    RATE_LIMITED = "rate_limited"  # 429, or Matomo's Retry-After pause in force
    UNAVAILABLE = "unavailable"
    PROTOCOL_ERROR = "protocol_error"
    AUTH_FAILED = "auth_failed"  # the token is invalid (or cooling down)
    LOCKED_OUT = "locked_out"  # Matomo blocked this IP after failed logins
    PERMISSION_DENIED = "permission_denied"
    ERROR = "error"  # any other refusal (unknown method, bad parameters)
    FLUSH_RUNNING = "flush_running"  # another flush held the lock: this one did not run
    WAIT_TIMEOUT = "wait_timeout"  # `--wait-timeout` ran out waiting for the lock

    @property
    def token_refused(self) -> bool:
        """Matomo rejected the token itself (invalid, cooling down, or the IP locked out)."""
        return self in (StopReason.AUTH_FAILED, StopReason.LOCKED_OUT)

    @property
    def access_refused(self) -> bool:
        """Matomo refused the token, or the token lacks an access the hits need."""
        return self.token_refused or self is StopReason.PERMISSION_DENIED

    @property
    def early(self) -> bool:
        """The flush ended before running out of due hits."""
        return self not in (StopReason.DONE, StopReason.NOTHING_DUE)

    @classmethod
    def parse(cls, value: object) -> StopReason | None:
        """The reason named by a stored value, or None when it names none."""
        try:
            return cls(value) if isinstance(value, str) else None
        except ValueError:
            return None


@dataclass(frozen=True)
class FlushRecord:
    """What one flush did (or why it did not run), as stored and shown.

    `recorded_at` is the journal's time of recording (only on records read back from it).
    """

    started_at: float = 0.0
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
    concurrency: int = 1
    rollbacks: int = 0
    looked_up: int = 0
    confirmed: int = 0
    missing: int = 0
    lookup_failed: int = 0
    held: int = 0
    awaiting_lookup: int = 0
    next_lookup_at: float | None = None
    stopped_reason: StopReason = StopReason.DONE
    remaining_queued: int = 0
    remaining_due: int = 0
    next_attempt_at: float | None = None
    paused_until: float | None = None
    error: str | None = None
    retry_after: float | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    recorded_at: float | None = None

    @property
    def outcome(self) -> str:
        """One line for people and for the health check."""
        if self.stopped_reason.token_refused:
            return "stopped: Matomo rejected the token"
        text = f"{self.delivered} delivered"
        if self.confirmed:
            text += f", {self.confirmed} confirmed by lookup"
        if self.stopped_reason.early:
            text = f"stopped ({self.stopped_reason.replace('_', ' ')}) after {text}"
        if self.remaining_due:
            text += f", {self.remaining_due} due left"
        if self.awaiting_lookup:
            text += f", {self.awaiting_lookup} awaiting lookup"
        return text

    def to_json(self) -> dict[str, Any]:
        """The JSON-able record (the `--format json` output; README documents its keys)."""
        duration = max(self.finished_at - self.started_at, 0.0)
        data: dict[str, Any] = {
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
            "concurrency": self.concurrency,
            "rollbacks": self.rollbacks,
            "rate": round(self.delivered / duration, 1) if duration > 0 else None,
            "looked_up": self.looked_up,
            "confirmed": self.confirmed,
            "missing": self.missing,
            "lookup_failed": self.lookup_failed,
            "held": self.held,
            "awaiting_lookup": self.awaiting_lookup,
            "next_lookup_at": self.next_lookup_at,
            "stopped_reason": str(self.stopped_reason),
            "auth_failed": self.stopped_reason.token_refused,
            "outcome": self.outcome,
            "remaining_queued": self.remaining_queued,
            "remaining_due": self.remaining_due,
            "next_attempt_at": self.next_attempt_at,
            "paused_until": self.paused_until,
            "error": self.error,
            "retry_after": self.retry_after,
            "warnings": list(self.warnings),
        }
        if self.recorded_at is not None:
            data["recorded_at"] = self.recorded_at
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FlushRecord:
        """Read a stored record back, whatever version wrote it.

        Missing or mistyped values take their defaults; a `stopped_reason` this version does
        not know reads as "error"; `auth_failed: true` without a token reason (older records)
        reads as "auth_failed".
        """
        values: dict[str, Any] = {}
        for spec in fields(cls):
            value = data.get(spec.name)
            if spec.name in _INTS and _is_number(value):
                values[spec.name] = int(value)
            elif spec.name in _FLOATS and _is_number(value):
                values[spec.name] = float(value)
            elif spec.name == "error" and isinstance(value, str):
                values[spec.name] = value
            elif spec.name == "warnings" and isinstance(value, list):
                values[spec.name] = tuple(str(w) for w in value)
        values["stopped_reason"] = _stop_reason(data)
        return cls(**values)


_INTS = frozenset(
    {
        "requests",
        "sent",
        "delivered",
        "rejected",
        "unattributed",
        "rescheduled",
        "sent_unconfirmed",
        "dead",
        "recovered",
        "concurrency",
        "rollbacks",
        "looked_up",
        "confirmed",
        "missing",
        "lookup_failed",
        "held",
        "awaiting_lookup",
        "remaining_queued",
        "remaining_due",
    }
)
_FLOATS = frozenset(
    {
        "started_at",
        "finished_at",
        "next_attempt_at",
        "paused_until",
        "next_lookup_at",
        "retry_after",
        "recorded_at",
    }
)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _stop_reason(data: Mapping[str, Any]) -> StopReason:
    raw = data.get("stopped_reason")
    reason = StopReason.parse(raw)
    if data.get("auth_failed") is True and (reason is None or not reason.token_refused):
        return StopReason.AUTH_FAILED
    if reason is None:
        return StopReason.DONE if raw is None else StopReason.ERROR
    return reason
