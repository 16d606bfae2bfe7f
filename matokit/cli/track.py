"""`matokit track pageview|event|goal|order|import`: send hits now, or journal them for later.

Only typer and the standard library are imported here: `track ... --queue` must start fast and
never load requests. The client is built inside `delivery` only when a hit is sent.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from matokit.cli.context import state
from matokit.cli.flushopts import CONCURRENCY
from matokit.cli.formats import TextFormat

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.delivery import FlushOptions, ImportResult, TrackOutcome
    from matokit.hits import CommonFields, Hit

app = typer.Typer(
    help="Send tracking hits to Matomo now, or queue them durably for `queue flush`.",
    no_args_is_help=True,
)

MAX_INVALID_SHOWN = 100

# Options every hit type takes (typer reads these as defaults; sharing them is safe).
SITE = typer.Option(None, "--site", help="idSite for this hit (default: the global --site).")
VISITOR = typer.Option(None, "--visitor-id", help="Visitor id: exactly 16 hex characters.")
USER = typer.Option(None, "--user-id", help="User id (Matomo's uid).")
AT = typer.Option(
    None, "--at", help="The hit's time: ISO 8601 (UTC unless an offset) or Unix seconds."
)
DIMENSION = typer.Option(
    None, "--dimension", help="Custom dimension N=VALUE (repeatable).", show_default=False
)
PARAM = typer.Option(
    None,
    "--param",
    help="Any other Tracking API parameter KEY=VALUE (repeatable).",
    show_default=False,
)
KEY = typer.Option(
    None,
    "--idempotency-key",
    help="Your key for this hit: re-running the command with it never counts the hit twice.",
)
QUEUE = typer.Option(False, "--queue", help="Only journal the hit; `queue flush` sends it.")

DRY_RUN = typer.Option(False, "--dry-run", help="Print the request (token masked); send nothing.")
FORMAT = typer.Option(
    TextFormat.TEXT, "--format", help="Output: text or json (the outcome on stdout)."
)


# --- the hit commands: each declares its own options, then the common ones ---------------------
#
# Every hit command lists the common options explicitly (sharing the Option constants above), so
# Typer reads plain signatures; `_track` does the rest, given the hit's builder.


@dataclass(frozen=True)
class HitOptions:
    """The options every `track TYPE` command takes, as parsed."""

    site: int | None
    visitor_id: str | None
    user_id: str | None
    at: str | None
    dimension: list[str] | None
    param: list[str] | None
    idempotency_key: str | None
    queue: bool
    dry_run: bool
    fmt: str


@app.command("pageview")
def pageview(
    ctx: typer.Context,
    url: str = typer.Option(..., "--url", help="The page's full URL (not Matomo's)."),
    title: str | None = typer.Option(None, "--title", help="The page title."),
    site: int | None = SITE,
    visitor_id: str | None = VISITOR,
    user_id: str | None = USER,
    at: str | None = AT,
    dimension: list[str] | None = DIMENSION,
    param: list[str] | None = PARAM,
    idempotency_key: str | None = KEY,
    queue: bool = QUEUE,
    dry_run: bool = DRY_RUN,
    fmt: TextFormat = FORMAT,
) -> None:
    """Track a page view."""
    options = HitOptions(
        site=site,
        visitor_id=visitor_id,
        user_id=user_id,
        at=at,
        dimension=dimension,
        param=param,
        idempotency_key=idempotency_key,
        queue=queue,
        dry_run=dry_run,
        fmt=fmt,
    )
    _track(ctx, options, functools.partial(_pageview_hit, url=url, title=title))


@app.command("event")
def event(
    ctx: typer.Context,
    category: str = typer.Option(..., "--category", help="Event category."),
    action: str = typer.Option(..., "--action", help="Event action."),
    name: str | None = typer.Option(None, "--name", help="Event name."),
    value: str | None = typer.Option(None, "--value", help="Event value (a number)."),
    site: int | None = SITE,
    visitor_id: str | None = VISITOR,
    user_id: str | None = USER,
    at: str | None = AT,
    dimension: list[str] | None = DIMENSION,
    param: list[str] | None = PARAM,
    idempotency_key: str | None = KEY,
    queue: bool = QUEUE,
    dry_run: bool = DRY_RUN,
    fmt: TextFormat = FORMAT,
) -> None:
    """Track an event (category and action required)."""
    options = HitOptions(
        site=site,
        visitor_id=visitor_id,
        user_id=user_id,
        at=at,
        dimension=dimension,
        param=param,
        idempotency_key=idempotency_key,
        queue=queue,
        dry_run=dry_run,
        fmt=fmt,
    )
    build = functools.partial(_event_hit, category=category, action=action, name=name, value=value)
    _track(ctx, options, build)


@app.command("goal")
def goal(
    ctx: typer.Context,
    goal_id: str = typer.Option(..., "--goal", help="The goal's id."),
    revenue: str | None = typer.Option(None, "--revenue", help="Revenue of the conversion."),
    site: int | None = SITE,
    visitor_id: str | None = VISITOR,
    user_id: str | None = USER,
    at: str | None = AT,
    dimension: list[str] | None = DIMENSION,
    param: list[str] | None = PARAM,
    idempotency_key: str | None = KEY,
    queue: bool = QUEUE,
    dry_run: bool = DRY_RUN,
    fmt: TextFormat = FORMAT,
) -> None:
    """Track a manual goal conversion."""
    options = HitOptions(
        site=site,
        visitor_id=visitor_id,
        user_id=user_id,
        at=at,
        dimension=dimension,
        param=param,
        idempotency_key=idempotency_key,
        queue=queue,
        dry_run=dry_run,
        fmt=fmt,
    )
    _track(ctx, options, functools.partial(_goal_hit, goal_id=goal_id, revenue=revenue))


@app.command("order")
def order(
    ctx: typer.Context,
    order_id: str = typer.Option(..., "--order-id", help="Order id (Matomo ignores repeats)."),
    revenue: str = typer.Option(..., "--revenue", help="The order's total revenue."),
    item: list[str] | None = typer.Option(
        None, "--item", help="An order line SKU,NAME,PRICE,QTY (repeatable).", show_default=False
    ),
    site: int | None = SITE,
    visitor_id: str | None = VISITOR,
    user_id: str | None = USER,
    at: str | None = AT,
    dimension: list[str] | None = DIMENSION,
    param: list[str] | None = PARAM,
    idempotency_key: str | None = KEY,
    queue: bool = QUEUE,
    dry_run: bool = DRY_RUN,
    fmt: TextFormat = FORMAT,
) -> None:
    """Track an ecommerce order."""
    options = HitOptions(
        site=site,
        visitor_id=visitor_id,
        user_id=user_id,
        at=at,
        dimension=dimension,
        param=param,
        idempotency_key=idempotency_key,
        queue=queue,
        dry_run=dry_run,
        fmt=fmt,
    )
    build = functools.partial(_order_hit, order_id=order_id, revenue=revenue, item=item)
    _track(ctx, options, build)


def _track(
    ctx: typer.Context, options: HitOptions, build: Callable[[int, CommonFields], Hit]
) -> None:
    """What every `track TYPE` command does once its own fields are known."""
    from matokit.cli.exit import command_line_values

    fmt = options.fmt
    settings = state(ctx).settings()
    site_id = settings.require_site(options.site)
    with command_line_values():  # an invalid field given as a flag is a usage error (2)
        dimensions: dict[int | str, str] = {
            number: value
            for number, value in _pairs(options.dimension, "dimension", numbered=True).items()
        }
        common: CommonFields = {
            "visitor_id": options.visitor_id,
            "user_id": options.user_id,
            "dimensions": dimensions,
            "params": _pairs(options.param, "param"),
            "at": options.at,
            "key": options.idempotency_key,
        }
        hit = build(site_id, common)
    if options.dry_run:
        _dry_run(settings, hit, fmt)
        return
    from matokit.delivery import Delivery
    from matokit.errors import HitNotKeptError

    with Delivery.for_settings(settings) as delivery:
        try:
            if options.queue:
                outcome = delivery.queue(hit)
            else:
                settings.require_url()
                outcome = delivery.send(hit)
        except HitNotKeptError as exc:
            _print_unsent(exc.hit_line)
            raise
    raise typer.Exit(_report(outcome, fmt))


# --- the hits: (site_id, common fields, own fields) -> Hit --------------------------------------


def _pageview_hit(site_id: int, common: CommonFields, *, url: str, title: str | None) -> Hit:
    from matokit.hits import pageview as make

    return make(site_id, url=url, title=title, **common)


def _event_hit(
    site_id: int,
    common: CommonFields,
    *,
    category: str,
    action: str,
    name: str | None,
    value: str | None,
) -> Hit:
    from matokit.hits import event as make

    return make(site_id, category=category, action=action, name=name, value=value, **common)


def _goal_hit(site_id: int, common: CommonFields, *, goal_id: str, revenue: str | None) -> Hit:
    from matokit.hits import goal as make

    return make(site_id, goal_id=goal_id, revenue=revenue, **common)


def _order_hit(
    site_id: int, common: CommonFields, *, order_id: str, revenue: str, item: list[str] | None
) -> Hit:
    from matokit.hits import order as make

    items = [_item(text, index) for index, text in enumerate(item or [])]
    return make(site_id, order_id=order_id, revenue=revenue, items=items, **common)


@app.command("import")
def import_command(
    ctx: typer.Context,
    source: str = typer.Argument(..., metavar="FILE|-", help="JSON Lines file, or - for stdin."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, max=10000, help="Hits per bulk request (default 100)."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Validate every line first; send nothing if any is invalid."
    ),
    site: int | None = typer.Option(None, "--site", help="idSite for lines that give none."),
    queue: bool = typer.Option(False, "--queue", help="Only journal the hits; send nothing."),
    concurrency: str | None = CONCURRENCY,
    fmt: TextFormat = FORMAT,
) -> None:
    """Import hits from JSON Lines: journal them in batches, then send them (bulk)."""
    from matokit.cli.exit import import_exit_code
    from matokit.cli.output import PhasedProgress, say

    settings = state(ctx).settings()
    site_id = site if site is not None else settings.site_id
    if not queue:
        settings.require_url()  # exit 78 before anything is read
    from matokit.delivery import Delivery

    shown = [0]

    def invalid(number: int, message: str) -> None:
        shown[0] += 1
        if shown[0] <= MAX_INVALID_SHOWN:
            say(f"matokit: line {number}: {message}")
        elif shown[0] == MAX_INVALID_SHOWN + 1:
            say("matokit: more invalid lines are not shown (see the summary)")

    from matokit.stopping import stop_on_signals

    with (
        _open_source(source) as (stream, size),
        Delivery.for_settings(settings) as delivery,
        stop_on_signals() as stop,
        PhasedProgress(size, "Journaling (bytes)") as bars,
    ):
        result = delivery.import_lines(
            stream,
            site_id=site_id,
            strict=strict,
            flush=None if queue else _flush_options(settings, batch_size, concurrency),
            on_invalid=invalid,
            on_progress=bars.reached,
            on_flush_start=bars.sending,
            on_sent=bars.sent,
            stop=stop,
        )
        bars.close()
        _import_report(result, fmt, queue=queue)
        if stop.signum is not None:
            _import_stopped(result, stop.signum, queue=queue)
    raise typer.Exit(import_exit_code(result, queue=queue))


# --- hit helpers ---------------------------------------------------------------------------------


def _pairs(values: list[str] | None, option: str, *, numbered: bool = False) -> dict[str, str]:
    """`N=VALUE` / `KEY=VALUE` options as a dict; HitValidationError for a malformed one."""
    from matokit.errors import HitValidationError

    pairs: dict[str, str] = {}
    for text in values or []:
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise HitValidationError(
                f"--{option} {text!r} is not {'N' if numbered else 'KEY'}=VALUE.",
                field=option,
                hint=f"write e.g. --{option} {'3=gold' if numbered else 'lang=en'}",
            )
        pairs[name] = value
    return pairs


def _item(text: str, index: int) -> list[str]:
    from matokit.errors import HitValidationError

    fields = next(csv.reader([text], skipinitialspace=True), [])
    if len(fields) != 4:
        raise HitValidationError(
            f"--item {text!r} (items[{index}]) has {len(fields)} fields; it needs "
            "SKU,NAME,PRICE,QTY.",
            field=f"items[{index}]",
            hint="quote a name with commas: --item 'SKU1,\"Shoe, red\",49.90,1'",
        )
    return fields


def _dry_run(settings: Settings, hit: Hit, fmt: str) -> None:
    from matokit.cli.output import emit_json, emit_text
    from matokit.client import dry_run_view, prepare_tracking, render_dry_run

    base_url = settings.url or "https://MATOMO_URL/"
    prepared = prepare_tracking(
        [hit],
        base_url=base_url,
        # Never loaded for a dry run: the mask stands for whatever token would be sent.
        token="***" if settings.has_token() else None,
        queuedtracking=settings.queuedtracking,
    )
    if fmt == "json":
        emit_json({"dry_run": True, "request": dry_run_view(prepared)})
    else:
        emit_text(render_dry_run(prepared))


def _print_unsent(hit_line: str) -> None:
    """A hit neither delivered nor journaled, on stderr for the caller to keep (exit 74): the
    JSON line as is (`track import` takes it back); in json log mode, inside the log object."""
    import json

    from matokit import logs

    if logs.stderr_format() == "json":
        line = logs.json_line(
            "matokit: error: the hit was neither delivered nor queued",
            unsent_hit=json.loads(hit_line),
        )
    else:
        line = hit_line
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _report(outcome: TrackOutcome, fmt: str) -> int:
    """Print the outcome (JSON on stdout, or a line on stderr) and return the exit code."""
    from matokit.cli.exit import ExitCode, track_exit_code
    from matokit.cli.output import emit_json, say
    from matokit.delivery import TrackState

    if fmt == "json":
        emit_json(outcome.as_dict())
    code = track_exit_code(outcome)
    if outcome.state is TrackState.DELIVERED:
        if fmt == "text" and sys.stderr.isatty():
            say("matokit: hit delivered.")
    elif outcome.state is TrackState.DUPLICATE:
        say(f"matokit: duplicate: a hit with this key is {outcome.message}; nothing was sent.")
    elif outcome.state is TrackState.UNCONFIRMED:
        say(f"matokit: warning: sent, but not confirmed: {outcome.message}")
    elif outcome.state is TrackState.REJECTED:
        say(
            f"matokit: error: Matomo rejected the hit: {outcome.message}",
            hint="fix the hit (it was not queued: re-sending it cannot succeed).",
        )
    elif outcome.error is None:
        if fmt == "text" and sys.stderr.isatty():
            say("matokit: hit queued; `matokit queue flush` sends it.")
    else:
        error = outcome.error
        say(f"matokit: {error.message}")
        if outcome.maybe_stored:
            say("matokit: Matomo may have stored it; a re-send may count it twice.")
        if code == ExitCode.TEMPFAIL:
            say("matokit: the hit is queued durably; `matokit queue flush` sends it later.")
        else:
            what = "the token (MATOMO_TOKEN or the token file)"
            if code == ExitCode.CONFIG:
                what = "the Matomo URL (MATOMO_URL or --url)"
            say(
                f"matokit: the hit is queued. Fix {what}, then run `matokit queue flush`.",
                hint=error.hint,
            )
    return int(code)


# --- import implementation ------------------------------------------------------------------------


class _open_source:
    """The import source as a binary stream and its size in bytes (None for a pipe)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.stream: Any = None

    def __enter__(self) -> tuple[Any, int | None]:
        if self.source == "-":
            stream = getattr(sys.stdin, "buffer", None)
            if stream is None:  # a text stream standing in for stdin (tests, embedding)
                return _EncodedLines(sys.stdin), None
            return stream, _size(stream)
        path = Path(self.source).expanduser()
        try:
            self.stream = open(path, "rb")
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {path}: {exc.strerror or exc}", param_hint="FILE"
            ) from None
        return self.stream, _size(self.stream)

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None:
            self.stream.close()


