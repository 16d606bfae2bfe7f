"""MatomoClient against Matomo's observed answers (responses) and real sockets (transport)."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
import urllib3.exceptions as u3

from matokit import hits
from matokit.client import (
    MatomoClient,
    Outcome,
    TrackResult,
    bulk_outcomes,
    normalize_base_url,
    request_may_have_been_sent,
)
from matokit.errors import (
    AuthenticationError,
    ConfigError,
    InvalidRequestError,
    LockedOutError,
    MatomoError,
    NoMatomoError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    RejectedHitError,
    RolledBackError,
    ServerPausedError,
    TokenCoolDownError,
    UnavailableError,
    UsageError,
)
from matokit.redact import MASK
from matokit.serverpause import ServerPause
from matokit.tokenmemory import TokenMemory
from tests.fakematomo import ADMIN_TOKEN, SUPERUSER_TOKEN, FakeMatomo

BASE = "https://matomo.example/"
TRACKER = "https://matomo.example/matomo.php"
API = "https://matomo.example/index.php"
TOKEN = "ab" * 16
NOW = 1_700_000_000.0


class FakeTime:
    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def memory(tmp_path: Path, fake_time: FakeTime) -> TokenMemory:
    return TokenMemory(tmp_path / "data" / "token-memory.json", clock=fake_time.clock)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
        for call in mock.calls:
            assert TOKEN not in (call.request.url or ""), "the token must never be in a URL"


@pytest.fixture
def client(memory: TokenMemory, fake_time: FakeTime) -> Iterator[MatomoClient]:
    with MatomoClient(
        base_url=BASE,
        token=TOKEN,
        token_memory=memory,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    ) as c:
        yield c


def make_hits(count: int) -> list[hits.Hit]:
    return [
        hits.pageview(1, url=f"https://e.org/{i}", clock=lambda: NOW, rng=lambda: 0.25)
        for i in range(count)
    ]


def sent_json(rsps: responses.RequestsMock, index: int = -1) -> Any:
    body = rsps.calls[index].request.body
    assert isinstance(body, bytes)
    return json.loads(body)


def sent_form(rsps: responses.RequestsMock, index: int = -1) -> dict[str, list[str]]:
    body = rsps.calls[index].request.body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return parse_qs(text)


def query(rsps: responses.RequestsMock, index: int = -1) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(rsps.calls[index].request.url)).query)


# --- tracking: the request ---------------------------------------------------------------------


def test_track_sends_one_bulk_json_post_with_the_token_in_the_body(
    client: MatomoClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(TRACKER, json={"status": "success", "tracked": 2, "invalid": 0})
    result = client.track(make_hits(2))
    assert result == TrackResult((Outcome.DELIVERED,) * 2, 2, 0)
    request = rsps.calls[0].request
    assert request.url == TRACKER
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == hits.USER_AGENT
    body = sent_json(rsps)
    assert body["token_auth"] == TOKEN
    assert "send_image" not in body
    assert body["requests"][0].startswith("?idsite=1&rec=1&apiv=1&url=https%3A%2F%2Fe.org%2F0&cdt=")
    assert parse_qs(body["requests"][1][1:])["cdt"] == [str(int(NOW))]


def test_one_hit_is_a_bulk_of_one_and_no_token_means_no_token_auth(
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TRACKER, json={"status": "success", "tracked": 1, "invalid": 0})
    with MatomoClient(base_url=BASE, token=None) as anonymous:
        assert anonymous.track(make_hits(1)).delivered == 1
    assert list(sent_json(rsps)) == ["requests"]


def test_queuedtracking_flag_goes_in_the_url_only_when_enabled(
    rsps: responses.RequestsMock,
) -> None:
    rsps.post(TRACKER, json={"status": "success", "tracked": 1, "invalid": 0})
    with MatomoClient(base_url=BASE, queuedtracking=True) as c:
        c.track(make_hits(1))
    assert rsps.calls[0].request.url == TRACKER + "?queuedtracking=0"


def test_empty_batch_sends_nothing(client: MatomoClient, rsps: responses.RequestsMock) -> None:
    assert client.track([]) == TrackResult((), 0, 0)
    assert len(rsps.calls) == 0


# --- tracking: per-hit outcomes (matomo-api.md's bulk table and beyond) ------------------------

D, R, B, U = Outcome.DELIVERED, Outcome.REJECTED, Outcome.BATCH_INVALID, Outcome.UNCONFIRMED
BULK_ANSWERS = [
    # all valid, superuser token / no token
    (3, {"status": "success", "tracked": 3, "invalid": 0, "invalid_indices": []}, (D, D, D)),
    (3, {"status": "success", "tracked": 3, "invalid": 0}, (D, D, D)),
    # item 1 bad, superuser token: attributable
    (3, {"status": "success", "tracked": 2, "invalid": 1, "invalid_indices": [1]}, (D, R, D)),
    # item 1 bad, any other token: not attributable, the valid ones are stored
    (3, {"status": "success", "tracked": 2, "invalid": 1}, (B, B, B)),
    # a batch of one is always attributable
    (1, {"status": "success", "tracked": 0, "invalid": 1}, (R,)),
    (3, {"status": "success", "tracked": 0, "invalid": 3}, (R, R, R)),
    # a MySQL lock timeout drops an item silently
    (3, {"status": "success", "tracked": 2, "invalid": 0}, (U, U, U)),
    (3, {"status": "success", "tracked": 1, "invalid": 1, "invalid_indices": [0]}, (R, U, U)),
    # tracker disabled (record_statistics=0) answers success with zero counts
    (2, {"status": "success", "tracked": 0, "invalid": 0}, (U, U)),
    # indices that do not match the count are not trusted
    (3, {"status": "success", "tracked": 2, "invalid": 1, "invalid_indices": [7]}, (B, B, B)),
    (2, {"status": "success"}, (U, U)),
    (2, {"status": "success", "tracked": 3, "invalid": 0}, (U, U)),
]


@pytest.mark.parametrize(("count", "answer", "expected"), BULK_ANSWERS)
def test_bulk_outcomes(count: int, answer: dict[str, Any], expected: tuple[Outcome, ...]) -> None:
    result = bulk_outcomes(count, answer)
    assert result.outcomes == expected
    if B in expected:
        assert result.note and "must not be re-sent" in result.note


def test_track_reports_rejected_and_batch_invalid_hits(
    client: MatomoClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(
        TRACKER,
        json={"status": "success", "tracked": 2, "invalid": 1, "invalid_indices": [1]},
    )
    result = client.track(make_hits(3))
    assert result.outcomes == (D, R, D)
    assert result.invalid_indices == (1,)
    assert result.delivered == 2


def test_queued_tracking_gif_answer_is_unconfirmed_not_an_error(
    client: MatomoClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(TRACKER, body=b"GIF89a\x01\x00", content_type="image/gif")
    result = client.track(make_hits(2))
    assert result.outcomes == (U, U)
    assert result.note and "queuedtracking" in result.note
    rsps.replace(responses.POST, TRACKER, body=b"", status=204)
    assert client.track(make_hits(1)).outcomes == (U,)


# --- tracking: whole-batch failures ------------------------------------------------------------

GONE = 'Mon, 14 Nov 2033 00:00:00 GMT'  # fmt: skip
TRACK_FAILURES: list[tuple[str, dict[str, Any], type[MatomoError], dict[str, Any]]] = [
    (
        "database down: rolled back, safe to resend",
        {"status": 500, "json": {"status": "error", "tracked": 0, "invalid": 0}},
        RolledBackError,
        {"maybe_stored": False},
    ),
    (
        "rate limited with Retry-After seconds",
        {"status": 429, "body": "slow down", "headers": {"Retry-After": "30"}},
        RateLimitedError,
        {"retry_after": 30.0},
    ),
    (
        "maintenance page",
        {
            "status": 503,
            "body": "<html><body>Maintenance</body></html>",
            "headers": {"Retry-After": "Tue, 14 Nov 2023 22:15:20 GMT"},
        },
        UnavailableError,
        {"maybe_stored": False, "retry_after": 120.0},
    ),
    (
        "proxy bad gateway: may have reached Matomo",
        {"status": 502, "body": "<html>Bad Gateway</html>"},
        UnavailableError,
        {"maybe_stored": True},
    ),
    (
        "proxy gateway timeout",
        {"status": 504, "body": "Gateway Timeout"},
        UnavailableError,
        {"maybe_stored": True},
    ),
    (
        "bulk_requests_require_authentication with one bad item",
        {"status": 400, "json": {"status": "error", "tracked": 0, "invalid": 0}},
        RejectedHitError,
        {},
    ),
    ("unauthorized", {"status": 401, "body": "Unauthorized"}, AuthenticationError, {}),
    ("forbidden", {"status": 403, "body": "Forbidden"}, AuthenticationError, {}),
    (
        "lockout reported in debug mode",
        {
            "status": 500,
            "json": {"status": "error", "message": "Too many failed logins. Please wait"},
        },
        LockedOutError,
        {},
    ),
    (
        "bad token reported in debug mode",
        {"status": 500, "json": {"status": "error", "message": "Unable to authenticate"}},
        AuthenticationError,
        {},
    ),
    ("html at 200", {"status": 200, "body": "<html>Login</html>"}, ProtocolError, {}),
    ("other json at 200", {"status": 200, "json": {"result": "success"}}, ProtocolError, {}),
    (
        "api-style lockout at 200",
        {"status": 200, "json": {"result": "error", "message": "Too many failed logins."}},
        LockedOutError,
        {},
    ),
    ("truncated json", {"status": 200, "body": '{"status":"succ'}, ProtocolError, {}),
    ("too large", {"status": 413, "body": "Request Entity Too Large"}, PayloadTooLargeError, {}),
    ("wrong url", {"status": 404, "body": "Not Found"}, NoMatomoError, {}),
    (
        "redirect",
        {"status": 301, "body": "", "headers": {"Location": "https://other.example/matomo.php"}},
        ProtocolError,
        {},
    ),
]


@pytest.mark.parametrize(
    ("case", "answer", "error_class", "attributes"),
    TRACK_FAILURES,
    ids=[c[0] for c in TRACK_FAILURES],
)
def test_whole_batch_failures_raise_typed_errors(
    client: MatomoClient,
    rsps: responses.RequestsMock,
    case: str,
    answer: dict[str, Any],
    error_class: type[MatomoError],
    attributes: dict[str, Any],
) -> None:
    rsps.post(TRACKER, **answer)
    with pytest.raises(error_class) as info:
        client.track(make_hits(2))
    error = info.value
    assert type(error) is error_class
    assert (error.method, error.status, error.url) == ("tracking", answer["status"], TRACKER)
    assert error.hint
    assert TOKEN not in str(error)
    for name, value in attributes.items():
        assert getattr(error, name) == value, name
    assert len(rsps.calls) == 1, "tracking is never retried by the client"


def test_debug_mode_bad_token_is_remembered(
    client: MatomoClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(TRACKER, status=500, json={"status": "error", "message": "Unable to authenticate"})
    with pytest.raises(AuthenticationError):
        client.track(make_hits(1))
    with pytest.raises(TokenCoolDownError):
        client.track(make_hits(1))
    assert len(rsps.calls) == 1


def test_throttling_slows_the_next_request(
    memory: TokenMemory, fake_time: FakeTime, rsps: responses.RequestsMock
) -> None:
    rsps.post(TRACKER, status=429, body="")
    c = MatomoClient(base_url=BASE, rate_limit=2.0, clock=fake_time.clock, sleep=fake_time.sleep)
    with pytest.raises(RateLimitedError):
        c.track(make_hits(1))
    assert fake_time.slept == []
    rsps.replace(responses.POST, TRACKER, json={"status": "success", "tracked": 1, "invalid": 0})
    c.track(make_hits(1))
    assert fake_time.slept == [pytest.approx(1.0)], "rate halved to 1/s and the burst drained"


def test_retry_after_pauses_tracking_for_every_client_of_the_profile(
    tmp_path: Path, fake_time: FakeTime, rsps: responses.RequestsMock
) -> None:
    pause_file = tmp_path / "data" / "server-pause.json"

    def new_client() -> MatomoClient:
        pause = ServerPause(pause_file, clock=fake_time.clock)
        return MatomoClient(base_url=BASE, server_pause=pause, clock=fake_time.clock)

    rsps.post(TRACKER, status=429, body="", headers={"Retry-After": "30"})
    with pytest.raises(RateLimitedError) as first:
        new_client().track(make_hits(1))
    assert not isinstance(first.value, ServerPausedError)
    fake_time.now += 29
    with pytest.raises(ServerPausedError) as info:
        new_client().track(make_hits(1))  # another process, a second later: nothing sent
    assert len(rsps.calls) == 1
    assert info.value.until == NOW + 30 and info.value.method == "tracking"
    rsps.replace(responses.POST, TRACKER, json={"status": "success", "tracked": 1, "invalid": 0})
    fake_time.now += 1
    assert new_client().track(make_hits(1)).tracked == 1


def test_reporting_retry_after_pauses_tracking_but_reports_are_not_held_back(
    tmp_path: Path, fake_time: FakeTime, rsps: responses.RequestsMock
) -> None:
    pause = ServerPause(tmp_path / "server-pause.json", clock=fake_time.clock)
    c = MatomoClient(base_url=BASE, server_pause=pause, clock=fake_time.clock)
    rsps.post(API, status=503, body="<html>Upgrade</html>", headers={"Retry-After": "60"})
    with pytest.raises(UnavailableError):
        c.call("API.getMatomoVersion")
    current = pause.current()
    assert current is not None and current.until == NOW + 60 and current.status == 503
    rsps.replace(responses.POST, API, json={"value": "5.11.2"})
    assert c.call("API.getMatomoVersion") == {"value": "5.11.2"}  # may come from the cache
    with pytest.raises(ServerPausedError):
        c.track(make_hits(1))
    assert [call.request.url for call in rsps.calls].count(TRACKER) == 0


def test_429_without_retry_after_or_another_status_records_no_pause(
    tmp_path: Path, fake_time: FakeTime, rsps: responses.RequestsMock
) -> None:
    pause = ServerPause(tmp_path / "server-pause.json", clock=fake_time.clock)
    c = MatomoClient(base_url=BASE, server_pause=pause, clock=fake_time.clock)
    rsps.post(TRACKER, status=429, body="")
    with pytest.raises(RateLimitedError):
        c.track(make_hits(1))
    rsps.replace(responses.POST, TRACKER, status=502, body="", headers={"Retry-After": "60"})
    with pytest.raises(UnavailableError):
        c.track(make_hits(1))
    assert pause.current() is None


# --- reporting ----------------------------------------------------------------------------------


def test_call_posts_the_token_in_the_form_body_never_the_url(
    client: MatomoClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(API, json={"value": "5.11.2"})
    assert client.call("API.getMatomoVersion") == {"value": "5.11.2"}
    assert query(rsps) == {
        "module": ["API"],
        "method": ["API.getMatomoVersion"],
        "format": ["JSON"],
    }
    assert sent_form(rsps) == {"token_auth": [TOKEN]}


def test_call_encodes_parameters(client: MatomoClient, rsps: responses.RequestsMock) -> None:
    rsps.post(API, json=[])
    client.call("X.getY", idSite=1, flat=True, expanded=False, segment=None, ids=[3, 4], date="a b")
    assert sent_form(rsps) == {
        "idSite": ["1"],
        "flat": ["1"],
        "expanded": ["0"],
        "ids[0]": ["3"],
        "ids[1]": ["4"],
        "date": ["a b"],
        "token_auth": [TOKEN],
    }


@pytest.mark.parametrize("name", ["token_auth", "format", "module", "method"])
def test_call_refuses_parameters_matokit_sets(client: MatomoClient, name: str) -> None:
    with pytest.raises(UsageError):
        client.call("API.getMatomoVersion", **{name: "x"})


# Every row of matomo-api.md's Reporting API error table.
API_FAILURES: list[tuple[int, str, type[MatomoError]]] = [
    (401, "You can't access this resource as it requires view access.", PermissionDeniedError),
    (401, "Unable to authenticate with the provided token. It is either invalid or expired.",
     AuthenticationError),
    (401, "You can't access this resource as it requires a 'superuser' access.",
     PermissionDeniedError),
    (404, "The plugin Foo was not found.", NotFoundError),
    (400, "The method 'nope' does not exist or is not available in the module 'API'.",
     NotFoundError),
    (400, "Please specify a value for 'idSite'.", InvalidRequestError),
    (200, "An unexpected website was found in the request: website id was set to '999' .",
     InvalidRequestError),
    (200, "Date format must be: YYYY-MM-DD, or 'today' or 'yesterday' or any keyword",
     InvalidRequestError),
    (200, "The period 'x' is not supported. Try any of the following instead: day, week",
     InvalidRequestError),
    (500, "SQLSTATE[HY000] [2002] Connection refused", UnavailableError),
    (500, "Too many failed logins. Please wait and try logging in again later.", LockedOutError),
]  # fmt: skip


@pytest.mark.parametrize(("status", "message", "error_class"), API_FAILURES)
def test_reporting_errors_are_classified_from_the_body(
    client: MatomoClient,
    rsps: responses.RequestsMock,
    status: int,
    message: str,
    error_class: type[MatomoError],
) -> None:
    rsps.post(API, status=status, json={"result": "error", "message": message})
    with pytest.raises(error_class) as info:
        client.call("VisitsSummary.get", idSite=1, period="day", date="today")
    error = info.value
    assert type(error) is error_class
    assert error.method == "VisitsSummary.get"
    assert error.status == status
    assert error.url is not None and error.url.startswith(API + "?module=API")
    assert message.split(".")[0] in error.message
    assert error.hint


def test_lockout_says_how_to_unblock(client: MatomoClient, rsps: responses.RequestsMock) -> None:
    rsps.post(API, status=500, json={"result": "error", "message": "Too many failed logins."})
    with pytest.raises(LockedOutError) as info:
        client.call("API.getMatomoVersion")
    assert info.value.hint and "./console login:unblock-blocked-ips" in info.value.hint


def test_maintenance_html_is_unavailable_with_retry_after(
    client: MatomoClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(
        API, status=503, body="<html>Upgrade in progress</html>", headers={"Retry-After": "60"}
    )
    with pytest.raises(UnavailableError) as info:
        client.call("API.getMatomoVersion")
    assert info.value.retry_after == 60.0
    assert "Upgrade in progress" in info.value.message


def test_non_json_200_is_a_protocol_error(
    client: MatomoClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(API, body="<html>captive portal</html>")
    with pytest.raises(ProtocolError):
        client.call("API.getMatomoVersion")


def test_invalid_token_is_remembered_and_not_sent_again(
    client: MatomoClient, rsps: responses.RequestsMock, fake_time: FakeTime
) -> None:
    rsps.post(API, status=401, json={"result": "error", "message": "Unable to authenticate"})
    with pytest.raises(AuthenticationError) as first:
        client.call("API.getMatomoVersion")
    assert not isinstance(first.value, TokenCoolDownError)
    for call in (
        lambda: client.call("API.getMatomoVersion"),
        lambda: client.track(make_hits(1)),
        lambda: client.bulk([("API.getMatomoVersion", {})]),
    ):
        with pytest.raises(TokenCoolDownError) as info:
            call()
        assert info.value.until == NOW + 600
    assert len(rsps.calls) == 1, "nothing was sent during the cool-down"
    fake_time.now += 601
    with pytest.raises(AuthenticationError):
        client.call("API.getMatomoVersion")
    assert len(rsps.calls) == 2


def test_permission_denied_does_not_cool_the_token_down(
    client: MatomoClient, rsps: responses.RequestsMock
) -> None:
    message = "You can't access this resource as it requires an 'admin' access."
    rsps.post(API, status=401, json={"result": "error", "message": message})
    for _ in range(2):
        with pytest.raises(PermissionDeniedError):
            client.call("CoreAdminHome.getTrackingFailures")
    assert len(rsps.calls) == 2


def test_call_raw_csv_asks_for_utf8_and_decodes(
    client: MatomoClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(API, body="label,nb_visits\nCafé,3\n".encode())
    assert client.call_raw("Referrers.getAll", idSite=1) == "label,nb_visits\nCafé,3\n"
    assert query(rsps)["format"] == ["CSV"]
    assert sent_form(rsps)["convertToUnicode"] == ["0"]


def test_call_raw_decodes_utf16_with_bom_defensively(
    client: MatomoClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(API, body="label\tnb_visits\nCafé\t3\n".encode("utf-16"))
    assert client.call_raw("Referrers.getAll", format="tsv") == "label\tnb_visits\nCafé\t3\n"


@pytest.mark.parametrize(
    ("fmt", "body", "error_class"),
    [
        ("CSV", "Error: Please specify a value for 'idSite'.", InvalidRequestError),
        ("TSV", "Error: The plugin Foo was not found.", NotFoundError),
        (
            "XML",
            '<?xml version="1.0" encoding="utf-8" ?>\n<result>\n\t<error message="Unable to '
            'authenticate with the provided token" />\n</result>',
            AuthenticationError,
        ),
        (
            "CSV",
            '{"result":"error","message":"Date format must be: YYYY-MM-DD"}',
            InvalidRequestError,
        ),
    ],
)
def test_call_raw_detects_error_bodies(
    client: MatomoClient,
    rsps: responses.RequestsMock,
    fmt: str,
    body: str,
    error_class: type[MatomoError],
) -> None:
    rsps.post(API, body=body)
    with pytest.raises(error_class):
        client.call_raw("Referrers.getAll", format=fmt)


def test_call_raw_refuses_unknown_formats(client: MatomoClient) -> None:
    with pytest.raises(UsageError):
        client.call_raw("Referrers.getAll", format="JSON")


def test_bulk_returns_inline_errors_in_place(
    client: MatomoClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(
        API,
        json=[
            {"value": "5.11.2"},
            {"result": "error", "message": "An unexpected website was found in the request"},
        ],
    )
    results = client.bulk(
        [("API.getMatomoVersion", {}), ("SitesManager.getSiteFromId", {"idSite": 999})]
    )
    assert results[0] == {"value": "5.11.2"}
    assert isinstance(results[1], InvalidRequestError)
    assert results[1].method == "SitesManager.getSiteFromId"
    assert query(rsps)["method"] == ["API.getBulkRequest"]
    form = sent_form(rsps)
    assert form["urls[0]"] == ["method=API.getMatomoVersion"]
    assert form["urls[1]"] == ["method=SitesManager.getSiteFromId&idSite=999"]
    assert form["token_auth"] == [TOKEN]
    assert "token_auth" not in form["urls[1]"][0]


def test_bulk_wrong_length_is_a_protocol_error_and_top_level_errors_raise(
    client: MatomoClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(API, json=[{"value": 1}])
    with pytest.raises(ProtocolError):
        client.bulk([("A.getB", {}), ("C.getD", {})])
    rsps.replace(responses.POST, API, status=500, json={"result": "error", "message": "SQLSTATE"})
    with pytest.raises(UnavailableError):
        client.bulk([("A.getB", {})])
    assert client.bulk([]) == []


def test_bulk_inline_bad_token_cools_the_token_down(
    client: MatomoClient, rsps: responses.RequestsMock
) -> None:
    rsps.post(API, json=[{"result": "error", "message": "Unable to authenticate"}])
    (result,) = client.bulk([("API.getMatomoVersion", {})])
    assert isinstance(result, AuthenticationError)
    with pytest.raises(TokenCoolDownError):
        client.call("API.getMatomoVersion")


# --- logging, dry run, lifecycle ------------------------------------------------------------------


def test_each_request_is_logged_at_debug_with_fields_and_no_token(
    client: MatomoClient, rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    rsps.post(TRACKER, json={"status": "success", "tracked": 3, "invalid": 0})
    with caplog.at_level(logging.DEBUG, logger="matokit.client"):
        client.track(make_hits(3))
    (record,) = caplog.records
    fields = {k: getattr(record, k) for k in ("http_method", "url", "status", "batch_size")}
    assert fields == {"http_method": "POST", "url": TRACKER, "status": 200, "batch_size": 3}
    assert isinstance(record.__dict__["duration_ms"], float)
    assert record.__dict__["api_method"] == "tracking"
    assert TOKEN not in caplog.text


def test_dry_run_shows_the_request_with_the_token_masked(client: MatomoClient) -> None:
    text = client.dry_run(make_hits(2))
    assert text.startswith(f"POST {TRACKER}\nContent-Type: application/json\nUser-Agent: MatoKit/")
    body = json.loads(text.split("\n\n", 1)[1])
    assert body["token_auth"] == MASK
    assert len(body["requests"]) == 2
    assert TOKEN not in text


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://m.example", "https://m.example/"),
        ("https://m.example/", "https://m.example/"),
        (" https://m.example/analytics/ ", "https://m.example/analytics/"),
        ("https://m.example/index.php", "https://m.example/"),
        ("https://m.example/sub/matomo.php", "https://m.example/sub/"),
        ("http://127.0.0.1:8080/piwik.php", "http://127.0.0.1:8080/"),
    ],
)
def test_normalize_base_url(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize(
    "bad", ["matomo.example", "ftp://m.example/", "https://", "", "https://m.example/?x=1"]
)
def test_bad_base_url_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        MatomoClient(base_url=bad)


def test_close_leaves_an_injected_session_open(rsps: responses.RequestsMock) -> None:
    session = requests.Session()
    closed: list[bool] = []
    session.close = lambda: closed.append(True)  # type: ignore[method-assign]
    with MatomoClient(base_url=BASE, session=session):
        pass
    assert closed == []


# --- transport failures: refused before sending vs lost after sending ----------------------------


class SilentServer:
    """A real socket on 127.0.0.1 that reads one whole HTTP request and never answers it.

    mode "close": closes the connection after reading (a reset/drop after the body was sent);
    mode "hang": keeps it open until stopped (a read timeout).
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._sock.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += conn.recv(65536)
            self.received.append(body)
            if self.mode == "hang":
                self._stop.wait(5)

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(2)


