"""`matokit api` as a real process against the fake Matomo: output, exit codes, token safety."""

from __future__ import annotations

import json

import pytest

from tests.fakematomo import SUPERUSER_TOKEN, Fault

BAD_TOKEN = "0badc0de" * 4


def _token_in_any_url(fake_matomo, token: str) -> bool:
    return any(token in (r.path + "?" + r.query) for r in fake_matomo.requests)


def test_api_returns_matomo_json(run_matokit, fake_matomo, env):
    result = run_matokit("api", "API.getMatomoVersion", env=env)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {"value": "5.11.2"}
    assert not _token_in_any_url(fake_matomo, SUPERUSER_TOKEN)


def test_api_csv_comes_as_utf8(run_matokit, env):
    result = run_matokit(
        "api", "VisitsSummary.get", "period=day", "date=today", "--format", "csv", env=env
    )
    assert result.code == 0, result.stderr
    assert (
        result.stdout.splitlines()[0].startswith("nb_uniq_visitors") or "nb_visits" in result.stdout
    )


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        (["VisitsSummary.get", "idSite=999", "period=day", "date=today"], 65, "website"),
        (["VisitsSummary.get", "period=day", "date=notadate"], 65, "Date format"),
        (["VisitsSummary.get", "period=x", "date=today"], 65, "period"),
        (["Foo.getBar"], 65, "plugin Foo"),
    ],
)
def test_api_matomo_errors_map_to_exit_codes(run_matokit, env, params, code, message):
    result = run_matokit("api", *params, env=env)
    assert result.code == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_api_maintenance_page_is_unavailable(run_matokit, fake_matomo, env):
    fake_matomo.add_fault(Fault(endpoint="api", maintenance=True))
    result = run_matokit("api", "API.getMatomoVersion", env=env)
    assert result.code == 69, result.stderr


def test_api_connection_refused_is_unavailable(run_matokit, env):
    result = run_matokit(
        "api", "API.getMatomoVersion", env={**env, "MATOMO_URL": "http://127.0.0.1:9/"}
    )
    assert result.code == 69, result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_token_is_sent_once_then_held_back_across_processes(run_matokit, fake_matomo, env):
    bad = {**env, "MATOMO_TOKEN": BAD_TOKEN}
    codes = [run_matokit("api", "API.getMatomoVersion", env=bad) for _ in range(5)]
    assert [c.code for c in codes] == [77] * 5
    assert "Unable to authenticate" in codes[0].stderr
    assert "will not send it again until" in codes[1].stderr
    sent_with_bad_token = [r for r in fake_matomo.requests if BAD_TOKEN.encode() in r.body]
    assert len(sent_with_bad_token) == 1
    assert not _token_in_any_url(fake_matomo, BAD_TOKEN)
    for result in codes:
        assert BAD_TOKEN not in result.stdout + result.stderr
    # A changed (fixed) token is not held back.
    fixed = run_matokit("api", "API.getMatomoVersion", env=env)
    assert fixed.code == 0, fixed.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["SitesManager.deleteSite", "idSite=1"],
        ["sitesmanager.DELETESITE", "idSite=1"],
        ["API.getBulkRequest", "urls[0]=method%3DSitesManager.deleteSite%26idSite%3D1"],
    ],
)
def test_api_write_method_is_refused_and_nothing_is_sent(run_matokit, fake_matomo, env, args):
    result = run_matokit("api", *args, env=env)
    assert result.code == 2, result.stderr
    assert "changes Matomo" in result.stderr and "--allow-write" in result.stderr
    assert fake_matomo.requests == []
    assert 1 in fake_matomo.sites


def test_api_write_method_is_sent_with_allow_write(run_matokit, fake_matomo, env):
    result = run_matokit("api", "SitesManager.deleteSite", "idSite=1", "--allow-write", env=env)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {"result": "success", "message": "ok"}
    assert [r.query for r in fake_matomo.requests if "deleteSite" in r.query]
    assert 1 not in fake_matomo.sites
