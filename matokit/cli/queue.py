"""`matokit queue status|flush|list|retry-dead|purge|export`: the retry journal.

Read-only commands never create a journal: without one, `status` shows zeros and `list`/`export`
print nothing. Only typer and the standard library at module level.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import typer

from matokit.cli import state

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.delivery import FlushResult
    from matokit.journal import Entry, JournalStats

app = typer.Typer(help="Inspect, flush and repair the retry journal.", no_args_is_help=True)

FORMATS = ("text", "json")
FORMAT = typer.Option("text", "--format", help="Output: text or json.")
STATES = ("pending", "inflight", "sent_unconfirmed", "unattributed", "dead")


def _check_format(value: str) -> str:
    if value not in FORMATS:
        raise typer.BadParameter(f"must be one of: {', '.join(FORMATS)}", param_hint="--format")
    return value


def _duration(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    from matokit.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _journal(settings: Settings, *, create: bool = False) -> Any:
    """The profile's journal, or None when it does not exist and `create` is False."""
    path = settings.journal_path
    if not create and not path.exists():
        return None
    from matokit.journal import Journal

    return Journal(path, dedup_window=float(settings.dedup_window))


# --- status ---------------------------------------------------------------------------------


@app.command("status")
def status(ctx: typer.Context, fmt: str = FORMAT) -> None:
    """Counts by state, oldest queued hit, next attempt, the last flush, warnings."""
    _check_format(fmt)
    settings = state(ctx).settings()
    journal = _journal(settings)
    now = time.time()
    if journal is None:
        view = _empty_status(settings)
    else:
        with journal:
            view = _status_view(journal.stats(now=now))
    if fmt == "json":
        from matokit.cli.output import emit_json

        emit_json(view)
        return
    _print_status(view, now)


def _empty_status(settings: Settings) -> dict[str, Any]:
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
        "warnings": [],
    }


def _status_view(stats: JournalStats) -> dict[str, Any]:
    counts = {str(k): v for k, v in stats.counts.items()}
    warnings: list[str] = []
    if counts.get("sent_unconfirmed"):
        warnings.append(
            f"{counts['sent_unconfirmed']} queued hit(s) were sent without an answer: Matomo may "
            "already hold them, so their delivery may count them twice"
        )
    if counts.get("unattributed"):
        warnings.append(
            f"{counts['unattributed']} hit(s) are unattributed: Matomo refused part of their "
            "batch without saying which; they are not re-sent (see `queue list`)"
        )
    if stats.dead:
        warnings.append(f"{stats.dead} dead letter(s): see `matokit queue list --dead`")
    if stats.delivered_unconfirmed:
        warnings.append(
            f"{stats.delivered_unconfirmed} delivered hit(s) had an earlier send without an "
            "answer: each may have been counted twice"
        )
    last = stats.last_flush
    if last and last.get("auth_failed"):
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
        "last_flush": dict(last) if last else None,
        "warnings": warnings,
    }


def _print_status(view: dict[str, Any], now: float) -> None:
    from matokit.cli.output import emit_table, say
    from matokit.durations import format_duration

    rows: list[dict[str, Any]] = [{"item": k, "value": v} for k, v in view["counts"].items()]
    rows.append({"item": "due now", "value": view["due"]})
    age = view["oldest_age"]
    rows.append({"item": "oldest queued", "value": "-" if age is None else format_duration(age)})
    rows.append({"item": "next attempt", "value": _when(view["next_attempt_at"], now)})
    last = view["last_flush"]
    if last:
        when = format_duration(now - float(last.get("recorded_at", now))) + " ago"
        rows.append({"item": "last flush", "value": f"{when}: {last.get('outcome', '?')}"})
    else:
        rows.append({"item": "last flush", "value": "never"})
    rows.append({"item": "journal size", "value": _size(view["file_size"])})
    rows.append({"item": "journal", "value": view["journal"]})
    emit_table(rows, ["item", "value"], headers={"item": "journal", "value": "now"})
    for warning in view["warnings"]:
        say(f"matokit: warning: {warning}")


def _when(moment: float | None, now: float) -> str:
    from matokit.durations import format_duration

    if moment is None:
        return "-"
    if moment <= now:
        return "now (due)"
    return "in " + format_duration(moment - now)


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


