"""`track access-log`: running it (once, or `--follow`) and rendering what it did.

The summary goes to stderr as lines for people (one per file, then the totals), or to stdout
as one JSON object with `--format json`. Progress bars appear on a terminal only.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from matokit.cli.output import PhasedProgress, say

if TYPE_CHECKING:
    from matokit.accesslog import AccessLogOptions, AccessLogResult, FileSummary
    from matokit.accesslog.follow import BackgroundFlush
    from matokit.config import Settings
    from matokit.delivery import Delivery, FlushOptions


def run_files(
    settings: Settings,
    options: AccessLogOptions,
    names: Sequence[str],
    *,
    flush: FlushOptions | None,
    fmt: str,
) -> int:
    """One run over `names`; returns the exit code."""
    from matokit.accesslog import AccessLogImport
    from matokit.stopping import stop_on_signals

    total = _total_size(names)
    with contextlib.ExitStack() as stack:
        delivery = None if options.dry_run else stack.enter_context(_delivery(settings))
        stop = stack.enter_context(stop_on_signals())
        bars = stack.enter_context(PhasedProgress(total, "Reading (bytes)"))
        run = stack.enter_context(
            AccessLogImport(
                options,
                delivery=delivery,
                client=_client_factory(settings, delivery),
                data_dir=settings.data_dir,
                stop=stop,
                on_progress=bars.reached,
            )
        )
        run.prepare()
        run.run(names, stdin=stdin_stream() if "-" in names else None)
        result = run.finish(flush, on_flush_start=bars.sending, on_sent=bars.sent)
        bars.close()
        return render(result, options, fmt=fmt, quiet=_quiet(settings), signum=stop.signum)


def run_follow(
    settings: Settings,
    options: AccessLogOptions,
    name: str,
    *,
    flush: FlushOptions | None,
    fmt: str,
) -> int:
    """`--follow name` until a signal; returns the exit code."""
    from matokit.accesslog import AccessLogImport
    from matokit.accesslog.follow import BackgroundFlush, follow
    from matokit.stopping import stop_on_signals

    with contextlib.ExitStack() as stack:
        delivery = stack.enter_context(_delivery(settings))
        stop = stack.enter_context(stop_on_signals())
        run = stack.enter_context(
            AccessLogImport(
                options,
                delivery=delivery,
                client=delivery.client,
                data_dir=settings.data_dir,
                stop=stop,
                on_open=None if _quiet(settings) else _say_format,
            )
        )
        run.prepare()
        flusher: BackgroundFlush | None = None
        if flush is not None:
            flusher = BackgroundFlush(lambda: _delivery(settings), flush).start()
        try:
            follow(run, name, stop=stop, flusher=flusher)
        finally:
            if flusher is not None:
                flusher.close(timeout=settings.timeout + 30.0)
        result = run.finish(None)
        return render(
            result,
            options,
            fmt=fmt,
            quiet=_quiet(settings),
            signum=stop.signum,
            background=flusher,
        )


def stdin_stream() -> Any:
    """stdin as bytes (a text stream standing in for it in tests is encoded)."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is not None:
        return stream
    import io

    return io.BytesIO(sys.stdin.read().encode("utf-8"))


def _delivery(settings: Settings) -> Delivery:
    from matokit.delivery import Delivery

    return Delivery.for_settings(settings)


def _client_factory(settings: Settings, delivery: Delivery | None) -> Callable[[], Any]:
    if delivery is not None:
        return delivery.client
    clients: list[Any] = []

    def client() -> Any:
        if not clients:
            from matokit.connect import client_for

            clients.append(client_for(settings, need_token=False))
        return clients[0]

    return client


def _quiet(settings: Settings) -> bool:
    return settings.log_level == "error"


def _total_size(names: Sequence[str]) -> int | None:
    total = 0
    for name in names:
        if name == "-":
            return None
        with contextlib.suppress(OSError):
            total += os.path.getsize(name)
    return total


def _say_format(summary: FileSummary) -> None:
    if summary.detected:
        say(f"matokit: {summary.name}: log format {summary.format} (detected)")


# --- rendering -----------------------------------------------------------------------------------