class _EncodedLines(io.RawIOBase):
    """A text stream read as UTF-8 lines (not seekable: --strict spools it)."""

    def __init__(self, text: Any) -> None:
        self.text = text

    def __iter__(self) -> Any:
        return (line.encode("utf-8") for line in self.text)

    def seekable(self) -> bool:
        return False


def _size(stream: Any) -> int | None:
    try:
        info = os.fstat(stream.fileno())
    except (OSError, AttributeError, ValueError):
        return None
    import stat

    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _flush_options(
    settings: Settings, batch_size: int | None, concurrency: str | None
) -> FlushOptions:
    from matokit.delivery import FlushOptions
    from matokit.delivery.lanes import parse_concurrency

    options = FlushOptions.from_settings(settings, batch_size=batch_size)
    if concurrency is not None:
        options = dataclasses.replace(options, concurrency=parse_concurrency(concurrency))
    return options


def _import_report(result: ImportResult, fmt: str, *, queue: bool) -> None:
    from matokit.cli.output import emit_json, say

    data = result.summary()
    if fmt == "json":
        emit_json(data)
    parts = [
        f"{data['read']} read",
        f"{data['sent']} sent",
        f"{data['queued']} queued",
        f"{data['rejected']} rejected",
        f"{data['invalid']} invalid",
        f"{data['duplicates']} skipped as duplicates",
    ]
    flush = result.flush
    if flush is not None and flush.delivered and flush.finished_at > flush.started_at:
        rate = flush.delivered / (flush.finished_at - flush.started_at)
        lanes = f" on up to {flush.concurrency} lanes" if flush.concurrency > 1 else ""
        parts.append(f"sending at {rate:,.0f} hits/s{lanes}")
        if flush.rollbacks:
            parts.append(f"{flush.rollbacks} rolled-back bulk(s) sent again")
    say("matokit: import: " + ", ".join(parts) + ".")
    older = data["older"]
    if any(older[k] for k in ("sent", "dead", "unattributed", "recovered")):
        details = [
            f"{older[key]} {label}"
            for key, label in (
                ("dead", "dead"),
                ("unattributed", "unattributed"),
                ("recovered", "recovered from a stopped flusher"),
            )
            if older[key]
        ]
        say(
            f"matokit: the flush also sent {older['sent']} older queued hit(s)"
            + (f" ({', '.join(details)})" if details else "")
            + f"; {older['queued']} older hit(s) stay queued."
        )
    flush = result.flush
    if result.flush_busy:
        say(f"matokit: {result.flush_busy}: it will send the queued hits.")
    if flush is not None:
        from matokit.cli.queue_view import say_flush_problems

        say_flush_problems(flush)
    if data["queued"] and not queue and not result.interrupted:
        say("matokit: queued hits stay in the journal; `matokit queue flush` sends them.")


def _import_stopped(result: ImportResult, signum: int, *, queue: bool) -> None:
    """The line after a graceful stop on a signal, then the signal's exit code."""
    from matokit.cli.exit import exit_code_for_signal
    from matokit.cli.output import say
    from matokit.cli.queue_view import stopped_text
    from matokit.stopping import signal_name

    if result.interrupted:
        when = "while journaling" if queue else "while journaling, before sending"
        say(
            f"matokit: stopped by {signal_name(signum)} {when}: {result.added} new hit(s) of "
            "this file are queued; re-run the import for the rest (lines already journaled "
            "are skipped as duplicates)."
        )
    else:
        say(stopped_text(signum, result.queued + result.older_queued))
    raise typer.Exit(int(exit_code_for_signal(signum)))
