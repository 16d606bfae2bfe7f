"""The report catalogue: names people type -> Matomo API methods, columns, and clean rows.

Everything here is pure: no HTTP, no printing. `matokit.cli.report` fetches with the client and
renders; this module says what to ask for and turns Matomo's many answer shapes into a flat
list of rows whose numbers are numbers.

Matomo's shapes (see shared/matomo-api.md): a list of rows; one object (`VisitsSummary.get`);
`{"value": N}`; and, for several periods (`lastN`, `previousN`, `A,B`), an object keyed by date
whose values are any of those (an empty period is `[]`). Numbers sometimes arrive as strings
(`"nb_visits": "11"`) and rates always do (`"bounce_rate": "84%"`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from matokit.dates import DateSpec
from matokit.errors import UsageError

# Column kinds: how values are coerced, aligned and drawn.
TEXT, NUMBER, PERCENT, DURATION, MONEY = "text", "number", "percent", "duration", "money"
NAME = "name"  # an identifier (report name, Module.method): text that tables never split
NUMERIC_KINDS = frozenset({NUMBER, PERCENT, DURATION, MONEY})
DEFAULT_LIMIT = 25
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")

# Human labels and kinds of the metrics Matomo uses across reports.
LABELS: dict[str, str] = {
    "date": "Date",
    "label": "Label",
    "nb_visits": "Visits",
    "nb_uniq_visitors": "Unique visitors",
    "nb_users": "Users",
    "nb_actions": "Actions",
    "nb_hits": "Pageviews",
    "nb_actions_per_visit": "Actions per visit",
    "avg_time_on_site": "Avg. time on site",
    "avg_time_on_page": "Avg. time on page",
    "sum_visit_length": "Total time",
    "sum_time_spent": "Time spent",
    "max_actions": "Max actions",
    "bounce_count": "Bounces",
    "bounce_rate": "Bounce rate",
    "exit_rate": "Exit rate",
    "entry_nb_visits": "Entrances",
    "entry_nb_actions": "Entry actions",
    "entry_bounce_count": "Entry bounces",
    "exit_nb_visits": "Exits",
    "nb_visits_converted": "Converted visits",
    "nb_conversions": "Conversions",
    "conversion_rate": "Conversion rate",
    "revenue": "Revenue",
    "nb_events": "Events",
    "nb_events_with_value": "Events with value",
    "sum_event_value": "Event value",
    "avg_event_value": "Avg. event value",
    "min_event_value": "Min. event value",
    "max_event_value": "Max. event value",
    "quantity": "Quantity",
    "orders": "Orders",
    "avg_price": "Avg. price",
    "avg_quantity": "Avg. quantity",
    "value": "Value",
}
KINDS: dict[str, str] = {
    "date": TEXT,
    "label": TEXT,
    "bounce_rate": PERCENT,
    "exit_rate": PERCENT,
    "conversion_rate": PERCENT,
    "avg_time_on_site": DURATION,
    "avg_time_on_page": DURATION,
    "sum_visit_length": DURATION,
    "sum_time_spent": DURATION,
    "visitDuration": DURATION,
    "revenue": MONEY,
    "avg_price": MONEY,
    "sum_event_value": MONEY,
}
# Row fields that are links, icons or segment definitions: never shown unless asked for.
NOISE = frozenset({"segment", "logo", "logoHeight", "idsubdatatable", "goals", "url", "code"})


@dataclass(frozen=True)
class Column:
    """One column of a report: Matomo's key, a human label and how its values are read."""

    key: str
    label: str
    kind: str = NUMBER


@dataclass(frozen=True)
class Report:
    """One catalogue entry."""

    name: str
    method: str
    title: str
    columns: tuple[Column, ...]
    params: Mapping[str, str] = field(default_factory=lambda: {"flat": "1"})
    chart: str = "nb_visits"  # the metric a --chart draws
    cacheable: bool = True
    dimension: bool = True  # rows per label (False: one summary row per period)
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        """The default column keys, in order."""
        return tuple(c.key for c in self.columns)


def _c(key: str, label: str | None = None, kind: str | None = None) -> Column:
    return Column(key, label or LABELS.get(key, key), kind or KINDS.get(key, NUMBER))


def _label(title: str) -> Column:
    return Column("label", title, TEXT)


