"""What `matokit report NAME` does between parsing and printing, without typer.

Both the Typer command (`matokit.cli.report.show`) and the lean cache-hit path (`try_cached`,
run from `matokit.cli.main` before typer is imported) use `plan()` to validate and build the
request and `show()` to render the answer, so both print exactly the same thing.

Module level imports only the standard library; rich is imported only to draw a table.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from matokit.cli.formats import ReportFormat

if TYPE_CHECKING:
    from collections.abc import Callable

    from matokit.config import Settings
    from matokit.dates import DateSpec
    from matokit.reports import Column, Report

FORMATS = tuple(ReportFormat)  # the lean path checks what Typer checks on the normal path
DEFAULT_LIMIT = 25


@dataclass(frozen=True)
class ShowArgs:
    """The options of `report NAME`, as typed."""

    name: str
    period: str = "day"
    date: str = "today"
    segment: str | None = None
    limit: int = DEFAULT_LIMIT
    columns: str | None = None
    site: int | None = None
    fmt: str = "table"
    chart: bool = False
    no_cache: bool = False
    refresh: bool = False
    csv_safe: bool = False


@dataclass(frozen=True)
class Plan:
    """A validated request: which report, for which site and dates, shown how."""

    report: Report
    spec: DateSpec
    site: int
    params: dict[str, str]
    requested: list[str] | None
    fmt: str
    chart: bool
    csv_safe: bool = False

    @property
    def title(self) -> str:
        """`Page URLs — site 1, day today`."""
        return f"{self.report.title} — site {self.site}, {self.spec.describe()}"


def check_format(value: str, allowed: Sequence[str] = FORMATS) -> str:
    """The output format, or UsageError."""
    from matokit.errors import UsageError

    if value not in allowed:  # exact, like every command's --format: `JSON` is refused
        raise UsageError(f"--format {value!r} is not supported.", hint=f"Use {', '.join(allowed)}.")
    return value


def check_limit(limit: int) -> int:
    """Rows per period: a positive number, or -1 for all."""
    from matokit.errors import UsageError

    if limit < 1 and limit != -1:
        raise UsageError(
            f"--limit {limit} is not valid.", hint="Use a positive number, or -1 for all rows."
        )
    return limit


def check_cache_flags(no_cache: bool, refresh: bool) -> None:
    """--no-cache and --refresh cannot be combined."""
    from matokit.errors import UsageError

    if no_cache and refresh:
        raise UsageError(
            "--no-cache and --refresh contradict each other.",
            hint="--refresh already asks Matomo afresh (and stores the answer); --no-cache "
            "neither reads nor writes the cache.",
        )


def plan(args: ShowArgs, settings: Callable[[], Settings]) -> Plan:
    """Validate everything before any request; `settings` is called only when input is valid."""
    from matokit import dates, reports
    from matokit.errors import UsageError

    fmt = check_format(args.fmt)
    check_cache_flags(args.no_cache, args.refresh)
    limit = check_limit(args.limit)
    spec = dates.validate(args.period, args.date)
    report = reports.find(args.name)
    requested = reports.parse_columns(args.columns)
    if args.chart and fmt != "table":
        raise UsageError("--chart draws on the terminal.", hint="Drop --format, or drop --chart.")
    if args.chart and not report.dimension and not spec.multi:
        raise UsageError(
            f"--chart of {report.name} needs several periods.",
            hint=f"Ask for a series, e.g. --date last30 (or report {report.name} without --chart).",
        )
    resolved = settings()
    site = resolved.require_site(args.site)
    params = reports.request_params(report, spec, site=site, limit=limit, segment=args.segment)
    csv_safe = args.csv_safe or resolved.csv_safe
    return Plan(report, spec, site, params, requested, fmt, args.chart, csv_safe)


def show(plan: Plan, data: Any) -> None:
    """Render Matomo's answer: rows in the chosen format, or a chart; "no data" on stderr."""
    from matokit import reports

    rows = reports.rows_from(data, report=plan.report, spec=plan.spec)
    # Before an all-zero answer is emptied: --columns is checked alike with or without data.
    reports.check_columns(plan.report, rows, plan.requested)
    if reports.is_empty(rows, plan.report):
        rows = []
    columns = reports.select_columns(plan.report, rows, plan.requested)
    if not rows:
        from matokit.cli.output import say

        say(f"no data for {plan.report.name} on site {plan.site}, {plan.spec.describe()}")
    if plan.chart and rows:
        draw_chart(plan, rows, columns)
        return
    render(rows, columns, plan.fmt, title=plan.title, csv_safe=plan.csv_safe)


# --- rendering ------------------------------------------------------------------------------


