"""What the `queue` commands show: status views, flush summaries and entry rows (text or JSON).

Pure functions over journal records; only the standard library at module level, so `queue
status` starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from matokit.sizes import byte_text

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.delivery import FlushResult
    from matokit.errors import FlushInProgressError
    from matokit.flushrecord import StopReason
    from matokit.journal import Entry, JournalStats

STATES = ("pending", "inflight", "sent_unconfirmed", "unattributed", "dead")


def empty_status(settings: Settings) -> dict[str, Any]:
    """The `queue status` view when the profile has no journal yet: all zeros."""
    return {
        "journal": str(settings.journal_path),
        "exists": False,
        "counts": dict.fromkeys(STATES, 0),
        "queued": 0,
        "due": 0,
        "oldest_created_at": None,
        "oldest_age": None,
        "next_attempt_at": None,
        "sent_unconfirmed_total": 0,
        "delivered_unconfirmed": 0,
        "unattributed_by_reason": {},
        "dead_by_reason": {},
        "delivered_keys": 0,
        "file_size": 0,
        "last_flush": None,
        "exactly_once": {
            "mode": settings.exactly_once,
            "awaiting_lookup": 0,
            "lookups_due": 0,
            "next_lookup_at": None,
            "confirmed_by_lookup": 0,
            "key_dimensions": {},
            "lookups_unavailable": {},
        },
        "warnings": [],
    }


def status_view(stats: JournalStats, *, exactly_once: str = "off") -> dict[str, Any]:
    """The `queue status` view (its JSON) of journal `stats`, with warnings for the operator."""
    from matokit.flushrecord import FlushRecord

    counts = {str(k): v for k, v in stats.counts.items()}
    warnings: list[str] = []
    if stats.at_risk:
        warnings.append(
            f"{stats.at_risk} queued hit(s) were sent without an answer: Matomo may "
            "already hold them, so their delivery may count them twice"
        )
    if exactly_once != "off":
        then = "they wait" if exactly_once == "on" else "they are re-sent and may count twice"
        warnings.extend(
            f"exactly-once is unavailable on site {site}: Matomo refused lookups ({reason}); "
            f"after an uncertain send {then}"
            for site, reason in sorted(stats.lookups_unavailable.items())
        )
    if counts.get("unattributed"):
        warnings.append(
            f"{counts['unattributed']} hit(s) are unattributed: Matomo refused part of their "
            "batch without saying which; they are not re-sent (see `queue list --unattributed`; "
            "`queue purge --unattributed` clears them)"
        )
    if stats.dead:
        warnings.append(f"{stats.dead} dead letter(s): see `matokit queue list --dead`")
    if stats.delivered_unconfirmed:
        warnings.append(
            f"{stats.delivered_unconfirmed} delivered hit(s) had an earlier send without an "
            "answer: each may have been counted twice"
        )
    last = FlushRecord.from_json(stats.last_flush) if stats.last_flush else None
    if last is not None and last.stopped_reason.token_refused:
        warnings.append("the last flush stopped: Matomo rejected the token")
    return {
        "journal": str(stats.path),
        "exists": True,
        "counts": counts,
        "queued": stats.queued,
        "due": stats.due,
        "oldest_created_at": stats.oldest_created_at,
        "oldest_age": stats.oldest_age,
        "next_attempt_at": stats.next_attempt_at,
        "sent_unconfirmed_total": stats.sent_unconfirmed_total,
        "delivered_unconfirmed": stats.delivered_unconfirmed,
        "unattributed_by_reason": dict(stats.unattributed_by_reason),
        "dead_by_reason": dict(stats.dead_by_reason),
        "delivered_keys": stats.delivered_keys,
        "file_size": stats.file_size,
        "last_flush": last.to_json() if last is not None else None,
        "exactly_once": {
            "mode": exactly_once,
            "awaiting_lookup": stats.awaiting_lookup,
            "lookups_due": stats.lookups_due,
            "next_lookup_at": stats.next_lookup_at,
            "confirmed_by_lookup": stats.confirmed_by_lookup,
            "key_dimensions": {str(k): v for k, v in sorted(stats.key_dimensions.items())},
            "lookups_unavailable": {
                str(k): v for k, v in sorted(stats.lookups_unavailable.items())
            },
        },
        "warnings": warnings,
    }


def pause_view(settings: Settings, now: float) -> dict[str, Any]:
    """Matomo's pause (Retry-After) in force for the profile: `paused_until` and its details."""
    from matokit.shared import server_pause_for

    pause = server_pause_for(settings, clock=lambda: now).current()
    return {
        "paused_until": pause.until if pause else None,
        "pause": pause.as_dict(now) if pause else None,
    }