_VISIT_METRICS = (_c("nb_visits"), _c("nb_uniq_visitors"), _c("nb_actions"), _c("bounce_count"))
_PAGE_METRICS = (
    _c("nb_hits"),
    _c("nb_visits", "Unique pageviews"),
    _c("avg_time_on_page"),
    _c("bounce_rate"),
    _c("exit_rate"),
)
_EVENT_METRICS = (
    _c("nb_events"),
    _c("nb_visits"),
    _c("sum_event_value"),
    _c("avg_event_value"),
)


# `flat=1` flattens a report with its subtables. Where the subtables split a row by the same
# dimension (page URLs by folder) that is the report; where they hold another dimension (an
# event category's actions, a search engine's keywords) it turns rows into pairs whose label
# is "Category - Action": such reports ask for the top level, and pairs are reports of their own.
_TOP_LEVEL: Mapping[str, str] = {}


def _live_row(row: dict[str, Any]) -> dict[str, Any]:
    """Live visits carry their actions; surface the entry page as a column."""
    details = row.get("actionDetails")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        row = {**row, "entryUrl": details[0].get("url")}
    return row


CATALOGUE: tuple[Report, ...] = (
    Report(
        "visits",
        "VisitsSummary.get",
        "Visits overview",
        (
            _c("nb_visits"),
            _c("nb_uniq_visitors"),
            _c("nb_actions"),
            _c("nb_actions_per_visit"),
            _c("avg_time_on_site"),
            _c("bounce_rate"),
            _c("nb_visits_converted"),
        ),
        dimension=False,
    ),
    Report(
        "pages",
        "Actions.getPageUrls",
        "Page URLs",
        (_label("Page URL"), *_PAGE_METRICS),
        chart="nb_hits",
    ),
    Report(
        "entry-pages",
        "Actions.getEntryPageUrls",
        "Entry pages",
        (
            _label("Entry page"),
            _c("entry_nb_visits"),
            _c("entry_nb_actions"),
            _c("entry_bounce_count"),
            _c("bounce_rate"),
        ),
        chart="entry_nb_visits",
    ),
    Report(
        "exit-pages",
        "Actions.getExitPageUrls",
        "Exit pages",
        (
            _label("Exit page"),
            _c("exit_nb_visits"),
            _c("nb_hits"),
            _c("nb_visits"),
            _c("exit_rate"),
        ),
        chart="exit_nb_visits",
    ),
    Report(
        "page-titles",
        "Actions.getPageTitles",
        "Page titles",
        (_label("Page title"), *_PAGE_METRICS),
        chart="nb_hits",
    ),
    Report(
        "referrers",
        "Referrers.getReferrerType",
        "Channel types",
        (_label("Channel"), *_VISIT_METRICS, _c("nb_conversions"), _c("revenue")),
    ),
    Report(
        "websites",
        "Referrers.getWebsites",
        "Referring websites",
        (_label("Website"), *_VISIT_METRICS),
        params=_TOP_LEVEL,
    ),
    Report(
        "search-engines",
        "Referrers.getSearchEngines",
        "Search engines",
        (_label("Search engine"), *_VISIT_METRICS),
        params=_TOP_LEVEL,
    ),
    Report(
        "campaigns",
        "Referrers.getCampaigns",
        "Campaigns",
        (_label("Campaign"), *_VISIT_METRICS, _c("nb_visits_converted")),
        params=_TOP_LEVEL,
    ),
    Report(
        "events",
        "Events.getCategory",
        "Event categories",
        (_label("Event category"), *_EVENT_METRICS),
        params=_TOP_LEVEL,
        chart="nb_events",
    ),
    Report(
        "event-actions",
        "Events.getAction",
        "Event actions",
        (_label("Event action"), *_EVENT_METRICS),
        params=_TOP_LEVEL,
        chart="nb_events",
    ),
    Report(
        "event-names",
        "Events.getName",
        "Event names",
        (_label("Event name"), *_EVENT_METRICS),
        params=_TOP_LEVEL,
        chart="nb_events",
    ),
    Report(
        "event-pairs",
        "Events.getCategory",
        "Event category-action pairs",
        (
            _c("Events_EventCategory", "Event category", TEXT),
            _c("Events_EventAction", "Event action", TEXT),
            *_EVENT_METRICS,
        ),
        chart="nb_events",
    ),
    Report(
        "goals",
        "Goals.get",
        "Goals overview",
        (_c("nb_conversions"), _c("nb_visits_converted"), _c("conversion_rate"), _c("revenue")),
        chart="nb_conversions",
        dimension=False,
    ),
    Report(
        "ecommerce",
        "Goals.getItemsSku",
        "Ecommerce products (SKU)",
        (
            _label("Product SKU"),
            _c("quantity"),
            _c("orders"),
            _c("revenue"),
            _c("avg_price"),
            _c("conversion_rate"),
        ),
        chart="revenue",
    ),
    Report(
        "countries",
        "UserCountry.getCountry",
        "Countries",
        (_label("Country"), *_VISIT_METRICS, _c("nb_conversions")),
    ),
    Report(
        "devices",
        "DevicesDetection.getType",
        "Device types",
        (_label("Device type"), *_VISIT_METRICS),
    ),
    Report(
        "browsers", "DevicesDetection.getBrowsers", "Browsers", (_label("Browser"), *_VISIT_METRICS)
    ),
    Report(
        "os",
        "DevicesDetection.getOsVersions",
        "Operating systems",
        (_label("Operating system"), *_VISIT_METRICS),
    ),
    Report(
        "live",
        "Live.getLastVisitsDetails",
        "Last visits (live, never cached)",
        (
            _c("lastActionDateTime", "Last action", TEXT),
            _c("visitorId", "Visitor", TEXT),
            _c("actions", "Actions"),
            _c("visitDuration", "Duration", DURATION),
            _c("referrerTypeName", "Channel", TEXT),
            _c("entryUrl", "Entry page", TEXT),
            _c("country", "Country", TEXT),
        ),
        params={},
        chart="actions",
        cacheable=False,
        transform=_live_row,
    ),
)
BY_NAME: dict[str, Report] = {r.name: r for r in CATALOGUE}
BY_METHOD: dict[str, Report] = {}
for _report in CATALOGUE:  # the first report of a method is the one `report Module.method` runs
    BY_METHOD.setdefault(_report.method, _report)