def render(
    result: AccessLogResult,
    options: AccessLogOptions,
    *,
    fmt: str,
    quiet: bool,
    signum: int | None,
    background: BackgroundFlush | None = None,
) -> int:
    """Print the summary and problems; return the exit code."""
    from matokit.cli.exit import access_log_exit_code, exit_code_for_signal
    from matokit.cli.output import emit_json, error_line

    summary = result.summary
    delivery = result.delivery
    if fmt == "json":
        data: dict[str, Any] = {"dry_run": options.dry_run, **summary.as_dict()}
        if not options.dry_run:
            data["delivery"] = delivery.summary()
            if background is not None:
                data["delivery"]["sent"] = background.delivered
        if result.error is not None:
            data["error"] = result.error.message
        emit_json(data)
    for file in summary.files:
        _file_problems(file)
        if not quiet and fmt == "text":
            say(file_line(file))
    if not quiet and fmt == "text" and len(summary.files) != 1:
        say(totals_line(result, options))
    if not options.dry_run:
        _delivery_lines(result, options, quiet=quiet or fmt == "json", background=background)
    if result.error is not None:
        error_line(result.error.message, result.error.hint)
    if signum is not None:
        _stopped(result, signum, options)
        return int(exit_code_for_signal(signum))
    return access_log_exit_code(result, queue=options.queue or options.dry_run)


def file_line(file: FileSummary) -> str:
    """One file's counts, for people."""
    from matokit.accesslog import Reason

    if file.busy:
        return f"matokit: {file.name}: another matokit is importing it; left alone"
    if file.vanished:
        return f"matokit: {file.name}: no such file (not rotated yet, or rotated away); skipped"
    parts = [f"{file.lines:,} line(s)"]
    if file.start_line:
        parts[0] += f" after line {file.start_line:,}"
    if file.detected:
        parts.insert(0, f"format {file.format} (detected)")
    hits = f"{file.hits:,} hit(s)"
    if file.downloads:
        hits += f" ({file.downloads:,} download(s))"
    parts.append(hits)
    if file.imported or file.duplicates:
        parts.append(f"{file.imported:,} new, {file.duplicates:,} already imported")
    skipped = [f"{r} {n:,}" for r, n in file.skipped.items() if n and r is not Reason.UNPARSABLE]
    if skipped:
        parts.append("skipped: " + ", ".join(skipped))
    unparsable = file.skipped[Reason.UNPARSABLE]
    if unparsable:
        parts.append(f"unparsable {unparsable:,}")
    return f"matokit: {file.name}: " + "; ".join(parts) + "."


def totals_line(result: AccessLogResult, options: AccessLogOptions) -> str:
    """The totals over every file."""
    summary = result.summary
    verb = "would be imported" if options.dry_run else "new"
    text = (
        f"matokit: access-log: {len(summary.files)} file(s), {summary.total('lines'):,} "
        f"line(s), {summary.total('hits'):,} hit(s)"
    )
    if options.dry_run:
        return text + f" {verb}."
    return (
        text
        + f": {summary.total('imported'):,} {verb}, {summary.total('duplicates'):,} "
        + ("already imported.")
    )


def _file_problems(file: FileSummary) -> None:
    from matokit.accesslog import Reason

    if file.error:
        say(f"matokit: {file.name}: {file.error}")
    if file.unparsable:
        shown = ", ".join(f"{n} ({why})" for n, why in file.unparsable)
        total = file.skipped[Reason.UNPARSABLE]
        extra = (
            f" and {total - len(file.unparsable):,} more" if total > len(file.unparsable) else ""
        )
        say(f"matokit: {file.name}: unparsable line(s) {shown}{extra}")


def _delivery_lines(
    result: AccessLogResult,
    options: AccessLogOptions,
    *,
    quiet: bool,
    background: BackgroundFlush | None,
) -> None:
    from matokit.cli.queue_view import say_flush_problems

    delivery = result.delivery
    data = delivery.summary()
    sent = background.delivered if background is not None else data["sent"]
    if not quiet:
        say(
            f"matokit: access-log: {data['journaled']:,} hit(s) journaled, {sent:,} sent, "
            f"{data['queued']:,} queued, {data['rejected']:,} rejected."
        )
    if delivery.flush_busy:
        say(f"matokit: {delivery.flush_busy}: it will send the queued hits.")
    if delivery.flush is not None:
        say_flush_problems(delivery.flush)
    if background is not None and background.error is not None:
        say(f"matokit: the last background flush: {background.error.message}")
    if data["queued"] and not options.queue and not result.interrupted:
        say("matokit: queued hits stay in the journal; `matokit queue flush` sends them.")


def _stopped(result: AccessLogResult, signum: int, options: AccessLogOptions) -> None:
    from matokit.stopping import signal_name

    queued = result.delivery.queued
    say(
        f"matokit: stopped by {signal_name(signum)}: what was read is journaled "
        f"({queued:,} hit(s) of this run stay queued); run it again to go on where it stopped."
    )