def print_status(view: dict[str, Any], now: float) -> None:
    """Print a status view as a table on stdout and its warnings on stderr."""
    from matokit.cli.output import emit_table, say
    from matokit.durations import format_duration

    rows: list[dict[str, Any]] = [{"item": k, "value": v} for k, v in view["counts"].items()]
    rows.append({"item": "due now", "value": view["due"]})
    age = view["oldest_age"]
    rows.append({"item": "oldest queued", "value": "-" if age is None else format_duration(age)})
    rows.append({"item": "next attempt", "value": when_text(view["next_attempt_at"], now)})
    rows.append({"item": "matomo pause", "value": _pause_text(view.get("pause"), now)})
    rows += _exactly_once_rows(view["exactly_once"], now)
    last = view["last_flush"]
    if last:
        when = format_duration(now - float(last.get("recorded_at", now))) + " ago"
        rows.append({"item": "last flush", "value": f"{when}: {last.get('outcome', '?')}"})
    else:
        rows.append({"item": "last flush", "value": "never"})
    rows.append({"item": "journal size", "value": byte_text(view["file_size"])})
    rows.append({"item": "journal", "value": view["journal"]})
    emit_table(rows, ["item", "value"], headers={"item": "journal", "value": "now"})
    for warning in view["warnings"]:
        say(f"matokit: warning: {warning}")


def _exactly_once_rows(view: dict[str, Any], now: float) -> list[dict[str, Any]]:
    """Rows of `queue status` for exactly-once: the mode and sites, what awaits a lookup."""
    sites = [
        f"site {site} (dimension {dim})" for site, dim in view["key_dimensions"].items() if dim
    ]
    mode = view["mode"]
    where = ", ".join(sites) if sites else "no site has a matokit_key dimension"
    rows: list[dict[str, Any]] = [
        {"item": "exactly-once", "value": mode if mode == "off" else f"{mode}: {where}"}
    ]
    if view["awaiting_lookup"] or mode != "off":
        waiting = view["awaiting_lookup"]
        nxt = when_text(view["next_lookup_at"], now) if waiting else "-"
        rows.append({"item": "awaiting lookup", "value": f"{waiting} (next {nxt})"})
        rows.append({"item": "confirmed by lookup", "value": view["confirmed_by_lookup"]})
    return rows


def _pause_text(pause: dict[str, Any] | None, now: float) -> str:
    """The pause row: "-", or "until 2026-01-31 12:00:05 UTC (in 3s, HTTP 429)"."""
    if not pause:
        return "-"
    from matokit.times import utc_text

    said = f", HTTP {pause['status']}" if pause.get("status") else ""
    return f"until {utc_text(pause['until'])} ({when_text(pause['until'], now)}{said})"


def when_text(moment: float | None, now: float) -> str:
    """`moment` relative to `now`: "-", "now (due)" or "in 5m"."""
    from matokit.durations import format_duration

    if moment is None:
        return "-"
    if moment <= now:
        return "now (due)"
    return "in " + format_duration(moment - now)


def _no_flush(reason: StopReason, stats: JournalStats | None = None) -> FlushResult:
    """The record of a flush that did not run (`reason`), so `--format json` has one schema."""
    import time

    from matokit.delivery import FlushResult

    now = time.time()
    result = FlushResult(started_at=now, finished_at=now, stopped_reason=reason)
    if stats is not None:
        result.remaining_queued = stats.queued
        result.remaining_due = stats.due
        result.next_attempt_at = stats.next_attempt_at
    return result


def say_waiting(holder: str, timeout: float | None) -> None:
    """`queue flush --wait`: who holds the lock, before waiting for it (stderr)."""
    from matokit.cli.output import say
    from matokit.durations import format_duration

    who = f" ({holder})" if holder else ""
    if timeout is None:
        limit = ""
    else:
        limit = f", for at most {format_duration(timeout) if timeout >= 1 else f'{timeout:g}s'}"
    say(f"matokit: another queue flush holds the lock{who}; waiting for it to finish{limit}.")


def busy_output(exc: FlushInProgressError, stats: JournalStats | None, fmt: str) -> int:
    """Report a flush that did not run because another held the lock; return the exit code.

    0 when it did not wait (the running flush does the work), 75 when `--wait-timeout` ran out.
    """
    from matokit.cli.exit import exit_code_for
    from matokit.cli.output import emit_json, say
    from matokit.errors import FlushWaitTimeoutError
    from matokit.flushrecord import StopReason

    timed_out = isinstance(exc, FlushWaitTimeoutError)
    result = _no_flush(StopReason.WAIT_TIMEOUT if timed_out else StopReason.FLUSH_RUNNING, stats)
    result.error = exc
    if fmt == "json":
        emit_json(result.record().to_json())
    if not timed_out:
        say(f"matokit: {exc.message}; nothing to do.")
    else:
        say(f"matokit: error: {exc.message}")
        if exc.hint:
            say(f"  hint: {exc.hint}")
    return int(exit_code_for(exc))


