"""The report catalogue, value coercion, Matomo's answer shapes -> rows, and date validation."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from matokit import dates, reports
from matokit.errors import UsageError

SAMPLES_PATH = Path(__file__).resolve().parent / "fixtures" / "matomo-samples.json"


@pytest.fixture(scope="module")
def samples() -> dict[str, Any]:
    data = json.loads(SAMPLES_PATH.read_text())
    return {k: v["body"] for k, v in data.items() if isinstance(v, dict) and "body" in v}


# --- catalogue --------------------------------------------------------------------------------

REQUIRED = {
    "visits": "VisitsSummary.get",
    "pages": "Actions.getPageUrls",
    "entry-pages": "Actions.getEntryPageUrls",
    "exit-pages": "Actions.getExitPageUrls",
    "page-titles": "Actions.getPageTitles",
    "referrers": "Referrers.getReferrerType",
    "websites": "Referrers.getWebsites",
    "search-engines": "Referrers.getSearchEngines",
    "campaigns": "Referrers.getCampaigns",
    "events": "Events.getCategory",
    "event-actions": "Events.getAction",
    "event-names": "Events.getName",
    "event-pairs": "Events.getCategory",
    "goals": "Goals.get",
    "ecommerce": "Goals.getItemsSku",
    "countries": "UserCountry.getCountry",
    "devices": "DevicesDetection.getType",
    "browsers": "DevicesDetection.getBrowsers",
    "os": "DevicesDetection.getOsVersions",
    "live": "Live.getLastVisitsDetails",
}


@pytest.mark.parametrize(("name", "method"), sorted(REQUIRED.items()))
def test_catalogue_maps_each_name_to_its_api_method(name: str, method: str) -> None:
    report = reports.find(name)
    assert report.method == method
    assert report.columns, "every catalogue entry has default columns"
    assert all(c.label for c in report.columns)


def test_only_live_is_not_cacheable() -> None:
    assert [r.name for r in reports.CATALOGUE if not r.cacheable] == ["live"]


@pytest.mark.parametrize("name", ["visits", "pages", "event-pairs", "countries"])
def test_cacheable_reports_ask_for_flat_rows(name: str) -> None:
    assert reports.find(name).params.get("flat") == "1"


# Their subtables hold another dimension: flat=1 would turn their rows into pairs.
TOP_LEVEL = ["events", "event-actions", "event-names", "websites", "search-engines", "campaigns"]


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_reports_whose_subtables_are_another_dimension_ask_for_the_top_level(name: str) -> None:
    assert "flat" not in reports.find(name).params


def test_module_method_runs_the_first_catalogue_report_of_that_method() -> None:
    assert reports.find("Events.getCategory").name == "events"
    assert reports.find("event-pairs").method == "Events.getCategory"


def test_find_accepts_module_method_of_catalogue_and_others() -> None:
    assert reports.find("Actions.getPageUrls").name == "pages"
    adhoc = reports.find("Referrers.getKeywords")
    assert adhoc.method == "Referrers.getKeywords" and adhoc.cacheable
    assert not reports.find("Live.getCounters").cacheable


def test_unknown_report_is_a_usage_error_naming_the_closest() -> None:
    with pytest.raises(UsageError) as info:
        reports.find("pagez")
    assert "Unknown report 'pagez'" in info.value.message
    assert "pages" in info.value.message
    assert "report list" in (info.value.hint or "")


def test_request_params_carry_period_date_limit_and_segment() -> None:
    spec = dates.validate("week", "last4")
    params = reports.request_params(
        reports.find("pages"), spec, site=3, limit=10, segment="deviceType==smartphone"
    )
    assert params == {
        "idSite": "3",
        "period": "week",
        "date": "last4",
        "flat": "1",
        "filter_limit": "10",
        "segment": "deviceType==smartphone",
    }
    summary = reports.request_params(reports.find("visits"), spec, site=3, limit=10)
    assert "filter_limit" not in summary  # one row per period: nothing to limit


# --- coercion ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("11", reports.NUMBER, 11),
        (11, reports.NUMBER, 11),
        ("1.4", reports.NUMBER, 1.4),
        ("-3", reports.NUMBER, -3),
        ("84%", reports.PERCENT, 84.0),
        ("0.54%", reports.PERCENT, 0.54),
        ("0%", reports.PERCENT, 0.0),
        (81, reports.PERCENT, 81.0),
        ("84%", reports.NUMBER, 84.0),  # a rate under an unexpected key is still a rate
        ("525", reports.DURATION, 525),
        (18, reports.DURATION, 18),
        ("99.5", reports.MONEY, 99.5),
        (None, reports.NUMBER, None),  # missing is not zero
        ("Direct Entry", reports.NUMBER, "Direct Entry"),
        ("404", reports.TEXT, "404"),  # a label stays text even if it looks like a number
        ("127.0.0.1", reports.NUMBER, "127.0.0.1"),
        (True, reports.NUMBER, True),
    ],
)
def test_coerce(value: Any, kind: str, expected: Any) -> None:
    result = reports.coerce(value, kind)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("bounce_rate", reports.PERCENT),
        ("some_new_rate", reports.PERCENT),
        ("avg_time_on_site", reports.DURATION),
        ("sum_time_spent", reports.DURATION),
        ("revenue", reports.MONEY),
        ("nb_visits", reports.NUMBER),
        ("label", reports.TEXT),
        ("nb_plays", reports.NUMBER),
    ],
)
def test_kind_of(key: str, kind: str) -> None:
    assert reports.kind_of(key) == kind


# --- shapes -> rows ---------------------------------------------------------------------------

TODAY = dates.validate("day", "today")


def test_single_object_becomes_one_row() -> None:
    data = {"nb_visits": "5", "bounce_rate": "40%"}
    rows = reports.rows_from(data, report=reports.find("visits"), spec=TODAY)
    assert rows == [{"nb_visits": 5, "bounce_rate": 40.0}]


def test_flat_list_of_rows(samples: dict[str, Any]) -> None:
    body = samples["Actions.getPageUrls flat=1 filter_limit=2 (day, today)"]
    rows = reports.rows_from(body, report=reports.find("pages"), spec=TODAY)
    assert [r["label"] for r in rows] == ["/", "/cart"]
    assert rows[0]["entry_nb_visits"] == 6  # "6" in Matomo's answer
    assert rows[0]["bounce_rate"] == 17.0 and rows[0]["exit_rate"] == 44.0


def test_value_wrapper_becomes_a_value_row(samples: dict[str, Any]) -> None:
    body = samples["VisitsSummary.get showColumns=nb_visits"]
    assert reports.rows_from(body, report=reports.find("visits"), spec=TODAY) == [{"value": 185}]


def test_keyed_by_date_adds_a_date_column(samples: dict[str, Any]) -> None:
    body = samples["VisitsSummary.get date=last3"]
    rows = reports.rows_from(
        body, report=reports.find("visits"), spec=dates.validate("day", "last3")
    )
    assert [r["date"] for r in rows] == ["2026-11-23", "2026-11-24", "2026-11-25"]
    assert [r["nb_visits"] for r in rows] == [4, 1, 185]
    assert rows[0]["bounce_rate"] == 75.0


def test_keyed_by_date_list_report_skips_empty_periods(samples: dict[str, Any]) -> None:
    body = samples["Events.getCategory date=last2 flat=1 filter_limit=1"]
    spec = dates.validate("day", "last2")
    rows = reports.rows_from(body, report=reports.find("events"), spec=spec)
    assert len(rows) == 1
    assert rows[0]["date"] == "2026-11-25" and rows[0]["nb_events"] == 11


def test_summary_report_empty_period_becomes_a_zero_row() -> None:
    body = {"2026-11-24": [], "2026-11-25": {"nb_visits": 3, "bounce_rate": "10%"}}
    spec = dates.validate("day", "2026-11-24,2026-11-25")
    rows = reports.rows_from(body, report=reports.find("visits"), spec=spec)
    assert rows[0]["date"] == "2026-11-24" and rows[0]["nb_visits"] == 0
    assert rows[1] == {"date": "2026-11-25", "nb_visits": 3, "bounce_rate": 10.0}


def test_flat_multi_period_summary_list_shape() -> None:
    body = {"2026-11-24": [{"nb_visits": "2"}], "2026-11-25": [{"nb_visits": 1}]}
    spec = dates.validate("day", "last2")
    rows = reports.rows_from(body, report=reports.find("visits"), spec=spec)
    assert rows == [{"date": "2026-11-24", "nb_visits": 2}, {"date": "2026-11-25", "nb_visits": 1}]


def test_range_period_is_not_keyed_by_date() -> None:
    spec = dates.validate("range", "2026-11-01,2026-11-30")
    assert not spec.multi
    rows = reports.rows_from(
        [{"label": "a", "nb_visits": "3"}], report=reports.find("pages"), spec=spec
    )
    assert rows == [{"label": "a", "nb_visits": 3}]


@pytest.mark.parametrize("empty", [[], {}, None])
def test_empty_answers_have_no_rows(empty: Any) -> None:
    assert reports.rows_from(empty, report=reports.find("pages"), spec=TODAY) == []


def test_all_zero_summary_counts_as_empty() -> None:
    report = reports.find("visits")
    assert reports.is_empty([{"nb_visits": 0, "bounce_rate": 0.0}], report)
    assert not reports.is_empty([{"nb_visits": 1}], report)
    assert reports.is_empty([], reports.find("pages"))


def test_live_rows_gain_the_entry_page(samples: dict[str, Any]) -> None:
    body = samples["Live.getLastVisitsDetails filter_limit=1"]
    report = reports.find("live")
    rows = reports.rows_from(body, report=report, spec=TODAY)
    assert rows[0]["entryUrl"] == "https://shop.example/uatest"
    assert rows[0]["visitorId"] == "aaaaaaaaaaaa0002"


# --- columns ----------------------------------------------------------------------------------


def test_default_columns_keep_the_catalogue_order(samples: dict[str, Any]) -> None:
    report = reports.find("countries")
    body = samples["UserCountry.getCountry flat=1 filter_limit=2 (day, today)"]
    rows = reports.rows_from(body, report=report, spec=TODAY)
    columns = reports.select_columns(report, rows, None)
    assert [c.key for c in columns] == list(report.keys)
    projected = reports.project(rows, columns)
    assert projected[0] == {
        "label": "Unknown",
        "nb_visits": 155,
        "nb_uniq_visitors": 155,
        "nb_actions": 184,
        "bounce_count": 145,
        "nb_conversions": 1,
    }
    assert projected[1]["nb_conversions"] is None  # absent in Matomo's row: not a zero


def test_requested_columns_and_all() -> None:
    report = reports.find("pages")
    rows = [{"date": "2026-11-25", "label": "/", "nb_hits": 2, "segment": "x", "goals": {}}]
    keys = [c.key for c in reports.select_columns(report, rows, ["nb_hits", "label"])]
    assert keys == ["date", "nb_hits", "label"]
    every = [c.key for c in reports.select_columns(report, rows, ["all"])]
    assert every == ["date", "label", "nb_hits", "segment"]  # nested values left out


def test_unknown_requested_column_is_a_usage_error() -> None:
    report = reports.find("pages")
    with pytest.raises(UsageError) as info:
        reports.select_columns(report, [{"label": "/", "nb_hits": 1}], ["nb_hitz"])
    assert "nb_hitz" in info.value.message
    assert "nb_hits" in (info.value.hint or "")


def test_adhoc_report_columns_come_from_the_answer() -> None:
    report = reports.find("Referrers.getKeywords")
    rows = [{"label": "boots", "nb_visits": 3, "segment": "x", "logo": "y.png"}]
    columns = reports.select_columns(report, rows, None)
    assert [(c.key, c.kind) for c in columns] == [("label", "text"), ("nb_visits", "number")]
    assert columns[1].label == "Visits"


def test_series_and_top() -> None:
    rows = [
        {"date": "a", "label": "x", "nb_hits": 2},
        {"date": "a", "label": "y", "nb_hits": 3},
        {"date": "b", "label": "x", "nb_hits": None},
    ]
    assert reports.series(rows, "nb_hits") == [("a", 5.0), ("b", 0.0)]
    assert reports.top(rows[:2], "nb_hits", "label") == [("x", 2.0), ("y", 3.0)]


def test_metadata_entries_from_get_report_metadata() -> None:
    metadata = [
        {
            "category": "Visitors",
            "name": "Visits Overview",
            "module": "VisitsSummary",
            "action": "get",
        },
        {
            "category": "Goals",
            "name": "Signup",
            "module": "Goals",
            "action": "get",
            "parameters": {"idGoal": "1"},
        },
        {"category": "Actions", "name": "Downloads", "module": "Actions", "action": "getDownloads"},
        {"bogus": True},
    ]
    entries = reports.metadata_entries(metadata)
    assert [(e["name"], e["params"]) for e in entries] == [
        ("visits", ""),
        ("Goals.get", "idGoal=1"),
        ("Actions.getDownloads", ""),
    ]
    assert reports.metadata_entries({"result": "error"}) == []


# --- date validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "value", "normalised", "multi"),
    [
        ("day", "today", "today", False),
        ("DAY", "Yesterday", "yesterday", False),
        ("week", "2026-11-25", "2026-11-25", False),
        ("month", "last12", "last12", True),
        ("year", "previous3", "previous3", True),
        ("day", "2026-11-01,2026-11-07", "2026-11-01,2026-11-07", True),
        ("range", "2026-11-01,2026-11-30", "2026-11-01,2026-11-30", False),
        ("range", "2026-11-01,today", "2026-11-01,today", False),
        ("range", "last7", "last7", False),
        ("range", "previous30", "previous30", False),
        ("day", "2026-11-25,2026-11-25", "2026-11-25,2026-11-25", True),
    ],
)
def test_valid_period_and_date(period: str, value: str, normalised: str, multi: bool) -> None:
    spec = dates.validate(period, value)
    assert spec.date == normalised
    assert spec.multi is multi


@pytest.mark.parametrize(
    ("period", "value", "message"),
    [
        ("hour", "today", "period 'hour' is not supported"),
        ("", "today", "is not supported"),
        ("day", "", "--date is empty"),
        ("day", "tomorrow", "'tomorrow' is not a date"),
        ("day", "2026-13-01", "not a calendar date"),
        ("day", "2026-02-30", "not a calendar date"),
        ("day", "25/11/2026", "is not a date"),
        ("day", "last0", "N must be between 1 and"),
        ("day", "last99999", "N must be between 1 and"),
        ("range", "today", "period range needs two dates"),
        ("range", "2026-11-25", "period range needs two dates"),
        ("range", "2026-11-30,2026-11-01", "ends before it starts"),
        ("day", "2026-11-01,", "must be two dates"),
        ("day", "2026-11-01,2026-11-02,2026-11-03", "must be two dates"),
        ("range", "today,2026-11-01", "start date 'today' is not a date"),
    ],
)
def test_invalid_period_or_date_is_a_usage_error(period: str, value: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        dates.validate(period, value)
    assert message in info.value.message
    assert info.value.hint


@pytest.mark.parametrize(
    ("period", "value", "first", "last"),
    [
        ("day", "today", "2026-11-25", "2026-11-25"),
        ("day", "yesterday", "2026-11-24", "2026-11-24"),
        ("week", "today", "2026-11-23", "2026-11-29"),  # Monday..Sunday
        ("month", "2026-02-10", "2026-02-01", "2026-02-28"),
        ("year", "today", "2026-01-01", "2026-12-31"),
        ("day", "last3", "2026-11-23", "2026-11-25"),
        ("day", "previous3", "2026-11-22", "2026-11-24"),
        ("week", "previous2", "2026-11-09", "2026-11-22"),
        ("month", "last3", "2026-09-01", "2026-11-30"),
        ("range", "last7", "2026-11-19", "2026-11-25"),
        ("range", "2026-11-01,yesterday", "2026-11-01", "2026-11-24"),
        ("week", "2026-11-01,2026-11-10", "2026-10-26", "2026-11-15"),
    ],
)
def test_span(period: str, value: str, first: str, last: str) -> None:
    today = date(2026, 11, 25)  # a Wednesday
    assert dates.span(dates.validate(period, value), today) == (
        date.fromisoformat(first),
        date.fromisoformat(last),
    )


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("UTC", True),
        ("Europe/Paris", True),
        ("UTC+5.5", True),
        ("UTC-3", True),
        ("Mars/Base", False),
    ],
)
def test_site_time_zones(name: str, known: bool) -> None:
    assert (dates.site_tzinfo(name) is not None) is known