# --- flush ------------------------------------------------------------------------------------


@app.command("flush")
def flush(
    ctx: typer.Context,
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, max=10000, help="Hits per bulk request (default 100)."
    ),
    max_time: str | None = typer.Option(
        None, "--max-time", help="Stop claiming new batches after this long (e.g. 5m)."
    ),
    max_events: int | None = typer.Option(
        None, "--max-events", min=1, help="Send at most this many hits."
    ),
    include_all: bool = typer.Option(
        False, "--all", help="Also send hits whose next attempt is not due yet."
    ),
    wait: bool = typer.Option(
        False, "--wait", help="Wait for a running flush to finish instead of exiting."
    ),
    fmt: str = FORMAT,
) -> None:
    """Send queued hits that are due (one flusher per profile)."""
    from matokit.cli.exit import ExitCode
    from matokit.cli.output import progress, say
    from matokit.delivery import Delivery, FlushOptions
    from matokit.errors import FlushInProgressError

    _check_format(fmt)
    settings = state(ctx).settings()
    options = FlushOptions(
        batch_size=batch_size or int(settings.batch_size),
        max_time=_duration(max_time, "--max-time"),
        max_events=max_events,
        include_not_due=include_all,
        max_attempts=int(settings.max_attempts),
        max_age=float(settings.max_age),
    )
    if not settings.journal_path.exists():
        _flush_output(None, fmt)
        return
    with Delivery.for_settings(settings) as delivery:
        before = delivery.stats()
        total = (before.queued if include_all else before.due) if before is not None else 0
        try:
            with progress(total or None, "Flushing") as advance:
                result = delivery.flush_locked(options, wait=wait, on_progress=advance)
        except FlushInProgressError as exc:
            say(f"matokit: {exc.message}; nothing to do.")
            if fmt == "json":
                from matokit.cli.output import emit_json

                emit_json({"stopped_reason": "flush_running", "message": exc.message})
            raise typer.Exit(int(ExitCode.OK)) from None
    _flush_output(result, fmt)
    raise typer.Exit(flush_exit_code(result))


def flush_exit_code(result: FlushResult) -> int:
    """0 when nothing due is left, 75 when hits remain after a stop, 77 on a refused token."""
    from matokit.cli.exit import ExitCode, exit_code_for

    if result.refused_access:
        return int(ExitCode.NOPERM)
    if result.stopped_reason == "error" and result.error_obj is not None:
        from matokit.errors import NotFoundError

        if isinstance(result.error_obj, NotFoundError):
            return int(ExitCode.CONFIG)  # no tracker at that URL: the URL is wrong
        return int(exit_code_for(result.error_obj))
    if result.remaining_due or (result.stopped_early and result.remaining_queued):
        return int(ExitCode.TEMPFAIL)
    return int(ExitCode.OK)


def _flush_output(result: FlushResult | None, fmt: str) -> None:
    from matokit.cli.output import emit_json, say

    if result is None:
        if fmt == "json":
            emit_json({"stopped_reason": "nothing_due", "delivered": 0, "remaining_queued": 0})
        else:
            say("matokit: the journal is empty: nothing to flush.")
        return
    if fmt == "json":
        emit_json(result.record())
    line = (
        f"matokit: flush: {result.delivered} delivered in {result.requests} request(s)"
        f", {result.rejected} rejected, {result.unattributed} unattributed"
        f", {result.rescheduled} rescheduled, {result.dead} dead"
        f"; {result.remaining_queued} queued ({result.remaining_due} due)."
    )
    if result.stopped_reason == "nothing_due" and not result.requests:
        line = f"matokit: flush: nothing due ({result.remaining_queued} queued)."
    say(line)
    if result.recovered:
        say(
            f"matokit: recovered {result.recovered} hit(s) a stopped flusher had claimed; "
            "they count as sent without an answer."
        )
    for warning in result.warnings:
        say(f"matokit: warning: {warning}")
    if result.stopped_early:
        say(f"matokit: the flush stopped: {result.error or result.stopped_reason}")
        if result.error_hint:
            say(f"  hint: {result.error_hint}")


# --- list / export ----------------------------------------------------------------------------