def refused_url() -> str:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_connection_refused_means_nothing_was_stored() -> None:
    with MatomoClient(base_url=refused_url(), token=TOKEN, connect_retries=0) as c:
        with pytest.raises(UnavailableError) as info:
            c.track(make_hits(2))
        assert info.value.maybe_stored is False
        assert "Connection refused" in info.value.message
        assert isinstance(info.value.__cause__, requests.ConnectionError)
        with pytest.raises(UnavailableError) as api:
            c.call("API.getMatomoVersion")
        assert api.value.maybe_stored is False
        assert api.value.method == "API.getMatomoVersion"


def test_connection_dropped_after_sending_may_have_stored_the_batch() -> None:
    server = SilentServer("close")
    try:
        with (
            MatomoClient(base_url=server.url, token=TOKEN) as c,
            pytest.raises(UnavailableError) as info,
        ):
            c.track(make_hits(2))
    finally:
        server.stop()
    assert info.value.maybe_stored is True
    assert info.value.status is None
    assert len(server.received) == 1 and b'"requests"' in server.received[0]
    assert TOKEN not in str(info.value) and TOKEN not in (info.value.url or "")


def test_read_timeout_after_sending_may_have_stored_the_batch() -> None:
    server = SilentServer("hang")
    try:
        with (
            MatomoClient(base_url=server.url, timeout=0.3) as c,
            pytest.raises(UnavailableError) as info,
        ):
            c.track(make_hits(1))
    finally:
        server.stop()
    assert info.value.maybe_stored is True
    assert isinstance(info.value.__cause__, requests.ReadTimeout)
    assert len(server.received) == 1


