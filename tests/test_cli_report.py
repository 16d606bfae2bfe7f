"""`matokit report` and `matokit cache`: renderers, charts, the command group, exit codes."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from matokit.cli import charts, output, report_show
from matokit.cli import report as report_cli
from matokit.reports import Column
from tests.fakematomo import SUPERUSER_TOKEN, FakeMatomo

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fresh_consoles() -> Iterator[None]:
    """Rich consoles bind sys.stdout when created: give every test its own (capsys)."""
    output._consoles.clear()
    yield
    output._consoles.clear()


# --- cell formatting and renderers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "text"),
    [
        (1234, "number", "1,234"),
        (1.4, "number", "1.4"),
        (2.0, "number", "2"),
        (84.0, "percent", "84%"),
        (0.54, "percent", "0.54%"),
        (18, "duration", "18s"),
        (204, "duration", "3m 24s"),
        (3725, "duration", "1h 02m"),
        (99.5, "money", "99.50"),
        (None, "number", ""),
        ("Direct Entry", "text", "Direct Entry"),
    ],
)
def test_format_value(value: Any, kind: str, text: str) -> None:
    assert report_show.format_value(value, kind) == text


COLUMNS = [
    Column("label", "Page URL", "text"),
    Column("nb_hits", "Pageviews", "number"),
    Column("bounce_rate", "Bounce rate", "percent"),
]
ROWS = [
    {"label": "/zürich", "nb_hits": 1234, "bounce_rate": 50.0, "extra": 1},
    {"label": "/", "nb_hits": 5, "bounce_rate": None},
]


def test_render_json_keeps_numbers_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    report_show.render(ROWS, COLUMNS, "json")
    assert json.loads(capsys.readouterr().out) == [
        {"label": "/zürich", "nb_hits": 1234, "bounce_rate": 50.0},
        {"label": "/", "nb_hits": 5, "bounce_rate": None},
    ]


def test_render_csv_is_utf8_with_a_header(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    report_show.render(ROWS, COLUMNS, "csv")
    out = capsysbinary.readouterr().out.decode("utf-8")
    assert out == "label,nb_hits,bounce_rate\n/zürich,1234,50.0\n/,5,\n"


def test_render_ndjson_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    report_show.render(ROWS, COLUMNS, "ndjson")
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["nb_hits"] for line in lines] == [1234, 5]


def test_render_empty(capsys: pytest.CaptureFixture[str]) -> None:
    report_show.render([], COLUMNS, "json")
    assert capsys.readouterr().out.strip() == "[]"
    report_show.render([], COLUMNS, "csv")
    assert capsys.readouterr().out == "label,nb_hits,bounce_rate\n"
    report_show.render([], COLUMNS, "table")
    assert capsys.readouterr().out == ""


def test_render_table_uses_labels_and_right_aligns_numbers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report_show.render(ROWS, COLUMNS, "table", title="Page URLs")
    out = capsys.readouterr().out
    assert "Page URL" in out and "Pageviews" in out and "Bounce rate" in out
    assert "nb_hits" not in out
    lines = out.splitlines()
    big = next(line for line in lines if "1,234" in line)
    small = next(line for line in lines if line.startswith("/ "))
    assert big.index("1,234") + len("1,234") == small.index(" 5 ") + 2  # same right edge
    assert "50%" in big


# --- charts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "peak", "width", "drawn"),
    [
        (10, 10, 4, "████"),
        (5, 10, 4, "██"),
        (1, 10, 4, "▍"),  # 3.2 eighths -> 3
        (0.01, 10, 4, "▏"),  # tiny but positive: still visible
        (0, 10, 4, ""),
        (3, 0, 4, ""),
    ],
)
def test_bar(value: float, peak: float, width: int, drawn: str) -> None:
    assert charts.bar(value, peak, width) == drawn


def test_sparkline() -> None:
    assert charts.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert charts.sparkline([3, 3]) == "██"
    assert charts.sparkline([0, 0]) == "▁▁"
    assert charts.sparkline([]) == ""


def test_bar_chart_text() -> None:
    text = charts.bar_chart([("/", 4.0), ("/cart", 2.0)], title="Pageviews", width=30)
    assert text.splitlines() == [
        "Pageviews",
        "/      " + "█" * 20 + "  4",  # 30 columns in all
        "/cart  " + "█" * 10 + " " * 10 + "  2",
    ]


def test_series_chart_has_a_sparkline_summary() -> None:
    points = [("2026-11-23", 0.0), ("2026-11-24", 2.0), ("2026-11-25", 4.0)]
    text = charts.series_chart(points, title="Visits", width=40)
    lines = text.splitlines()
    assert lines[0] == "Visits"
    assert lines[1].startswith("2026-11-23") and lines[1].rstrip().endswith("0")
    assert lines[-1] == "▁▅█  min 0  max 4  total 6"
    rate = charts.series_chart(points, title="Rate", width=40, total=False)
    assert "total" not in rate


# --- the command, in process, against the fake Matomo -------------------------------------------


@pytest.fixture
def run_cli(
    monkeypatch: pytest.MonkeyPatch, fake_matomo: FakeMatomo, capsys: pytest.CaptureFixture[str]
) -> Any:
    """run(*args) -> (code, stdout, stderr), with report and cache registered in the app."""
    from matokit.cli import app as app_module
    from matokit.cli import cache as cache_cli
    from matokit.cli import run

    original = app_module.build_app

    def build() -> Any:
        app = original()
        names = {group.name for group in app.registered_groups}
        if "report" not in names:
            app.add_typer(report_cli.app, name="report")
        if "cache" not in names:
            app.add_typer(cache_cli.app, name="cache")
        return app

    monkeypatch.setattr(app_module, "build_app", build)
    monkeypatch.setenv("MATOMO_URL", fake_matomo.url)
    monkeypatch.setenv("MATOMO_TOKEN", SUPERUSER_TOKEN)
    monkeypatch.setenv("MATOMO_SITE_ID", "1")
    monkeypatch.setenv("COLUMNS", "100")

    def invoke(*args: str) -> tuple[int, str, str]:
        output._consoles.clear()
        code = run(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def track(fake: FakeMatomo, pages: int = 6, events: int = 2) -> None:
    """Store hits of today in the fake Matomo through its bulk tracking endpoint."""
    now = int(time.time()) - 30
    items = [
        f"?idsite=1&rec=1&url=https%3A%2F%2Fexample.org%2Fp{i % 3}&action_name=P{i % 3}"
        f"&cid={i:016x}&cdt={now}"
        for i in range(pages)
    ]
    items += [
        f"?idsite=1&rec=1&e_c=Checkout&e_a=Click&e_v=2.5&url=https%3A%2F%2Fexample.org%2Fcart"
        f"&cid={100 + i:016x}&cdt={now}"
        for i in range(events)
    ]
    answer = requests.post(
        fake.url + "matomo.php", json={"requests": items, "token_auth": SUPERUSER_TOKEN}, timeout=5
    )
    assert answer.json()["tracked"] == len(items)


def api_calls(fake: FakeMatomo, method: str | None = None) -> int:
    return sum(
        1
        for r in fake.requests
        if r.path.endswith("index.php") and (method is None or f"method={method}" in r.query)
    )


def test_report_name_is_the_first_word(run_cli: Any, fake_matomo: FakeMatomo) -> None:
    track(fake_matomo)
    code, out, err = run_cli("report", "visits", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert rows[0]["nb_visits"] == 8 and isinstance(rows[0]["bounce_rate"], float)
    code, out2, _ = run_cli("report", "show", "VisitsSummary.get", "--format", "json")
    assert code == 0
    assert json.loads(out2)[0]["nb_visits"] == 8


def test_second_run_is_answered_from_the_cache(run_cli: Any, fake_matomo: FakeMatomo) -> None:
    track(fake_matomo)
    run_cli("report", "pages", "--format", "csv")
    before = api_calls(fake_matomo)
    code, out, _ = run_cli("report", "pages", "--format", "csv")
    assert code == 0
    assert out.splitlines()[0] == "label,nb_hits,nb_visits,avg_time_on_page,bounce_rate,exit_rate"
    assert api_calls(fake_matomo) == before
    code, _, _ = run_cli("report", "pages", "--format", "csv", "--refresh")
    assert api_calls(fake_matomo, "Actions.getPageUrls") == 2
    code, _, _ = run_cli("report", "pages", "--format", "csv", "--no-cache")
    assert api_calls(fake_matomo, "Actions.getPageUrls") == 3


def test_table_and_chart(run_cli: Any, fake_matomo: FakeMatomo) -> None:
    track(fake_matomo)
    code, out, _ = run_cli("report", "pages")
    assert code == 0
    assert "Page URLs — site 1, day today" in out and "Pageviews" in out
    code, out, _ = run_cli("report", "visits", "--date", "last3", "--chart")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("Visits · Visits overview")
    assert lines[-1].startswith("▁▁█  min 0  max 8  total 8")
    code, out, _ = run_cli("report", "pages", "--chart")
    assert code == 0 and "/p0" in out and "█" in out


def test_empty_report_says_so_on_stderr(run_cli: Any) -> None:
    code, out, err = run_cli("report", "campaigns", "--format", "json")
    assert code == 0
    assert json.loads(out) == []
    assert err.strip() == "no data for campaigns on site 1, day today"


def test_summary_is_one_bulk_request(run_cli: Any, fake_matomo: FakeMatomo) -> None:
    track(fake_matomo)
    code, out, err = run_cli("report", "summary", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["visits"][0]["nb_visits"] == 8
    assert [r["label"] for r in data["events"]] == ["Checkout"]
    assert api_calls(fake_matomo, "API.getBulkRequest") == 1
    reports = {"VisitsSummary.get", "Actions.getPageUrls", "Events.getCategory"}
    assert all(api_calls(fake_matomo, m) == 0 for m in reports)  # only inside the bulk


def track_events(fake: FakeMatomo, events: list[tuple[str, str, float]]) -> None:
    now = int(time.time()) - 30
    items = [
        f"?idsite=1&rec=1&e_c={c}&e_a={a}&e_v={v}&url=https%3A%2F%2Fexample.org%2F"
        f"&cid={200 + i:016x}&cdt={now}"
        for i, (c, a, v) in enumerate(events)
    ]
    answer = requests.post(
        fake.url + "matomo.php", json={"requests": items, "token_auth": SUPERUSER_TOKEN}, timeout=5
    )
    assert answer.json()["tracked"] == len(items)


EVENTS = [
    ("Checkout", "Click", 2),
    ("Checkout", "Pay", 3),
    ("Checkout", "Pay", 5),
    ("Video", "Play", 1),
]


def test_events_report_totals_each_category_over_its_actions(
    run_cli: Any, fake_matomo: FakeMatomo
) -> None:
    track_events(fake_matomo, EVENTS)
    code, out, err = run_cli("report", "events", "--format", "json")
    assert code == 0, err
    totals = {r["label"]: (r["nb_events"], r["sum_event_value"]) for r in json.loads(out)}
    assert totals == {"Checkout": (3, 10), "Video": (1, 1)}


def test_event_pairs_report_has_one_row_per_category_and_action(
    run_cli: Any, fake_matomo: FakeMatomo
) -> None:
    track_events(fake_matomo, EVENTS)
    code, out, err = run_cli("report", "event-pairs", "--format", "json")
    assert code == 0, err
    pairs = {
        (r["Events_EventCategory"], r["Events_EventAction"]): r["nb_events"]
        for r in json.loads(out)
    }
    assert pairs == {("Checkout", "Click"): 1, ("Checkout", "Pay"): 2, ("Video", "Play"): 1}


def test_summary_ranks_event_categories_not_pairs(run_cli: Any, fake_matomo: FakeMatomo) -> None:
    # Video's four actions (one event each) outnumber Checkout's 3, whose "Pay" is the top pair.
    video = [("Video", action, 1) for action in ("Stop", "Seek", "Pause")]
    track_events(fake_matomo, [*EVENTS, *video])
    code, out, err = run_cli("report", "summary", "--format", "json", "--limit", "1")
    assert code == 0, err
    assert [(r["label"], r["nb_events"]) for r in json.loads(out)["events"]] == [("Video", 4)]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["report", "pagez"], 2, "Unknown report 'pagez'. Did you mean pages"),
        (["report", "visits", "--date", "2026-02-30"], 2, "not a calendar date"),
        (["report", "visits", "--period", "range", "--date", "today"], 2, "period range needs"),
        (["report", "visits", "--period", "hour"], 2, "period 'hour' is not supported"),
        (["report", "visits", "--format", "JSON"], 2, "'JSON' is not one of 'table', 'json'"),
        (["report", "visits", "--no-cache", "--refresh"], 2, "contradict"),
        (["report", "visits", "--chart"], 2, "needs several periods"),
        (["report", "pages", "--chart", "--format", "json"], 2, "--chart draws on the terminal"),
        (["report", "pages", "--format", "xml"], 2, "'xml' is not one of 'table', 'json'"),
        (["report", "pages", "--limit", "0"], 2, "--limit 0 is not valid"),
        (["report", "visits", "--site", "99"], 65, "An unexpected website was found"),
        (["report", "SitesManager.deleteSite"], 2, "SitesManager.deleteSite changes Matomo"),
        (["report", "show", "usersmanager.DELETEUSER"], 2, "DELETEUSER changes Matomo"),
        (["report", "CoreAdminHome.invalidateArchivedReports"], 2, "refused without"),
    ],
)
def test_bad_input_exits_with_the_documented_code(
    run_cli: Any, fake_matomo: FakeMatomo, args: list[str], code: int, message: str
) -> None:
    got, _, err = run_cli(*args)
    assert got == code, err
    assert message in err
    if "unexpected website" not in message:
        assert api_calls(fake_matomo) == 0  # rejected before any request


def test_unknown_column_names_the_available_ones(run_cli: Any, fake_matomo: FakeMatomo) -> None:
    track(fake_matomo)
    code, _, err = run_cli("report", "pages", "--columns", "nb_hitz")
    assert code == 2
    assert "no column 'nb_hitz'" in err and "nb_hits" in err


@pytest.mark.parametrize("name", ["pages", "visits"])
def test_unknown_column_is_a_usage_error_without_data_too(
    run_cli: Any, fake_matomo: FakeMatomo, name: str
) -> None:
    # No hits: pages answers [], visits all zeros. Neither shows "no data" and exits 0.
    for _ in range(2):  # the second run is answered from the cache
        code, out, err = run_cli("report", name, "--columns", "nb_hitz")
        assert code == 2, err
        assert "no column 'nb_hitz'" in err and out == ""
    code, _, err = run_cli("report", name, "--columns", "nb_visits", "--format", "json")
    assert code == 0, err


def test_unknown_column_of_an_empty_adhoc_report_cannot_be_checked(
    run_cli: Any, fake_matomo: FakeMatomo
) -> None:
    code, _, err = run_cli("report", "Referrers.getKeywords", "--columns", "any_metric")
    assert code == 0, err
    assert "no data" in err


def test_invalid_token_exits_77(
    run_cli: Any, fake_matomo: FakeMatomo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MATOMO_TOKEN", "0" * 31 + "9")
    code, _, err = run_cli("report", "visits", "--no-cache")
    assert code == 77
    assert "Unable to authenticate" in err


def test_help_lists_subcommands_and_catalogue(run_cli: Any) -> None:
    code, out, _ = run_cli("report", "--help")
    assert code == 0
    for word in (
        "list",
        "summary",
        "show",
        "visits",
        "search-engines",
        "Live.getLastVisitsDetails",
    ):
        assert word in out


def test_report_list(run_cli: Any, fake_matomo: FakeMatomo) -> None:
    code, out, _ = run_cli("report", "list", "--format", "json")
    assert code == 0
    names = [r["name"] for r in json.loads(out)]
    assert names[:3] == ["visits", "pages", "entry-pages"] and "live" in names
    assert api_calls(fake_matomo) == 0
    code, out, err = run_cli("report", "list", "--all", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert any(r["source"] == "server" for r in rows)
    assert api_calls(fake_matomo, "API.getReportMetadata") == 1


def test_cache_stats_and_clear(run_cli: Any, fake_matomo: FakeMatomo) -> None:
    track(fake_matomo)
    run_cli("report", "visits")
    run_cli("report", "visits")
    code, out, _ = run_cli("cache", "stats", "--format", "json")
    assert code == 0
    stats = json.loads(out)
    assert stats["entries"] == 2  # the site's settings and the report
    assert stats["hits"] == 1 and stats["misses"] == 2
    assert Path(stats["path"]).name == "http-cache.sqlite"
    code, out, _ = run_cli("cache", "clear", "--expired", "--format", "json")
    assert code == 0
    assert json.loads(out) == {
        "profile": "default",
        "path": stats["path"],
        "removed": 0,
        "expired_only": True,
    }
    code, _, err = run_cli("cache", "clear")
    assert code == 0 and "Removed 2 entries" in err
    code, out, _ = run_cli("cache", "clear", "-f", "json")
    assert code == 0 and json.loads(out)["removed"] == 0
    assert run_cli("cache", "clear", "--format", "csv")[0] == 2
    code, out, _ = run_cli("cache", "stats")
    assert code == 0 and "0 (0 fresh, 0 expired)" in out
    assert os.path.exists(stats["path"])


# --- the lean cache-hit path (run before typer is imported) -------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["report", "visits"], ({}, report_show.ShowArgs("visits"))),
        (
            [
                "--profile",
                "a",
                "report",
                "show",
                "pages",
                "--format=json",
                "-n",
                "5",
                "--site",
                "2",
            ],
            ({"--profile": "a"}, report_show.ShowArgs("pages", fmt="json", limit=5, site=2)),
        ),
        (
            ["--url=http://x/", "report", "events", "-p", "week", "-d", "last4", "-c", "label"],
            (
                {"--url": "http://x/"},
                report_show.ShowArgs("events", period="week", date="last4", columns="label"),
            ),
        ),
        (["report", "visits", "--chart"], None),
        (["report", "visits", "--refresh"], None),
        (["report", "visits", "--no-cache"], None),
        (["report", "visits", "--help"], None),
        (["report", "visits", "--limit", "x"], None),
        (["report", "visits", "--period"], None),
        (["-v", "report", "visits"], None),
        (["--debug", "report", "visits"], None),
        (["report", "list"], None),
        (["report", "summary"], None),
        (["report"], None),
        (["report", "--help"], None),
        (["config", "show"], None),
        ([], None),
    ],
)
def test_parse_argv_takes_only_what_it_understands(argv: list[str], expected: Any) -> None:
    assert report_show.parse_argv(argv) == expected


def _click_root() -> Any:
    import typer

    from matokit.cli.app import build_app

    return typer.main.get_command(build_app())


def test_the_lean_option_table_matches_the_click_command() -> None:
    from matokit.cli import introspect

    committed = (ROOT / introspect.REPORT_OPTIONS_FILE).read_text(encoding="utf-8")
    assert committed == introspect.report_options_source(_click_root()), (
        f"{introspect.REPORT_OPTIONS_FILE} is stale: run "
        f"`python -m matokit.cli.regenerate > {introspect.REPORT_OPTIONS_FILE}`"
    )


def test_the_table_check_sees_a_new_alias() -> None:
    from matokit.cli import introspect

    root = _click_root()
    period = next(p for p in root.commands["report"].commands["show"].params if p.name == "period")
    period.opts.append("-P")
    assert "-P" in introspect.report_options_source(root)
    assert "-P" not in (ROOT / introspect.REPORT_OPTIONS_FILE).read_text(encoding="utf-8")


def test_every_lean_option_is_a_valued_option_of_the_cli() -> None:
    from matokit.cli import report_options

    for table, names in (
        (report_options.GLOBAL, report_show.LEAN_GLOBAL),
        (report_options.SHOW, report_show.LEAN_SHOW),
    ):
        for name in names:
            assert table[name][1], f"{name} takes no value"
    fields = set(report_show.ShowArgs.__dataclass_fields__)
    assert set(report_options.SHOW) | set(report_options.SHOW_ARGUMENTS) == fields


def test_parse_argv_takes_its_options_from_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    from matokit.cli import report_options

    show = dict(report_options.SHOW)
    show["date"] = (("--date", "-d", "--when"), True, "string")
    show["limit"] = (("--limit",), True, "integer")
    monkeypatch.setattr(report_options, "SHOW", show)
    assert report_show.parse_argv(["report", "visits", "--when", "yesterday"]) == (
        {},
        report_show.ShowArgs("visits", date="yesterday"),
    )
    assert report_show.parse_argv(["report", "visits", "-n", "3"]) is None


def test_lean_path_prints_what_the_normal_path_prints_without_a_request(
    run_cli: Any, fake_matomo: FakeMatomo, capsys: pytest.CaptureFixture[str]
) -> None:
    track(fake_matomo)
    assert report_show.try_cached(["report", "pages", "--format", "json"]) is None  # a miss
    assert api_calls(fake_matomo) == 0
    for fmt in ("json", "csv", "ndjson", "table"):
        code, normal, _ = run_cli("report", "pages", "--format", fmt, "--limit", "2")
        assert code == 0
        before = api_calls(fake_matomo)
        output._consoles.clear()
        assert report_show.try_cached(["report", "pages", "--format", fmt, "--limit", "2"]) == 0
        assert capsys.readouterr().out == normal
        assert api_calls(fake_matomo) == before


def test_lean_path_leaves_errors_to_the_normal_path(run_cli: Any) -> None:
    assert report_show.try_cached(["report", "visits", "--date", "2026-02-30"]) is None
    assert report_show.try_cached(["report", "nope"]) is None
    assert report_show.try_cached(["report", "live", "--format", "json"]) is None


@pytest.mark.parametrize(
    ("headers", "cells", "fixed", "total", "widths"),
    [
        # Everything fits on one line: natural widths.
        (["Label", "Visits"], [["/a", "12"]], [False, True], 80, [5, 6]),
        # Too narrow: the text column folds, numbers keep their values and header words.
        (
            ["Page URL", "Unique pageviews", "Bounce rate"],
            [["/" + "x" * 60, "1,234", "50%"]],
            [False, True, True],
            50,
            [29, 9, 6],
        ),
        # Cannot fit at all: minimum widths, wider than the screen (printed uncropped).
        (
            ["Label", "Converted visits", "Unique visitors"],
            [["x" * 40, "1", "2"]],
            [False, True, True],
            20,
            [12, 9, 8],
        ),
    ],
)
def test_column_widths(
    headers: list[str], cells: list[list[str]], fixed: list[bool], total: int, widths: list[int]
) -> None:
    got = report_show.column_widths(headers, cells, fixed, total)
    assert got == widths
    if sum(widths) + report_show.GAP * (len(widths) - 1) <= total:
        assert sum(got) + report_show.GAP * (len(got) - 1) <= total


def test_summary_shows_what_came_back_and_fails_for_what_did_not(
    run_cli: Any, fake_matomo: FakeMatomo
) -> None:
    track(fake_matomo)
    fake_matomo.deactivate_plugin("Events")
    code, out, err = run_cli("report", "summary", "--format", "json")
    assert code == 65, err
    data = json.loads(out)
    assert data["visits"][0]["nb_visits"] == 8
    assert "events" not in data and "Events" in data["errors"]["events"]
    assert "Events" in err
