"""`matokit report NAME | list | summary`: Matomo's reports as tables, JSON, CSV or charts.

`report NAME` is short for `report show NAME`: the group falls back to `show` when the first
word is not a subcommand, so report names and `Module.method` work as the first word.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from matokit.cli.context import state
from matokit.cli.formats import ReportFormat

if TYPE_CHECKING:
    from matokit.dates import DateSpec


class ReportGroup(TyperGroup):
    """A group whose unknown first word is a report name for the default `show` command.

    Click's Context, Command and HelpFormatter are typed Any here: they are `click`'s up to
    Typer 0.25 and Typer's private copy from 0.26 (see `matokit.cli.typerclick`).
    """

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().resolve_command(ctx, args)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        from matokit.reports import CATALOGUE

        with formatter.section("Reports (report NAME; also any Module.method)"):
            formatter.write_dl([(r.name, f"{r.title} ({r.method})") for r in CATALOGUE])
        formatter.write_paragraph()
        formatter.write_text(
            "Examples: matokit report visits --date last30 --chart; "
            "matokit report pages --period week --format csv; "
            "matokit report Referrers.getKeywords --format json"
        )


app = typer.Typer(
    cls=ReportGroup,
    help="Matomo's reports: `report NAME` (see the list below), `report list`, `report summary`.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


# -- shared options


def _period() -> Any:
    return typer.Option("day", "--period", "-p", help="day, week, month, year or range.")


def _date() -> Any:
    return typer.Option(
        "today",
        "--date",
        "-d",
        help="today, yesterday, YYYY-MM-DD, lastN, previousN or A,B (in the site's time zone).",
    )


def _segment() -> Any:
    return typer.Option(None, "--segment", help="Matomo segment, e.g. 'deviceType==smartphone'.")


def _site() -> Any:
    return typer.Option(None, "--site", help="idSite (default: the profile's site_id).")


FORMAT = typer.Option(ReportFormat.TABLE, "--format", "-f", help="table, json, csv or ndjson.")


def _no_cache() -> Any:
    return typer.Option(False, "--no-cache", help="Neither read nor write the cache.")


def _refresh() -> Any:
    return typer.Option(False, "--refresh", help="Ask Matomo afresh and store the new answer.")


def _csv_safe() -> Any:
    return typer.Option(
        False,
        "--csv-safe",
        help="CSV: prefix cells starting with = + - @ tab or CR with ' so spreadsheets do not "
        "run them as formulas [env: MATOKIT_CSV_SAFE; profile key csv_safe].",
    )


# -- commands


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="A report name or Module.method."),
    period: str = _period(),
    date: str = _date(),
    segment: str | None = _segment(),
    limit: int = typer.Option(25, "--limit", "-n", help="Rows per period (-1: all)."),
    columns: str | None = typer.Option(
        None, "--columns", "-c", help="Columns to show, e.g. label,nb_visits (or 'all')."
    ),
    site: int | None = _site(),
    fmt: ReportFormat = FORMAT,
    chart: bool = typer.Option(False, "--chart", help="Draw the series (or top rows) as bars."),
    no_cache: bool = _no_cache(),
    refresh: bool = _refresh(),
    csv_safe: bool = _csv_safe(),
) -> None:
    """Show one report (`matokit report NAME` is short for `matokit report show NAME`)."""
    from matokit import reportfetch
    from matokit.cli import report_show

    args = report_show.ShowArgs(
        name, period, date, segment, limit, columns, site, fmt, chart, no_cache, refresh, csv_safe
    )
    app_state = state(ctx)
    chosen = report_show.plan(args, app_state.settings)
    data = reportfetch.fetch(
        app_state.settings(), chosen.report, chosen.params, cache=not no_cache, refresh=refresh
    )
    report_show.show(chosen, data)


@app.command("list")
def list_reports(
    ctx: typer.Context,
    all_reports: bool = typer.Option(
        False, "--all", help="Add every report the server offers (API.getReportMetadata)."
    ),
    site: int | None = _site(),
    fmt: ReportFormat = FORMAT,
    no_cache: bool = _no_cache(),
    csv_safe: bool = _csv_safe(),
) -> None:
    """List the report catalogue (with --all: also every report of the Matomo server)."""
    from matokit import reportfetch
    from matokit.cache import never_cached
    from matokit.cli.report_show import render
    from matokit.reports import catalogue_rows, metadata_entries

    rows: list[dict[str, Any]] = [{**r, "source": "catalogue"} for r in catalogue_rows()]
    if all_reports:
        settings = state(ctx).settings()
        site_id = settings.require_site(site)
        with reportfetch.opened(settings, cache=not no_cache) as client:
            metadata = client.call("API.getReportMetadata", idSite=site_id)
        known = {r["method"] for r in rows}
        for entry in metadata_entries(metadata):
            if entry["method"] in known and not entry["params"]:
                continue
            rows.append(
                {
                    "name": entry["method"],
                    "method": entry["method"],
                    "title": f"{entry['category']}: {entry['title']}".strip(": "),
                    "cached": "no" if never_cached(entry["method"]) else "yes",
                    "columns": "",
                    "params": entry["params"],
                    "source": "server",
                }
            )
    from matokit.reports import NAME, Column

    keys = ["name", "method", "title", "cached"] + (["source"] if all_reports else [])
    if fmt != "table":
        keys.append("columns")
    kinds = {"name": NAME, "method": NAME}
    csv_safe = csv_safe or (fmt == "csv" and _csv_safe_setting(ctx))
    columns = [Column(k, k.capitalize(), kinds.get(k, "text")) for k in keys]
    render(rows, columns, fmt, title="Reports", csv_safe=csv_safe)


def _csv_safe_setting(ctx: typer.Context) -> bool:
    """The profile's csv_safe (env MATOKIT_CSV_SAFE); False when the profile does not resolve."""
    from matokit.errors import ConfigError

    try:
        return state(ctx).settings().csv_safe
    except ConfigError:
        return False  # `report list` works without a profile; its CSV stays faithful


