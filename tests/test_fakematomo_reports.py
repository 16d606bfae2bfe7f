"""Reports computed by the fake Matomo: sample shapes and types, periods, filters, visits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.fakematomo import SUPERUSER_TOKEN, VIEW_TOKEN, FakeMatomo
from tests.fakematomo.client import api, bulk

# Real Matomo 5.11 bodies (matomo-samples.json of the workplace reference), copied here.
SAMPLES_FILE = Path(__file__).resolve().parent / "fixtures" / "matomo-samples.json"
SAMPLES: dict[str, Any] = json.loads(SAMPLES_FILE.read_text())
NOW = datetime(2026, 11, 25, 16, 0, 0, tzinfo=UTC).timestamp()
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
A, B, C, D, E = (f"{i:016x}" for i in range(1, 6))
DAY = {"idSite": "1", "period": "day", "date": "today"}


def hit(cid: str, offset: int, ua: str, **params: Any) -> str:
    base = {"idsite": 1, "rec": 1, "cid": cid, "cdt": int(NOW + offset), "ua": ua}
    return "?" + urlencode({**base, **params})


SEED = [
    hit(A, -3000, CHROME, url="https://example.org/", action_name="Home",
        urlref="https://www.google.com/search?q=shop+example"),
    hit(A, -2940, CHROME, url="https://example.org/cart", action_name="Cart"),
    hit(A, -2910, CHROME, url="https://example.org/cart", e_c="Checkout", e_a="Click",
        e_n="Pay button", e_v="49.9"),
    hit(A, -2880, CHROME, idgoal=0, ec_id="1", revenue="99.5",
        ec_items=json.dumps([["SKU1", "Boots", "Shoes", 49.75, 2]])),
    hit(A, -2850, CHROME, url="https://example.org/docs/install", action_name="Install"),
    hit(B, -2000, FIREFOX, url="https://example.org/", action_name="Home",
        urlref="https://news.example/article/42"),
    hit(B, -1900, FIREFOX, url="https://example.org/cart", action_name="Cart"),
    hit(C, -1500, PHONE, url="https://example.org/?mtm_campaign=Winter-Sale&mtm_kwd=boots",
        action_name="Home"),
    hit(C, -1450, PHONE, url="https://example.org/", e_c="Newsletter", e_a="Subscribe"),
    hit(D, -1000, CHROME, url="https://example.org/about", action_name="About", country="us"),
    hit(E, -80000, FIREFOX, url="https://example.org/", action_name="Home"),
]  # fmt: skip


@pytest.fixture
def srv() -> Iterator[FakeMatomo]:
    """A fake Matomo whose clock stands at 2026-11-25 16:00 UTC, seeded with five visits."""
    with FakeMatomo(clock=lambda: NOW) as server:
        assert bulk(server, SEED, SUPERUSER_TOKEN).json()["invalid"] == 0
        yield server


def sample(key: str) -> Any:
    assert key in SAMPLES, f"{key!r} missing from {SAMPLES_FILE}"
    return SAMPLES[key]["body"]


def get(srv: FakeMatomo, method: str, **params: Any) -> Any:
    resp = api(srv, method, SUPERUSER_TOKEN, **{**DAY, **params})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert not (isinstance(body, dict) and body.get("result") == "error"), body
    return body


# --- the samples: same columns, same types -------------------------------------------------------

FLAT_SAMPLES = sorted(k for k in SAMPLES if k.endswith("flat=1 filter_limit=2 (day, today)"))
DATA_DEPENDENT = {"goals", "nb_conversions", "revenue"}


@pytest.mark.parametrize("key", FLAT_SAMPLES, ids=[k.split()[0] for k in FLAT_SAMPLES])
def test_flat_rows_have_the_sample_columns_and_types(srv: FakeMatomo, key: str) -> None:
    method = key.split()[0]
    sample_rows = sample(key)
    rows = get(srv, method, flat=1, filter_limit=-1)
    assert isinstance(rows, list) and rows
    ours = set().union(*(r.keys() for r in rows))
    assert set(sample_rows[0]) - DATA_DEPENDENT <= ours
    for name in set().union(*(r.keys() for r in sample_rows)):
        sample_values = [r[name] for r in sample_rows if name in r]
        our_values = [r[name] for r in rows if name in r]
        if any(isinstance(v, str) and v.endswith("%") for v in sample_values):
            assert all(isinstance(v, str) and v.endswith("%") for v in our_values), name
        elif any(isinstance(v, str) and v.isdigit() for v in sample_values):
            # Numbers-as-strings: at least some of ours are strings too.
            assert any(isinstance(v, str) and v.isdigit() for v in our_values), name


def test_visits_summary_shapes(srv: FakeMatomo) -> None:
    one = get(srv, "VisitsSummary.get")
    assert list(one) == list(sample("VisitsSummary.get date=last3")["2026-11-25"])
    assert (one["nb_visits"], one["nb_actions"], one["bounce_rate"]) == (4, 9, "25%")
    assert get(srv, "VisitsSummary.get", flat=1) == [one]
    assert get(srv, "VisitsSummary.get", showColumns="nb_visits") == {"value": 4}
    raw = get(srv, "VisitsSummary.get", format_metrics=0)
    assert raw["bounce_rate"] == 0.25


def test_last_n_is_keyed_by_date_and_empty_days_are_lists(srv: FakeMatomo) -> None:
    series = get(srv, "VisitsSummary.get", date="last3")
    assert list(series) == ["2026-11-23", "2026-11-24", "2026-11-25"]
    assert series["2026-11-23"] == []
    assert series["2026-11-24"]["nb_visits"] == 1 and series["2026-11-25"]["nb_visits"] == 4
    previous = get(srv, "VisitsSummary.get", date="previous2", showColumns="nb_visits")
    assert previous == {"2026-11-23": [], "2026-11-24": 1}
    dates = get(srv, "Events.getCategory", date="2026-11-24,2026-11-25", flat=1, filter_limit=1)
    assert dates["2026-11-24"] == [] and dates["2026-11-25"][0]["label"] == "Checkout - Click"


def test_empty_single_day_is_zeros(srv: FakeMatomo) -> None:
    empty = get(srv, "VisitsSummary.get", date="2026-11-01")
    assert empty["nb_visits"] == 0 and empty["bounce_rate"] == "0%"
    assert get(srv, "Actions.getPageUrls", date="2026-11-01") == []


@pytest.mark.parametrize(
    ("period", "date", "keys"),
    [
        ("week", "last2", ["2026-11-16,2026-11-22", "2026-11-23,2026-11-29"]),
        ("month", "last2", ["2026-10", "2026-11"]),
        ("year", "last2", ["2025", "2026"]),
        ("day", "2026-11-24,2026-11-25", ["2026-11-24", "2026-11-25"]),
    ],
)
def test_period_keys(srv: FakeMatomo, period: str, date: str, keys: list[str]) -> None:
    assert list(get(srv, "VisitsSummary.get", period=period, date=date)) == keys


def test_range_is_one_summed_object_without_unique_visitors(srv: FakeMatomo) -> None:
    summed = get(srv, "VisitsSummary.get", period="range", date="2026-11-20,2026-11-25")
    assert summed["nb_visits"] == 5 and "nb_uniq_visitors" not in summed
    assert "nb_uniq_visitors" not in get(srv, "VisitsSummary.get", period="year")
    assert get(srv, "VisitsSummary.get", period="range", date="last7")["nb_visits"] == 5


def test_all_sites_is_keyed_by_site(srv: FakeMatomo) -> None:
    by_site = get(srv, "VisitsSummary.get", idSite="all", showColumns="nb_visits")
    assert by_site == {"1": {"value": 4}, "2": {"value": 0}}
    nested = get(srv, "VisitsSummary.get", idSite="1,2", date="last2", showColumns="nb_visits")
    assert nested == {
        "1": {"2026-11-24": 1, "2026-11-25": 4},
        "2": {"2026-11-24": [], "2026-11-25": []},
    }


def test_view_token_sees_only_its_sites() -> None:
    tokens = {VIEW_TOKEN: {"login": "viewer", "view": [1]}}
    with FakeMatomo(tokens=tokens) as srv:
        resp = api(srv, "VisitsSummary.get", VIEW_TOKEN, **{**DAY, "idSite": "2"})
        assert resp.status_code == 401
        assert "'view' access for the website id = 2" in resp.json()["message"]
        all_sites = api(srv, "VisitsSummary.get", VIEW_TOKEN, **{**DAY, "idSite": "all"})
        assert list(all_sites.json()) == ["1"]


# --- hierarchy, flattening and generic filters --------------------------------------------------


def test_page_urls_are_hierarchical_until_flattened(srv: FakeMatomo) -> None:
    tree = get(srv, "Actions.getPageUrls")
    folder = next(r for r in tree if r["label"] == "docs")
    assert "url" not in folder and isinstance(folder["idsubdatatable"], int)
    children = get(srv, "Actions.getPageUrls", idSubtable=folder["idsubdatatable"])
    assert [c["label"] for c in children] == ["/install"]
    expanded = get(srv, "Actions.getPageUrls", expanded=1)
    docs = next(r for r in expanded if r["label"] == "docs")
    assert docs["subtable"][0]["url"] == "https://example.org/docs/install"
    flat = get(srv, "Actions.getPageUrls", flat=1)
    assert "/docs/install" in [r["label"] for r in flat]
    assert all("idsubdatatable" not in r for r in flat)


def test_flat_caps_at_100_rows_unless_filter_limit(fake_matomo: FakeMatomo) -> None:
    items = [f"?idsite=1&rec=1&url=https%3A%2F%2Fexample.org%2Fp{i}" for i in range(130)]
    bulk(fake_matomo, items)
    assert len(get(fake_matomo, "Actions.getPageUrls", flat=1)) == 100
    assert len(get(fake_matomo, "Actions.getPageUrls", flat=1, filter_limit=-1)) == 130
    assert len(get(fake_matomo, "Actions.getPageUrls", flat=1, filter_limit=7)) == 7
    page = get(fake_matomo, "Actions.getPageUrls", flat=1, filter_limit=5, filter_offset=128)
    assert len(page) == 2


def test_sort_pattern_and_columns(srv: FakeMatomo) -> None:
    rows = get(srv, "Actions.getPageTitles", filter_sort_column="nb_hits", filter_sort_order="asc")
    hits = [r["nb_hits"] for r in rows]
    assert hits == sorted(hits)
    assert [r["label"] for r in get(srv, "Actions.getPageTitles", filter_pattern="^ca")] == ["Cart"]
    slim = get(srv, "Actions.getPageTitles", showColumns="nb_hits")
    assert all(set(r) == {"label", "nb_hits"} for r in slim)
    no_segment = get(srv, "Actions.getPageTitles", hideColumns="segment,nb_visits")
    assert all("segment" not in r and "nb_visits" not in r for r in no_segment)


def test_events_quirks(srv: FakeMatomo) -> None:
    rows = get(srv, "Events.getCategory")
    newsletter = next(r for r in rows if r["label"] == "Newsletter")
    assert newsletter["min_event_value"] is None and newsletter["max_event_value"] is None
    assert newsletter["sum_event_value"] == 0
    checkout = next(r for r in rows if r["label"] == "Checkout")
    assert checkout["nb_events"] == "1"  # a number sent as a string
    sub = get(srv, "Events.getCategory", idSubtable=checkout["idsubdatatable"])
    assert [r["label"] for r in sub] == ["Click"]


def test_goals_and_items(srv: FakeMatomo) -> None:
    goals = get(srv, "Goals.get")
    assert (goals["nb_conversions"], goals["revenue"], goals["conversion_rate"]) == (1, 99.5, "25%")
    (sku,) = get(srv, "Goals.getItemsSku")
    assert (sku["label"], sku["quantity"], sku["orders"], sku["avg_price"]) == ("SKU1", 2, 1, 49.75)


def test_referrers_and_devices(srv: FakeMatomo) -> None:
    types = {r["label"]: r["referrer_type"] for r in get(srv, "Referrers.getReferrerType")}
    assert types == {"Search Engines": 2, "Websites": 3, "Campaigns": 6, "Direct Entry": 1}
    assert get(srv, "Referrers.getSearchEngines")[0]["label"] == "Google"
    countries = {r["code"]: r["nb_visits"] for r in get(srv, "UserCountry.getCountry")}
    assert countries == {"xx": 3, "us": 1}
    devices = {r["label"]: r["nb_visits"] for r in get(srv, "DevicesDetection.getType")}
    assert devices == {"Desktop": 3, "Smartphone": 1}
    browsers = {r["label"] for r in get(srv, "DevicesDetection.getBrowsers")}
    assert browsers == {"Chrome", "Firefox"}
    systems = {r["label"] for r in get(srv, "DevicesDetection.getOsVersions")}
    assert systems == {"GNU/Linux", "Windows 10", "Android 14"}


# --- the visit model ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("second", "visits"),
    [
        ({"_id": "bbbbbbbbbbbbbbbb", "cdt_offset": 600}, 1),  # same UA + IP merge
        ({"cid": "cccccccccccccccc", "cdt_offset": 600}, 2),  # cid keeps visitors apart
        ({"_id": "aaaaaaaaaaaaaaaa", "cdt_offset": 1860}, 2),  # 31 minutes later
        ({"_id": "aaaaaaaaaaaaaaaa", "cdt_offset": 600, "new_visit": 1}, 2),
    ],
)
def test_visit_merging(second: dict[str, Any], visits: int) -> None:
    with FakeMatomo(clock=lambda: NOW) as srv:
        start = int(NOW - 7200)
        first = {"idsite": 1, "rec": 1, "_id": "aaaaaaaaaaaaaaaa", "cdt": start, "ua": CHROME}
        other = {**first, **second, "cdt": start + second.pop("cdt_offset", 0)}
        bulk(srv, ["?" + urlencode(first), "?" + urlencode(other)])
        assert get(srv, "VisitsSummary.get")["nb_visits"] == visits


def test_site_timezone_decides_the_day() -> None:
    with FakeMatomo(clock=lambda: NOW) as srv:
        # 03:00 UTC on the 25th is still the 24th in New York.
        early = int(datetime(2026, 11, 25, 3, 0, tzinfo=UTC).timestamp())
        bulk(srv, [f"?idsite=2&rec=1&cdt={early}", f"?idsite=1&rec=1&cdt={early}"])
        ny = api(srv, "VisitsSummary.get", SUPERUSER_TOKEN, idSite=2, period="day",
                 date="last2", showColumns="nb_visits").json()  # fmt: skip
        utc = api(srv, "VisitsSummary.get", SUPERUSER_TOKEN, idSite=1, period="day",
                  date="last2", showColumns="nb_visits").json()  # fmt: skip
        assert ny == {"2026-11-24": 1, "2026-11-25": []}
        assert utc == {"2026-11-24": [], "2026-11-25": 1}


def test_event_without_action_is_a_pageview(fake_matomo: FakeMatomo) -> None:
    bulk(fake_matomo, ["?idsite=1&rec=1&e_c=Cat&url=https%3A%2F%2Fexample.org%2Fx"])
    assert get(fake_matomo, "Events.getCategory") == []
    assert get(fake_matomo, "Actions.getPageUrls", flat=1)[0]["label"] == "/x"


def test_repeated_order_id_is_ignored(fake_matomo: FakeMatomo) -> None:
    order = "?idsite=1&rec=1&idgoal=0&ec_id=A-1&revenue=10"
    bulk(fake_matomo, [order, order + "&cid=0000000000000009"])
    assert len(fake_matomo.hits) == 2
    assert get(fake_matomo, "Goals.get")["nb_conversions"] == 1


# --- Live ---------------------------------------------------------------------------------------


def test_live_lists_visits_newest_first(srv: FakeMatomo) -> None:
    visits = get(srv, "Live.getLastVisitsDetails", period=None, date=None, filter_limit=2)
    assert [v["visitorId"] for v in visits] == [D, C]
    real = sample("Live.getLastVisitsDetails filter_limit=1")[0]
    assert set(real) <= set(visits[0])
    assert set(real["actionDetails"][0]) <= set(visits[0]["actionDetails"][0])
    assert visits[0]["countryCode"] == "us"


def test_live_segment_on_a_dimension_finds_keys(fake_matomo: FakeMatomo) -> None:
    items = [f"?idsite=1&rec=1&dimension1=K{i}&cid={i:016x}" for i in range(5)]
    bulk(fake_matomo, items)  # before the dimension exists: Matomo ignores the values
    segment = "dimension1==K1,dimension1==K3"
    unconfigured = api(fake_matomo, "Live.getLastVisitsDetails", SUPERUSER_TOKEN, idSite=1,
                       segment=segment)  # fmt: skip
    assert unconfigured.json()["message"] == "Segment 'dimension1' is not a supported segment."
    created = api(fake_matomo, "CustomDimensions.configureNewCustomDimension", SUPERUSER_TOKEN,
                  idSite=1, name="hit key", scope="action", active=1)  # fmt: skip
    assert created.json() == {"value": 1}
    assert get(fake_matomo, "Live.getLastVisitsDetails", segment=segment) == []
    bulk(fake_matomo, items)
    found = get(fake_matomo, "Live.getLastVisitsDetails", segment=segment, filter_limit=-1)
    keys = sorted(a["dimension1"] for v in found for a in v["actionDetails"] if a["dimension1"])
    assert keys == ["K1", "K3"]
    listed = get(fake_matomo, "CustomDimensions.getConfiguredCustomDimensions", idSite=1)
    assert [(d["idcustomdimension"], d["scope"]) for d in listed] == [("1", "action")]
    bad = api(fake_matomo, "Live.getLastVisitsDetails", SUPERUSER_TOKEN, idSite=1, segment="x==1")
    assert bad.json()["message"].startswith("Segment 'x' is not a supported segment.")