# --- lookup ---------------------------------------------------------------------------------


def find(name: str, *, extra: Iterable[str] = ()) -> Report:
    """The catalogue entry for `name` or `Module.method`; UsageError names the closest ones.

    A `Module.method` outside the catalogue becomes an ad-hoc report: every column Matomo
    returns, labelled with the known metric names.
    """
    text = (name or "").strip()
    if text in BY_NAME:
        return BY_NAME[text]
    if text.lower() in BY_NAME:
        return BY_NAME[text.lower()]
    if text in BY_METHOD:
        return BY_METHOD[text]
    from matokit.writeguard import is_method_name, require_read_only  # not on the lean path

    if is_method_name(text):
        require_read_only(text)  # a report only reads, whatever Module.method it names
        return adhoc(text)
    known = [*BY_NAME, *extra]
    import difflib  # only on this path: keep startup lean

    close = difflib.get_close_matches(text.lower(), known, n=3, cutoff=0.5)
    suggestion = f" Did you mean {', '.join(close)}?" if close else ""
    raise UsageError(
        f"Unknown report {text!r}.{suggestion}",
        hint="`matokit report list` shows the catalogue; any Module.method of Matomo's "
        "Reporting API works too (`matokit report list --all`).",
    )


def adhoc(method: str, title: str | None = None) -> Report:
    """A report for any Reporting API method: columns come from the answer."""
    from matokit.cache import never_cached  # here: the catalogue itself stays lean

    cacheable = not never_cached(method)
    return Report(
        method,
        method,
        title or method,
        (),
        chart="nb_visits",
        cacheable=cacheable,
        params={"flat": "1"} if cacheable else {},
    )


def request_params(
    report: Report,
    spec: DateSpec,
    *,
    site: int,
    limit: int | None = DEFAULT_LIMIT,
    segment: str | None = None,
) -> dict[str, str]:
    """The Reporting API parameters for one report (token and format are the client's)."""
    params = {"idSite": str(site), "period": spec.period, "date": spec.date, **report.params}
    if limit is not None and report.dimension:
        params["filter_limit"] = str(limit)
    if segment:
        params["segment"] = segment
    return params


# --- coercion -------------------------------------------------------------------------------


def kind_of(key: str) -> str:
    """How a column's values are read: the known kind, else guessed from its name."""
    if key in KINDS:
        return KINDS[key]
    if key.endswith("_rate"):
        return PERCENT
    if key.startswith(("avg_time", "sum_time")):
        return DURATION
    return NUMBER  # coerce() leaves text that is not a number as it is