@app.command("summary")
def summary(
    ctx: typer.Context,
    period: str = _period(),
    date: str = _date(),
    segment: str | None = _segment(),
    limit: int = typer.Option(5, "--limit", "-n", help="Rows of each top list."),
    site: int | None = _site(),
    fmt: ReportFormat = FORMAT,
    no_cache: bool = _no_cache(),
    refresh: bool = _refresh(),
    csv_safe: bool = _csv_safe(),
) -> None:
    """Visits, top pages, channels and top events of a site in one API.getBulkRequest."""
    from matokit import dates, reportfetch
    from matokit.cli.report_show import check_cache_flags, check_limit

    check_cache_flags(no_cache, refresh)
    spec = dates.validate(period, date)
    settings = state(ctx).settings()
    site_id = settings.require_site(site)
    result = reportfetch.summary(
        settings,
        spec,
        site=site_id,
        limit=check_limit(limit),
        segment=segment,
        cache=not no_cache,
        refresh=refresh,
    )
    results, errors = result.results, result.errors
    csv_safe = csv_safe or settings.csv_safe
    _render_summary(results, errors, fmt, site_id=site_id, spec=spec, csv_safe=csv_safe)
    if errors:
        # The sections that came back are shown; the exit code says one did not.
        first, *others = errors.values()
        if fmt != "json":
            from matokit.cli.output import say

            for error in others:
                say(f"matokit: error: {error}")
        raise first


def _render_summary(
    results: Mapping[str, list[dict[str, Any]]],
    errors: Mapping[str, Exception],
    fmt: str,
    *,
    site_id: int,
    spec: DateSpec,
    csv_safe: bool = False,
) -> None:
    from matokit.cli import output
    from matokit.cli.report_show import render
    from matokit.reports import BY_NAME, select_columns

    if fmt == "json":
        payload: dict[str, Any] = {"site": site_id, "period": spec.period, "date": spec.date}
        for section, rows in results.items():
            columns = select_columns(BY_NAME[section], rows, None)
            payload[section] = [{c.key: r.get(c.key) for c in columns} for r in rows]
        if errors:
            payload["errors"] = {k: str(v) for k, v in errors.items()}
        output.emit_json(payload)
        return
    flat: list[dict[str, Any]] = []
    for section, rows in results.items():
        report = BY_NAME[section]
        columns = select_columns(report, rows, None)
        if fmt == "table":
            if not rows:
                output.say(f"no data for {section} on site {site_id}, {spec.describe()}")
                continue
            render(rows, columns, fmt, title=f"{report.title} — site {site_id}, {spec.describe()}")
        else:
            flat += [{"section": section, **{c.key: r.get(c.key) for c in columns}} for r in rows]
    if fmt == "ndjson":
        output.emit_ndjson(flat)
    elif fmt == "csv":
        keys: dict[str, None] = {}
        for row in flat:
            keys.update(dict.fromkeys(row))
        output.emit_csv(flat, list(keys) or ["section"], safe=csv_safe)
