"""End to end: `matokit report` and `matokit cache` as a subprocess against the fake Matomo."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import RunMatokit
from tests.fakematomo import SUPERUSER_TOKEN, FakeMatomo, Fault


@pytest.fixture
def tracked(fake_matomo: FakeMatomo) -> FakeMatomo:
    """Nine pageviews on three pages and three events, tracked today through bulk tracking."""
    now = int(time.time()) - 60
    items = [
        f"?idsite=1&rec=1&url=https%3A%2F%2Fexample.org%2Fpage-{i % 3}&action_name=Page%20{i % 3}"
        f"&cid={i:016x}&cdt={now}"
        for i in range(9)
    ]
    items += [
        f"?idsite=1&rec=1&e_c=Newsletter&e_a=Subscribe&e_v=1&url=https%3A%2F%2Fexample.org%2F"
        f"&cid={50 + i:016x}&cdt={now}"
        for i in range(3)
    ]
    answer = requests.post(
        fake_matomo.url + "matomo.php",
        json={"requests": items, "token_auth": SUPERUSER_TOKEN},
        timeout=10,
    )
    assert answer.json()["tracked"] == len(items)
    return fake_matomo


def api_requests(fake: FakeMatomo, method: str | None = None) -> int:
    return sum(
        1
        for r in fake.requests
        if r.path.endswith("index.php") and (method is None or f"method={method}" in r.query)
    )


def cache_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_report_in_every_format(
    run_matokit: RunMatokit, env: dict[str, str], tracked: FakeMatomo
) -> None:
    table = run_matokit("report", "pages", env=env)
    assert table.code == 0, table
    assert "Page URLs — site 1, day today" in table.stdout
    assert "Pageviews" in table.stdout and "/page-0" in table.stdout

    as_json = run_matokit("report", "pages", "--format", "json", env=env)
    assert as_json.code == 0, as_json
    rows = json.loads(as_json.stdout)
    assert sorted(r["label"] for r in rows) == ["/page-0", "/page-1", "/page-2"]
    page = next(r for r in rows if r["label"] == "/page-0")
    assert page["nb_hits"] == 3 and isinstance(page["bounce_rate"], float)

    as_csv = run_matokit("report", "pages", "--format", "csv", env=env)
    assert as_csv.code == 0, as_csv
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert parsed[0].keys() >= {"label", "nb_hits", "nb_visits", "bounce_rate"}
    assert {r["label"] for r in parsed} == {r["label"] for r in rows}

    ndjson = run_matokit("report", "events", "--format", "ndjson", env=env)
    assert ndjson.code == 0, ndjson
    events = [json.loads(line) for line in ndjson.stdout.splitlines()]
    assert events == [
        {
            "label": "Newsletter",
            "nb_events": 3,
            "nb_visits": 3,
            "sum_event_value": 3,
            "avg_event_value": 1,
        }
    ]

    visits = run_matokit("report", "visits", "--format", "json", env=env)
    assert json.loads(visits.stdout)[0]["nb_visits"] == 12

    chart = run_matokit("report", "visits", "--date", "last7", "--chart", env=env)
    assert chart.code == 0, chart
    assert chart.stdout.splitlines()[-1].endswith("min 0  max 12  total 12"), chart

    summary = run_matokit("report", "summary", "--format", "json", env=env)
    assert summary.code == 0, summary
    assert json.loads(summary.stdout)["visits"][0]["nb_visits"] == 12


def test_a_second_identical_run_makes_no_request_and_refresh_makes_one(
    run_matokit: RunMatokit, env: dict[str, str], tracked: FakeMatomo
) -> None:
    first = run_matokit("report", "visits", "--format", "json", env=env)
    assert first.code == 0, first
    after_first = api_requests(tracked)
    assert after_first == 2  # the site's time zone (cached for a day) and the report

    second = run_matokit("report", "visits", "--format", "json", env=env)
    assert second.code == 0, second
    assert second.stdout == first.stdout
    assert api_requests(tracked) == after_first

    table = run_matokit("report", "visits", env=env)  # same request, other rendering
    assert table.code == 0, table
    assert api_requests(tracked) == after_first

    refreshed = run_matokit("report", "visits", "--format", "json", "--refresh", env=env)
    assert refreshed.code == 0, refreshed
    assert api_requests(tracked) == after_first + 1
    assert api_requests(tracked, "VisitsSummary.get") == 2

    uncached = run_matokit("report", "visits", "--format", "json", "--no-cache", env=env)
    assert uncached.code == 0, uncached
    assert api_requests(tracked) == after_first + 2

    live = [run_matokit("report", "live", "--format", "json", env=env) for _ in range(2)]
    assert all(r.code == 0 for r in live), live
    assert api_requests(tracked, "Live.getLastVisitsDetails") == 2  # never cached


def test_errors_are_not_cached(
    run_matokit: RunMatokit, env: dict[str, str], fake_matomo: FakeMatomo
) -> None:
    for _ in range(2):
        bad = run_matokit("report", "visits", "--site", "99", env=env)
        assert bad.code == 65, bad
        assert "An unexpected website was found" in bad.stderr
    assert api_requests(fake_matomo, "SitesManager.getSiteFromId") == 2

    fake_matomo.add_fault(
        Fault(
            endpoint="api",
            method="VisitsSummary.get",
            body='{"result":"error","message":"The period \'day\' is not supported."}',
            times=1,
        )
    )
    failed = run_matokit("report", "visits", "--format", "json", env=env)
    assert failed.code == 65, failed
    assert "is not supported" in failed.stderr
    ok = run_matokit("report", "visits", "--format", "json", env=env)
    assert ok.code == 0, ok
    assert api_requests(fake_matomo, "VisitsSummary.get") == 2

    fake_matomo.add_fault(Fault(endpoint="api", method="VisitsSummary.get", status=503, times=1))
    down = run_matokit("report", "visits", "--date", "yesterday", "--format", "json", env=env)
    assert down.code == 69, down
    up = run_matokit("report", "visits", "--date", "yesterday", "--format", "json", env=env)
    assert up.code == 0, up


def test_the_token_is_not_in_the_cache_files(
    run_matokit: RunMatokit,
    env: dict[str, str],
    tracked: FakeMatomo,
    matokit_env: dict[str, str],
) -> None:
    for args in (("visits",), ("pages", "--format", "csv"), ("summary",), ("list", "--all")):
        result = run_matokit("report", *args, env=env)
        assert result.code == 0, result
    files = cache_files(Path(matokit_env["MATOKIT_CACHE_DIR"]))
    assert any(p.name == "http-cache.sqlite" for p in files), files
    data = b"".join(p.read_bytes() for p in files)
    assert SUPERUSER_TOKEN.encode() not in data
    assert b"token_auth=REDACTED" in data
    for path in files:
        assert path.stat().st_mode & 0o077 == 0, path


def test_profile_a_cache_never_answers_for_profile_b(
    run_matokit: RunMatokit,
    fake_matomo: FakeMatomo,
    matokit_env: dict[str, str],
) -> None:
    config = Path(matokit_env["MATOKIT_CONFIG"])
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[profiles.a]\nurl = "{fake_matomo.url}"\nsite_id = 1\n'
        f'[profiles.b]\nurl = "{fake_matomo.url}"\nsite_id = 1\n'
    )
    env = {"MATOMO_TOKEN": SUPERUSER_TOKEN}
    args = ("report", "visits", "--format", "json")
    assert run_matokit("--profile", "a", *args, env=env).code == 0
    assert run_matokit("--profile", "a", *args, env=env).code == 0
    assert api_requests(fake_matomo, "VisitsSummary.get") == 1
    b = run_matokit("--profile", "b", *args, env=env)
    assert b.code == 0, b
    assert api_requests(fake_matomo, "VisitsSummary.get") == 2
    root = Path(matokit_env["MATOKIT_CACHE_DIR"])
    assert (root / "a" / "http-cache.sqlite").is_file()
    assert (root / "b" / "http-cache.sqlite").is_file()


def test_a_corrupt_cache_file_is_rebuilt(
    run_matokit: RunMatokit, env: dict[str, str], tracked: FakeMatomo, matokit_env: dict[str, str]
) -> None:
    path = Path(matokit_env["MATOKIT_CACHE_DIR"]) / "default" / "http-cache.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00garbage, not SQLite\x00" * 500)
    result = run_matokit("report", "visits", "--format", "json", env=env)
    assert result.code == 0, result
    assert json.loads(result.stdout)[0]["nb_visits"] == 12
    assert "report cache" in result.stderr and "rebuilt" in result.stderr, result
    again = run_matokit("report", "visits", "--format", "json", env=env)
    assert again.code == 0 and again.stderr == "", again


@pytest.mark.parametrize("where", ["profile", ".env"])
def test_log_format_json_from_the_profile_or_dotenv_makes_the_logs_json(
    run_matokit: RunMatokit,
    env: dict[str, str],
    tracked: FakeMatomo,
    matokit_env: dict[str, str],
    e2e_dirs: dict[str, Path],
    where: str,
) -> None:
    if where == "profile":
        config = Path(matokit_env["MATOKIT_CONFIG"])
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text('[profiles.default]\nlog_format = "json"\n')
    else:
        (e2e_dirs["cwd"] / ".env").write_text("MATOKIT_LOG_FORMAT=json\n")
    path = Path(matokit_env["MATOKIT_CACHE_DIR"]) / "default" / "http-cache.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00garbage, not SQLite\x00" * 500)  # its warning is the log line
    result = run_matokit("report", "visits", "--format", "json", env=env)
    assert result.code == 0, result
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert [r["level"] for r in records] == ["warning"], result
    assert "rebuilt it empty" in records[0]["message"]
    shown = run_matokit("config", "show", "--format", "json", env=env)
    source = "config file" if where == "profile" else ".env"
    assert json.loads(shown.stdout)["settings"]["log_format"] == {"value": "json", "source": source}


def test_log_level_info_in_dotenv_is_honoured_by_a_cache_hit(
    run_matokit: RunMatokit, env: dict[str, str], tracked: FakeMatomo, e2e_dirs: dict[str, Path]
) -> None:
    first = run_matokit("report", "visits", "--format", "json", env=env)
    assert first.code == 0 and first.stderr == "", first
    (e2e_dirs["cwd"] / ".env").write_text("MATOKIT_LOG_LEVEL=info\n")
    hit = run_matokit("report", "visits", "--format", "json", env=env)
    assert hit.code == 0, hit
    assert hit.stdout == first.stdout
    assert "answered from the cache" in hit.stderr, hit


def test_cache_stats_and_clear(
    run_matokit: RunMatokit, env: dict[str, str], tracked: FakeMatomo
) -> None:
    for _ in range(3):
        assert run_matokit("report", "visits", "--format", "json", env=env).code == 0
    stats = run_matokit("cache", "stats", "--format", "json", env=env)
    assert stats.code == 0, stats
    data = json.loads(stats.stdout)
    assert (data["entries"], data["hits"], data["misses"]) == (2, 2, 2)
    assert data["size_bytes"] > 0
    cleared = run_matokit("cache", "clear", env=env)
    assert cleared.code == 0 and "Removed 2 entries" in cleared.stderr, cleared
    assert run_matokit("report", "visits", "--format", "json", env=env).code == 0
    assert api_requests(tracked, "VisitsSummary.get") == 2


def test_empty_report_and_bad_input(
    run_matokit: RunMatokit, env: dict[str, str], fake_matomo: FakeMatomo
) -> None:
    empty = run_matokit("report", "campaigns", "--format", "json", env=env)
    assert empty.code == 0, empty
    assert empty.stdout.strip() == "[]"
    assert empty.stderr.strip() == "no data for campaigns on site 1, day today"

    before = api_requests(fake_matomo)
    unknown = run_matokit("report", "visitz", env=env)
    assert unknown.code == 2, unknown  # a bad argument
    assert "Unknown report 'visitz'. Did you mean visits?" in unknown.stderr

    bad_date = run_matokit("report", "visits", "--period", "range", "--date", "2026-11-01", env=env)
    assert bad_date.code == 2, bad_date
    assert "period range needs two dates" in bad_date.stderr
    assert api_requests(fake_matomo) == before  # bad input never reaches Matomo


def test_invalid_token_is_exit_77_and_not_cached(
    run_matokit: RunMatokit, env: dict[str, str], fake_matomo: FakeMatomo
) -> None:
    bad = {**env, "MATOMO_TOKEN": "0" * 31 + "7"}
    result = run_matokit("report", "visits", env=bad)
    assert result.code == 77, result
    assert "Unable to authenticate" in result.stderr


def test_a_fresh_cache_hit_is_answered_without_typer_or_requests(
    run_matokit: RunMatokit, env: dict[str, str], tracked: FakeMatomo
) -> None:
    first = run_matokit("--site", "1", "report", "pages", "-n", "2", "--format=json", env=env)
    assert first.code == 0, first
    before = api_requests(tracked)
    # Python lists every module it imports on stderr; the lean path must need none of these.
    traced = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
    hit = run_matokit("--site", "1", "report", "pages", "-n", "2", "--format=json", env=traced)
    assert hit.code == 0, hit
    assert hit.stdout == first.stdout
    assert api_requests(tracked) == before
    imported = {line.rsplit("|", 1)[-1].strip() for line in hit.stderr.splitlines()}
    assert "matokit.cli.report_options" in imported
    heavy = {"typer", "click", "requests", "requests_cache", "urllib3", "pickle"}
    assert not imported & heavy