def coerce(value: Any, kind: str = NUMBER) -> Any:
    """Matomo's value as a number where it is one: "11" -> 11, "84%" -> 84.0, "1.4" -> 1.4.

    Text that is not a number stays text; None stays None (a missing value is not a zero).
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value) if kind == PERCENT else value
    if not isinstance(value, str):
        return value
    text = value.strip()
    if kind == TEXT:
        return value
    if kind == PERCENT or text.endswith("%"):
        number = text.rstrip("%").strip()
        return float(number) if _NUMBER.match(number) else value
    if _NUMBER.match(text):
        return float(text) if "." in text else int(text)
    return value


def coerce_row(row: Mapping[str, Any], kinds: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every value of a row coerced by its column's kind."""
    kinds = kinds or {}
    return {k: coerce(v, kinds.get(k) or kind_of(k)) for k, v in row.items()}


# --- shapes -> rows -------------------------------------------------------------------------


def rows_from(data: Any, *, report: Report, spec: DateSpec) -> list[dict[str, Any]]:
    """Matomo's answer as a list of coerced rows; several periods add a leading `date`."""
    kinds = {c.key: c.kind for c in report.columns}
    if spec.multi and isinstance(data, Mapping) and not _is_scalar(data):
        rows: list[dict[str, Any]] = []
        for label, value in data.items():
            period_rows = _plain_rows(value, report)
            if not period_rows and not report.dimension:
                period_rows = [{k: 0 for k in report.keys if kinds[k] in NUMERIC_KINDS}]
            rows.extend({"date": str(label), **row} for row in period_rows)
        return [coerce_row(r, kinds) for r in rows]
    return [coerce_row(r, kinds) for r in _plain_rows(data, report)]


def _is_scalar(data: Mapping[str, Any]) -> bool:
    return set(data) == {"value"}


def _plain_rows(data: Any, report: Report) -> list[dict[str, Any]]:
    if data is None or data == [] or data == {}:
        return []
    if isinstance(data, Mapping):
        items: list[Any] = [dict(data)]
    elif isinstance(data, list):
        items = list(data)
    else:
        items = [{"value": data}]
    rows = [dict(i) if isinstance(i, Mapping) else {"value": i} for i in items]
    if report.transform:
        rows = [report.transform(r) for r in rows]
    return rows


def is_empty(rows: Sequence[Mapping[str, Any]], report: Report) -> bool:
    """No data: no rows, or summary rows whose every metric is zero or missing."""
    if not rows:
        return True
    if report.dimension:
        return False
    metrics = [k for k in _all_keys(rows) if k != "date"]
    return all(not row.get(k) for row in rows for k in metrics)


# --- columns --------------------------------------------------------------------------------


def _all_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def select_columns(
    report: Report,
    rows: Sequence[Mapping[str, Any]],
    requested: Sequence[str] | None,
) -> list[Column]:
    """The columns to show: --columns (or `all`), else the report's defaults present in rows.

    A leading `date` column is kept for several periods. Unknown requested columns raise a
    UsageError naming the ones available.
    """
    present = _all_keys(rows)
    lead = [_c("date", kind=TEXT)] if "date" in present else []
    if requested and [r.lower() for r in requested] == ["all"]:
        keys = [k for k in present if k != "date" and not isinstance(_first(rows, k), dict | list)]
        return lead + [_column(report, k, rows) for k in keys]
    if requested:
        check_columns(report, rows, requested)
        return lead + [_column(report, k, rows) for k in requested if k != "date"]
    if report.columns:
        defaults = [c for c in report.columns if c.key in present] or list(report.columns)
        return lead + defaults
    keys = [k for k in present if k != "date" and k not in NOISE]
    keys = [k for k in keys if not isinstance(_first(rows, k), dict | list)]
    return lead + [_column(report, k, rows) for k in keys]


