"""The flush record: one schema written and read back, tolerant of older journals."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from matokit.delivery import FlushResult
from matokit.errors import AuthenticationError, RateLimitedError
from matokit.flushrecord import FlushRecord, StopReason

README = Path(__file__).resolve().parent.parent / "README.md"

# The keys `queue flush --format json` prints and the journal keeps (README documents them):
# renaming or dropping one must fail here, not silently in `queue status` or `health`.
KEYS = {
    "started_at",
    "finished_at",
    "duration",
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
    "rate",
    "looked_up",
    "confirmed",
    "missing",
    "lookup_failed",
    "held",
    "awaiting_lookup",
    "next_lookup_at",
    "stopped_reason",
    "auth_failed",
    "outcome",
    "remaining_queued",
    "remaining_due",
    "next_attempt_at",
    "paused_until",
    "error",
    "retry_after",
    "warnings",
}


def test_flush_record_keys_are_the_documented_ones() -> None:
    assert set(FlushRecord().to_json()) == KEYS
    assert set(FlushRecord(recorded_at=5.0).to_json()) == KEYS | {"recorded_at"}


def test_every_stop_reason_is_documented_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("`stopped_reason` is")
    documented = set(re.findall(r"`([a-z_]+)`", text[start : start + 800]))
    assert {str(reason) for reason in StopReason} <= documented


def test_flush_record_reads_back_what_it_wrote() -> None:
    result = FlushResult(started_at=100.0, finished_at=103.5, delivered=7, remaining_due=2)
    result.stopped_reason = StopReason.RATE_LIMITED
    result.error = RateLimitedError("Matomo answered 429", retry_after=30)
    result.paused_until = 130.0
    result.warnings.append("careful")
    record = result.record()
    stored = {**record.to_json(), "recorded_at": 104.0}
    back = FlushRecord.from_json(stored)
    assert back == FlushRecord(**{**record.__dict__, "recorded_at": 104.0})
    assert back.to_json() == stored
    assert stored["stopped_reason"] == "rate_limited" and stored["retry_after"] == 30.0
    assert stored["error"] == "Matomo answered 429"
    assert stored["outcome"] == "stopped (rate limited) after 7 delivered, 2 due left"


def test_a_refused_token_is_one_reason_with_one_outcome() -> None:
    result = FlushResult(started_at=1.0, stopped_reason=StopReason.AUTH_FAILED)
    result.error = AuthenticationError("Unable to authenticate")
    data = result.record().to_json()
    assert (data["auth_failed"], data["outcome"]) == (True, "stopped: Matomo rejected the token")
    assert result.refused_access and result.stopped_early


# Records as older versions (or damaged journals) left them -> what they read as.
OLD_RECORDS: list[tuple[dict[str, Any], StopReason, bool]] = [
    ({}, StopReason.DONE, False),
    ({"delivered": 3}, StopReason.DONE, False),
    ({"stopped_reason": "auth_failed", "auth_failed": True}, StopReason.AUTH_FAILED, True),
    ({"stopped_reason": "locked_out", "auth_failed": False}, StopReason.LOCKED_OUT, True),
    ({"auth_failed": True}, StopReason.AUTH_FAILED, True),
    ({"stopped_reason": "rate_limited", "auth_failed": True}, StopReason.AUTH_FAILED, True),
    ({"stopped_reason": "permission_denied"}, StopReason.PERMISSION_DENIED, False),
    ({"stopped_reason": "a_reason_from_the_future"}, StopReason.ERROR, False),
    ({"stopped_reason": 7, "delivered": "many"}, StopReason.ERROR, False),
]


@pytest.mark.parametrize(("stored", "reason", "token_refused"), OLD_RECORDS)
def test_flush_record_from_json_tolerates_older_and_partial_records(
    stored: dict[str, Any], reason: StopReason, token_refused: bool
) -> None:
    record = FlushRecord.from_json(stored)
    assert record.stopped_reason is reason
    assert record.stopped_reason.token_refused is token_refused
    assert set(record.to_json()) == KEYS


def test_flush_record_from_json_ignores_mistyped_values() -> None:
    record = FlushRecord.from_json(
        {
            "delivered": True,
            "dead": 2.0,
            "next_attempt_at": "soon",
            "error": {"x": 1},
            "warnings": ["a", 3],
            "recorded_at": 12,
        }
    )
    assert (record.delivered, record.dead, record.next_attempt_at) == (0, 2, None)
    assert (record.error, record.warnings, record.recorded_at) == (None, ("a", "3"), 12.0)
    assert record.outcome == "0 delivered"
