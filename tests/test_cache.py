"""The report cache: TTL policy around midnight, what is (never) stored, token redaction, files."""

from __future__ import annotations

import json
import logging
import os
import pickle
import sqlite3
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from matokit import cache
from matokit.client import MatomoClient
from matokit.config import Settings, resolve
from matokit.errors import InvalidRequestError, UsageError
from tests.fakematomo import SUPERUSER_TOKEN, VIEW_TOKEN, FakeMatomo, Fault

DAY = 86400.0


def at(text: str) -> datetime:
    """An aware UTC moment from `YYYY-MM-DD HH:MM:SS`."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- TTL policy ------------------------------------------------------------------------------

TTL_CASES = [
    # (period, date, tz, now (UTC), expected seconds)
    ("day", "today", "UTC", "2026-11-25 12:00:00", 300),
    ("day", "today", "UTC", "2026-11-25 23:58:00", 120),  # capped at the site's midnight
    ("day", "2026-11-25", "UTC", "2026-11-25 23:58:00", 300),  # absolute date: no cap
    ("day", "2026-11-25", "UTC", "2026-11-26 00:01:00", DAY),  # finished a minute ago
    ("day", "2026-11-24", "UTC", "2026-11-25 12:00:00", DAY),
    ("day", "2026-11-30", "UTC", "2026-11-25 12:00:00", 300),  # future: may still change
    ("day", "yesterday", "UTC", "2026-11-25 12:00:00", 43200),  # final, but relative
    ("day", "yesterday", "UTC", "2026-11-25 23:59:30", 30),
    # Paris is UTC+1 in November: 23:30 UTC is already tomorrow there.
    ("day", "2026-11-25", "Europe/Paris", "2026-11-25 23:30:00", DAY),
    ("day", "2026-11-25", "Europe/Paris", "2026-11-25 22:59:59", 300),
    ("day", "today", "Europe/Paris", "2026-11-25 22:55:00", 300),
    ("day", "today", "Europe/Paris", "2026-11-25 22:58:00", 120),
    # New York is UTC-5: 03:00 UTC on the 26th is still the 25th there.
    ("day", "2026-11-25", "America/New_York", "2026-11-26 03:00:00", 300),
    ("day", "yesterday", "America/New_York", "2026-11-26 03:00:00", 7200),
    ("day", "2026-11-25", "America/New_York", "2026-11-26 05:00:00", DAY),
    # Matomo's manual offsets: UTC+5.5 is UTC+05:30.
    ("day", "today", "UTC+5.5", "2026-11-25 18:27:00", 180),
    ("day", "2026-11-25", "UTC+5.5", "2026-11-25 18:31:00", DAY),
    ("day", "2026-11-25", "UTC-3", "2026-11-26 02:59:00", 300),
    # Kiritimati (UTC+14) and Pago Pago (UTC-11): a day apart at the same instant.
    ("day", "2026-11-25", "Pacific/Kiritimati", "2026-11-25 10:00:00", DAY),
    ("day", "2026-11-25", "Pacific/Pago_Pago", "2026-11-26 10:00:00", 300),
    # Longer periods.
    ("week", "2026-11-23", "UTC", "2026-11-25 12:00:00", 300),  # this week
    ("week", "2026-11-16", "UTC", "2026-11-25 12:00:00", DAY),  # last week
    ("week", "previous1", "UTC", "2026-11-25 12:00:00", 43200),
    ("month", "last3", "UTC", "2026-11-25 23:00:00", 300),
    ("month", "2026-10-01", "UTC", "2026-11-01 00:00:01", DAY),
    ("month", "2026-10-01", "America/New_York", "2026-11-01 00:00:01", 300),  # Oct 31 in NY
    ("year", "previous1", "UTC", "2026-11-25 12:00:00", 43200),
    ("range", "2026-11-01,2026-11-20", "UTC", "2026-11-25 12:00:00", DAY),
    ("range", "2026-11-01,today", "UTC", "2026-11-25 23:00:00", 300),
    ("range", "2026-11-01,yesterday", "UTC", "2026-11-25 23:00:00", 3600),
    ("range", "last7", "UTC", "2026-11-25 12:00:00", 300),
    ("range", "previous7", "UTC", "2026-11-25 12:00:00", 43200),
    ("day", "2026-11-01,2026-11-25", "UTC", "2026-11-25 12:00:00", 300),
    # Unknown zone: "today" could be as early as UTC-12, and relative dates stay short.
    ("day", "2026-11-24", None, "2026-11-25 06:00:00", 300),
    ("day", "2026-11-24", "Not/AZone", "2026-11-25 13:00:00", DAY),
    ("day", "yesterday", None, "2026-11-25 12:00:00", 300),
]


@pytest.mark.parametrize(("period", "date", "tz", "now", "expected"), TTL_CASES)
def test_ttl_for(period: str, date: str, tz: str | None, now: str, expected: float) -> None:
    assert cache.ttl_for(period, date, tz=tz, now=at(now)) == pytest.approx(expected)


def test_ttl_for_uses_the_configured_ttls_and_accepts_epoch_seconds() -> None:
    now = at("2026-11-25 12:00:00").timestamp()
    assert cache.ttl_for("day", "2026-11-25", tz="UTC", now=now, ttl_today=60) == 60
    assert cache.ttl_for("day", "2026-11-01", tz="UTC", now=now, ttl_past=7200) == 7200


def test_ttl_for_rejects_what_matomo_would_reject() -> None:
    with pytest.raises(UsageError):
        cache.ttl_for("range", "today", tz="UTC", now=at("2026-11-25 12:00:00"))


def test_seconds_to_midnight_follows_daylight_saving_time() -> None:
    # 2026-10-25 in Paris has 25 hours (back from CEST to CET at 03:00).
    left = cache.seconds_to_midnight("Europe/Paris", at("2026-10-24 22:30:00"))  # 00:30 CEST
    assert left == pytest.approx(24.5 * 3600)
    assert cache.seconds_to_midnight("Nowhere/Land", at("2026-10-24 22:30:00")) is None


NOW = at("2026-11-25 12:00:00")
ZONES = {"1": "UTC"}


@pytest.mark.parametrize(
    ("method", "params", "expected"),
    [
        ("VisitsSummary.get", {"idSite": "1", "period": "day", "date": "2026-11-01"}, DAY),
        ("VisitsSummary.get", {"idSite": "1", "period": "day", "date": "today"}, 300),
        ("Live.getLastVisitsDetails", {"idSite": "1", "period": "day", "date": "2026-11-01"}, None),
        ("API.getMatomoVersion", {}, None),
        ("UsersManager.hasSuperUserAccess", {}, None),
        ("SitesManager.getSitesIdWithAdminAccess", {}, None),
        ("SitesManager.getSiteFromId", {"idSite": "1"}, DAY),
        ("API.getReportMetadata", {"idSite": "1"}, DAY),
        ("VisitsSummary.get", {"idSite": "1", "period": "day", "date": "lastWeek"}, 300),
        (
            "API.getBulkRequest",
            {
                "urls[0]": "method=VisitsSummary.get&idSite=1&period=day&date=2026-11-01",
                "urls[1]": "method=Actions.getPageUrls&idSite=1&period=day&date=today",
            },
            300,
        ),
        (
            "API.getBulkRequest",
            {
                "urls[0]": "method=VisitsSummary.get&idSite=1&period=day&date=2026-11-01",
                "urls[1]": "method=Live.getLastVisitsDetails&idSite=1",
            },
            None,
        ),
        ("API.getBulkRequest", {}, None),
    ],
)
def test_request_ttl(method: str, params: dict[str, str], expected: float | None) -> None:
    assert cache.request_ttl(method, params, timezones=ZONES, now=NOW) == expected


@pytest.mark.parametrize(
    ("method", "never"),
    [
        ("Live.getLastVisitsDetails", True),
        ("Live.getCounters", True),
        ("live.getLastVisitsDetails", True),  # PHP resolves names case-insensitively
        ("LIVE.getCounters", True),
        (" Live.getCounters", True),
        ("VisitsSummary.get", False),
        ("LiveTab.get", False),  # only the Live module, not a prefix of a module name
        ("Actions.getPageUrls", False),
    ],
)
def test_never_cached(method: str, never: bool) -> None:
    """One answer for the cache, the report catalogue and `report list --all`."""
    from matokit import reports

    assert cache.never_cached(method) is never
    params = {"period": "day", "date": "2020-01-01"}
    ttl = cache.request_ttl(method, params, timezones=ZONES, now=NOW)
    assert (ttl is None) is never
    assert reports.adhoc(method.strip()).cacheable is not never


@pytest.mark.parametrize(
    ("status", "body", "fmt", "redirected", "expected"),
    [
        (200, b'[{"nb_visits":1}]', "JSON", False, True),
        (200, b'{"nb_visits":1}', "JSON", False, True),
        (
            200,
            b'{"result":"error","message":"An unexpected website was found"}',
            "JSON",
            False,
            False,
        ),
        (200, b'[{"nb_visits":1},{"result":"error","message":"x"}]', "JSON", False, False),
        (200, b'{"result":"success","message":"ok"}', "JSON", False, True),
        (200, b"<html>login</html>", "JSON", False, False),
        (200, b"", "JSON", False, False),
        (401, b'{"result":"error","message":"Unable to authenticate"}', "JSON", False, False),
        (500, b'{"result":"error","message":"SQLSTATE"}', "JSON", False, False),
        (503, b"<html>maintenance</html>", "JSON", False, False),
        (200, b'[{"nb_visits":1}]', "JSON", True, False),
        (200, b"label,nb_visits\n/,3\n", "CSV", False, True),
        (200, b"Error: The period 'x' is not supported", "CSV", False, False),
        (200, b'<result><error message="bad" /></result>', "XML", False, False),
    ],
)
def test_is_cacheable_answer(
    status: int, body: bytes, fmt: str, redirected: bool, expected: bool
) -> None:
    assert cache.is_cacheable_answer(status, body, fmt=fmt, redirected=redirected) is expected


def test_fast_key_ignores_the_token_and_parameter_order() -> None:
    a = cache.fast_key("https://m.example/", "X.y", "json", [("b", "2"), ("a", "1")])
    b = cache.fast_key(
        "https://M.example", "X.y", "JSON", [("a", "1"), ("token_auth", "t"), ("b", "2")]
    )
    assert a == b
    assert a != cache.fast_key("https://m.example", "X.y", "JSON", [("a", "1"), ("b", "3")])


# --- the session against the fake Matomo ------------------------------------------------------


def settings_for(
    fake: FakeMatomo, profile: str = "default", token: str = SUPERUSER_TOKEN
) -> Settings:
    config = Path(os.environ["HOME"]) / "config.toml"
    if not config.exists():
        config.write_text("[profiles.default]\n[profiles.a]\n[profiles.b]\n")
    env = {"MATOMO_TOKEN": token, "MATOKIT_CONFIG": str(config), "MATOKIT_PROFILE": profile}
    return resolve({"--url": fake.url}, env=env)


class Harness:
    """A client over a cached session, and counters of what reached the fake Matomo."""

    def __init__(self, fake: FakeMatomo, settings: Settings, **options: Any) -> None:
        self.fake = fake
        self.settings = settings
        self.session = cache.cached_session(settings, **options)
        self.session.timezones["1"] = "UTC"
        self.client = MatomoClient(
            base_url=settings.url, token=settings.token(), session=self.session
        )

    def calls(self, method: str) -> int:
        return sum(1 for r in self.fake.requests if f"method={method}" in r.query)

    def close(self) -> None:
        self.client.close()
        self.session.close()


@pytest.fixture
def harness(fake_matomo: FakeMatomo) -> Iterator[Harness]:
    h = Harness(fake_matomo, settings_for(fake_matomo))
    yield h
    h.close()


PAST = {"idSite": 1, "period": "day", "date": "2026-11-01", "flat": 1}


def test_second_identical_call_is_answered_from_the_cache(harness: Harness) -> None:
    first = harness.client.call("VisitsSummary.get", **PAST)
    second = harness.client.call("VisitsSummary.get", **PAST)
    assert first == second
    assert harness.calls("VisitsSummary.get") == 1
    other = {**PAST, "date": "2026-11-02"}
    harness.client.call("VisitsSummary.get", **other)
    assert harness.calls("VisitsSummary.get") == 2  # different parameters, different entry


def test_refresh_asks_again_and_stores_the_new_answer(harness: Harness) -> None:
    harness.client.call("VisitsSummary.get", **PAST)
    harness.session.refresh = True
    harness.client.call("SitesManager.getSiteFromId", idSite=1)
    harness.client.call("SitesManager.getSiteFromId", idSite=1)
    harness.client.call("VisitsSummary.get", **PAST)
    assert harness.calls("VisitsSummary.get") == 2
    assert harness.calls("SitesManager.getSiteFromId") == 1  # site settings are not refreshed
    harness.session.refresh = False
    harness.client.call("VisitsSummary.get", **PAST)
    assert harness.calls("VisitsSummary.get") == 2


def test_matomo_error_inside_http_200_is_never_cached(harness: Harness) -> None:
    bad = {**PAST, "idSite": 99}
    for _ in range(2):
        with pytest.raises(InvalidRequestError):
            harness.client.call("VisitsSummary.get", **bad)
    assert harness.calls("VisitsSummary.get") == 2
    assert cache.stats(harness.settings.cache_path).entries == 0


def test_server_errors_are_never_cached(harness: Harness) -> None:
    harness.fake.add_fault(Fault(endpoint="api", status=500, times=1))
    with pytest.raises(Exception, match=r"unavailable|500"):
        harness.client.call("VisitsSummary.get", **PAST)
    harness.client.call("VisitsSummary.get", **PAST)
    assert harness.calls("VisitsSummary.get") == 2


def test_bulk_with_a_failing_entry_is_not_cached(harness: Harness) -> None:
    calls = [("VisitsSummary.get", PAST), ("VisitsSummary.get", {**PAST, "idSite": 99})]
    for _ in range(2):
        results = harness.client.bulk(calls)
        assert isinstance(results[1], InvalidRequestError)
    assert harness.calls("API.getBulkRequest") == 2
    good = [("VisitsSummary.get", PAST), ("Actions.getPageUrls", PAST)]
    harness.client.bulk(good)
    harness.client.bulk(good)
    assert harness.calls("API.getBulkRequest") == 3


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("Live.getLastVisitsDetails", {"idSite": 1, "period": "day", "date": "2026-11-01"}),
        ("API.getMatomoVersion", {}),
    ],
)
def test_live_and_health_calls_are_never_cached(
    harness: Harness, method: str, params: dict[str, Any]
) -> None:
    harness.client.call(method, **params)
    harness.client.call(method, **params)
    assert harness.calls(method) == 2


def test_the_token_is_not_stored_anywhere_in_the_database(harness: Harness) -> None:
    harness.client.call("SitesManager.getSiteFromId", idSite=1)
    harness.client.call("VisitsSummary.get", **PAST)
    harness.client.bulk([("Actions.getPageUrls", PAST), ("Events.getCategory", PAST)])
    path = harness.settings.cache_path
    wal = Path(f"{path}-wal")
    assert wal.exists(), "WAL mode: the last writes are still in the -wal file"
    token = SUPERUSER_TOKEN.encode()
    for blob in (path.read_bytes(), wal.read_bytes()):
        assert token not in blob
        assert token.upper() not in blob
    assert b"token_auth=REDACTED" in path.read_bytes() + wal.read_bytes()
    con = sqlite3.connect(path)
    try:
        values = [row[0] for row in con.execute("SELECT value FROM responses")]
        keys = [row[0] for row in con.execute("SELECT key FROM responses")]
    finally:
        con.close()
    assert len(values) == 3
    for value in values:
        stored = pickle.loads(value)
        assert b"token_auth=REDACTED" in stored["request"]["body"]
        assert SUPERUSER_TOKEN not in repr(stored)
    assert all(SUPERUSER_TOKEN not in key for key in keys)


def test_the_cache_key_does_not_depend_on_the_token(fake_matomo: FakeMatomo) -> None:
    first = Harness(fake_matomo, settings_for(fake_matomo, token=SUPERUSER_TOKEN))
    first.client.call("VisitsSummary.get", **PAST)
    first.close()
    second = Harness(fake_matomo, settings_for(fake_matomo, token=VIEW_TOKEN))
    second.client.call("VisitsSummary.get", **PAST)
    second.close()
    assert second.calls("VisitsSummary.get") == 1


def test_profiles_have_separate_cache_files(fake_matomo: FakeMatomo) -> None:
    a = Harness(fake_matomo, settings_for(fake_matomo, profile="a"))
    b = Harness(fake_matomo, settings_for(fake_matomo, profile="b"))
    try:
        assert a.settings.cache_path != b.settings.cache_path
        a.client.call("VisitsSummary.get", **PAST)
        params = {k: str(v) for k, v in PAST.items()}
        url = fake_matomo.url
        assert (
            cache.lookup(
                a.settings.cache_path, base_url=url, method="VisitsSummary.get", params=params
            )
            is not None
        )
        assert (
            cache.lookup(
                b.settings.cache_path, base_url=url, method="VisitsSummary.get", params=params
            )
            is None
        )
        b.client.call("VisitsSummary.get", **PAST)
        assert a.calls("VisitsSummary.get") == 2
    finally:
        a.close()
        b.close()


def test_files_are_private(harness: Harness) -> None:
    harness.client.call("VisitsSummary.get", **PAST)
    path = harness.settings.cache_path
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if file.exists():
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def test_lookup_serves_fresh_entries_only(harness: Harness) -> None:
    harness.client.call("VisitsSummary.get", **PAST)
    params = {k: str(v) for k, v in PAST.items()}
    path, url = harness.settings.cache_path, harness.fake.url
    data = cache.lookup(path, base_url=url, method="VisitsSummary.get", params=params)
    assert data == harness.client.call("VisitsSummary.get", **PAST)
    later = datetime.now(UTC).timestamp() + DAY + 60
    assert (
        cache.lookup(path, base_url=url, method="VisitsSummary.get", params=params, now=later)
        is None
    )
    assert cache.lookup(path, base_url=url, method="Actions.getPageUrls", params=params) is None
    assert cache.stats(path).hits == 2


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_lookup_reads_only_matokit_own_rows(harness: Harness) -> None:
    answer = harness.client.call("VisitsSummary.get", **PAST)
    harness.close()
    path = harness.settings.cache_path
    con = sqlite3.connect(path)  # requests-cache's storage gone: the lean path does not care
    con.execute("DROP TABLE responses")
    con.execute("DROP TABLE redirects")
    con.commit()
    con.close()
    params = {k: str(v) for k, v in PAST.items()}
    url = harness.fake.url
    assert cache.lookup(path, base_url=url, method="VisitsSummary.get", params=params) == answer


def test_each_stored_answer_gets_a_matokit_row_with_the_same_expiry(harness: Harness) -> None:
    answer = harness.client.call("VisitsSummary.get", **PAST)
    with pytest.raises(InvalidRequestError):
        harness.client.call("VisitsSummary.get", **{**PAST, "idSite": 99})  # never stored
    harness.client.call("API.getMatomoVersion")  # never stored
    harness.close()
    path = harness.settings.cache_path
    ((theirs,),) = _rows(path, "SELECT expires FROM responses")
    ((expires, body),) = _rows(path, "SELECT expires, body FROM matokit_answers")
    assert abs(expires - theirs) < 1
    assert json.loads(body) == answer


def test_refresh_and_clear_reach_the_lean_answers(harness: Harness) -> None:
    answer = harness.client.call("VisitsSummary.get", **PAST)
    path, url = harness.settings.cache_path, harness.fake.url
    params = {k: str(v) for k, v in PAST.items()}
    con = sqlite3.connect(path)
    con.execute("UPDATE matokit_answers SET body = '\"stale\"'")
    con.commit()
    con.close()
    assert cache.lookup(path, base_url=url, method="VisitsSummary.get", params=params) == "stale"
    harness.session.refresh = True
    harness.client.call("VisitsSummary.get", **PAST)
    assert cache.lookup(path, base_url=url, method="VisitsSummary.get", params=params) == answer
    harness.close()
    assert cache.clear(harness.settings) == 1
    assert cache.lookup(path, base_url=url, method="VisitsSummary.get", params=params) is None
    assert _rows(path, "SELECT COUNT(*) FROM matokit_answers") == [(0,)]


def test_a_corrupt_cache_file_is_rebuilt(
    fake_matomo: FakeMatomo, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(fake_matomo)
    path = settings.cache_path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database, just garbage " * 200)
    with caplog.at_level(logging.WARNING, logger="matokit.cache"):
        h = Harness(fake_matomo, settings)
    try:
        assert any("unreadable" in r.getMessage() for r in caplog.records)
        h.client.call("VisitsSummary.get", **PAST)
        h.client.call("VisitsSummary.get", **PAST)
        assert h.calls("VisitsSummary.get") == 1
    finally:
        h.close()
    assert cache.stats(path).entries == 1


def test_stats_and_clear(harness: Harness) -> None:
    path = harness.settings.cache_path
    assert cache.stats(Path(f"{path}.none")).exists is False
    harness.client.call("VisitsSummary.get", **PAST)
    harness.client.call("VisitsSummary.get", **PAST)
    harness.client.call("VisitsSummary.get", idSite=1, period="day", date="today")
    harness.close()
    result = cache.stats(path)
    assert (result.entries, result.hits, result.misses) == (2, 1, 2)
    assert result.size_bytes > 0 and result.hit_rate == pytest.approx(1 / 3, abs=1e-3)
    con = sqlite3.connect(path)  # age the "today" entry, in requests-cache's table and ours
    for table in ("responses", "matokit_answers"):
        con.execute(f"UPDATE {table} SET expires = 1 WHERE expires < ?", (time.time() + 4000,))
    con.commit()
    con.close()
    assert cache.clear(harness.settings, expired_only=True) == 1
    assert cache.stats(path).entries == 1
    assert cache.clear(harness.settings) == 1
    after = cache.stats(path)
    assert (after.entries, after.hits, after.misses) == (0, 0, 0)


def _expires(path: Path) -> list[float]:
    con = sqlite3.connect(path)
    try:
        return [row[0] for row in con.execute("SELECT expires FROM responses ORDER BY expires")]
    finally:
        con.close()


@pytest.mark.parametrize(
    ("tz", "clock_at", "date", "ttl"),
    [
        ("UTC", "23:58:00", "today", 120),  # today's report must not outlive midnight
        ("UTC", "12:00:00", "today", 300),
        ("Europe/Paris", "22:59:00", "today", 60),  # 23:59 in Paris
        ("America/New_York", "23:58:00", "today", 300),  # still evening in New York
    ],
)
def test_the_session_stores_entries_for_the_ttl_of_the_site_zone(
    fake_matomo: FakeMatomo, tz: str, clock_at: str, date: str, ttl: float
) -> None:
    day = datetime.now(UTC).date().isoformat()
    moment = at(f"{day} {clock_at}").timestamp()
    h = Harness(fake_matomo, settings_for(fake_matomo), clock=lambda: moment)
    h.session.timezones["1"] = tz
    try:
        started = time.time()
        h.client.call("VisitsSummary.get", idSite=1, period="day", date=date)
    finally:
        h.close()
    (expires,) = _expires(h.settings.cache_path)
    assert started + ttl - 2 <= expires <= time.time() + ttl + 2


def test_a_database_broken_under_a_running_session_is_rebuilt(harness: Harness) -> None:
    harness.client.call("VisitsSummary.get", **PAST)
    harness.session._rebuild(sqlite3.DatabaseError("database disk image is malformed"))
    harness.client.call("VisitsSummary.get", **PAST)
    harness.client.call("VisitsSummary.get", **PAST)
    assert harness.calls("VisitsSummary.get") == 2
    assert cache.stats(harness.settings.cache_path).entries == 1