def flush_output(result: FlushResult | None, fmt: str) -> None:
    """Report a flush (None: there was no journal) as JSON on stdout and a summary on stderr."""
    from matokit.cli.output import emit_json, say
    from matokit.flushrecord import StopReason

    if result is None:
        if fmt == "json":
            emit_json(_no_flush(StopReason.NOTHING_DUE).record().to_json())
        else:
            say("matokit: the journal is empty: nothing to flush.")
        return
    if fmt == "json":
        emit_json(result.record().to_json())
    pace = ""
    if result.delivered and result.finished_at > result.started_at:
        rate = result.delivered / (result.finished_at - result.started_at)
        lanes = f" on up to {result.concurrency} lanes" if result.concurrency > 1 else ""
        pace = f" ({rate:,.0f} hits/s{lanes})"
    if result.rollbacks:
        pace += f", {result.rollbacks} rolled-back bulk(s) sent again"
    line = (
        f"matokit: flush: {result.delivered} delivered in {result.requests} request(s){pace}"
        f", {result.rejected} rejected, {result.unattributed} unattributed"
        f", {result.rescheduled} rescheduled, {result.dead} dead"
        f"; {result.remaining_queued} queued ({result.remaining_due} due)."
    )
    if result.stopped_reason is StopReason.NOTHING_DUE and not result.requests:
        line = f"matokit: flush: nothing due ({result.remaining_queued} queued)."
    say(line)
    if result.looked_up:
        say(lookup_text("flush", result))
    if result.recovered:
        say(
            f"matokit: recovered {result.recovered} hit(s) a stopped flusher had claimed; "
            "they count as sent without an answer."
        )
    say_flush_problems(result)


def lookup_text(what: str, result: FlushResult) -> str:
    """One line on what the lookups of a flush or `queue reconcile` found."""
    return (
        f"matokit: {what}: looked up {result.looked_up} uncertain hit(s) in Matomo: "
        f"{result.confirmed} already stored (not sent again), {result.missing} missing "
        f"(sent again), {result.lookup_failed} lookup(s) failed (asked again later)."
    )


def reconcile_output(result: FlushResult | None, fmt: str) -> None:
    """Report `queue reconcile`: its record as JSON on stdout, a summary on stderr."""
    from matokit.cli.output import emit_json, say
    from matokit.flushrecord import StopReason

    if result is None:
        result = _no_flush(StopReason.DONE)
    if fmt == "json":
        emit_json(result.record().to_json())
    if result.looked_up or result.lookup_failed:
        say(lookup_text("reconcile", result))
    else:
        say("matokit: reconcile: no uncertain hit has settled yet: nothing to look up.")
    if result.awaiting_lookup:
        from matokit.times import utc_text

        nxt = result.next_lookup_at
        when = f"; the next settles at {utc_text(nxt)}" if nxt is not None else ""
        say(f"matokit: {result.awaiting_lookup} hit(s) still await a lookup{when}.")
    say_flush_problems(result)


def say_flush_problems(result: FlushResult) -> None:
    """A flush's warnings and why it stopped early, on stderr (queue flush, track import)."""
    from matokit.cli.output import say
    from matokit.flushrecord import StopReason

    for warning in result.warnings:
        say(f"matokit: warning: {warning}")
    if result.stopped_early and result.stopped_reason is not StopReason.INTERRUPTED:
        # (a signal's stop is told by stopped_text)
        error = result.error
        say(
            f"matokit: the flush stopped: {error or result.stopped_reason}",
            hint=error.hint if error is not None else None,
        )


def stopped_text(signum: int, queued: int, due: int | None = None) -> str:
    """The line after a graceful stop on a signal: nothing cut short, and what is left."""
    from matokit.stopping import signal_name

    left = f"{queued} hit(s) stay queued" + (f" ({due} due)" if due is not None else "")
    return (
        f"matokit: stopped by {signal_name(signum)}: no request was cut short (every answer "
        f"is recorded); {left}; `matokit queue flush` sends them."
    )


def nothing_text(dead: bool, unattributed: bool) -> str:
    """What `queue list` says when it found no entries of the kinds asked for."""
    if dead and unattributed:
        return "no dead letters or unattributed hits"
    if unattributed:
        return "no unattributed hits"
    return "no dead letters" if dead else "nothing queued"


def entry_view(entry: Entry) -> dict[str, Any]:
    """An entry as JSON for `queue list` and `queue export` (never a token)."""
    params = {k: v for k, v in entry.params.items() if k != "token_auth"}
    return {
        "id": entry.id,
        "key": entry.key,
        "state": str(entry.state),
        "params": params,
        "created_at": entry.created_at,
        "enqueued_at": entry.enqueued_at,
        "attempts": entry.attempts,
        "next_attempt_at": entry.next_attempt_at,
        "last_error": entry.last_error,
        "reason": entry.reason,
        "sent_unconfirmed": entry.sent_unconfirmed,
        "awaiting_lookup": entry.verify,
        "key_dimension": entry.dimension,
        "sent_at": entry.sent_at,
    }


def entry_row(entry: Entry, now: float) -> dict[str, Any]:
    """An entry as a `queue list` table row."""
    from matokit.durations import format_duration

    detail = entry.reason or entry.last_error or ""
    return {
        "id": entry.id,
        "state": str(entry.state),
        "site": entry.params.get("idsite", ""),
        "age": format_duration(now - entry.created_at),
        "attempts": entry.attempts,
        "next": when_text(entry.next_attempt_at, now) if entry.state != "dead" else "-",
        "detail": detail if len(detail) <= 80 else detail[:79] + "\u2026",
    }
