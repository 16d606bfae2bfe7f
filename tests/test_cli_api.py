"""`matokit api` in-process with `responses`: parsing, output, exit codes, token placement."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from tests.clirunner import invoke
from tests.conftest import SENTINEL_TOKEN

BASE = "https://m.example/"


@pytest.fixture
def matomo_env(monkeypatch):
    monkeypatch.setenv("MATOMO_URL", BASE)
    monkeypatch.setenv("MATOMO_TOKEN", SENTINEL_TOKEN)
    monkeypatch.setenv("MATOMO_SITE_ID", "1")


@responses.activate
def test_api_prints_json_and_sends_token_only_in_body(capsys, matomo_env):
    responses.post(f"{BASE}index.php", json={"value": "5.11.2"})
    result = invoke(capsys, "api", "API.getMatomoVersion")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {"value": "5.11.2"}
    request = responses.calls[0].request
    assert SENTINEL_TOKEN not in request.url
    query = parse_qs(urlsplit(request.url).query)
    assert query["method"] == ["API.getMatomoVersion"] and query["format"] == ["JSON"]
    body = parse_qs(request.body)
    assert body["token_auth"] == [SENTINEL_TOKEN]
    assert body["idSite"] == ["1"]  # the profile's default site


@responses.activate
def test_api_passes_key_value_parameters(capsys, matomo_env):
    responses.post(f"{BASE}index.php", json={"nb_visits": 3})
    result = invoke(capsys, "api", "VisitsSummary.get", "period=day", "date=yesterday", "idSite=2")
    assert result.code == 0
    body = parse_qs(responses.calls[0].request.body)
    assert body["period"] == ["day"] and body["date"] == ["yesterday"] and body["idSite"] == ["2"]


ERRORS = [
    (401, {"result": "error", "message": "Unable to authenticate with the provided token."}, 77),
    (
        401,
        {
            "result": "error",
            "message": "You can't access this resource as it requires 'superuser' access.",
        },
        77,
    ),
    (404, {"result": "error", "message": "The plugin Foo was not found."}, 65),
    (200, {"result": "error", "message": "The period 'x' is not supported."}, 65),
    (500, {"result": "error", "message": "SQLSTATE[HY000] [2002] Connection refused"}, 69),
    (
        500,
        {
            "result": "error",
            "message": "Too many failed logins. Please wait and try logging in again later.",
        },
        77,
    ),
]


@pytest.mark.parametrize(("status", "body", "code"), ERRORS)
@responses.activate
def test_api_maps_matomo_errors_to_exit_codes(capsys, matomo_env, status, body, code):
    responses.post(f"{BASE}index.php", json=body, status=status)
    result = invoke(capsys, "api", "VisitsSummary.get")
    assert result.code == code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert SENTINEL_TOKEN not in result.stderr


@responses.activate
def test_api_html_maintenance_page_is_unavailable(capsys, matomo_env):
    responses.post(
        f"{BASE}index.php", body="<html>Maintenance</html>", status=503, content_type="text/html"
    )
    result = invoke(capsys, "api", "API.getMatomoVersion")
    assert result.code == 69


BAD = [
    (["api", "not-a-method"], "not a Reporting API method"),
    (["api", "API.getMatomoVersion", "novalue"], "is not key=value"),
    (["api", "API.getMatomoVersion", "token_auth=abc"], "token_auth cannot be passed"),
    (["api", "API.getMatomoVersion", "format=xml"], "set by matokit api"),
    (["api", "API.getMatomoVersion", "--format", "yaml"], "'yaml' is not one of 'json', 'csv'"),
    (["api", "API.getMatomoVersion", "--format", "JSON"], "'JSON' is not one of"),
    (["api", "API.getMatomoVersion", "method=SitesManager.deleteSite"], "set by matokit api"),
    (["api", "API.getMatomoVersion", "Method=SitesManager.deleteSite"], "set by matokit api"),
    (["api", "API.getMatomoVersion", "method[0]=SitesManager.deleteSite"], "set by matokit api"),
    (["api", "API.getMatomoVersion", "module[]=CoreHome"], "set by matokit api"),
    (["api", "SitesManager.deleteSite\n"], "not a Reporting API method"),
    (["api", " SitesManager.deleteSite"], "not a Reporting API method"),
]


@responses.activate
@pytest.mark.parametrize(("args", "message"), BAD)
def test_api_bad_input_is_usage_error(capsys, matomo_env, args, message):
    result = invoke(capsys, *args)
    assert result.code == 2
    assert message in result.stderr
    assert len(responses.calls) == 0


WRITES = [
    (["SitesManager.deleteSite", "idSite=1"], "SitesManager.deleteSite changes Matomo"),
    (["sitesmanager.DELETESITE", "idSite=1"], "sitesmanager.DELETESITE changes Matomo"),
    (["UsersManager.inviteUser", "userLogin=x", "email=x@example.org"], "inviteUser"),
    (["CoreAdminHome.runScheduledTasks"], "runScheduledTasks"),
    (["Goals.addGoal", "name=g", "matchAttribute=url", "pattern=x", "patternType=contains"], "add"),
    (["SitesManager.deleteSite", "idSite=1", "--format", "csv"], "deleteSite"),
    (
        ["API.getBulkRequest", "urls[0]=method=VisitsSummary.get", "urls[1]=method=Goals.addGoal"],
        "Goals.addGoal (in API.getBulkRequest's urls[]) changes Matomo",
    ),
    (["API.getBulkRequest", "urls[0]=method%3DSitesManager.deleteSite%26idSite%3D1"], "delete"),
]


@responses.activate
@pytest.mark.parametrize(("args", "message"), WRITES)
def test_api_refuses_a_write_method_without_allow_write(capsys, matomo_env, args, message):
    result = invoke(capsys, "api", *args)
    assert result.code == 2, result.stderr
    assert message in result.stderr
    assert "refused without --allow-write" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(responses.calls) == 0


@responses.activate
def test_api_sends_a_write_method_with_allow_write(capsys, matomo_env):
    responses.post(f"{BASE}index.php", json={"result": "success", "message": "ok"})
    result = invoke(capsys, "api", "SitesManager.deleteSite", "idSite=2", "--allow-write")
    assert result.code == 0, result.stderr
    request = responses.calls[0].request
    assert parse_qs(urlsplit(request.url).query)["method"] == ["SitesManager.deleteSite"]
    assert parse_qs(request.body)["idSite"] == ["2"]


@responses.activate
def test_api_refusal_comes_before_configuration_is_needed(capsys, monkeypatch):
    result = invoke(capsys, "api", "SitesManager.deleteSite", "idSite=1")
    assert result.code == 2, result.stderr
    assert len(responses.calls) == 0


def test_api_without_url_is_config_error(capsys, monkeypatch):
    monkeypatch.setenv("MATOMO_TOKEN", SENTINEL_TOKEN)
    result = invoke(capsys, "api", "API.getMatomoVersion")
    assert result.code == 78
    assert "No Matomo URL" in result.stderr
