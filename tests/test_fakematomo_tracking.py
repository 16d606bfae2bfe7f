"""The fake Matomo's tracker: single-hit rules, the bulk table, and every fault."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from tests.fakematomo import ADMIN_TOKEN, SUPERUSER_TOKEN, VIEW_TOKEN, FakeMatomo, Fault
from tests.fakematomo.client import api, bulk, track
from tests.fakematomo.replies import GIF

BAD_TOKEN = "0badc0de" * 4
CID = "0123456789abcdef"
OLD = str(int(time.time()) - 3 * 86400)

# --- single hits --------------------------------------------------------------------------------

SINGLE_TABLE: list[tuple[str, dict[str, Any], int, bool]] = [
    # (case, params, status, stored)
    ("valid pageview", {"idsite": 1, "rec": 1, "url": "https://example.org/"}, 200, True),
    ("send_image=0", {"idsite": 1, "rec": 1, "send_image": 0}, 204, True),
    ("no rec", {"idsite": 1, "url": "https://example.org/"}, 200, False),
    ("rec=0", {"idsite": 1, "rec": 0}, 200, False),
    ("unknown idsite", {"idsite": 99, "rec": 1}, 400, False),
    ("idsite 0", {"idsite": 0, "rec": 1}, 400, False),
    ("idsite abc", {"idsite": "abc", "rec": 1}, 400, False),
    ("missing idsite", {"rec": 1}, 400, False),
    ("googlebot header", {"idsite": 1, "rec": 1, "_header_ua": "Googlebot/2.1"}, 200, False),
    ("bingbot ua param", {"idsite": 1, "rec": 1, "ua": "Mozilla/5.0 (bingbot/2.0)"}, 200, False),
    ("generic crawler", {"idsite": 1, "rec": 1, "ua": "AcmeCrawler 1.0"}, 200, False),
    ("bots=1 keeps bots", {"idsite": 1, "rec": 1, "ua": "Googlebot", "bots": 1}, 200, True),
    ("curl is stored", {"idsite": 1, "rec": 1, "_header_ua": "curl/8.5.0"}, 200, True),
    ("empty UA is stored", {"idsite": 1, "rec": 1, "_header_ua": ""}, 200, True),
    ("e_c alone", {"idsite": 1, "rec": 1, "e_c": "Cat"}, 200, True),
    ("cid 16 hex", {"idsite": 1, "rec": 1, "cid": CID}, 200, True),
    ("cid too short", {"idsite": 1, "rec": 1, "cid": "abc"}, 400, False),
    ("cid not hex", {"idsite": 1, "rec": 1, "cid": "zzzzzzzzzzzzzzzz"}, 400, False),
    ("old cdt, no token", {"idsite": 1, "rec": 1, "cdt": OLD}, 400, False),
    ("old cdt, view token", {"idsite": 1, "rec": 1, "cdt": OLD, "token_auth": VIEW_TOKEN}, 400,
     False),
    ("old cdt, admin token", {"idsite": 1, "rec": 1, "cdt": OLD, "token_auth": ADMIN_TOKEN}, 200,
     True),
    ("old cdt, admin token, site 2", {"idsite": 2, "rec": 1, "cdt": OLD,
                                      "token_auth": ADMIN_TOKEN}, 400, False),
    ("old cdt string, superuser", {"idsite": 2, "rec": 1, "cdt": "2026-01-02 03:04:05",
                                   "token_auth": SUPERUSER_TOKEN}, 200, True),
    ("future cdt", {"idsite": 1, "rec": 1, "cdt": str(int(time.time()) + 86400 * 30)}, 200,
     True),
    ("garbage cdt", {"idsite": 1, "rec": 1, "cdt": "yesterday-ish"}, 200, True),
    ("cip without token", {"idsite": 1, "rec": 1, "cip": "10.0.0.1"}, 400, False),
    ("cip with superuser", {"idsite": 1, "rec": 1, "cip": "10.0.0.1",
                            "token_auth": SUPERUSER_TOKEN}, 200, True),
    ("unknown goal", {"idsite": 1, "rec": 1, "idgoal": 42}, 400, False),
    ("known goal", {"idsite": 1, "rec": 1, "idgoal": 1, "revenue": 5}, 200, True),
]  # fmt: skip


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    ("params", "status", "stored"),
    [row[1:] for row in SINGLE_TABLE],
    ids=[row[0] for row in SINGLE_TABLE],
)
def test_single_hit_rules(
    fake_matomo: FakeMatomo, method: str, params: dict[str, Any], status: int, stored: bool
) -> None:
    resp = track(fake_matomo, method=method, **params)
    assert resp.status_code == status, resp.content
    assert len(fake_matomo.hits) == (1 if stored else 0)
    if status == 200:
        assert resp.content == GIF and resp.headers["Content-Type"] == "image/gif"
    if status == 204:
        assert resp.content == b""


def test_bad_site_with_image_is_gif_then_text(fake_matomo: FakeMatomo) -> None:
    with_image = track(fake_matomo, idsite=99, rec=1)
    assert with_image.content.startswith(GIF)
    assert b"This resource is part of Matomo" in with_image.content[len(GIF) :]
    without = track(fake_matomo, idsite=99, rec=1, send_image=0)
    assert without.status_code == 400
    assert without.content.startswith(b"This resource is part of Matomo")


def test_bare_get_answers_text_even_with_the_database_down(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="tracking", database_down=True))
    bare = requests.get(fake_matomo.url + "matomo.php", timeout=5)
    assert bare.status_code == 200 and "This resource is part of Matomo" in bare.text
    hit = track(fake_matomo, idsite=1, rec=1)
    assert hit.status_code == 400  # a database outage looks like a bad hit
    assert fake_matomo.hits == []


def test_stored_hit_keeps_params_without_the_token(fake_matomo: FakeMatomo) -> None:
    before = time.time()
    track(fake_matomo, method="POST", idsite=1, rec=1, cip="10.1.2.3", token_auth=SUPERUSER_TOKEN)
    (hit,) = fake_matomo.hits
    assert hit.pop("_stored_at") >= before
    assert hit == {"idsite": "1", "rec": "1", "cip": "10.1.2.3"}


def test_query_wins_over_form_body(fake_matomo: FakeMatomo) -> None:
    requests.post(
        fake_matomo.url + "matomo.php?idsite=1&action_name=query",
        data={"idsite": "99", "rec": "1", "action_name": "form"},
        timeout=5,
    )
    (hit,) = fake_matomo.hits
    assert (hit["idsite"], hit["action_name"]) == ("1", "query")


def test_secure_only_token_in_tracking_url_is_not_accepted_for_old_hits() -> None:
    secure = "5ec0e" + "0" * 26 + "8"
    tokens = {secure: {"login": "robot", "superuser": True, "secure_only": True}}
    with FakeMatomo(tokens=tokens) as srv:
        assert track(srv, idsite=1, rec=1, cdt=OLD, token_auth=secure).status_code == 400
        posted = track(srv, method="POST", idsite=1, rec=1, cdt=OLD, token_auth=secure)
        assert posted.status_code == 200
        assert len(srv.hits) == 1


def test_old_hit_with_bad_token_counts_as_a_failed_login(fake_matomo: FakeMatomo) -> None:
    track(fake_matomo, idsite=1, rec=1, cdt=OLD, token_auth=BAD_TOKEN)
    assert fake_matomo.failed_logins == {"127.0.0.1": 1}


# --- bulk ---------------------------------------------------------------------------------------

GOOD = "?idsite=1&rec=1&url=https%3A%2F%2Fexample.org%2F&action_name=Home"
BAD = "?idsite=99&rec=1"
BULK_TABLE: list[tuple[str, list[Any], str | None, dict[str, Any], int]] = [
    # (case, items, token, expected body, stored)
    ("all valid, superuser", [GOOD] * 3, SUPERUSER_TOKEN,
     {"status": "success", "tracked": 3, "invalid": 0, "invalid_indices": []}, 3),
    ("all valid, no token", [GOOD] * 3, None,
     {"status": "success", "tracked": 3, "invalid": 0}, 3),
    ("item 1 bad, superuser", [GOOD, BAD, GOOD], SUPERUSER_TOKEN,
     {"status": "success", "tracked": 2, "invalid": 1, "invalid_indices": [1]}, 2),
    ("item 1 bad, admin", [GOOD, BAD, GOOD], ADMIN_TOKEN,
     {"status": "success", "tracked": 2, "invalid": 1}, 2),
    ("item 1 bad, view", [GOOD, BAD, GOOD], VIEW_TOKEN,
     {"status": "success", "tracked": 2, "invalid": 1}, 2),
    ("item 1 bad, bad token", [GOOD, BAD, GOOD], BAD_TOKEN,
     {"status": "success", "tracked": 2, "invalid": 1}, 2),
    ("item 1 bad, no token", [GOOD, BAD, GOOD], None,
     {"status": "success", "tracked": 2, "invalid": 1}, 2),
    ("items without ? dropped before numbering", ["idsite=1&rec=1", GOOD, BAD], SUPERUSER_TOKEN,
     {"status": "success", "tracked": 1, "invalid": 1, "invalid_indices": [1]}, 1),
    ("full URLs and JSON objects", ["https://m.example/matomo.php" + GOOD,
                                    {"idsite": 1, "rec": 1, "e_c": "C", "e_a": "A"}], None,
     {"status": "success", "tracked": 2, "invalid": 0}, 2),
    ("probe without rec", ["?idsite=1&url=https%3A%2F%2Fexample.org%2F"], None,
     {"status": "success", "tracked": 1, "invalid": 0}, 0),
    ("bots count as tracked", [GOOD + "&ua=Googlebot"], None,
     {"status": "success", "tracked": 1, "invalid": 0}, 0),
    ("old cdt, admin token", [f"{GOOD}&cdt={OLD}"], ADMIN_TOKEN,
     {"status": "success", "tracked": 1, "invalid": 0}, 1),
    ("old cdt, view token", [f"{GOOD}&cdt={OLD}"], VIEW_TOKEN,
     {"status": "success", "tracked": 0, "invalid": 1}, 0),
    ("empty list", [], None, {"status": "success", "tracked": 0, "invalid": 0}, 0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("items", "token", "expected", "stored"),
    [row[1:] for row in BULK_TABLE],
    ids=[row[0] for row in BULK_TABLE],
)
def test_bulk_table(
    fake_matomo: FakeMatomo,
    items: list[Any],
    token: str | None,
    expected: dict[str, Any],
    stored: int,
) -> None:
    resp = bulk(fake_matomo, items, token)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == expected
    assert len(fake_matomo.hits) == stored


def test_bulk_database_down_rolls_back_everything(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="tracking", database_down=True, times=1))
    resp = bulk(fake_matomo, [GOOD] * 5, SUPERUSER_TOKEN)
    assert (resp.status_code, resp.json()) == (
        500,
        {"status": "error", "tracked": 0, "invalid": 0},
    )
    assert fake_matomo.hits == []
    assert bulk(fake_matomo, [GOOD] * 5).json()["tracked"] == 5


def test_bulk_send_image_0_gives_a_bare_204(fake_matomo: FakeMatomo) -> None:
    resp = bulk(fake_matomo, [GOOD], extra={"send_image": 0})
    assert (resp.status_code, resp.content) == (204, b"")
    assert len(fake_matomo.hits) == 1


def test_bulk_with_malformed_json_is_400_and_harmless(fake_matomo: FakeMatomo) -> None:
    resp = requests.post(
        fake_matomo.url + "matomo.php",
        data=b'{"requests": ["?idsite=1&rec=1"',
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert resp.status_code == 400
    assert fake_matomo.hits == []
    assert bulk(fake_matomo, [GOOD]).status_code == 200


def test_bulk_accepts_queuedtracking_0_and_bearer(fake_matomo: FakeMatomo) -> None:
    resp = requests.post(
        fake_matomo.url + "matomo.php?queuedtracking=0",
        json={"requests": [GOOD, BAD]},
        headers={"Authorization": f"Bearer {SUPERUSER_TOKEN}"},
        timeout=5,
    )
    assert resp.json() == {"status": "success", "tracked": 1, "invalid": 1, "invalid_indices": [1]}


def test_queued_tracking_hides_counts_unless_bypassed(fake_matomo: FakeMatomo) -> None:
    fake_matomo.queued_tracking = True
    hidden = bulk(fake_matomo, [GOOD])
    assert (hidden.status_code, hidden.content) == (200, GIF)
    counted = bulk(fake_matomo, [GOOD], query="?queuedtracking=0")
    assert counted.json() == {"status": "success", "tracked": 1, "invalid": 0}


REQUIRE_AUTH_TABLE: list[tuple[str, list[str], str | None, int, str, int]] = [
    # (case, items, token, status, status field, stored)
    ("no token", [GOOD], None, 500, "error", 0),
    ("bad token", [GOOD], BAD_TOKEN, 500, "error", 0),
    ("view token", [GOOD], VIEW_TOKEN, 500, "error", 0),
    ("admin token, own site", [GOOD], ADMIN_TOKEN, 200, "success", 1),
    ("superuser, one bad item", [GOOD, BAD], SUPERUSER_TOKEN, 400, "error", 0),
    ("superuser, all good", [GOOD, GOOD], SUPERUSER_TOKEN, 200, "success", 2),
]


@pytest.mark.parametrize(
    ("items", "token", "status", "field", "stored"),
    [row[1:] for row in REQUIRE_AUTH_TABLE],
    ids=[row[0] for row in REQUIRE_AUTH_TABLE],
)
def test_bulk_requests_require_authentication(
    items: list[str], token: str | None, status: int, field: str, stored: int
) -> None:
    with FakeMatomo(bulk_requests_require_authentication=True) as srv:
        resp = bulk(srv, items, token)
        assert resp.status_code == status
        assert resp.json()["status"] == field
        assert len(srv.hits) == stored


# --- faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["5", "Wed, 21 Oct 2026 07:28:00 GMT", None])
@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_status_fault_with_retry_after(
    fake_matomo: FakeMatomo, status: int, retry_after: str | None
) -> None:
    fake_matomo.add_fault(Fault(endpoint="tracking", status=status, retry_after=retry_after))
    resp = bulk(fake_matomo, [GOOD])
    assert resp.status_code == status
    assert resp.headers.get("Retry-After") == retry_after
    assert resp.headers["Content-Type"].startswith("text/html")  # a proxy's page, not JSON
    assert fake_matomo.hits == []


def test_fault_after_and_times_count_matching_requests(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="tracking", status=503, after=1, times=2))
    codes = [track(fake_matomo, idsite=1, rec=1).status_code for _ in range(5)]
    assert codes == [200, 503, 503, 200, 200]
    assert fake_matomo.faults == []


def test_fault_scoped_to_endpoint_and_method(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="api", method="API.getMatomoVersion", status=502))
    assert api(fake_matomo, "API.getMatomoVersion", SUPERUSER_TOKEN).status_code == 502
    other = api(fake_matomo, "SitesManager.getSitesIdWithAdminAccess", SUPERUSER_TOKEN)
    assert other.status_code == 200
    assert track(fake_matomo, idsite=1, rec=1).status_code == 200


def test_body_fault_sends_a_proxy_page(fake_matomo: FakeMatomo) -> None:
    page = "<html><body>Bad gateway (proxy)</body></html>"
    fake_matomo.add_fault(Fault(endpoint="any", status=502, body=page))
    resp = api(fake_matomo, "API.getMatomoVersion", SUPERUSER_TOKEN)
    assert (resp.status_code, resp.text) == (502, page)


def test_latency_fault_delays_the_answer(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="tracking", latency=0.3, times=1))
    started = time.monotonic()
    assert track(fake_matomo, idsite=1, rec=1).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_drop_before_closes_without_storing(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="tracking", drop="before", times=1))
    with pytest.raises(requests.ConnectionError):
        bulk(fake_matomo, [GOOD] * 3)
    assert fake_matomo.hits == []


def test_drop_after_stores_then_closes(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="tracking", drop="after", times=1))
    with pytest.raises(requests.ConnectionError):
        bulk(fake_matomo, [GOOD] * 3)
    assert len(fake_matomo.hits) == 3  # the client cannot know these were kept


def test_lose_items_makes_counts_fall_short(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="tracking", lose_items=2))
    body = bulk(fake_matomo, [GOOD, GOOD, BAD, GOOD, GOOD], SUPERUSER_TOKEN).json()
    assert body["tracked"] + body["invalid"] == 3
    assert len(fake_matomo.hits) == 2


def test_maintenance_on_the_tracker(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="tracking", maintenance=True))
    assert track(fake_matomo, idsite=1, rec=1).status_code == 503
    # The bulk handler ignores record_statistics=0: success, nothing tracked.
    assert bulk(fake_matomo, [GOOD] * 2).json() == {"status": "success", "tracked": 0, "invalid": 0}
    assert fake_matomo.hits == []


def test_hang_never_answers_and_stop_is_still_fast() -> None:
    srv = FakeMatomo().start()
    srv.add_fault(Fault(endpoint="api", hang=True))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            api(srv, "API.getMatomoVersion", SUPERUSER_TOKEN, timeout=30)
        except requests.RequestException as exc:
            errors.append(exc)

    with pytest.raises(requests.Timeout):
        api(srv, "API.getMatomoVersion", SUPERUSER_TOKEN, timeout=0.3)
    waiter = threading.Thread(target=call)
    waiter.start()
    time.sleep(0.1)
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 2
    waiter.join(timeout=5)
    assert errors and isinstance(errors[0], requests.ConnectionError)


def test_latency_is_interrupted_by_stop() -> None:
    srv = FakeMatomo().start()
    srv.add_fault(Fault(latency=30))
    outcomes: list[BaseException] = []

    def call() -> None:
        try:
            track(srv, idsite=1, rec=1)
        except requests.RequestException as exc:
            outcomes.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    srv.stop()
    thread.join(timeout=5)
    assert time.monotonic() - started < 2 and not thread.is_alive()
    assert outcomes, "a request cut short by stop() must fail, not succeed"