@app.command("list")
def list_command(
    ctx: typer.Context,
    dead: bool = typer.Option(False, "--dead", help="List dead letters instead."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many entries."),
    fmt: str = FORMAT,
) -> None:
    """List queued hits (pending, inflight, sent_unconfirmed, unattributed), oldest first."""
    from matokit.cli.output import emit_json, emit_table

    _check_format(fmt)
    settings = state(ctx).settings()
    journal = _journal(settings)
    entries: list[Entry] = []
    if journal is not None:
        with journal:
            entries = journal.entries(states=_states(dead), limit=limit)
    now = time.time()
    if fmt == "json":
        emit_json([_entry_view(e) for e in entries])
        return
    if not entries:
        from matokit.cli.output import say

        say("matokit: no dead letters." if dead else "matokit: nothing queued.")
        return
    rows = [_entry_row(e, now) for e in entries]
    emit_table(
        rows,
        ["id", "state", "site", "age", "attempts", "next", "detail"],
        numeric=["attempts"],
    )


@app.command("export")
def export(
    ctx: typer.Context,
    dead: bool = typer.Option(False, "--dead", help="Export dead letters instead."),
) -> None:
    """Print journal entries as JSON Lines (token-free parameters), oldest first."""
    from matokit.cli.output import emit_ndjson

    settings = state(ctx).settings()
    journal = _journal(settings)
    if journal is None:
        return
    with journal:
        emit_ndjson(_entry_view(e) for e in journal.iter_entries(states=_states(dead)))


def _states(dead: bool) -> list[Any]:
    from matokit.journal import EntryState

    if dead:
        return [EntryState.DEAD]
    return [s for s in EntryState if s is not EntryState.DEAD]


def _entry_view(entry: Entry) -> dict[str, Any]:
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
    }


def _entry_row(entry: Entry, now: float) -> dict[str, Any]:
    from matokit.durations import format_duration

    detail = entry.reason or entry.last_error or ""
    return {
        "id": entry.id,
        "state": str(entry.state),
        "site": entry.params.get("idsite", ""),
        "age": format_duration(now - entry.created_at),
        "attempts": entry.attempts,
        "next": _when(entry.next_attempt_at, now) if entry.state != "dead" else "-",
        "detail": detail if len(detail) <= 80 else detail[:79] + "\u2026",
    }


# --- repair ------------------------------------------------------------------------------------


@app.command("retry-dead")
def retry_dead(
    ctx: typer.Context,
    ids: list[str] | None = typer.Argument(None, metavar="[ID]...", help="Dead letters to retry."),
    retry_all: bool = typer.Option(False, "--all", help="Retry every dead letter."),
    fmt: str = FORMAT,
) -> None:
    """Make dead letters due again (attempts reset): after fixing what killed them."""
    from matokit.cli.output import emit_json, say

    _check_format(fmt)
    if retry_all == bool(ids):
        raise typer.BadParameter("give dead letter ids, or --all (not both)", param_hint="ID")
    settings = state(ctx).settings()
    journal = _journal(settings)
    count = 0
    if journal is not None:
        with journal:
            count = journal.retry_dead(None if retry_all else list(ids or []))
    if fmt == "json":
        emit_json({"retried": count})
    else:
        say(f"matokit: {count} dead letter(s) made due again; `matokit queue flush` sends them.")


@app.command("purge")
def purge(
    ctx: typer.Context,
    dead: bool = typer.Option(False, "--dead", help="Delete dead letters (required)."),
    older_than: str | None = typer.Option(
        None, "--older-than", help="Only dead letters whose hit is older than this (e.g. 30d)."
    ),
    fmt: str = FORMAT,
) -> None:
    """Delete dead letters for good (queued hits are never purged)."""
    from matokit.cli.output import emit_json, say

    _check_format(fmt)
    if not dead:
        raise typer.BadParameter(
            "only dead letters can be purged: pass --dead", param_hint="--dead"
        )
    age = _duration(older_than, "--older-than")
    settings = state(ctx).settings()
    journal = _journal(settings)
    count = 0
    if journal is not None:
        with journal:
            count = journal.purge_dead(older_than=age)
    if fmt == "json":
        emit_json({"purged": count})
    else:
        say(f"matokit: {count} dead letter(s) purged.")
