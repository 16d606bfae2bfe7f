"""Fetching reports as a library (no CLI): the cache, the site's time zone, the summary."""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from matokit import dates, reportfetch, reports
from matokit.cache import cached_session
from matokit.client import MatomoClient
from matokit.config import Settings, resolve
from tests.fakematomo import SUPERUSER_TOKEN, FakeMatomo
from tests.fakematomo.access import Site

VISITS = reports.BY_NAME["visits"]


def settings_for(fake: FakeMatomo) -> Settings:
    config = Path(os.environ["HOME"]) / "config.toml"
    config.write_text("[profiles.default]\n")
    env = {"MATOMO_TOKEN": SUPERUSER_TOKEN, "MATOKIT_CONFIG": str(config)}
    return resolve({"--url": fake.url, "--site": "1"}, env=env)


def calls(fake: FakeMatomo, method: str) -> int:
    return sum(1 for r in fake.requests if f"method={method}" in r.query)


def expiries(path: Path) -> list[float]:
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute("SELECT expires FROM matokit_answers ORDER BY expires")]
    finally:
        con.close()


def late_evening_utc() -> float:
    """22:59 UTC today: 23:59 in Paris, so a `today` report there must go within a minute."""
    day = datetime.now(UTC).date().isoformat()
    return datetime.fromisoformat(f"{day} 22:59:00").replace(tzinfo=UTC).timestamp()


def params_of(report: reports.Report, date: str = "today") -> dict[str, str]:
    return reports.request_params(report, dates.validate("day", date), site=1)


@pytest.mark.parametrize(("zone", "ttl"), [("Europe/Paris", 60), ("America/New_York", 300)])
def test_fetch_keeps_a_report_for_the_ttl_of_the_site_zone_and_answers_again_from_the_cache(
    fake_matomo: FakeMatomo, zone: str, ttl: float
) -> None:
    fake_matomo.sites[1] = Site(1, "Zoned", timezone=zone)
    settings = settings_for(fake_matomo)
    moment = late_evening_utc()
    started = time.time()
    first = reportfetch.fetch(settings, VISITS, params_of(VISITS), clock=lambda: moment)
    # Expiries: the site's settings for a day, the report until the site's midnight (or 300 s).
    report_expiry, site_expiry = expiries(settings.cache_path)
    assert started + ttl - 2 <= report_expiry <= time.time() + ttl + 2
    assert site_expiry >= started + 86400 - 2
    second = reportfetch.fetch(settings, VISITS, params_of(VISITS))
    assert second == first
    assert calls(fake_matomo, VISITS.method) == 1
    assert calls(fake_matomo, "SitesManager.getSiteFromId") == 1


def test_fetch_without_the_cache_asks_every_time_and_stores_nothing(
    fake_matomo: FakeMatomo,
) -> None:
    settings = settings_for(fake_matomo)
    for _ in range(2):
        reportfetch.fetch(settings, VISITS, params_of(VISITS), cache=False)
    assert calls(fake_matomo, VISITS.method) == 2
    assert calls(fake_matomo, "SitesManager.getSiteFromId") == 0
    assert not settings.cache_path.exists()


def test_refresh_asks_again_and_the_next_fetch_gets_the_new_answer(
    fake_matomo: FakeMatomo,
) -> None:
    settings = settings_for(fake_matomo)
    reportfetch.fetch(settings, VISITS, params_of(VISITS))
    reportfetch.fetch(settings, VISITS, params_of(VISITS), refresh=True)
    reportfetch.fetch(settings, VISITS, params_of(VISITS))
    assert calls(fake_matomo, VISITS.method) == 2


def test_the_session_learns_the_site_zone_from_the_site_settings_it_passes_on(
    fake_matomo: FakeMatomo,
) -> None:
    # A library user of the cache, without reportfetch: asking for the site is enough.
    fake_matomo.sites[1] = Site(1, "Zoned", timezone="Europe/Paris")
    settings = settings_for(fake_matomo)
    moment = late_evening_utc()
    session = cached_session(settings, clock=lambda: moment)
    client = MatomoClient(base_url=fake_matomo.url, token=SUPERUSER_TOKEN, session=session)
    try:
        started = time.time()
        client.call("SitesManager.getSiteFromId", idSite=1)
        client.call(VISITS.method, **params_of(VISITS))
    finally:
        client.close()
        session.close()
    assert session.timezones == {"1": "Europe/Paris"}  # type: ignore[attr-defined]
    report_expiry = expiries(settings.cache_path)[0]
    assert started + 60 - 2 <= report_expiry <= time.time() + 60 + 2


def test_summary_is_one_bulk_request_then_answered_from_the_cache(
    fake_matomo: FakeMatomo,
) -> None:
    settings = settings_for(fake_matomo)
    spec = dates.validate("day", "today")
    first = reportfetch.summary(settings, spec, site=1, limit=5)
    second = reportfetch.summary(settings, spec, site=1, limit=5)
    assert list(first.results) == list(reportfetch.SUMMARY)
    assert first.errors == {}
    assert second.results == first.results
    assert calls(fake_matomo, "API.getBulkRequest") == 1
