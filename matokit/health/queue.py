"""The queue check: the retry journal's depth, ages, dead letters and the last flush record.

Its metric keys (`QUEUE_METRICS`) are the same in every outcome, with or without a journal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from matokit.durations import format_duration
from matokit.flushrecord import FlushRecord, StopReason
from matokit.health.model import CheckResult, MetricValue, Status
from matokit.health.series import metric_keys
from matokit.health.text import line

if TYPE_CHECKING:
    from matokit.health.runner import HealthRun
    from matokit.health.thresholds import Thresholds
    from matokit.journal import JournalStats

QUEUE_METRICS = metric_keys("queue")
# Known only once a flush has run: None (NaN) before.
_FLUSH_METRICS = ("last_flush_timestamp_seconds", "last_flush_delivered")


def check_queue(run: HealthRun, name: str) -> CheckResult:
    """The retry journal: depth, oldest age, dead letters, unconfirmed, last flush."""
    run.need_settings()
    run.set_stage(name, "reading the journal")
    stats = run.journal_stats()
    if stats is None:
        return CheckResult(
            name,
            Status.OK,
            "no journal yet: nothing queued",
            # Nothing queued, no file, never flushed: the same keys as with a journal.
            metrics={key: None if key in _FLUSH_METRICS else 0 for key in QUEUE_METRICS},
        )
    exactly_once = run.need_settings().exactly_once
    return queue_result(name, stats, run.thresholds, now=run.clock(), exactly_once=exactly_once)


def queue_result(
    name: str, stats: JournalStats, limits: Thresholds, *, now: float, exactly_once: str = "off"
) -> CheckResult:
    """The queue verdict for journal `stats` against `limits`.

    Hits awaiting a lookup are not "unconfirmed": a lookup settles them before any re-send.
    Sites where Matomo refused lookups (exactly-once unavailable) are a WARNING.
    """
    from matokit.journal import EntryState

    depth = stats.queued
    age = stats.oldest_age or 0.0
    unattributed = stats.counts.get(EntryState.UNATTRIBUTED, 0)
    unconfirmed = stats.at_risk
    metrics: dict[str, MetricValue] = {
        "depth": depth,
        "due": stats.due,
        "oldest_age_seconds": round(age, 3),
        "dead_letters": stats.dead,
        "unattributed": unattributed,
        "unconfirmed": unconfirmed,
        "possible_duplicates": stats.delivered_unconfirmed,
        "awaiting_lookup": stats.awaiting_lookup,
        "confirmed_by_lookup": stats.confirmed_by_lookup,
        "file_size_bytes": stats.file_size,
    }
    flush = stats.last_flush
    flush_at = _flush_time(flush)
    metrics["last_flush_timestamp_seconds"] = round(flush_at, 3) if flush_at is not None else None
    metrics["last_flush_delivered"] = FlushRecord.from_json(flush).delivered if flush else None
    crit: list[str] = []
    warn: list[str] = []
    if flush is not None and flush_stopped_on_auth(flush):
        crit.append("the last flush stopped: Matomo rejected the token")
    elif flush is not None and _flush_stopped_on(flush, StopReason.PERMISSION_DENIED):
        warn.append("the last flush stopped: the token lacks access to a site")
    _limit(crit, warn, "queued hits", depth, limits.warn_queue_depth, limits.crit_queue_depth)
    if depth:
        _limit(
            crit,
            warn,
            "oldest queued hit age",
            age,
            limits.warn_queue_age,
            limits.crit_queue_age,
            fmt=format_duration,
        )
    if stats.dead:
        reasons = ", ".join(sorted(r or "?" for r in stats.dead_by_reason)) or "?"
        warn.append(f"{stats.dead} dead letter(s) ({line(reasons, 80)})")
    if unattributed:
        warn.append(f"{unattributed} hit(s) in batches Matomo partly refused (unattributed)")
    if exactly_once != "off":
        warn.extend(
            f"exactly-once unavailable on site {site} ({line(reason, 80)})"
            for site, reason in sorted(stats.lookups_unavailable.items())
        )
    parts = [f"{depth} queued"]
    if depth:
        parts.append(f"oldest {format_duration(age)}")
    parts.append(f"{stats.dead} dead")
    if unconfirmed:
        parts.append(f"{unconfirmed} unconfirmed")
    if stats.awaiting_lookup:
        parts.append(f"{stats.awaiting_lookup} awaiting lookup")
    if flush_at is not None:
        parts.append(f"last flush {format_duration(now - flush_at)} ago ({_flush_outcome(flush)})")
    else:
        parts.append("never flushed")
    facts = ", ".join(parts)
    if crit or warn:
        status = Status.CRITICAL if crit else Status.WARNING
        summary = line("; ".join(crit + warn) + f" ({facts})")
        if any("token" in c for c in crit):
            hint = "Fix the token, then run `matokit queue flush`."
        else:
            hint = "Run `matokit queue status` and `matokit queue flush`; see `queue list --dead`."
            if stats.lookups_unavailable and exactly_once != "off":
                hint += (
                    " Exactly-once needs Live (the visits log) enabled and a token with view"
                    " access; see docs/exactly-once.md."
                )
            if unattributed:
                hint += (
                    " Look the unattributed hits up in Matomo (`queue list --unattributed`),"
                    " then `queue purge --unattributed`."
                )
        return CheckResult(name, status, summary, metrics=metrics, hint=hint)
    return CheckResult(name, Status.OK, facts, metrics=metrics)


def _limit(
    crit: list[str],
    warn: list[str],
    what: str,
    value: float,
    warn_at: float,
    crit_at: float,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
) -> None:
    if value >= crit_at:
        crit.append(f"{what} {fmt(value)} >= {fmt(crit_at)}")
    elif value >= warn_at:
        warn.append(f"{what} {fmt(value)} >= {fmt(warn_at)}")


def _flush_time(flush: Mapping[str, Any] | None) -> float | None:
    return FlushRecord.from_json(flush).recorded_at if flush else None


def _flush_stopped_on(flush: Mapping[str, Any], reason: StopReason) -> bool:
    return FlushRecord.from_json(flush).stopped_reason is reason


def flush_stopped_on_auth(flush: Mapping[str, Any]) -> bool:
    """Whether a recorded flush stopped because Matomo rejected the token (or locked us out)."""
    return FlushRecord.from_json(flush).stopped_reason.token_refused


def _flush_outcome(flush: Mapping[str, Any] | None) -> str:
    if not flush:
        return "?"
    record = FlushRecord.from_json(flush)
    if record.stopped_reason.token_refused:
        return "stopped: token rejected"
    return line(record.outcome, 60)
