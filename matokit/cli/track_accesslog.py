"""`matokit track access-log FILE...`: web server access logs into Matomo, exactly once.

Parses the options, hands them to `matokit.accesslog` (one run, or `--follow`), and renders
the summary (`cli/accesslog_view.py`). Registered under the `track` group by `cli/app.py`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

import typer

from matokit.cli.context import state
from matokit.cli.flushopts import CONCURRENCY
from matokit.cli.formats import AccessLogFormat, TextFormat

if TYPE_CHECKING:
    from matokit.accesslog import AccessLogOptions
    from matokit.config import Settings
    from matokit.delivery import FlushOptions


def access_log_command(
    ctx: typer.Context,
    files: list[str] = typer.Argument(
        ...,
        metavar="FILE...",
        help="Access logs (gzip and bzip2 are read as such); - for stdin.",
        show_default=False,
    ),
    log_format: AccessLogFormat = typer.Option(
        AccessLogFormat.AUTO,
        "--log-format",
        help="Line format; auto detects it from the first lines and says which.",
    ),
    log_format_regex: str | None = typer.Option(
        None,
        "--log-format-regex",
        help="A regex with named groups ip, date, path, status (optional: length, referrer, "
        "user_agent, host, userid, method, query_string, timezone).",
    ),
    log_date_format: str | None = typer.Option(
        None, "--log-date-format", help="strptime format of the regex's date group."
    ),
    site: int | None = typer.Option(
        None, "--site", min=1, help="idSite of every line (default: the global --site)."
    ),
    site_from_host: bool = typer.Option(
        False, "--site-from-host", help="Each line's site from its host, as Matomo knows it."
    ),
    site_url: str | None = typer.Option(
        None,
        "--site-url",
        help="Scheme and host of page URLs (default: the site's main URL in Matomo).",
    ),
    enable_static: bool = typer.Option(
        False, "--enable-static", help="Track static files (as downloads)."
    ),
    enable_bots: bool = typer.Option(False, "--enable-bots", help="Track bots too (bots=1)."),
    enable_http_errors: bool = typer.Option(
        False, "--enable-http-errors", help="Track 4xx and 5xx answers."
    ),
    enable_http_redirects: bool = typer.Option(
        False, "--enable-http-redirects", help="Track 3xx answers (304 always is)."
    ),
    exclude_path: list[str] | None = typer.Option(
        None,
        "--exclude-path",
        help="Skip paths matching this glob (repeatable).",
        show_default=False,
    ),
    include_host: list[str] | None = typer.Option(
        None,
        "--include-host",
        help="Only lines of hosts matching this glob (repeatable).",
        show_default=False,
    ),
    strip_query: bool = typer.Option(
        False, "--strip-query", help="Drop query strings from page URLs."
    ),
    strip_param: list[str] | None = typer.Option(
        None,
        "--strip-param",
        help="Drop this query parameter from page URLs (repeatable).",
        show_default=False,
    ),
    horizon: str = typer.Option(
        "90d",
        "--horizon",
        help="Lines older than this are skipped; imported keys are remembered this long.",
    ),
    follow: bool = typer.Option(
        False, "--follow", help="Tail FILE across rotation until SIGTERM/Ctrl-C."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Parse and filter, print the summary; journal nothing."
    ),
    queue: bool = typer.Option(False, "--queue", help="Only journal the hits; send nothing."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, max=10000, help="Hits per bulk request (default 100)."
    ),
    concurrency: str | None = CONCURRENCY,
    fmt: TextFormat = typer.Option(
        TextFormat.TEXT, "--format", help="Summary: text (stderr) or json (stdout)."
    ),
) -> None:
    """Import web server access logs: each countable line once, whenever it is run."""
    settings = state(ctx).settings()
    _check_usage(files, follow=follow, dry_run=dry_run, regex=log_format_regex, fmt=log_format)
    if log_date_format and not log_format_regex:
        raise typer.BadParameter("needs --log-format-regex", param_hint="--log-date-format")
    options = _options(
        settings,
        log_format=log_format,
        regex=log_format_regex,
        date_format=log_date_format,
        site=site,
        site_from_host=site_from_host,
        site_url=site_url,
        filters={
            "enable_static": enable_static,
            "enable_bots": enable_bots,
            "enable_http_errors": enable_http_errors,
            "enable_http_redirects": enable_http_redirects,
            "exclude_paths": tuple(exclude_path or ()),
            "include_hosts": tuple(include_host or ()),
        },
        strip_query=strip_query,
        strip_param=strip_param,
        horizon=horizon,
        dry_run=dry_run,
        queue=queue,
    )
    if not (queue or dry_run) or site_from_host:
        settings.require_url()  # exit 78 before anything is read
    flush = None if (queue or dry_run) else _flush_options(settings, batch_size, concurrency)
    from matokit.cli import accesslog_view as view

    if follow:
        code = view.run_follow(settings, options, files[0], flush=flush, fmt=fmt)
    else:
        code = view.run_files(settings, options, files, flush=flush, fmt=fmt)
    raise typer.Exit(code)


def _check_usage(
    files: list[str], *, follow: bool, dry_run: bool, regex: str | None, fmt: str
) -> None:
    """Usage errors (exit 2) before anything is read."""
    if regex and fmt != AccessLogFormat.AUTO:
        raise typer.BadParameter("give --log-format or --log-format-regex, not both")
    if files.count("-") > 1:
        raise typer.BadParameter("- (stdin) can be read once", param_hint="FILE")
    if follow:
        if len(files) != 1 or files[0] == "-":
            raise typer.BadParameter("--follow takes exactly one FILE (not -)", param_hint="FILE")
        if dry_run:
            raise typer.BadParameter("--follow cannot be combined with --dry-run")
        return
    for name in files:
        # A missing file is skipped with a note, as Matomo's importer does: `access.log.1`
        # named in a crontab does not exist until the first rotation.
        if name == "-" or not os.path.exists(name):
            continue
        if os.path.isdir(name):
            raise typer.BadParameter(f"{name} is a directory", param_hint="FILE")
        if not os.access(name, os.R_OK):
            raise typer.BadParameter(f"{name} is not readable", param_hint="FILE")


def _options(
    settings: Settings,
    *,
    log_format: str,
    regex: str | None,
    date_format: str | None,
    site: int | None,
    site_from_host: bool,
    site_url: str | None,
    filters: dict[str, Any],
    strip_query: bool,
    strip_param: list[str] | None,
    horizon: str,
    dry_run: bool,
    queue: bool,
) -> AccessLogOptions:
    from matokit.accesslog import AccessLogOptions, FilterOptions, HitOptions
    from matokit.accesslog.formats import RegexFormat
    from matokit.accesslog.sites import check_site_url
    from matokit.cli.exit import command_line_values
    from matokit.durations import parse_duration

    if site is not None and site_from_host:
        raise typer.BadParameter("give --site or --site-from-host, not both")
    try:
        seconds = parse_duration(horizon)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--horizon") from None
    if seconds < 86400:
        raise typer.BadParameter("must be at least 1d", param_hint="--horizon")
    with command_line_values():
        if regex:
            RegexFormat(regex, date_format)  # a bad pattern is a usage error now
        url = check_site_url(site_url) if site_url is not None else None
    return AccessLogOptions(
        log_format=str(log_format),
        log_format_regex=regex,
        log_date_format=date_format,
        filters=FilterOptions(**filters),
        hits=HitOptions(
            strip_query=strip_query,
            strip_params=frozenset(strip_param or ()),
            bots=bool(filters["enable_bots"]),
        ),
        site=None if site_from_host else settings.require_site(site),
        site_from_host=site_from_host,
        site_url=url,
        horizon=seconds,
        dry_run=dry_run,
        queue=queue,
    )


def _flush_options(
    settings: Settings, batch_size: int | None, concurrency: str | None
) -> FlushOptions:
    from matokit.delivery import FlushOptions
    from matokit.delivery.lanes import parse_concurrency

    options = FlushOptions.from_settings(settings, batch_size=batch_size)
    if concurrency is not None:
        options = dataclasses.replace(options, concurrency=parse_concurrency(concurrency))
    return options
