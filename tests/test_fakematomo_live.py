"""The fake Matomo's Live API, custom dimensions and faults, as issue 12 needs them.

What a real Matomo 5.11 does: a key stamped on each action in an action-scope custom dimension,
looked up with Live.getLastVisitsDetails (alone or many in one API.getBulkRequest), the per-visit
action limit that hides keys from an OR query, visits formed from a visitor id or IP + browser,
the visits log and plugins switched off, hits that become visible late, answers lost after the
hits were stored.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from tests.fakematomo import ADMIN_TOKEN, SUPERUSER_TOKEN, VIEW_TOKEN, FakeMatomo, Fault
from tests.fakematomo.client import api, bulk

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 25, 16, 0, 0, tzinfo=UTC).timestamp()
YESTERDAY = "2026-11-24"
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"
VISITOR = "00000000000000a1"
NOT_ENABLED = (
    "The plugin {} is not enabled. You can activate the plugin on Settings > Plugins page in "
    "Matomo."
)


def key(n: int) -> str:
    return f"{n:032x}"


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def srv(clock: Clock) -> Iterator[FakeMatomo]:
    """Site 1 (UTC) with the action-scope dimension 1 `matokit_key`, clock at NOW."""
    with FakeMatomo(clock=clock) as server:
        assert server.add_custom_dimension(1, "matokit_key") == 1
        yield server


def event(k: str, *, at: float = NOW, dim: int = 1, **extra: Any) -> str:
    params = {"idsite": 1, "rec": 1, "e_c": "c", "e_a": "a", f"dimension{dim}": k, "cdt": int(at)}
    return "?" + urlencode({**params, **extra})


def send(srv: FakeMatomo, items: list[str]) -> None:
    for start in range(0, len(items), 500):
        answer = bulk(srv, items[start : start + 500], SUPERUSER_TOKEN).json()
        assert answer["invalid"] == 0, answer


def lookup_params(
    k: str, *, dim: int = 1, idsite: int = 1, start: str = YESTERDAY
) -> dict[str, Any]:
    """The exact per-key lookup of the design: one visit if and only if the key is stored."""
    return {
        "idSite": idsite,
        "period": "range",
        "date": f"{start},today",
        "segment": f"dimension{dim}=={k}",
        "doNotFetchActions": 1,
        "filter_limit": 1,
        "showColumns": "idVisit",
    }


def live(srv: FakeMatomo, token: str = SUPERUSER_TOKEN, **params: Any) -> Any:
    resp = api(srv, "Live.getLastVisitsDetails", token, **params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def lookup(srv: FakeMatomo, k: str, **params: Any) -> Any:
    return live(srv, **lookup_params(k, **params))


def bulk_request(srv: FakeMatomo, calls: list[dict[str, Any]], token: str = VIEW_TOKEN) -> Any:
    urls = {
        f"urls[{i}]": urlencode({"method": "Live.getLastVisitsDetails", **call})
        for i, call in enumerate(calls)
    }
    resp = api(srv, "API.getBulkRequest", token, **urls)
    assert resp.status_code == 200, resp.text
    return resp.json()


# --- the trap: the per-visit action limit ---------------------------------------------------------


def test_an_or_query_shows_500_actions_of_a_600_action_visit_and_misses_key_550(
    srv: FakeMatomo,
) -> None:
    keys = [key(i) for i in range(600)]
    send(srv, [event(k, at=NOW - 600 + i, cid=VISITOR) for i, k in enumerate(keys)])
    assert srv.stored_keys(1) == Counter(keys)
    segment = ",".join(f"dimension1=={k}" for k in (keys[0], keys[499], keys[550]))
    (visit,) = live(srv, idSite=1, period="range", date=f"{YESTERDAY},today", segment=segment)
    assert visit["actions"] == 600
    shown = [a["dimension1"] for a in visit["actionDetails"]]
    assert shown == keys[:500]
    assert keys[550] not in shown  # stored, yet absent: "absent" is not "not stored"
    assert lookup(srv, keys[550]) == [{"idVisit": visit["idVisit"]}]
    assert lookup(srv, key(600)) == []


def test_the_action_limit_is_a_setting(clock: Clock) -> None:
    with FakeMatomo(clock=clock, visitor_log_maximum_actions_per_visit=3) as server:
        server.add_custom_dimension(1, "matokit_key")
        send(server, [event(key(i), at=NOW - 60 + i, cid=VISITOR) for i in range(5)])
        (visit,) = live(server, idSite=1)
        assert [a["dimension1"] for a in visit["actionDetails"]] == [key(0), key(1), key(2)]
        server.visitor_log_maximum_actions_per_visit = 4
        assert len(live(server, idSite=1)[0]["actionDetails"]) == 4
        assert server.visitor_log_maximum_actions_per_visit == 4


# --- lookups in API.getBulkRequest ----------------------------------------------------------------


def test_a_bulk_of_100_lookups_answers_each_in_place(srv: FakeMatomo) -> None:
    stored = [key(i) for i in range(0, 200, 2)]
    send(srv, [event(k, at=NOW - 900 + i) for i, k in enumerate(stored)])
    asked = [key(i) for i in range(100)]  # half of them stored
    calls = [lookup_params(k) for k in asked]
    calls[7] = lookup_params(asked[7], dim=9)  # a dimension that does not exist
    calls[8] = lookup_params(asked[8], idsite=3)  # a site the view token cannot see
    answers = bulk_request(srv, calls)
    assert len(answers) == 100
    assert answers[7] == {
        "result": "error",
        "message": "Segment 'dimension9' is not a supported segment.",
    }
    assert answers[8]["result"] == "error"
    assert answers[8]["message"].startswith("You can't access this resource as it requires")
    for n, answer in enumerate(answers):
        if n in (7, 8):
            continue
        assert answer == ([{"idVisit": 1}] if n % 2 == 0 else []), n


def test_lookups_over_20000_stored_hits_in_one_visit(srv: FakeMatomo) -> None:
    keys = [key(i) for i in range(20_000)]
    send(srv, [event(k, at=NOW - 1200 + i // 20) for i, k in enumerate(keys)])
    answers = bulk_request(srv, [lookup_params(k) for k in keys[::200]])
    assert answers == [[{"idVisit": 1}]] * 100
    assert len(srv.hits) == 20_000


# --- what the lookup parameters do ----------------------------------------------------------------


def test_show_columns_keeps_only_those_columns_and_do_not_fetch_actions_drops_actions(
    srv: FakeMatomo,
) -> None:
    send(srv, [event(key(1)), event(key(2))])
    full = live(srv, idSite=1)
    assert len(full) == 1 and len(full[0]["actionDetails"]) == 2
    assert live(srv, idSite=1, showColumns="idVisit") == [{"idVisit": full[0]["idVisit"]}]
    bare = live(srv, idSite=1, doNotFetchActions=1)
    assert bare[0]["actionDetails"] == [] and bare[0]["actions"] == 2
    both = live(srv, idSite=1, showColumns="idVisit,actions,nope")
    assert both == [{"idVisit": full[0]["idVisit"], "actions": 2}]


def test_filter_limit_takes_the_newest_visits_and_defaults_to_10(srv: FakeMatomo) -> None:
    # Twelve visitors; the first one's visit ends last (its last action is the newest).
    items = [event(key(i), at=NOW - 1000 + i, cid=f"{i + 1:016x}") for i in range(12)]
    items.append(event(key(99), at=NOW - 10, cid=f"{1:016x}"))
    send(srv, items)
    ids = [v["visitorId"] for v in live(srv, idSite=1, filter_limit=3)]
    assert ids == [f"{1:016x}", f"{12:016x}", f"{11:016x}"]
    assert len(live(srv, idSite=1)) == 10
    assert len(live(srv, idSite=1, filter_limit=-1)) == 12
    oldest = live(srv, idSite=1, filter_limit=1, filter_sort_order="asc")
    assert oldest[0]["visitorId"] == f"{2:016x}"
    assert len(live(srv, idSite=1, filter_limit=5, filter_offset=10)) == 2


def test_and_or_segments_on_dimensions_match_any_action_of_the_visit(srv: FakeMatomo) -> None:
    assert srv.add_custom_dimension(1, "second") == 2
    send(
        srv,
        [
            event(key(1), cid=VISITOR, dimension2="x"),
            event(key(2), cid=VISITOR, at=NOW + 0),
            event(key(3), cid="00000000000000b2", dimension2="y"),
        ],
    )

    def visitors(segment: str) -> list[str]:
        return sorted(v["visitorId"] for v in live(srv, idSite=1, segment=segment))

    assert visitors(f"dimension1=={key(2)};dimension2==x") == [VISITOR]  # AND across actions
    assert visitors(f"dimension1=={key(2)};dimension2==y") == []
    assert visitors(f"dimension1=={key(2)},dimension1=={key(3)}") == [
        "00000000000000a1",
        "00000000000000b2",
    ]
    assert visitors(f"dimension1!={key(1)}") == ["00000000000000b2"]
    assert visitors("dimension2=@x,dimension2=@y") == ["00000000000000a1", "00000000000000b2"]


# --- the date window: last action time, site time zone --------------------------------------------


def test_range_up_to_today_in_a_site_behind_utc(clock: Clock) -> None:
    # 2026-11-25 02:00 UTC is 2026-11-24 21:00 in New York: UTC's date is a day ahead.
    clock.now = datetime(2026, 11, 25, 2, 0, tzinfo=UTC).timestamp()
    sites = {1: {"name": "NY", "timezone": "America/New_York"}}
    with FakeMatomo(clock=clock, sites=sites) as server:
        server.add_custom_dimension(1, "matokit_key")
        late_22nd = datetime(2026, 11, 23, 4, 0, tzinfo=UTC).timestamp()  # 11-22 23:00 NY
        evening_24th = datetime(2026, 11, 25, 1, 0, tzinfo=UTC).timestamp()  # 11-24 20:00 NY
        send(server, [event(key(1), at=late_22nd, cid=VISITOR), event(key(2), at=evening_24th)])

        def found(date: str) -> list[str]:
            rows = live(server, idSite=1, period="range", date=date, filter_limit=-1)
            return sorted(a["dimension1"] for v in rows for a in v["actionDetails"])

        assert found("2026-11-23,today") == [key(2)]
        assert found("2026-11-22,today") == [key(1), key(2)]
        assert found("2026-11-22,2026-11-22") == [key(1)]  # ends at midnight, New York time
        assert found("2026-11-24,2026-11-24") == [key(2)]
        # lastN counts days back from UTC's today and starts at the site's midnight of that
        # day, or now if that is later: Matomo's quirks, copied.
        assert found("last1") == []
        assert found("last3") == [key(2)]
        assert found("last4") == [key(1), key(2)]
        assert lookup(server, key(1), start="2026-11-22") == [{"idVisit": 1}]
        assert lookup(server, key(1), start="2026-11-23") == []


def test_range_up_to_today_in_a_site_ahead_of_utc_misses_the_sites_new_day(clock: Clock) -> None:
    # Matomo's Live builds the range in UTC: at 2026-11-24 19:00 UTC it is already 11-25 08:00
    # in Auckland, `today` means 11-24 and the window ends at Auckland's midnight.
    clock.now = datetime(2026, 11, 24, 19, 0, tzinfo=UTC).timestamp()
    sites = {1: {"name": "NZ", "timezone": "Pacific/Auckland"}}
    with FakeMatomo(clock=clock, sites=sites) as server:
        server.add_custom_dimension(1, "matokit_key")
        send(server, [event(key(1), at=clock.now - 60)])
        assert lookup(server, key(1), start="2026-11-23") == []
        explicit = {**lookup_params(key(1)), "date": "2026-11-23,2026-11-25"}  # the site's today
        assert live(server, **explicit) == [{"idVisit": 1}]
        tomorrow = {**lookup_params(key(1)), "date": "2026-11-23,2026-11-26"}
        assert live(server, **tomorrow) == [{"idVisit": 1}]


def test_day_periods_and_the_edges_of_the_window(srv: FakeMatomo) -> None:
    start = datetime(2026, 11, 24, 23, 50, tzinfo=UTC).timestamp()
    send(srv, [event(key(1), at=start, cid=VISITOR), event(key(2), at=start + 300, cid=VISITOR)])
    assert lookup(srv, key(1), start="2026-11-24") == [{"idVisit": 1}]
    assert lookup(srv, key(1), start="2026-11-25") == []
    on_day = live(srv, idSite=1, period="day", date="2026-11-24", showColumns="idVisit")
    assert on_day == [{"idVisit": 1}]
    # period=day&date=today starts yesterday in Matomo's Live.
    assert live(srv, idSite=1, period="day", date="today", showColumns="idVisit") == on_day
    bad = api(srv, "Live.getLastVisitsDetails", SUPERUSER_TOKEN, idSite=1, period="range",
              date="2026-11-24")  # fmt: skip
    assert bad.json()["message"].startswith("The date '2026-11-24' is not a correct date range")


# --- visits: visitor id, or IP + browser, within 30 minutes ---------------------------------------


def visits_of(srv: FakeMatomo) -> list[tuple[str, list[str]]]:
    rows = live(srv, idSite=1, filter_limit=-1, filter_sort_order="asc")
    return [(v["visitorId"], [a["dimension1"] for a in v["actionDetails"]]) for v in rows]


def test_hits_without_cid_from_one_ip_and_browser_share_a_visit(srv: FakeMatomo) -> None:
    send(
        srv,
        [
            event(key(1), at=NOW - 3000, ua=UA, _id="1111111111111111"),
            event(key(2), at=NOW - 2000, ua=UA, _id="2222222222222222"),  # other _id, same visit
            event(key(3), at=NOW - 100, ua=UA, _id="2222222222222222"),  # 31 min later: new
            event(key(4), at=NOW - 90, ua="curl/8.5.0"),  # other browser: other visit
        ],
    )
    assert visits_of(srv) == [
        ("1111111111111111", [key(1), key(2)]),
        ("2222222222222222", [key(3)]),
        (visits_of(srv)[2][0], [key(4)]),
    ]


def test_a_visitor_id_keeps_visits_apart_and_together(srv: FakeMatomo) -> None:
    other = "00000000000000b2"
    send(
        srv,
        [
            event(key(1), at=NOW - 600, ua=UA, cid=VISITOR),
            event(key(2), at=NOW - 500, ua=UA, cid=other),  # same IP and browser, other visitor
            event(key(3), at=NOW - 400, ua="curl/8.5.0", cid=VISITOR),  # other browser, same one
            event(key(4), at=NOW - 300, ua="Wget/1.21", _id=other),  # _id matches the visitor
        ],
    )
    assert visits_of(srv) == [(VISITOR, [key(1), key(3)]), (other, [key(2), key(4)])]


# --- which values are stored ----------------------------------------------------------------------


def test_only_configured_active_dimensions_of_the_sites_are_stored(srv: FakeMatomo) -> None:
    assert srv.add_custom_dimension(2, "matokit_key") == 1  # ids are numbered per site
    assert srv.add_custom_dimension(1, "session", scope="visit") == 2
    assert srv.add_custom_dimension(1, "off", active=False) == 3
    send(
        srv,
        [
            event(key(1), dimension2="s1", dimension3="ignored", dimension4="no such"),
            event(key(2), idsite=2, dimension2="not on site 2"),
            event(key(3), dimension2="s2", idgoal=0, ec_id="order-1", revenue=5),  # no action
        ],
    )
    assert srv.stored_keys(1) == Counter([key(1), key(2)])
    assert srv.stored_keys(1, idsite=1) == Counter([key(1)])
    assert srv.stored_keys(2) == Counter() and srv.stored_keys(3) == Counter()
    assert lookup(srv, key(3)) == []  # an ecommerce request records no action to look up
    (visit,) = live(srv, idSite=1)
    assert visit["dimension2"] == "s2"  # visit scope: the last value sent
    assert [(a.get("dimension1"), "dimension2" in a) for a in visit["actionDetails"]] == [
        (key(1), False),
        (None, False),
    ]
    refused = api(srv, "Live.getLastVisitsDetails", SUPERUSER_TOKEN, idSite=1,
                  segment="dimension3==ignored")  # fmt: skip
    assert refused.json()["message"] == "Segment 'dimension3' is not a supported segment."
    assert [v["idVisit"] for v in live(srv, idSite=1, segment="dimension2==s2")] == [1]


def test_a_deactivated_dimension_stores_nothing_until_reactivated(srv: FakeMatomo) -> None:
    send(srv, [event(key(1))])
    off = {"idDimension": 1, "idSite": 1, "name": "matokit_key", "active": 0}
    resp = api(srv, "CustomDimensions.configureExistingCustomDimension", ADMIN_TOKEN, **off)
    assert resp.json() == {"result": "success", "message": "ok"}
    send(srv, [event(key(2))])
    on = {**off, "active": 1}
    assert api(srv, "CustomDimensions.configureExistingCustomDimension", ADMIN_TOKEN, **on).json()
    send(srv, [event(key(3))])
    assert srv.stored_keys(1) == Counter([key(1), key(3)])
    assert [lookup(srv, key(n)) != [] for n in (1, 2, 3)] == [True, False, True]
    srv.configure_custom_dimension(1, 1, active=False)
    refused = api(srv, "Live.getLastVisitsDetails", VIEW_TOKEN, **lookup_params(key(1)))
    assert refused.json()["message"] == "Segment 'dimension1' is not a supported segment."


def test_values_are_trimmed_to_250_characters(srv: FakeMatomo) -> None:
    send(srv, [event("  " + "x" * 300 + " ")])
    assert srv.stored_keys(1) == Counter({"x" * 250: 1})


# --- CustomDimensions API -------------------------------------------------------------------------


def test_configure_new_custom_dimension_as_matomo_does(fake_matomo: FakeMatomo) -> None:
    def configure(token: str = ADMIN_TOKEN, **params: Any) -> Any:
        base = {"idSite": 1, "name": "matokit_key", "scope": "action", "active": 1}
        resp = api(fake_matomo, "CustomDimensions.configureNewCustomDimension", token,
                   **{**base, **params})  # fmt: skip
        return resp.status_code, resp.json()

    assert configure() == (200, {"value": 1})
    assert configure() == (200, {"value": 2})  # a duplicate name is not refused
    assert configure(idSite=2, token=SUPERUSER_TOKEN) == (200, {"value": 1})
    assert configure(active=0, caseSensitive=0, name="other") == (200, {"value": 3})
    url_rule = {"extractions[0][dimension]": "url", "extractions[0][pattern]": "page_(.+)"}
    assert configure(name="from url", **url_rule) == (200, {"value": 4})
    missing = configure(active=None)
    assert missing == (400, {"result": "error", "message": "Please specify a value for 'active'."})
    assert configure(active="yes")[1]["message"] == (
        "Invalid value 'yes' for 'active' specified. Allowed values: '0' or '1'"
    )
    assert configure(name="a/b")[1]["message"].startswith("Allowed characters are")
    assert configure(scope="page")[1]["message"] == (
        "Invalid value 'page' for 'scope' specified. Available scopes are: visit, action, "
        "conversion"
    )
    assert configure(token=VIEW_TOKEN) == (
        401,
        {
            "result": "error",
            "message": "You can't access this resource as it requires 'write' access for the "
            "website id = 1.",
        },
    )
    listed = api(fake_matomo, "CustomDimensions.getConfiguredCustomDimensions", VIEW_TOKEN,
                 idSite=1).json()  # fmt: skip
    assert [(d["idcustomdimension"], d["index"], d["name"], d["active"]) for d in listed] == [
        ("1", "1", "matokit_key", True),
        ("2", "2", "matokit_key", True),
        ("3", "3", "other", False),
        ("4", "4", "from url", True),
    ]
    assert listed[2]["case_sensitive"] is False
    assert listed[3]["extractions"] == [{"dimension": "url", "pattern": "page_(.+)"}]
    # The extraction fills the dimension when a hit does not set it.
    track = "?" + urlencode({"idsite": 1, "rec": 1, "url": "https://example.org/page_42"})
    bulk(fake_matomo, [track])
    assert fake_matomo.stored_keys(4) == Counter({"42": 1})


def test_configure_existing_custom_dimension_refuses_unknown_ids(fake_matomo: FakeMatomo) -> None:
    params = {"idDimension": 9, "idSite": 1, "name": "x", "active": 1}
    resp = api(fake_matomo, "CustomDimensions.configureExistingCustomDimension", ADMIN_TOKEN,
               **params)  # fmt: skip
    assert resp.json() == {
        "result": "error",
        "message": "Dimension 9 for website 1 does not exist.",
    }


# --- Live and CustomDimensions switched off ------------------------------------------------------


def test_visits_log_disabled_for_a_site_or_globally(srv: FakeMatomo) -> None:
    send(srv, [event(key(1))])
    srv.disable_visits_log(1)
    resp = api(srv, "Live.getLastVisitsDetails", VIEW_TOKEN, **lookup_params(key(1)))
    assert resp.status_code == 200
    assert resp.json() == {
        "result": "error",
        "message": "Visits log is deactivated in website settings. A user with at least admin "
        "access can enable this feature in the settings for this website (idSite=1).",
    }
    (answer,) = bulk_request(srv, [lookup_params(key(1))])
    assert answer == resp.json()
    counters = api(srv, "Live.getCounters", VIEW_TOKEN, idSite=1, lastMinutes=30).json()
    assert counters[0]["visits"] == 1  # only the visits log is off
    srv.enable_visits_log(1)
    srv.disable_visits_log()
    message = live(srv, VIEW_TOKEN, **lookup_params(key(1)))["message"]
    assert message == (
        "Visits log is deactivated globally. A user with super user access can enable this "
        "feature in the general settings."
    )
    srv.enable_visits_log()
    assert lookup(srv, key(1)) == [{"idVisit": 1}]


def test_live_plugin_deactivated(srv: FakeMatomo) -> None:
    srv.deactivate_plugin("Live")
    expected = {"result": "error", "message": NOT_ENABLED.format("Live")}
    resp = api(srv, "Live.getLastVisitsDetails", VIEW_TOKEN, **lookup_params(key(1)))
    assert (resp.status_code, resp.json()) == (200, expected)
    assert api(srv, "Live.getCounters", VIEW_TOKEN, idSite=1, lastMinutes=5).json() == expected
    assert bulk_request(srv, [lookup_params(key(1))] * 2) == [expected, expected]
    activated = api(srv, "API.isPluginActivated", VIEW_TOKEN, pluginName="Live").json()
    assert activated == {"value": False}
    unknown = api(srv, "Nope.method", VIEW_TOKEN)
    assert (unknown.status_code, unknown.json()["message"]) == (
        404,
        "The plugin Nope was not found.",
    )
    srv.activate_plugin("Live")
    assert lookup(srv, key(1)) == []


def test_custom_dimensions_plugin_deactivated(srv: FakeMatomo) -> None:
    srv.deactivate_plugin("CustomDimensions")
    expected = {"result": "error", "message": NOT_ENABLED.format("CustomDimensions")}
    listed = api(srv, "CustomDimensions.getConfiguredCustomDimensions", VIEW_TOKEN, idSite=1)
    assert (listed.status_code, listed.json()) == (200, expected)
    send(srv, [event(key(1))])  # tracked while the plugin is off: the value is dropped
    refused = live(srv, **lookup_params(key(1)))
    assert refused["message"] == "Segment 'dimension1' is not a supported segment."
    srv.activate_plugin("CustomDimensions")
    send(srv, [event(key(2))])
    assert srv.stored_keys(1) == Counter([key(2)])


# --- hits that become visible late ----------------------------------------------------------------


def test_stored_hits_become_visible_after_the_delay(clock: Clock) -> None:
    with FakeMatomo(clock=clock, visible_after=30) as server:
        server.add_custom_dimension(1, "matokit_key")
        send(server, [event(key(1))])
        assert len(server.hits) == 1 and server.stored_keys(1) == Counter([key(1)])
        assert lookup(server, key(1)) == []
        summary = {"idSite": 1, "period": "day", "date": "today"}
        visits = api(server, "VisitsSummary.get", VIEW_TOKEN, **summary).json()
        assert visits["nb_visits"] == 0
        clock.now += 29
        assert lookup(server, key(1)) == []
        clock.now += 1
        assert lookup(server, key(1)) == [{"idVisit": 1}]
        assert api(server, "VisitsSummary.get", VIEW_TOKEN, **summary).json()["nb_visits"] == 1
        server.visible_after = 0
        assert server.visible_after == 0


# --- faults after the hits were stored ------------------------------------------------------------


def test_stall_after_stores_the_hits_and_the_client_times_out(srv: FakeMatomo) -> None:
    srv.add_fault(Fault(endpoint="tracking", stall_after=30, times=1))
    with pytest.raises(requests.Timeout):
        bulk(srv, [event(key(1))], SUPERUSER_TOKEN, timeout=0.5)
    assert srv.stored_keys(1) == Counter([key(1)])
    assert lookup(srv, key(1)) == [{"idVisit": 1}]


def test_garble_after_stores_the_hits_and_answers_200_without_json(srv: FakeMatomo) -> None:
    srv.add_fault(Fault(endpoint="tracking", garble_after=True, times=1))
    resp = bulk(srv, [event(key(1)), event(key(2))], SUPERUSER_TOKEN)
    assert resp.status_code == 200
    with pytest.raises(ValueError):
        resp.json()
    assert srv.stored_keys(1) == Counter([key(1), key(2)])
    assert bulk(srv, [event(key(3))], SUPERUSER_TOKEN).json()["tracked"] == 1  # once only


def test_duplicate_keys_counts_what_was_stored_twice(srv: FakeMatomo) -> None:
    srv.add_fault(Fault(endpoint="tracking", drop="after", times=1))
    with pytest.raises(requests.ConnectionError):
        bulk(srv, [event(key(1)), event(key(2))], SUPERUSER_TOKEN)
    send(srv, [event(key(2)), event(key(3))])  # the replay a client without lookups makes
    assert srv.duplicate_keys(1) == {key(2): 2}
    assert sum(srv.stored_keys(1).values()) == 4


# --- the standalone server's flags ----------------------------------------------------------------


def test_standalone_flags_configure_dimensions_limits_and_switches() -> None:
    argv = [
        *(sys.executable, "-m", "tests.fakematomo", "--port", "0"),
        *("--custom-dimension", "1:matokit_key"),
        *("--visitor-log-maximum-actions-per-visit", "2"),
        *("--disable-visits-log", "2", "--deactivate-plugin", "Events", "--visible-after", "0"),
    ]
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()

        def call(method: str, **params: Any) -> Any:
            query = {"module": "API", "method": method, "format": "JSON", **params}
            resp = requests.post(
                url + "index.php?" + urlencode(query),
                data={"token_auth": SUPERUSER_TOKEN},
                timeout=5,
            )
            return resp.json()

        payload = {"requests": [event(key(i), cid=VISITOR, cdt="") for i in range(3)]}
        requests.post(url + "matomo.php", data=json.dumps(payload), timeout=5)
        (visit,) = call("Live.getLastVisitsDetails", idSite=1)
        assert [a["dimension1"] for a in visit["actionDetails"]] == [key(0), key(1)]
        assert call("Live.getLastVisitsDetails", idSite=2)["message"].startswith(
            "Visits log is deactivated in website settings"
        )
        events = call("Events.getCategory", idSite=1, period="day", date="today")
        assert events["message"] == NOT_ENABLED.format("Events")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
