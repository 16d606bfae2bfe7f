"""The fake Matomo's Reporting API: the error table, auth channels, lockout, shapes, formats.

Rows mirror the tables of the reference matomo-api.md and the bodies in tests/fixtures.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fakematomo import ADMIN_TOKEN, SUPERUSER_TOKEN, VIEW_TOKEN, FakeMatomo, Fault
from tests.fakematomo.client import api, bulk, track

REPO = Path(__file__).resolve().parents[1]
BAD_TOKEN = "0badc0de" * 4
SAMPLE_SITE_KEYS = [
    "idsite", "name", "description", "main_url", "ts_created", "ecommerce", "sitesearch",
    "sitesearch_keyword_parameters", "sitesearch_category_parameters", "timezone", "currency",
    "exclude_unknown_urls", "excluded_ips", "excluded_parameters", "excluded_user_agents",
    "excluded_referrers", "group", "type", "keep_url_fragment", "creator_login",
    "timezone_name", "currency_name",
]  # fmt: skip


def error_of(resp: requests.Response) -> str:
    body = resp.json()
    assert body["result"] == "error", body
    return str(body["message"])


# --- the error table --------------------------------------------------------------------------

REPORT = {"idSite": "1", "period": "day", "date": "today"}
ERROR_TABLE: list[tuple[str, str | None, str | None, str, dict[str, str], int, str]] = [
    # (case, method, token, via, params, status, message prefix)
    ("no token", "API.getMatomoVersion", None, "post", {}, 401,
     "You can't access this resource as it requires view access"),
    ("anonymous", "API.getMatomoVersion", "anonymous", "post", {}, 401,
     "You can't access this resource as it requires view access"),
    ("no token, site report", "VisitsSummary.get", None, "post", REPORT, 401,
     "You can't access this resource as it requires 'view' access for the website id = 1."),
    ("bad token POST", "API.getMatomoVersion", BAD_TOKEN, "post", {}, 401,
     "Unable to authenticate with the provided token. It is either invalid or expired."),
    ("bad token bearer", "API.getMatomoVersion", BAD_TOKEN, "bearer", {}, 401,
     "Unable to authenticate with the provided token"),
    ("bad token in URL", "API.getMatomoVersion", BAD_TOKEN, "url", {}, 401,
     "Unable to authenticate with the provided token. It is either invalid, expired or is "
     "required to be sent as a POST parameter."),
    ("needs superuser", "SitesManager.getAllSitesId", VIEW_TOKEN, "post", {}, 401,
     "You can't access this resource as it requires a 'superuser' access."),
    ("needs admin", "CoreAdminHome.getTrackingFailures", VIEW_TOKEN, "post", {}, 401,
     "You can't access this resource as it requires admin access for at least one website."),
    ("unknown plugin", "Foo.bar", SUPERUSER_TOKEN, "post", {}, 404,
     "The plugin Foo was not found."),
    ("unknown method", "VisitsSummary.nope", SUPERUSER_TOKEN, "post", {}, 400,
     "The method 'nope' does not exist"),
    ("missing idSite", "VisitsSummary.get", SUPERUSER_TOKEN, "post",
     {"period": "day", "date": "today"}, 400, "Please specify a value for 'idSite'."),
    ("missing method", None, SUPERUSER_TOKEN, "post", {}, 200,
     "The parameter 'method' isn't set"),
    ("idSite 999", "VisitsSummary.get", SUPERUSER_TOKEN, "post", {**REPORT, "idSite": "999"},
     200, "An unexpected website was found in the request: website id was set to '999' ."),
    ("idSite abc", "VisitsSummary.get", SUPERUSER_TOKEN, "post", {**REPORT, "idSite": "abc"},
     200, "An unexpected website was found in the request"),
    ("idSite 0", "VisitsSummary.get", SUPERUSER_TOKEN, "post", {**REPORT, "idSite": "0"},
     200, "An unexpected website was found in the request"),
    ("bad date", "VisitsSummary.get", SUPERUSER_TOKEN, "post", {**REPORT, "date": "2026-13-45"},
     200, "Date format must be: YYYY-MM-DD, or 'today' or 'yesterday'"),
    ("bad period", "VisitsSummary.get", SUPERUSER_TOKEN, "post", {**REPORT, "period": "x"},
     200, "The period 'x' is not supported. Try any of the following instead"),
    ("range with one date", "VisitsSummary.get", SUPERUSER_TOKEN, "post",
     {**REPORT, "period": "range", "date": "2026-11-01"}, 200,
     "The date '2026-11-01' is not a correct date range"),
    ("site from id unknown", "SitesManager.getSiteFromId", SUPERUSER_TOKEN, "post",
     {"idSite": "99999"}, 200,
     "An unexpected website was found in the request: website id was set to '99999' ."),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "token", "via", "params", "status", "prefix"),
    [row[1:] for row in ERROR_TABLE],
    ids=[row[0] for row in ERROR_TABLE],
)
def test_error_table(
    fake_matomo: FakeMatomo,
    method: str | None,
    token: str | None,
    via: Any,
    params: dict[str, str],
    status: int,
    prefix: str,
) -> None:
    resp = api(fake_matomo, method, token, via=via, **params)
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    assert error_of(resp).startswith(prefix)


def test_database_down_is_500_with_sqlstate(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="api", database_down=True))
    resp = api(fake_matomo, "API.getMatomoVersion", SUPERUSER_TOKEN)
    assert resp.status_code == 500
    assert error_of(resp) == "SQLSTATE[HY000] [2002] Connection refused"


def test_maintenance_is_503_html(fake_matomo: FakeMatomo) -> None:
    fake_matomo.add_fault(Fault(endpoint="api", maintenance=True))
    resp = api(fake_matomo, "API.getMatomoVersion", SUPERUSER_TOKEN)
    assert resp.status_code == 503
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "maintenance" in resp.text


def test_index_without_module_api_is_an_html_page(fake_matomo: FakeMatomo) -> None:
    resp = requests.get(fake_matomo.url, timeout=5)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")


# --- tokens and where they travel ---------------------------------------------------------------


@pytest.mark.parametrize("via", ["post", "bearer", "url"])
def test_ordinary_token_works_in_every_channel(fake_matomo: FakeMatomo, via: Any) -> None:
    resp = api(fake_matomo, "API.getMatomoVersion", SUPERUSER_TOKEN, via=via)
    assert (resp.status_code, resp.json()) == (200, {"value": "5.11.2"})


def test_get_request_merges_query_and_the_query_wins() -> None:
    with FakeMatomo() as srv:
        resp = requests.post(
            srv.url + "index.php?module=API&format=JSON&method=API.getMatomoVersion",
            data={"method": "Nope.nope", "token_auth": SUPERUSER_TOKEN},
            timeout=5,
        )
        assert resp.json() == {"value": "5.11.2"}


def test_secure_only_token_is_refused_in_the_url_but_works_in_the_body() -> None:
    secure = "5ec0e" + "0" * 26 + "9"
    tokens = {secure: {"login": "robot", "superuser": True, "secure_only": True}}
    with FakeMatomo(tokens=tokens) as srv:
        in_url = api(srv, "API.getMatomoVersion", secure, via="url")
        assert in_url.status_code == 401
        assert error_of(in_url).endswith("required to be sent as a POST parameter.")
        assert api(srv, "API.getMatomoVersion", secure).json() == {"value": "5.11.2"}
        assert api(srv, "API.getMatomoVersion", secure, via="bearer").status_code == 200
        assert srv.failed_logins == {"127.0.0.1": 1}


def test_request_log_shows_where_the_token_travelled(fake_matomo: FakeMatomo) -> None:
    api(fake_matomo, "API.getMatomoVersion", SUPERUSER_TOKEN)
    (record,) = fake_matomo.requests
    assert record.method == "POST" and record.path == "/index.php"
    assert SUPERUSER_TOKEN not in record.query
    assert SUPERUSER_TOKEN.encode() in record.body
    assert record.client_ip == "127.0.0.1"
    assert record.headers["Content-Type"] == "application/x-www-form-urlencoded"


# --- brute-force lockout ------------------------------------------------------------------------


def test_twenty_bad_tokens_lock_the_ip_out_even_for_a_valid_token(
    fake_matomo: FakeMatomo,
) -> None:
    for _ in range(20):
        assert api(fake_matomo, "API.getMatomoVersion", BAD_TOKEN).status_code == 401
    assert fake_matomo.failed_logins == {"127.0.0.1": 20}
    blocked = api(fake_matomo, "API.getMatomoVersion", SUPERUSER_TOKEN)
    assert blocked.status_code == 500
    assert blocked.json() == {
        "result": "error",
        "message": "Too many failed logins. Please wait and try logging in again later.",
    }
    # Tracking keeps working for the blocked IP.
    assert track(fake_matomo, idsite=1, rec=1).status_code == 200
    assert len(fake_matomo.hits) == 1
    fake_matomo.unblock_ips()
    assert api(fake_matomo, "API.getMatomoVersion", SUPERUSER_TOKEN).status_code == 200


def test_lockout_forgets_failures_older_than_an_hour() -> None:
    now = [1_800_000_000.0]
    with FakeMatomo(clock=lambda: now[0]) as srv:
        for _ in range(20):
            api(srv, "API.getMatomoVersion", BAD_TOKEN)
        assert api(srv, "API.getMatomoVersion", SUPERUSER_TOKEN).status_code == 500
        now[0] += 3601
        assert api(srv, "API.getMatomoVersion", SUPERUSER_TOKEN).status_code == 200
        assert srv.failed_logins == {}


def test_what_does_not_count_as_a_failed_login(fake_matomo: FakeMatomo) -> None:
    # A valid token lacking permission, and a bulk of fresh hits with a bad token.
    for _ in range(25):
        resp = api(fake_matomo, "CoreAdminHome.getTrackingFailures", VIEW_TOKEN)
        assert resp.status_code == 401
    resp = bulk(fake_matomo, ["?idsite=1&rec=1"] * 3, BAD_TOKEN)
    assert resp.json() == {"status": "success", "tracked": 3, "invalid": 0}
    assert fake_matomo.failed_logins == {}
    assert api(fake_matomo, "API.getMatomoVersion", VIEW_TOKEN).status_code == 200


def test_reset_clears_hits_log_faults_and_failed_logins(fake_matomo: FakeMatomo) -> None:
    track(fake_matomo, idsite=1, rec=1)
    api(fake_matomo, "API.getMatomoVersion", BAD_TOKEN)
    fake_matomo.add_fault(Fault(status=503))
    fake_matomo.reset()
    assert (fake_matomo.hits, fake_matomo.requests) == ([], [])
    assert fake_matomo.failed_logins == {} and fake_matomo.faults == []
    assert api(fake_matomo, "API.getMatomoVersion", SUPERUSER_TOKEN).status_code == 200


# --- health and admin methods -------------------------------------------------------------------

ACCESS_TABLE = [
    ("SitesManager.getSitesIdWithAdminAccess", SUPERUSER_TOKEN, [1, 2]),
    ("SitesManager.getSitesIdWithAdminAccess", ADMIN_TOKEN, [1]),
    ("SitesManager.getSitesIdWithAdminAccess", VIEW_TOKEN, []),
    ("SitesManager.getSitesIdWithAtLeastViewAccess", SUPERUSER_TOKEN, [1, 2]),
    ("SitesManager.getSitesIdWithAtLeastViewAccess", ADMIN_TOKEN, [1, 2]),
    ("SitesManager.getSitesIdWithAtLeastViewAccess", VIEW_TOKEN, [1, 2]),
    ("UsersManager.hasSuperUserAccess", SUPERUSER_TOKEN, {"value": True}),
    ("UsersManager.hasSuperUserAccess", ADMIN_TOKEN, {"value": False}),
    ("UsersManager.hasSuperUserAccess", VIEW_TOKEN, {"value": False}),
    ("CoreAdminHome.getTrackingFailures", SUPERUSER_TOKEN, []),
    ("CoreAdminHome.getTrackingFailures", ADMIN_TOKEN, []),
    ("API.getMatomoVersion", VIEW_TOKEN, {"value": "5.11.2"}),
]


@pytest.mark.parametrize(("method", "token", "expected"), ACCESS_TABLE)
def test_health_methods_per_token(
    fake_matomo: FakeMatomo, method: str, token: str, expected: Any
) -> None:
    resp = api(fake_matomo, method, token)
    assert (resp.status_code, resp.json()) == (200, expected)


def test_site_from_id_has_the_sample_shape(fake_matomo: FakeMatomo) -> None:
    site = api(fake_matomo, "SitesManager.getSiteFromId", VIEW_TOKEN, idSite=2).json()
    assert list(site) == SAMPLE_SITE_KEYS
    assert (site["idsite"], site["timezone"]) == (2, "America/New_York")


def test_get_user_sees_its_own_login_only(fake_matomo: FakeMatomo) -> None:
    own = api(fake_matomo, "UsersManager.getUser", VIEW_TOKEN, userLogin="viewer").json()
    assert own == {
        "login": "viewer",
        "email": "viewer@example.org",
        "superuser_access": 0,
        "invite_status": "active",
    }
    other = api(fake_matomo, "UsersManager.getUser", VIEW_TOKEN, userLogin="superuser")
    assert other.status_code == 401


def test_tracking_failures_are_recorded_and_injectable(fake_matomo: FakeMatomo) -> None:
    track(fake_matomo, idsite=7, rec=1, token_auth=SUPERUSER_TOKEN)
    fake_matomo.add_tracking_failure(2, 2, "?idsite=2&rec=1&cdt=1")
    rows = api(fake_matomo, "CoreAdminHome.getTrackingFailures", SUPERUSER_TOKEN).json()
    assert [(r["idsite"], r["idfailure"]) for r in rows] == [(7, 1), (2, 2)]
    assert SUPERUSER_TOKEN not in json.dumps(rows)
    assert rows[0]["problem"] == "The site does not exist."
    admin_rows = api(fake_matomo, "CoreAdminHome.getTrackingFailures", ADMIN_TOKEN).json()
    assert admin_rows == []  # admin on site 1 only


def test_bulk_request_answers_in_order_with_inline_errors(fake_matomo: FakeMatomo) -> None:
    resp = api(
        fake_matomo,
        "API.getBulkRequest",
        SUPERUSER_TOKEN,
        **{
            "urls[0]": "method=VisitsSummary.get&idSite=1&period=day&date=today",
            "urls[1]": "method=VisitsSummary.get&idSite=99999&period=day&date=today",
            "urls[2]": "method=API.getMatomoVersion",
        },
    )
    assert resp.status_code == 200
    first, second, third = resp.json()
    assert first["nb_visits"] == 0
    assert second == {
        "result": "error",
        "message": "An unexpected website was found in the request: website id was set to "
        "'99999' .",
    }
    assert third == {"value": "5.11.2"}


def test_report_metadata_lists_the_catalogue(fake_matomo: FakeMatomo) -> None:
    reports = api(fake_matomo, "API.getReportMetadata", VIEW_TOKEN, idSite=1).json()
    methods = {f"{r['module']}.{r['action']}" for r in reports}
    assert {"VisitsSummary.get", "Actions.getPageUrls", "Events.getName", "Goals.getItemsSku"} <= (
        methods
    )
    assert all({"category", "name", "module", "action", "metrics"} <= set(r) for r in reports)
    assert isinstance(reports[0]["metrics"], dict)


def test_plugin_activation(fake_matomo: FakeMatomo) -> None:
    on = api(fake_matomo, "API.isPluginActivated", VIEW_TOKEN, pluginName="BulkTracking")
    assert on.json() == {"value": True}
    fake_matomo.deactivate_plugin("BulkTracking")
    off = api(fake_matomo, "API.isPluginActivated", VIEW_TOKEN, pluginName="BulkTracking")
    assert off.json() == {"value": False}


# --- formats ------------------------------------------------------------------------------------


def test_omitted_format_is_xml(fake_matomo: FakeMatomo) -> None:
    ok = api(fake_matomo, "API.getMatomoVersion", SUPERUSER_TOKEN, fmt=None)
    assert ok.headers["Content-Type"].startswith("text/xml")
    assert ok.text == '<?xml version="1.0" encoding="utf-8" ?>\n<result>5.11.2</result>'
    bad = api(fake_matomo, "API.getMatomoVersion", None, fmt=None)
    assert bad.status_code == 401
    xml_error = '<?xml version="1.0" encoding="utf-8" ?>\n<result>\n\t<error message='
    assert bad.text.startswith(xml_error)


@pytest.mark.parametrize(
    ("fmt", "unicode", "bom", "encoding", "sep"),
    [
        ("CSV", None, b"\xff\xfe", "utf-16-le", ","),
        ("TSV", None, b"\xff\xfe", "utf-16-le", "\t"),
        ("CSV", "0", b"", "utf-8", ","),
        ("TSV", "0", b"", "utf-8", "\t"),
    ],
)
def test_csv_and_tsv_encoding(
    fake_matomo: FakeMatomo, fmt: str, unicode: str | None, bom: bytes, encoding: str, sep: str
) -> None:
    track(fake_matomo, idsite=1, rec=1, url="https://example.org/a", action_name="A")
    resp = api(
        fake_matomo, "VisitsSummary.get", SUPERUSER_TOKEN, fmt=fmt, convertToUnicode=unicode,
        **REPORT,
    )  # fmt: skip
    assert resp.status_code == 200
    assert resp.content.startswith(bom)
    if not bom:
        assert not resp.content.startswith(b"\xff\xfe")
    text = resp.content[len(bom) :].decode(encoding)
    header, values = text.split("\n")
    assert header.split(sep)[:3] == ["nb_uniq_visitors", "nb_users", "nb_visits"]
    assert values.split(sep)[2] == "1"


def test_csv_error_is_a_plain_error_line(fake_matomo: FakeMatomo) -> None:
    params = {**REPORT, "period": "x"}
    resp = api(fake_matomo, "VisitsSummary.get", SUPERUSER_TOKEN, fmt="CSV", **params)
    assert resp.content.decode("utf-8").startswith("Error: The period 'x' is not supported")


def test_json_escapes_slashes_like_php(fake_matomo: FakeMatomo) -> None:
    resp = api(fake_matomo, "SitesManager.getSiteFromId", SUPERUSER_TOKEN, idSite=1)
    assert '"main_url":"https:\\/\\/example.org"' in resp.text


# --- server robustness --------------------------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection(fake_matomo: FakeMatomo) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fake_matomo.port, timeout=5)
    for _ in range(3):
        conn.request("GET", "/matomo.php?idsite=1&rec=1&send_image=0")
        resp = conn.getresponse()
        assert resp.status == 204
        resp.read()
    conn.request("POST", "/index.php?module=API&method=API.getMatomoVersion&format=JSON",
                 body=f"token_auth={SUPERUSER_TOKEN}",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    resp = conn.getresponse()
    assert resp.getheader("Content-Length") == str(len(resp.read()))
    conn.close()
    assert len(fake_matomo.hits) == 3


def test_garbage_does_not_kill_the_server(fake_matomo: FakeMatomo) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", fake_matomo.port), timeout=5) as sock:
        sock.sendall(b"\x00\x01 NONSENSE \r\n\r\n")
        sock.recv(1024)
    assert requests.delete(fake_matomo.url + "matomo.php", timeout=5).status_code == 405
    assert requests.get(fake_matomo.url + "nope.txt", timeout=5).status_code == 404
    huge = requests.post(
        fake_matomo.url + "matomo.php",
        data=b"x" * (21 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert huge.status_code == 413
    assert api(fake_matomo, "API.getMatomoVersion", SUPERUSER_TOKEN).status_code == 200


def test_handler_exception_answers_500_and_the_server_lives_on(
    fake_matomo: FakeMatomo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakematomo import api as api_module

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(api_module, "handle", boom)
    assert api(fake_matomo, "API.getMatomoVersion", SUPERUSER_TOKEN).status_code == 500
    monkeypatch.undo()
    assert api(fake_matomo, "API.getMatomoVersion", SUPERUSER_TOKEN).status_code == 200


def test_stop_is_idempotent_and_context_manager_works() -> None:
    srv = FakeMatomo()
    with srv as started:
        assert started is srv and srv.url.endswith("/")
        url = srv.url
    srv.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "matomo.php", timeout=1)


def test_standalone_prints_url_and_exits_0_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakematomo", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        resp = requests.post(
            url + "index.php?module=API&method=API.getMatomoVersion&format=JSON",
            data={"token_auth": SUPERUSER_TOKEN},
            timeout=5,
        )
        assert resp.json() == {"value": "5.11.2"}
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
