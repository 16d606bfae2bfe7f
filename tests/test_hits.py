"""The hit model: what is sent, and every refusal naming its field."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import matokit
from matokit import hits
from matokit.errors import HitValidationError
from matokit.hits import Hit, hit_from_params, hit_from_record, idempotency_key

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
CID = "0123456789abcdef"


def clock() -> float:
    return NOW


def rng() -> float:
    return 0.5


FIXED: dict[str, Any] = {"clock": clock, "rng": rng}


def test_pageview_has_rec_apiv_site_time_and_fixed_rand() -> None:
    hit = hits.pageview(3, url="https://example.org/a b", title="Home", **FIXED)
    assert hit.params == {
        "idsite": "3",
        "rec": "1",
        "apiv": "1",
        "url": "https://example.org/a b",
        "action_name": "Home",
        "cdt": str(int(NOW)),
        "rand": "500000000",
    }
    assert hit.created_at == NOW
    assert hit.site_id == 3
    assert hit.time == int(NOW)


def test_event_sets_category_action_name_value_and_custom_action_flag() -> None:
    hit = hits.event(1, category="CLI", action="deploy", name="v1", value=2.5, **FIXED)
    assert {k: hit.params[k] for k in ("e_c", "e_a", "e_n", "e_v", "ca")} == {
        "e_c": "CLI",
        "e_a": "deploy",
        "e_n": "v1",
        "e_v": "2.5",
        "ca": "1",
    }
    assert hits.event(1, category="c", action="a", value="3", **FIXED).params["e_v"] == "3"


def test_goal_and_order_params() -> None:
    goal = hits.goal(1, goal_id="4", revenue=10, **FIXED)
    assert (goal.params["idgoal"], goal.params["revenue"]) == ("4", "10")
    order = hits.order(
        1,
        order_id="A-1",
        revenue="19.99",
        items=[("SKU1", "Mug", 9.5, 2), {"sku": "S2", "name": "Tee", "price": 1, "qty": 1}],
        **FIXED,
    )
    assert order.params["idgoal"] == "0"
    assert order.params["ec_id"] == "A-1"
    assert order.params["revenue"] == "19.99"
    assert json.loads(order.params["ec_items"]) == [
        ["SKU1", "Mug", "", 9.5, 2],
        ["S2", "Tee", "", 1.0, 1],
    ]


def test_common_options_visitor_user_dimensions_and_extra_params() -> None:
    hit = hits.pageview(
        1,
        url="https://e.org/",
        visitor_id=CID.upper(),
        user_id="alice",
        dimensions={1: "k1", "7": "x"},
        params={"ua": "Mozilla/5.0", "res": "1280x1024"},
        **FIXED,
    )
    assert hit.params["cid"] == CID
    assert hit.params["uid"] == "alice"
    assert hit.params["dimension1"] == "k1"
    assert hit.params["dimension7"] == "x"
    assert hit.params["ua"] == "Mozilla/5.0"


AT_CASES = [
    (datetime(2023, 11, 14, 20, 0, tzinfo=UTC), 1_699_992_000),
    (datetime(2023, 11, 14, 20, 0), 1_699_992_000),  # naive = UTC, like Matomo's cdt
    (datetime(2023, 11, 14, 21, 0, tzinfo=timezone(timedelta(hours=1))), 1_699_992_000),
    ("2023-11-14T20:00:00Z", 1_699_992_000),
    ("2023-11-14 20:00:00", 1_699_992_000),
    ("2023-11-14T22:00:00+02:00", 1_699_992_000),
    ("1699992000", 1_699_992_000),
    (1_699_992_000.9, 1_699_992_000),
    (NOW + 30, int(NOW)),  # clock skew: clamped to now
]


@pytest.mark.parametrize(("at", "cdt"), AT_CASES)
def test_at_becomes_utc_unix_seconds(at: Any, cdt: int) -> None:
    assert hits.pageview(1, url="https://e.org/", at=at, **FIXED).params["cdt"] == str(cdt)


@pytest.mark.parametrize(
    "at",
    [NOW + 3600, "tomorrow", "2023-13-01", True, float("nan"), NOW * 1000, 12, [], "1e9"],
)
def test_future_garbage_and_ancient_times_are_refused(at: Any) -> None:
    with pytest.raises(HitValidationError) as info:
        hits.pageview(1, url="https://e.org/", at=at, **FIXED)
    assert info.value.field == "at"
    assert info.value.hint


INVALID_BUILDS = [
    (lambda: hits.pageview(0, url="https://e.org/", **FIXED), "site_id"),
    (lambda: hits.pageview("abc", url="https://e.org/", **FIXED), "site_id"),  # type: ignore[arg-type]
    (lambda: hits.pageview(True, url="https://e.org/", **FIXED), "site_id"),
    (lambda: hits.pageview(1, url="", **FIXED), "url"),
    (lambda: hits.pageview(1, url="example.org/page", **FIXED), "url"),
    (lambda: hits.pageview(1, url="https://e.org/", title=" ", **FIXED), "title"),
    (lambda: hits.event(1, category="", action="a", **FIXED), "category"),
    (lambda: hits.event(1, category="c", action=" ", **FIXED), "action"),
    (lambda: hits.event(1, category="c", action="a", value="ten", **FIXED), "value"),
    (lambda: hits.event(1, category="c", action="a", value=float("inf"), **FIXED), "value"),
    (lambda: hits.goal(1, goal_id=0, **FIXED), "goal"),
    (lambda: hits.goal(1, goal_id=-2, **FIXED), "goal"),
    (lambda: hits.goal(1, goal_id=1, revenue=-1, **FIXED), "revenue"),
    (lambda: hits.order(1, order_id="", revenue=1, **FIXED), "order_id"),
    (lambda: hits.order(1, order_id="x" * 101, revenue=1, **FIXED), "order_id"),
    (lambda: hits.order(1, order_id="o", revenue="a", **FIXED), "revenue"),
    (lambda: hits.order(1, order_id="o", revenue=1, items=[("s", "n", 1)], **FIXED), "items[0]"),
    (
        lambda: hits.order(1, order_id="o", revenue=1, items=[("s", "n", 1, 0)], **FIXED),
        "items[0].quantity",
    ),
    (
        lambda: hits.order(1, order_id="o", revenue=1, items=[("", "n", 1, 1)], **FIXED),
        "items[0].sku",
    ),
    (lambda: hits.pageview(1, url="https://e.org/", visitor_id="abc", **FIXED), "visitor_id"),
    (lambda: hits.pageview(1, url="https://e.org/", visitor_id="g" * 16, **FIXED), "visitor_id"),
    (lambda: hits.pageview(1, url="https://e.org/", user_id="u" * 201, **FIXED), "user_id"),
    (lambda: hits.pageview(1, url="https://e.org/", dimensions={0: "x"}, **FIXED), "dimension"),
    (
        lambda: hits.pageview(1, url="https://e.org/", dimensions={1: "x" * 256}, **FIXED),
        "dimension",
    ),
    (lambda: hits.pageview(1, url="https://e.org/", params={"cdt": "1"}, **FIXED), "params.cdt"),
    (lambda: hits.pageview(1, url="https://e.org/", params={"url": "x"}, **FIXED), "params.url"),
    (
        lambda: hits.pageview(1, url="https://e.org/", params={"token_auth": "x"}, **FIXED),
        "token_auth",
    ),
    (
        lambda: hits.pageview(1, url="https://e.org/", params={"send_image": "0"}, **FIXED),
        "send_image",
    ),
    (lambda: hits.pageview(1, url="https://e.org/", params={"x": None}, **FIXED), "params.x"),
    (lambda: hits.pageview(1, url="https://e.org/", key="", **FIXED), "id"),
]


@pytest.mark.parametrize(("build", "field"), INVALID_BUILDS)
def test_invalid_builder_input_names_the_field_and_the_fix(build: Any, field: str) -> None:
    with pytest.raises(HitValidationError) as info:
        build()
    assert info.value.field == field
    assert info.value.hint, "every refusal says how to fix it"


def test_hit_never_holds_a_token() -> None:
    with pytest.raises(HitValidationError):
        Hit(params={"idsite": "1", "token_auth": "ab" * 16}, created_at=NOW)


# --- raw params --------------------------------------------------------------------------------


def test_hit_from_params_fills_defaults_and_keeps_rand_and_cdt() -> None:
    hit = hit_from_params({"idsite": 2, "url": "https://e.org/", "rand": "42"}, now=NOW)
    assert hit.params["rec"] == "1" and hit.params["apiv"] == "1"
    assert hit.params["rand"] == "42"
    assert hit.params["cdt"] == str(int(NOW))
    replay = hit_from_params(hit.params, now=NOW + 5000)
    assert replay.params == hit.params, "a journal replay is the identical request"


def test_hit_from_params_normalises_cdt_datetime_string_and_uses_default_site() -> None:
    hit = hit_from_params({"cdt": "2023-11-14 20:00:00"}, now=NOW, site_id=5, rng=rng)
    assert hit.params["cdt"] == "1699992000"
    assert hit.params["idsite"] == "5"
    assert hit.params["rand"] == "500000000"


INVALID_PARAMS = [
    ({"url": "x"}, "idsite"),
    ({"idsite": "0"}, "idsite"),
    ({"idsite": "1", "rec": "0"}, "rec"),
    ({"idsite": "1", "cid": "xyz"}, "cid"),
    ({"idsite": "1", "e_c": "cat"}, "e_a"),
    ({"idsite": "1", "e_a": "act"}, "e_c"),
    ({"idsite": "1", "e_c": "c", "e_a": "a", "e_v": "x"}, "e_v"),
    ({"idsite": "1", "idgoal": "-1"}, "idgoal"),
    ({"idsite": "1", "ec_items": "not json"}, "ec_items"),
    ({"idsite": "1", "dimension0": "x"}, "dimension0"),
    ({"idsite": "1", "cdt": str(int(NOW) + 3600)}, "cdt"),
    ({"idsite": "1", "cdt": "garbage"}, "cdt"),
    ({"idsite": "1", "token_auth": "x"}, "token_auth"),
    ({"idsite": "1", "cdo": "60"}, "cdo"),
    ({"idsite": "1", "nested": {"a": 1}}, "params.nested"),
]


@pytest.mark.parametrize(("params", "field"), INVALID_PARAMS)
def test_invalid_raw_params_are_refused(params: dict[str, Any], field: str) -> None:
    with pytest.raises(HitValidationError) as info:
        hit_from_params(params, now=NOW)
    assert info.value.field == field


# --- import records ------------------------------------------------------------------------------


def test_record_shapes_build_the_same_hits_as_the_builders() -> None:
    record = {
        "type": "event",
        "category": "c",
        "action": "a",
        "value": 3,
        "at": "2023-11-14T20:00:00Z",
        "visitor_id": CID,
        "dimensions": {"2": "k"},
        "id": "line-1",
    }
    hit = hit_from_record(record, site_id=1, now=NOW, rng=rng)
    expected = hits.event(
        1,
        category="c",
        action="a",
        value=3,
        at="2023-11-14T20:00:00Z",
        visitor_id=CID,
        dimensions={2: "k"},
        key="line-1",
        **FIXED,
    )
    assert hit == expected
    order = hit_from_record(
        {"type": "order", "order_id": "o1", "revenue": 5, "items": [["s", "n", 5, 1]]},
        site_id=1,
        now=NOW,
        rng=rng,
    )
    assert order.params["ec_id"] == "o1"
    goal = hit_from_record({"type": "goal", "goal": 2, "site_id": 9}, site_id=1, now=NOW)
    assert goal.params["idsite"] == "9"
    page = hit_from_record({"type": "pageview", "url": "https://e.org/"}, site_id=1, now=NOW)
    assert page.params["url"] == "https://e.org/"


def test_raw_record_with_at_and_id() -> None:
    hit = hit_from_record(
        {"params": {"url": "https://e.org/"}, "at": 1_699_992_000, "id": 17},
        site_id=4,
        now=NOW,
        rng=rng,
    )
    assert hit.params["cdt"] == "1699992000"
    assert hit.params["idsite"] == "4"
    assert hit.key == "17"


INVALID_RECORDS = [
    ({"type": "pageviews", "url": "u"}, "type"),
    ({"type": "pageview"}, "url"),
    ({"type": "pageview", "url": "https://e.org/", "catgory": "x"}, "catgory"),
    ({"type": "event", "category": "c"}, "action"),
    ({"type": "order", "order_id": "o", "revenue": 1, "items": "x"}, "items"),
    ({"type": "pageview", "url": "https://e.org/", "dimensions": [1]}, "dimensions"),
    ({"url": "https://e.org/"}, "url"),
    ({}, "type"),
    ({"params": [1]}, "params"),
    ({"params": {"cdt": "1699992000"}, "at": 1_699_992_000}, "at"),
    ([1, 2], "line"),
]


@pytest.mark.parametrize(("record", "field"), INVALID_RECORDS)
def test_invalid_import_records_are_refused(record: Any, field: str) -> None:
    with pytest.raises(HitValidationError) as info:
        hit_from_record(record, site_id=1, now=NOW)
    assert info.value.field == field


def test_typed_record_without_any_site_is_refused() -> None:
    with pytest.raises(HitValidationError) as info:
        hit_from_record({"type": "pageview", "url": "https://e.org/"}, site_id=None, now=NOW)
    assert info.value.field == "site_id"


# --- idempotency ---------------------------------------------------------------------------------


def test_idempotency_key_ignores_rand_but_not_time_or_content() -> None:
    a = hits.pageview(1, url="https://e.org/", clock=clock, rng=lambda: 0.1)
    b = hits.pageview(1, url="https://e.org/", clock=clock, rng=lambda: 0.9)
    assert a.params["rand"] != b.params["rand"]
    assert idempotency_key(a) == idempotency_key(b)
    assert re.fullmatch(r"[0-9a-f]{32}", idempotency_key(a))
    later = hits.pageview(1, url="https://e.org/", clock=lambda: NOW + 1, rng=rng)
    other = hits.pageview(1, url="https://e.org/b", **FIXED)
    assert len({idempotency_key(a), idempotency_key(later), idempotency_key(other)}) == 3


def test_idempotency_key_from_explicit_key_is_stable_across_times_and_sites_differ() -> None:
    a = hits.pageview(1, url="https://e.org/", key="k", **FIXED)
    b = hits.pageview(1, url="https://e.org/", key="k", clock=lambda: NOW + 99, rng=rng)
    c = hits.pageview(2, url="https://e.org/", key="k", **FIXED)
    assert idempotency_key(a) == idempotency_key(b) != idempotency_key(c)


# --- user agent ----------------------------------------------------------------------------------

# Words that make Matomo's device-detector classify a user agent as a bot (its generic bot
# patterns), plus URLs: such hits are counted as "tracked" and silently not stored.
BOT_WORDS = [
    "bot",
    "crawl",
    "crawler",
    "spider",
    "monitor",
    "checker",
    "check",
    "cron",
    "fetcher",
    "fetch",
    "uptime",
    "probe",
    "scan",
    "scanner",
    "scrap",
    "http",
    "www",
    "validator",
    "archiver",
    "indexer",
    "inspector",
    "analyzer",
    "collector",
    "reader",
    "wrapper",
    "sleuth",
    "search",
    "transcoder",
    "extractor",
    "curl",
    "wget",
    "python",
    "requests",
    "library",
    "script",
    "preview",
    "headless",
]


def test_user_agent_names_matokit_and_its_version() -> None:
    assert hits.USER_AGENT.startswith(f"MatoKit/{matokit.__version__} ")


@pytest.mark.parametrize("word", BOT_WORDS)
def test_user_agent_contains_no_bot_word(word: str) -> None:
    assert word not in hits.USER_AGENT.casefold()