def check_columns(
    report: Report, rows: Sequence[Mapping[str, Any]], requested: Sequence[str] | None
) -> None:
    """UsageError for a --columns name the report does not have, whether or not it has rows.

    Known: the answer's keys, the report's columns and, for a catalogue report, every metric
    MatoKit knows. An ad-hoc `Module.method` with no rows cannot be checked (nothing says
    which columns it has), so its names pass.
    """
    if not requested or [r.lower() for r in requested] == ["all"]:
        return
    if not rows and not report.columns:
        return
    available = set(_all_keys(rows)) | set(report.keys)
    if not rows:
        available |= set(KINDS)
    unknown = [k for k in requested if k not in available]
    if not unknown:
        return
    options = sorted(k for k in available if k != "date")
    import difflib  # only on this path: keep startup lean

    close = difflib.get_close_matches(unknown[0], options, n=3)
    hint = f"Did you mean {', '.join(close)}? " if close else ""
    raise UsageError(
        f"Report {report.name} has no column {unknown[0]!r}.",
        hint=f"{hint}Columns: {', '.join(options)} (or --columns all).",
    )


def _first(rows: Sequence[Mapping[str, Any]], key: str) -> Any:
    for row in rows:
        if row.get(key) is not None:
            return row[key]
    return None


def _column(report: Report, key: str, rows: Sequence[Mapping[str, Any]]) -> Column:
    for column in report.columns:
        if column.key == key:
            return column
    kind = kind_of(key)
    if kind == NUMBER and isinstance(_first(rows, key), str):
        kind = TEXT  # e.g. a label-like field of an ad-hoc report
    return Column(key, LABELS.get(key, key), kind)


def parse_columns(text: str | None) -> list[str] | None:
    """`--columns a,b` as a list (None when not given)."""
    if text is None:
        return None
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise UsageError("--columns is empty.", hint="Use e.g. --columns label,nb_visits.")
    return keys


def project(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column]) -> list[dict[str, Any]]:
    """Rows reduced to the chosen columns, in order (missing values are None)."""
    return [{c.key: row.get(c.key) for c in columns} for row in rows]


# --- series and charts ----------------------------------------------------------------------


def chart_metric(report: Report, columns: Sequence[Column]) -> Column | None:
    """The metric a chart draws: the report's chart metric if shown, else the first number."""
    numeric = [c for c in columns if c.kind in NUMERIC_KINDS]
    for column in numeric:
        if column.key == report.chart:
            return column
    return numeric[0] if numeric else None


def series(rows: Sequence[Mapping[str, Any]], metric: str) -> list[tuple[str, float]]:
    """Per-date totals of `metric` (several periods), in date order of the answer."""
    totals: dict[str, float] = {}
    for row in rows:
        label = str(row.get("date", ""))
        value = row.get(metric)
        totals[label] = totals.get(label, 0.0) + (
            float(value) if isinstance(value, int | float) else 0.0
        )
    return list(totals.items())


def top(rows: Sequence[Mapping[str, Any]], metric: str, label: str) -> list[tuple[str, float]]:
    """(label, value) pairs of a single period, in the answer's order."""
    pairs = []
    for row in rows:
        value = row.get(metric)
        number = float(value) if isinstance(value, int | float) else 0.0
        pairs.append((str(row.get(label, "")), number))
    return pairs


# --- the server's catalogue -----------------------------------------------------------------


def metadata_entries(metadata: Any) -> list[dict[str, str]]:
    """`API.getReportMetadata` as rows: name (Module.method), title, category.

    Reports that need extra parameters (a goal id, a custom dimension id) keep them in
    `params` so `report Module.method` can be told what it needs.
    """
    if not isinstance(metadata, list):
        return []
    rows: dict[str, dict[str, str]] = {}
    for item in metadata:
        if not isinstance(item, Mapping) or not item.get("module") or not item.get("action"):
            continue
        method = f"{item['module']}.{item['action']}"
        extra = item.get("parameters")
        params = "&".join(f"{k}={v}" for k, v in extra.items()) if isinstance(extra, dict) else ""
        key = f"{method}?{params}"
        if key in rows:
            continue
        known = BY_METHOD.get(method)
        rows[key] = {
            "name": known.name if known and not params else method,
            "method": method,
            "title": str(item.get("name", "")),
            "category": str(item.get("category", "")),
            "params": params,
        }
    return list(rows.values())


def catalogue_rows() -> list[dict[str, str]]:
    """The built-in catalogue as rows for `report list`."""
    return [
        {
            "name": r.name,
            "method": r.method,
            "title": r.title,
            "cached": "yes" if r.cacheable else "no",
            "columns": ",".join(r.keys),
        }
        for r in CATALOGUE
    ]
