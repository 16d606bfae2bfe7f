"""Configuration as real processes against the fake Matomo: `config test`, token files."""

from __future__ import annotations

import json
import os
import socket

import pytest

from tests.fakematomo import ADMIN_TOKEN, SUPERUSER_TOKEN, VIEW_TOKEN

BAD_TOKEN = "0badc0de" * 4


def _env(url: str, token: str | None, site: str | None = "1") -> dict[str, str | None]:
    return {"MATOMO_URL": url, "MATOMO_TOKEN": token, "MATOMO_SITE_ID": site}


@pytest.mark.parametrize(
    ("token", "superuser", "access"),
    [(SUPERUSER_TOKEN, True, "admin"), (ADMIN_TOKEN, False, "admin"), (VIEW_TOKEN, False, "view")],
)
def test_config_test_reports_version_and_access_in_one_request(
    run_matokit, fake_matomo, token, superuser, access
):
    result = run_matokit("config", "test", "--format", "json", env=_env(fake_matomo.url, token))
    assert result.code == 0, result
    view = json.loads(result.stdout)
    assert view["matomo_version"] == "5.11.2"
    assert (view["superuser"], view["site"], view["site_access"]) == (superuser, 1, access)
    assert len([r for r in fake_matomo.requests if "index.php" in r.path]) == 1
    assert token not in result.output


def test_config_test_text_says_what_the_token_may_do(run_matokit, fake_matomo):
    result = run_matokit("config", "test", env=_env(fake_matomo.url, VIEW_TOKEN))
    assert result.code == 0, result
    assert "Matomo 5.11.2" in result.stdout
    assert "not a superuser; view access to site 1" in result.stdout


def test_config_test_site_the_token_cannot_see_is_77(run_matokit, fake_matomo):
    result = run_matokit("config", "test", env=_env(fake_matomo.url, VIEW_TOKEN, site="3"))
    assert result.code == 77, result
    assert "cannot view site 3 (sites it can view: 1, 2)" in result.stderr


def test_config_test_invalid_token_is_77(run_matokit, fake_matomo):
    result = run_matokit("config", "test", env=_env(fake_matomo.url, BAD_TOKEN))
    assert result.code == 77, result
    assert "Unable to authenticate" in result.stderr
    assert BAD_TOKEN not in result.output


def test_config_test_unreachable_matomo_is_69(run_matokit):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the run: nothing listens there
    result = run_matokit("config", "test", env=_env(f"http://127.0.0.1:{port}/", VIEW_TOKEN))
    assert result.code == 69, result


def test_config_test_without_a_token_is_78(run_matokit, fake_matomo):
    result = run_matokit("config", "test", env=_env(fake_matomo.url, None))
    assert result.code == 78, result
    assert "No Matomo token is configured" in result.stderr
    assert not fake_matomo.requests


def test_token_file_that_is_a_fifo_is_refused_without_waiting_for_a_writer(
    run_matokit, fake_matomo, tmp_path
):
    fifo = tmp_path / "token.fifo"
    os.mkfifo(fifo, 0o600)
    # Before the fix, opening the FIFO blocked forever: the timeout turns that into a failure.
    result = run_matokit(
        "--token-file", fifo, "report", "visits",
        env={"MATOMO_URL": fake_matomo.url, "MATOMO_SITE_ID": "1"},
        timeout=20,
    )  # fmt: skip
    assert result.code == 78, result
    assert f"Token file {fifo} is not a regular file (it is a named pipe)." in result.stderr
    assert not fake_matomo.requests