def format_value(value: Any, kind: str) -> str:
    """A cell for people: 1,234 · 84% · 3m 05s · 99.50; empty for a missing value."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if kind == "percent":
        return f"{value:g}%"
    if kind == "duration":
        return _duration(value)
    if kind == "money":
        return f"{value:,.2f}"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:,.0f}"


def _duration(seconds: float) -> str:
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def render(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    fmt: str,
    *,
    title: str | None = None,
    csv_safe: bool = False,
) -> None:
    """Rows on stdout as a table (human labels), JSON, CSV (UTF-8, header) or JSON lines.

    `csv_safe` prefixes CSV cells a spreadsheet would run as a formula (see sanitize.csv_safe).
    """
    from matokit.cli import output
    from matokit.reports import project

    data = project(rows, columns)
    if fmt == "json":
        output.emit_json(data)
    elif fmt == "ndjson":
        output.emit_ndjson(data)
    elif fmt == "csv":
        output.emit_csv(data, [c.key for c in columns], safe=csv_safe)
    elif data:
        table(data, columns, title=title)


def table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], *, title: str | None
) -> None:
    """A rich table: human labels, numbers right-aligned and never broken, long text folded."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from matokit.cli.output import console
    from matokit.reports import NAME, NUMERIC_KINDS
    from matokit.sanitize import printable

    cells = [[printable(format_value(row.get(c.key), c.kind)) for c in columns] for row in rows]
    fixed = [c.kind in NUMERIC_KINDS or c.kind == NAME or c.key == "date" for c in columns]
    out = console("stdout")
    widths = column_widths([c.label for c in columns], cells, fixed, out.width)
    # A light frame (a rule under the header) leaves the width to the data.
    grid = Table(
        title=Text(printable(title)) if title else None,
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    for column, width in zip(columns, widths, strict=True):
        grid.add_column(
            column.label,
            justify="right" if column.kind in NUMERIC_KINDS and column.key != "date" else "left",
            width=width,
            overflow="fold",
        )
    for line in cells:
        grid.add_row(*[Text(cell) for cell in line])  # Text: data is never markup
    needed = sum(widths) + GAP * (len(widths) - 1)
    if needed <= out.width:
        out.print(grid)
        return
    # Too many columns even folded: print whole (long) lines rather than crop the last columns.
    width = out.width
    out.width = needed
    try:
        out.print(grid, crop=False)
    finally:
        out.width = width


GAP = 3  # between two columns of a SIMPLE_HEAD table without edges: padding, rule, padding


def column_widths(
    headers: Sequence[str], cells: Sequence[Sequence[str]], fixed: Sequence[bool], total: int
) -> list[int]:
    """Column widths that fit `total` characters if at all possible.

    Every column gets its one-line width when that fits. Otherwise numbers and dates keep
    their values whole (headers wrap between words) and text columns share what is left, down
    to 12 characters (or their longest header word); the result may then exceed `total`.
    """
    count = len(headers)
    values = [max((len(line[i]) for line in cells), default=0) for i in range(count)]
    words = [max((len(w) for w in h.split()), default=0) for h in headers]
    natural = [max(values[i], len(headers[i])) for i in range(count)]
    room = total - GAP * (count - 1)
    if sum(natural) <= room:
        return natural
    widths = [
        max(values[i], words[i]) if fixed[i] else max(min(values[i], 12), words[i])
        for i in range(count)
    ]
    spare = room - sum(widths)
    # Text first (it folds worst), then headers of numbers back on one line.
    for group in ([i for i in range(count) if not fixed[i]], [i for i in range(count) if fixed[i]]):
        wanted = sum(natural[i] - widths[i] for i in group)
        if spare <= 0 or wanted <= 0:
            continue
        share = min(spare, wanted)
        for i in group:
            extra = (natural[i] - widths[i]) * share // wanted
            widths[i] += extra
            spare -= extra
    return widths


def draw_chart(plan: Plan, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> None:
    """Bars per period (and a sparkline) for a series; bars of the top rows for one period."""
    import shutil

    from matokit.cli.charts import bar_chart, series_chart
    from matokit.cli.output import emit_text
    from matokit.errors import UsageError
    from matokit.reports import NUMERIC_KINDS, chart_metric, series, top

    report = plan.report
    numeric = [c for c in columns if c.kind in NUMERIC_KINDS]
    metric = numeric[0] if plan.requested and numeric else chart_metric(report, columns)
    if metric is None:
        raise UsageError(
            f"--chart needs a numeric column; {report.name} has none selected.",
            hint="Pick one with --columns, e.g. --columns nb_visits.",
        )
    width = shutil.get_terminal_size((100, 24)).columns

    def fmt(value: float) -> str:
        return format_value(value, metric.kind)

    if plan.spec.multi:
        additive = metric.kind not in ("percent", "duration") and not metric.key.startswith("avg")
        what = metric.label if not report.dimension else f"{metric.label} (sum of shown rows)"
        text = series_chart(
            series(rows, metric.key),
            title=f"{what} · {plan.title}",
            width=width,
            fmt=fmt,
            total=additive,
        )
    else:
        pairs = top(rows, metric.key, "label")
        text = bar_chart(pairs, title=f"{metric.label} · {plan.title}", width=width, fmt=fmt)
    emit_text(text)


# --- the lean cache-hit path ------------------------------------------------------------------

# What the lean path takes: options that only select data, each with a value. Their option
# strings (aliases included) come from `report_options`, generated from the Click command.
LEAN_GLOBAL = ("profile", "url", "site", "token_file", "config_path", "timeout")
LEAN_SHOW = ("period", "date", "segment", "limit", "columns", "site", "fmt")


def _lean_options(
    table: Mapping[str, tuple[tuple[str, ...], bool, str]], names: Sequence[str]
) -> dict[str, tuple[str, str, bool]]:
    """option string -> (parameter, its first long option, is an integer), for `names` only."""
    options = {}
    for name in names:
        flags, takes_value, kind = table.get(name, ((), False, ""))
        if not takes_value:
            continue  # not in the CLI (any more), or a flag: the normal path handles it
        long = next((f for f in flags if f.startswith("--")), flags[0])
        options.update({flag: (name, long, kind == "integer") for flag in flags})
    return options


def parse_argv(argv: Sequence[str]) -> tuple[dict[str, Any], ShowArgs] | None:
    """`[GLOBAL] report [show] NAME [OPTIONS]` for the lean path, or None for anything else.

    Deliberately narrow: only options that select data (no --chart, --refresh, --no-cache,
    --help, logging flags or unknown words); everything else goes the normal way.
    """
    from matokit.cli import report_options

    global_options = _lean_options(report_options.GLOBAL, LEAN_GLOBAL)
    show_options = _lean_options(report_options.SHOW, LEAN_SHOW)
    flags: dict[str, Any] = {}
    words = list(argv)
    while words and words[0] != "report":
        option, value, words = _take(words)
        if option not in global_options or value is None:
            return None
        flags[global_options[option][1]] = value
    if not words:
        return None
    words = words[1:]
    if words and words[0] == "show":
        words = words[1:]
    if not words or words[0].startswith("-") or words[0] in report_options.REPORT_COMMANDS:
        return None
    if report_options.SHOW_ARGUMENTS != ("name",):
        return None  # the command changed shape: leave it to the normal path
    name, words = words[0], words[1:]
    values: dict[str, Any] = {}
    while words:
        option, value, words = _take(words)
        if option not in show_options or value is None:
            return None
        key, _, integer = show_options[option]
        try:
            values[key] = int(value) if integer else value
        except ValueError:
            return None
    return flags, ShowArgs(name=name, **values)


def _take(words: list[str]) -> tuple[str, str | None, list[str]]:
    """(option, value, rest) for `--opt value` or `--opt=value`; value None when missing."""
    head = words[0]
    if head.startswith("--") and "=" in head:
        option, value = head.split("=", 1)
        return option, value, words[1:]
    if len(words) < 2:
        return head, None, words[1:]
    return head, words[1], words[2:]


def try_cached(argv: Sequence[str]) -> int | None:
    """Answer `matokit report NAME ...` from a fresh cache entry without typer or requests.

    Returns the exit code when it answered (0; 130 on Ctrl-C), None when the normal path must
    run: an option it does not handle, any validation or configuration problem (the normal
    path reports it properly), or no fresh cache entry. It never raises, so `main()` can call
    it before any error handling is set up.
    """
    try:
        parsed = parse_argv(argv)
        if parsed is None:
            return None
        flags, args = parsed
        from matokit.cache import cached_answer
        from matokit.config import resolve

        settings = resolve(flags)
        if settings.log_level in ("debug", "info"):
            return None  # the normal path logs the cache hit
        chosen = plan(args, lambda: settings)
        data = cached_answer(settings, chosen.report, chosen.params)
        if data is None:
            return None
        return _print(chosen, data)
    except KeyboardInterrupt:
        from matokit.cli.output import interrupted

        interrupted()
        return 130
    except Exception:
        # Nothing was printed yet (see _print): the normal path redoes it and explains errors.
        return None


def _print(chosen: Plan, data: Any) -> int | None:
    from matokit.errors import MatokitError

    try:
        show(chosen, data)  # validation errors (e.g. --columns) come before any output
        sys.stdout.flush()
    except MatokitError:
        return None
    except BrokenPipeError:
        # The reader went away (`| head`): like the normal path, not an error.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
    return 0
