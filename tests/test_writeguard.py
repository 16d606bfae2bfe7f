"""Which Reporting API methods change Matomo: real method lists, bulk requests, disguises."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
import responses

from matokit.client import MatomoClient
from matokit.errors import WriteRefusedError
from matokit.writeguard import classify, is_method_name, require_read_only, writes_in
from tests.fakematomo.api import PLUGINS, WRITES
from tests.fakematomo.metadata import report_metadata

FIXTURE = Path(__file__).parent / "fixtures" / "matomo-api-methods.txt"
BASE = "https://m.example/"


def _real_methods() -> list[tuple[str, bool]]:
    rows = []
    for line in FIXTURE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            method, effect = line.split()
            rows.append((method, {"read": False, "write": True}[effect]))
    return rows


REAL = _real_methods()
REAL_WRITES = [m for m, writes in REAL if writes]


def test_fixture_covers_both_kinds_of_method():
    assert len(REAL) > 300 and len(REAL_WRITES) > 100


@pytest.mark.parametrize(("method", "writes"), REAL, ids=[m for m, _ in REAL])
def test_real_matomo_method_is_classified_by_its_effect(method, writes):
    verdict = classify(method)
    assert verdict.writes is writes, verdict.reason


FAKE_METHODS = sorted(f"{plugin}.{action}" for plugin, acts in PLUGINS.items() for action in acts)


@pytest.mark.parametrize("method", FAKE_METHODS)
def test_every_method_of_the_test_server_is_refused_exactly_when_it_changes_state(method):
    assert classify(method).writes is (method in WRITES)


def test_the_test_servers_writes_are_methods_it_serves():
    # Else a write named in WRITES but missing from the method list would be tested by nothing.
    assert set(WRITES) <= set(FAKE_METHODS)
    assert len(FAKE_METHODS) > 30


def test_every_report_the_test_servers_metadata_lists_is_read_only():
    methods = {f"{r['module']}.{r['action']}" for r in report_metadata(1, "day", "today")}
    assert len(methods) > 10
    assert [m for m in methods if classify(m).writes] == []


@pytest.mark.parametrize(
    "disguise",
    [
        "sitesmanager.deletesite",
        "SITESMANAGER.DELETESITE",
        "SitesManager.DeleteSite",
        " SitesManager.deleteSite ",
        "SitesManager.deleteSite\n",
        "\tsitesmanager.DELETESITE",
    ],
)
def test_case_and_whitespace_do_not_hide_a_write(disguise):
    assert classify(disguise).writes
    with pytest.raises(WriteRefusedError, match=r"(?i)sitesmanager\.deletesite changes Matomo"):
        require_read_only(disguise)


def test_refusal_names_the_method_the_reason_and_the_flag():
    with pytest.raises(WriteRefusedError) as caught:
        require_read_only("UsersManager.deleteUser", {"userLogin": "alice"})
    assert caught.value.message == (
        "UsersManager.deleteUser changes Matomo (its name starts with 'delete'); "
        "refused without --allow-write."
    )
    assert "--allow-write" in (caught.value.hint or "")


def test_an_unknown_verb_counts_as_a_write():
    verdict = classify("NewPlugin.frobnicateEverything")
    assert verdict.writes and "read verb" in verdict.reason


# --- API.getBulkRequest ---------------------------------------------------------------------


def _sub(method: str, **params: str) -> str:
    return urlencode({"method": method, "idSite": "1", **params})


BULK_WRITES = [
    pytest.param({"urls[0]": _sub("SitesManager.deleteSite")}, id="plain"),
    pytest.param({"urls[0]": quote(_sub("UsersManager.deleteUser"), safe="")}, id="encoded"),
    pytest.param(
        {"urls[0]": quote(quote(_sub("Goals.addGoal"), safe=""), safe="")}, id="double-encoded"
    ),
    pytest.param(
        {"urls[0]": _sub("VisitsSummary.get"), "urls[1]": _sub("CoreAdminHome.runScheduledTasks")},
        id="second-entry",
    ),
    pytest.param({"urls[]": "?" + _sub("ScheduledReports.sendReport")}, id="urls[]-with-?"),
    pytest.param({"urls[0]": "method=sitesmanager.DELETESITE&idSite=1"}, id="case"),
    pytest.param({"urls[0]": "idSite=1& method =SitesManager.deleteSite"}, id="spaces"),
    pytest.param({"urls[0]": "method[0]=SitesManager.deleteSite"}, id="method[0]"),
    pytest.param(
        {"urls[0]": _sub("API.getBulkRequest", **{"urls[0]": _sub("Annotations.delete")})},
        id="nested-bulk",
    ),
    pytest.param({"urls[0]": "%" + "25" * 30 + "3D"}, id="encoded-too-deeply"),
]


@pytest.mark.parametrize("params", BULK_WRITES)
@pytest.mark.parametrize("bulk", ["API.getBulkRequest", "api.GETBULKREQUEST"])
def test_a_bulk_request_with_a_write_inside_is_refused(bulk, params):
    assert writes_in(bulk, params)
    with pytest.raises(WriteRefusedError, match=r"urls\[\]"):
        require_read_only(bulk, params)


def test_a_bulk_request_of_reads_passes():
    params = {
        "urls[0]": _sub("VisitsSummary.get", period="day", date="today"),
        "urls[1]": quote(_sub("Live.getLastVisitsDetails", segment="dimension1==a,dimension1==b")),
        "urls[2]": _sub("API.getBulkRequest"),  # nested without urls: Matomo skips it
    }
    assert writes_in("API.getBulkRequest", params) == []
    require_read_only("API.getBulkRequest", params)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("API.getProcessedReport", {"apiModule": "SitesManager", "apiAction": "deleteSite"}),
        ("API.getRowEvolution", {"apiModule": "UsersManager", "apiAction": " DELETEUSER"}),
        ("ImageGraph.get", {"apimodule": "Goals", "apiaction": "addGoal"}),
    ],
)
def test_a_write_named_by_apimodule_and_apiaction_is_refused(method, params):
    with pytest.raises(WriteRefusedError, match=r"named by .*apiModule/apiAction"):
        require_read_only(method, params)


def test_a_report_named_by_apimodule_and_apiaction_passes():
    require_read_only("API.getProcessedReport", {"apiModule": "UserCountry", "apiAction": "get"})


# --- the client refuses writes unless it was built to allow them ----------------------------


@responses.activate
def test_client_refuses_a_write_method_and_sends_nothing():
    client = MatomoClient(base_url=BASE, token="0" * 32)
    with pytest.raises(WriteRefusedError):
        client.call("SitesManager.deleteSite", idSite=1)
    with pytest.raises(WriteRefusedError):
        client.call_raw("Goals.addGoal", format="CSV", idSite=1)
    with pytest.raises(WriteRefusedError):
        client.bulk([("VisitsSummary.get", {}), ("UsersManager.inviteUser", {})])
    assert len(responses.calls) == 0


@responses.activate
def test_client_built_with_allow_write_sends_a_write_method():
    responses.post(f"{BASE}index.php", json={"result": "success", "message": "ok"})
    client = MatomoClient(base_url=BASE, token="0" * 32, allow_write=True)
    assert client.call("SitesManager.deleteSite", idSite=1)["result"] == "success"
    assert "method=SitesManager.deleteSite" in responses.calls[0].request.url


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("VisitsSummary.get", True),
        ("API.getMatomoVersion", True),
        ("MyPlugin.get_stats", True),  # `_` in the action: PHP method names allow it
        ("My_Plugin.getStats", True),  # and in the module: Matomo plugin names allow it
        ("Goals2.get", True),
        ("visitssummary.get", True),  # PHP resolves names case-insensitively
        ("VisitsSummary", False),
        ("VisitsSummary.", False),
        (".get", False),
        ("2Plugin.get", False),
        ("Plugin._get", False),
        ("A.b.c", False),
        ("Actions.get-page", False),
        ("VisitsSummary.get\n", False),
        (" VisitsSummary.get", False),
        ("", False),
    ],
)
def test_is_method_name(text: str, valid: bool) -> None:
    assert is_method_name(text) is valid


def test_report_and_api_accept_the_same_method_names() -> None:
    from matokit import reports

    assert reports.find("MyPlugin.get_stats").method == "MyPlugin.get_stats"
    assert reports.find("My_Plugin.getStats").method == "My_Plugin.getStats"


# --- a command that needs a few writes allows exactly those ---------------------------------

CONFIGURE = ("CustomDimensions.configureNewCustomDimension",)


def test_an_allowed_write_passes_and_other_writes_are_still_refused():
    require_read_only(CONFIGURE[0], allowed=CONFIGURE)
    require_read_only(" customdimensions.CONFIGURENEWCUSTOMDIMENSION", allowed=CONFIGURE)
    with pytest.raises(WriteRefusedError, match=r"SitesManager\.deleteSite"):
        require_read_only("SitesManager.deleteSite", allowed=CONFIGURE)
    bulk = {"urls[0]": f"method={CONFIGURE[0]}", "urls[1]": "method=SitesManager.deleteSite"}
    with pytest.raises(WriteRefusedError, match=r"SitesManager\.deleteSite"):
        require_read_only("API.getBulkRequest", bulk, allowed=CONFIGURE)


@responses.activate
def test_client_with_allowed_writes_sends_only_those():
    responses.post(f"{BASE}index.php", json={"value": 4})
    client = MatomoClient(base_url=BASE, token="0" * 32, allowed_writes=CONFIGURE)
    assert client.call(CONFIGURE[0], idSite=1, name="k", scope="action", active=1) == {"value": 4}
    with pytest.raises(WriteRefusedError):
        client.call("CustomDimensions.configureExistingCustomDimension", idDimension=1)
    assert len(responses.calls) == 1