def _aborted(reason: BaseException) -> requests.ConnectionError:
    return requests.ConnectionError(u3.ProtocolError("Connection aborted.", reason))


def _wrapped(reason: BaseException) -> requests.ConnectionError:
    return requests.ConnectionError(u3.MaxRetryError(None, "/matomo.php", reason))  # type: ignore[arg-type]


SENT_CASES: list[tuple[BaseException, bool]] = [
    (requests.ConnectTimeout("connect timed out"), False),
    (requests.ReadTimeout("read timed out"), True),
    (_wrapped(u3.NewConnectionError(None, "Failed to establish a new connection")), False),  # type: ignore[arg-type]
    (_wrapped(u3.NameResolutionError("h", None, socket.gaierror("no host"))), False),  # type: ignore[arg-type]
    (_aborted(ConnectionResetError(104, "Connection reset by peer")), True),
    (_aborted(http.client.RemoteDisconnected("closed without response")), True),
    (_aborted(BrokenPipeError(32, "Broken pipe")), True),
    (requests.exceptions.ChunkedEncodingError("incomplete"), True),
    (requests.exceptions.SSLError(ssl.SSLCertVerificationError("verify failed")), False),
    (requests.ConnectionError("something unknown"), True),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "sent"), SENT_CASES)
def test_request_may_have_been_sent(exc: BaseException, sent: bool) -> None:
    assert request_may_have_been_sent(exc) is sent


