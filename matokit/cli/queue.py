"""`matokit queue status|flush|reconcile|list|retry-dead|retry-unattributed|purge|export|migrate`.

Read-only commands never create a journal: without one, `status` shows zeros and `list`/`export`
print nothing. Only typer and the standard library at module level.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import typer

from matokit.cli.context import state
from matokit.cli.flushopts import CONCURRENCY
from matokit.cli.formats import TextFormat
from matokit.cli.queue_view import (
    busy_output,
    empty_status,
    entry_row,
    entry_view,
    flush_output,
    nothing_text,
    pause_view,
    print_status,
    reconcile_output,
    say_waiting,
    status_view,
    stopped_text,
)

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.journal import Entry

app = typer.Typer(help="Inspect, flush and repair the retry journal.", no_args_is_help=True)

FORMAT = typer.Option(TextFormat.TEXT, "--format", help="Output: text or json.")


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
    from matokit.journal.opening import journal_exists, open_journal

    if not create and not journal_exists(settings):
        return None
    return open_journal(settings)


# --- status ---------------------------------------------------------------------------------


@app.command("status")
def status(ctx: typer.Context, fmt: TextFormat = FORMAT) -> None:
    """Counts by state, oldest queued hit, next attempt, the last flush, warnings."""
    settings = state(ctx).settings()
    journal = _journal(settings)
    now = time.time()
    if journal is None:
        view = empty_status(settings)
    else:
        with journal:
            view = status_view(journal.stats(now=now), exactly_once=settings.exactly_once)
    view.update(pause_view(settings, now))
    if fmt == "json":
        from matokit.cli.output import emit_json

        emit_json(view)
        return
    print_status(view, now)


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
    wait_timeout: str | None = typer.Option(
        None,
        "--wait-timeout",
        help="Wait at most this long for a running flush (e.g. 5m; implies --wait), then exit 75.",
    ),
    concurrency: str | None = CONCURRENCY,
    fmt: TextFormat = FORMAT,
) -> None:
    """Send queued hits that are due (one flusher per profile)."""
    from matokit.cli.exit import flush_exit_code
    from matokit.cli.output import progress, say
    from matokit.delivery import Delivery, FlushOptions
    from matokit.errors import FlushInProgressError

    timeout = _duration(wait_timeout, "--wait-timeout")
    settings = state(ctx).settings()
    options = FlushOptions.from_settings(
        settings,
        batch_size=batch_size,
        max_time=_duration(max_time, "--max-time"),
        max_events=max_events,
        include_not_due=include_all,
    )
    if concurrency is not None:
        from dataclasses import replace

        from matokit.delivery.lanes import parse_concurrency

        options = replace(options, concurrency=parse_concurrency(concurrency))
    from matokit.journal.opening import journal_exists

    if not journal_exists(settings):
        flush_output(None, fmt)
        return
    from matokit.stopping import stop_on_signals

    with Delivery.for_settings(settings) as delivery, stop_on_signals() as stop:
        before = delivery.stats()
        total = (before.queued if include_all else before.due) if before is not None else 0
        try:
            with progress(total or None, "Flushing") as advance:
                result = delivery.flush_locked(
                    options,
                    wait=wait or timeout is not None,
                    wait_timeout=timeout,
                    on_wait=lambda holder: say_waiting(holder, timeout),
                    on_progress=advance,
                    stop=stop,
                )
        except FlushInProgressError as exc:
            raise typer.Exit(busy_output(exc, before, fmt)) from None
        flush_output(result, fmt)
        if stop.signum is not None:
            from matokit.cli.exit import exit_code_for_signal

            say(stopped_text(stop.signum, result.remaining_queued, result.remaining_due))
            raise typer.Exit(int(exit_code_for_signal(stop.signum)))
    raise typer.Exit(flush_exit_code(result))


# --- reconcile --------------------------------------------------------------------------------


@app.command("reconcile")
def reconcile(
    ctx: typer.Context,
    wait: bool = typer.Option(
        False, "--wait", help="Also wait for uncertain hits still settling, then look them up."
    ),
    max_time: str | None = typer.Option(
        None, "--max-time", help="With --wait: wait at most this long (default: settle time + 1m)."
    ),
    fmt: TextFormat = FORMAT,
) -> None:
    """Ask Matomo which uncertain hits it already holds (exactly-once); send nothing."""
    from matokit.cli.exit import reconcile_exit_code
    from matokit.delivery import Delivery, FlushOptions
    from matokit.errors import FlushInProgressError

    settings = state(ctx).settings()
    limit = _duration(max_time, "--max-time")
    options = FlushOptions.from_settings(settings)
    from matokit.journal.opening import journal_exists

    if not journal_exists(settings):
        reconcile_output(None, fmt)
        return
    from matokit.stopping import stop_on_signals

    waited = (limit if limit is not None else settings.settle + 60.0) if wait else None
    with Delivery.for_settings(settings) as delivery, stop_on_signals() as stop:
        try:
            result = delivery.reconcile_locked(options, wait=waited, stop=stop)
        except FlushInProgressError as exc:
            from matokit.cli.output import say

            say(f"matokit: {exc.message}: that flush looks the hits up itself.")
            return
        reconcile_output(result, fmt)
        if stop.signum is not None:
            from matokit.cli.exit import exit_code_for_signal

            raise typer.Exit(int(exit_code_for_signal(stop.signum)))
    raise typer.Exit(reconcile_exit_code(result, waited=wait))


# --- migrate ----------------------------------------------------------------------------------


@app.command("migrate")
def migrate(
    ctx: typer.Context,
    to: str = typer.Option(
        ...,
        "--to",
        metavar="TARGET",
        help="redis://HOST:PORT/DB, rediss://..., unix:///PATH, sqlite (the profile's file) or "
        "sqlite:PATH.",
    ),
    fmt: TextFormat = FORMAT,
) -> None:
    """Move the journal (every hit with its history, delivered keys, flush records) to Redis or
    SQLite; safe to run again after a crash; refused while a flush runs."""
    from matokit.cli.exit import exit_code_for_signal, migrate_exit_code
    from matokit.cli.migrate_view import migrate_output
    from matokit.cli.output import progress, say
    from matokit.errors import FlushInProgressError
    from matokit.journal.migrate import migrate_profile
    from matokit.stopping import stop_on_signals

    settings = state(ctx).settings()
    with stop_on_signals() as stop, progress(None, "Migrating") as advance:
        try:
            result = migrate_profile(settings, to, stop=stop, on_progress=advance)
        except FlushInProgressError as exc:
            say(f"matokit: {exc.message}: nothing was moved.", hint="Run it again once it ends.")
            raise typer.Exit(migrate_exit_code(None)) from None
    migrate_output(result, fmt, settings=settings, to=to)
    if stop.signum is not None:
        raise typer.Exit(int(exit_code_for_signal(stop.signum)))
    raise typer.Exit(migrate_exit_code(result))


# --- list / export ----------------------------------------------------------------------------

DEAD_INSTEAD = typer.Option(False, "--dead", help="Dead letters instead of queued hits.")
UNATTRIBUTED_INSTEAD = typer.Option(
    False, "--unattributed", help="Unattributed hits instead (with --dead: both)."
)


@app.command("list")
def list_command(
    ctx: typer.Context,
    dead: bool = DEAD_INSTEAD,
    unattributed: bool = UNATTRIBUTED_INSTEAD,
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many entries."),
    fmt: TextFormat = FORMAT,
) -> None:
    """List queued hits (pending, inflight, sent_unconfirmed, unattributed), oldest first."""
    from matokit.cli.output import emit_json, emit_table

    settings = state(ctx).settings()
    journal = _journal(settings)
    entries: list[Entry] = []
    short_ids: dict[str, str] = {}
    if journal is not None:
        with journal:
            entries = journal.entries(states=_states(dead, unattributed), limit=limit)
            if fmt != "json":
                short_ids = journal.short_ids([e.id for e in entries])
    now = time.time()
    if fmt == "json":
        emit_json([entry_view(e) for e in entries])
        return
    if not entries:
        from matokit.cli.output import say

        say(f"matokit: {nothing_text(dead, unattributed)}.")
        return
    rows = [{**entry_row(e, now), "id": short_ids[e.id]} for e in entries]
    emit_table(
        rows,
        ["id", "state", "site", "age", "attempts", "next", "detail"],
        numeric=["attempts"],
        whole=["id", "state"],
    )


@app.command("export")
def export(
    ctx: typer.Context,
    dead: bool = DEAD_INSTEAD,
    unattributed: bool = UNATTRIBUTED_INSTEAD,
) -> None:
    """Print journal entries as JSON Lines (token-free parameters), oldest first."""
    from matokit.cli.output import emit_ndjson

    settings = state(ctx).settings()
    journal = _journal(settings)
    if journal is None:
        return
    with journal:
        states = _states(dead, unattributed)
        emit_ndjson(entry_view(e) for e in journal.iter_entries(states=states))


def _states(dead: bool, unattributed: bool) -> list[Any]:
    """Dead and/or unattributed entries when asked for, else every entry that is not dead."""
    from matokit.journal import EntryState

    chosen = [EntryState.DEAD] if dead else []
    if unattributed:
        chosen.append(EntryState.UNATTRIBUTED)
    return chosen or [s for s in EntryState if s is not EntryState.DEAD]


# --- repair ------------------------------------------------------------------------------------

DOUBLE_COUNT_WARNING = (
    "Matomo counted part of the batch these hits came in and may already hold some of them: "
    "each one it holds is counted twice once sent again"
)


@app.command("retry-dead")
def retry_dead(
    ctx: typer.Context,
    ids: list[str] | None = typer.Argument(None, metavar="[ID]...", help="Dead letters to retry."),
    retry_all: bool = typer.Option(False, "--all", help="Retry every dead letter."),
    fmt: TextFormat = FORMAT,
) -> None:
    """Make dead letters due again (attempts reset): after fixing what killed them."""
    _retry(ctx, ids, retry_all=retry_all, fmt=fmt, unattributed=False)


@app.command("retry-unattributed")
def retry_unattributed(
    ctx: typer.Context,
    ids: list[str] | None = typer.Argument(
        None, metavar="[ID]...", help="Unattributed hits to send again."
    ),
    retry_all: bool = typer.Option(False, "--all", help="Retry every unattributed hit."),
    fmt: TextFormat = FORMAT,
) -> None:
    """Send unattributed hits again, once Matomo shows them missing: any it holds counts twice."""
    _retry(ctx, ids, retry_all=retry_all, fmt=fmt, unattributed=True)


def _retry(
    ctx: typer.Context, ids: list[str] | None, *, retry_all: bool, fmt: str, unattributed: bool
) -> None:
    from matokit.cli.output import emit_json, say

    what = "unattributed hit" if unattributed else "dead letter"
    if retry_all == bool(ids):
        raise typer.BadParameter(f"give {what} ids, or --all (not both)", param_hint="ID")
    settings = state(ctx).settings()
    journal = _journal(settings)
    count = 0
    entry_state = "unattributed" if unattributed else "dead"
    if journal is None and ids:
        from matokit.journal.lookup import unknown_without_journal

        raise unknown_without_journal(ids, state=entry_state)
    if journal is not None:
        with journal:
            chosen = None if retry_all else journal.match_ids(ids or [], state=entry_state)
            count = (
                journal.retry_unattributed(chosen) if unattributed else journal.retry_dead(chosen)
            )
    if unattributed and count:
        say(f"matokit: warning: {DOUBLE_COUNT_WARNING}.")
    if fmt == "json":
        emit_json({"retried": count})
    else:
        say(f"matokit: {count} {what}(s) made due again; `matokit queue flush` sends them.")


@app.command("purge")
def purge(
    ctx: typer.Context,
    dead: bool = typer.Option(False, "--dead", help="Delete dead letters."),
    unattributed: bool = typer.Option(
        False,
        "--unattributed",
        help="Delete unattributed hits; their keys stay remembered for the dedup window.",
    ),
    older_than: str | None = typer.Option(
        None, "--older-than", help="Only hits older than this (their hit time; e.g. 30d)."
    ),
    fmt: TextFormat = FORMAT,
) -> None:
    """Delete dead letters and/or unattributed hits for good (queued hits are never purged)."""
    from matokit.cli.output import emit_json, say

    if not (dead or unattributed):
        raise typer.BadParameter(
            "only dead letters and unattributed hits can be purged: pass --dead, "
            "--unattributed or both",
            param_hint="--dead/--unattributed",
        )
    age = _duration(older_than, "--older-than")
    settings = state(ctx).settings()
    journal = _journal(settings)
    counts = {"dead": 0} if dead else {}
    if unattributed:
        counts["unattributed"] = 0
    if journal is not None:
        with journal:
            if dead:
                counts["dead"] = journal.purge_dead(older_than=age)
            if unattributed:
                counts["unattributed"] = journal.purge_unattributed(older_than=age)
    if fmt == "json":
        emit_json({"purged": sum(counts.values()), **counts})
        return
    if dead:
        say(f"matokit: {counts['dead']} dead letter(s) purged.")
    if unattributed:
        say(
            f"matokit: {counts['unattributed']} unattributed hit(s) purged; Matomo may hold "
            "them, so their keys stay remembered for the dedup window (a re-run import skips them)."
        )