# --- against the fake Matomo (a real HTTP server copying Matomo 5.11) ---------------------------


def fresh_hits(*sites: int) -> list[hits.Hit]:
    return [hits.pageview(site, url=f"https://example.org/{i}") for i, site in enumerate(sites)]


def test_superuser_bulk_attributes_the_refused_hit(fake_matomo: FakeMatomo) -> None:
    with MatomoClient(base_url=fake_matomo.url, token=SUPERUSER_TOKEN) as c:
        result = c.track(fresh_hits(1, 999, 1))
    assert result.outcomes == (D, R, D)
    assert len(fake_matomo.hits) == 2


def test_non_superuser_bulk_cannot_attribute_and_must_not_be_resent(
    fake_matomo: FakeMatomo,
) -> None:
    with MatomoClient(base_url=fake_matomo.url, token=ADMIN_TOKEN) as c:
        result = c.track(fresh_hits(1, 999, 1))
    assert result.outcomes == (B, B, B)
    assert len(fake_matomo.hits) == 2


def test_a_stale_token_is_sent_once_not_until_the_host_is_locked_out(
    fake_matomo: FakeMatomo, tmp_path: Path
) -> None:
    memory = TokenMemory(tmp_path / "memory.json")
    stale = "0f" * 16
    for _ in range(3):  # three cron runs, each with its own client
        with (
            MatomoClient(base_url=fake_matomo.url, token=stale, token_memory=memory) as c,
            pytest.raises(AuthenticationError),
        ):
            c.call("API.getMatomoVersion")
    assert sum(fake_matomo.failed_logins.values()) == 1
    with MatomoClient(base_url=fake_matomo.url, token=SUPERUSER_TOKEN, token_memory=memory) as c:
        assert "value" in c.call("API.getMatomoVersion"), "a changed token is used at once"


def test_the_token_travels_only_in_bodies(fake_matomo: FakeMatomo) -> None:
    with MatomoClient(base_url=fake_matomo.url, token=SUPERUSER_TOKEN) as c:
        c.track(fresh_hits(1))
        c.call("API.getMatomoVersion")
        c.bulk([("API.getMatomoVersion", {})])
        c.call_raw("VisitsSummary.get", idSite=1, period="day", date="today")
    recorded = fake_matomo.requests
    assert len(recorded) == 4
    for record in recorded:
        assert SUPERUSER_TOKEN not in record.path + "?" + record.query
        assert SUPERUSER_TOKEN.encode() in record.body


def test_url_credentials_travel_as_basic_auth_never_in_a_url(
    rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    rsps.post(API, json={"value": "5.11.0"})
    url = "https://bob:hunter%232@matomo.example/"
    with (
        MatomoClient(base_url=url, token=TOKEN) as c,
        caplog.at_level(logging.DEBUG, logger="matokit.client"),
    ):
        assert c.base_url == "https://matomo.example/"
        c.call("API.getMatomoVersion")
    (call,) = rsps.calls
    assert call.request.url.startswith(API)
    assert call.request.headers["Authorization"] == requests.auth._basic_auth_str("bob", "hunter#2")
    assert "hunter" not in caplog.text and "bob" not in caplog.text


def test_connection_error_names_the_host_without_url_credentials() -> None:
    with socket.socket() as sock:  # a port that refuses: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        client = MatomoClient(base_url=f"http://bob:hunter2@127.0.0.1:{port}/", connect_retries=0)
        with client, pytest.raises(UnavailableError) as caught:
            client.call("API.getMatomoVersion")
    assert caught.value.message.startswith(f"Cannot connect to 127.0.0.1:{port}:")
    assert "hunter2" not in str(caught.value.url) and "bob" not in caught.value.message


def test_a_413_is_payload_too_large(client: MatomoClient, rsps: responses.RequestsMock) -> None:
    from matokit.errors import PayloadTooLargeError

    rsps.post(TRACKER, status=413, body="<html>413 Request Entity Too Large</html>")
    with pytest.raises(PayloadTooLargeError) as info:
        client.track(make_hits(3))
    assert info.value.status == 413 and "max_payload_bytes" in (info.value.hint or "")


def test_hit_query_is_urlencode_with_quote() -> None:
    """The fast query string is byte for byte what urlencode(quote_via=quote) gives."""
    import random
    from urllib.parse import quote, urlencode

    from matokit.client.tracking import hit_query

    alphabet = "aZ09_.~- &=?#%+/é😀\"'\\\n\t;:,[]"
    rng = random.Random(7)
    for _ in range(500):
        params = {
            "".join(rng.choices(alphabet, k=rng.randint(1, 6))): "".join(
                rng.choices(alphabet, k=rng.randint(0, 12))
            )
            for _ in range(rng.randint(0, 5))
        }
        assert hit_query(params) == urlencode(params, quote_via=quote)
    assert (
        hit_query({"url": "https://example.org/a b?c=d"})
        == "url=https%3A%2F%2Fexample.org%2Fa%20b%3Fc%3Dd"
    )


# --- tracking through a proxy from the environment -----------------------------------------------


@pytest.fixture
def forward_proxy() -> Iterator[tuple[str, list[str]]]:
    """A plain-HTTP forward proxy on loopback that answers for Matomo: its URL and the
    request lines it was sent (absolute URLs)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(self.path)
            answer = json.dumps({"status": "success", "tracked": len(body["requests"])})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_tracking_goes_through_the_environments_proxy_on_every_request(
    forward_proxy: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, seen = forward_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    # matomo.invalid does not resolve: only the proxy can answer for it.
    with MatomoClient(base_url="http://matomo.invalid/", token=TOKEN) as c:
        for _ in range(3):
            c.track(make_hits(2))
    assert seen == ["http://matomo.invalid/matomo.php"] * 3


def test_no_proxy_from_the_environment_is_honoured(
    forward_proxy: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, seen = forward_proxy
    port = proxy.rsplit(":", 1)[1]
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with MatomoClient(base_url=f"http://127.0.0.1:{port}/", token=TOKEN) as c:
        c.track(make_hits(1))
        c.track(make_hits(1))
    assert seen == ["/matomo.php", "/matomo.php"]  # direct, not through port 9


def test_the_lean_tracking_post_sends_what_session_post_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tracking session's `lean_post` (no per-call merging) puts the same request on the
    wire as `Session.post`: headers, body, basic auth, a netrc login, the session's cookies."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from matokit.client.transport import lean_post, tracking_session

    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-pass\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    seen: list[tuple[str, list[tuple[str, str]], bytes]] = []

    class Recorder(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.path, sorted((k.lower(), v) for k, v in self.headers.items()), body))
            self.send_response(200)
            self.send_header("Set-Cookie", "lb=node-2; Path=/")  # a sticky load balancer
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/matomo.php"
    request = {
        "data": b'{"requests":["?idsite=1&rec=1"]}',
        "headers": {"User-Agent": "matokit-test", "Content-Type": "application/json"},
        "timeout": (5.0, 5.0),
        "verify": True,
    }
    try:
        for auth in (None, ("user", "pass")):
            wire: list[list[tuple[str, list[tuple[str, str]], bytes]]] = []
            for lean in (True, False):
                session = tracking_session()
                seen.clear()
                for _ in range(2):  # the second request carries the cookie of the first answer
                    if lean:
                        response = lean_post(session, url, auth=auth, **request)
                    else:
                        response = session.post(url, allow_redirects=False, auth=auth, **request)
                    assert response.status_code == 200
                session.close()
                wire.append(list(seen))
            assert wire[0] == wire[1]
            first, second = (dict(headers) for _, headers, _ in wire[0])
            login = "user:pass" if auth else "netrc-user:netrc-pass"
            assert first["authorization"] == basic(login)
            assert "cookie" not in first and second["cookie"] == "lb=node-2"
    finally:
        server.shutdown()
        server.server_close()


def basic(login: str) -> str:
    import base64

    return "Basic " + base64.b64encode(login.encode()).decode()
