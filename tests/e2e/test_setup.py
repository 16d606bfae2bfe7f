"""`matokit setup exactly-once` as a real process against the fake Matomo."""

from __future__ import annotations

import json

from tests.fakematomo import SUPERUSER_TOKEN, VIEW_TOKEN

SETUP = ("setup", "exactly-once")


def _key_dimensions(fake_matomo, site: int) -> list[dict]:
    return [
        d
        for d in fake_matomo.state.custom_dimensions
        if d["idsite"] == site and d["name"] == "matokit_key"
    ]


def test_creates_then_finds_the_dimension(run_matokit, fake_matomo, env):
    created = run_matokit(*SETUP, env=env)
    assert created.code == 0, created
    assert created.stdout == "site 1: matokit_key is dimension 1 (action index 1): created\n"
    (made,) = _key_dimensions(fake_matomo, 1)
    assert (made["scope"], made["active"]) == ("action", True)
    found = run_matokit(*SETUP, "--format", "json", env=env)
    assert found.code == 0, found
    assert json.loads(found.stdout) == [
        {"site": 1, "dimension_id": 1, "index": 1, "action": "found"}
    ]
    assert len(_key_dimensions(fake_matomo, 1)) == 1


def test_several_sites_in_one_run(run_matokit, fake_matomo, env):
    fake_matomo.add_custom_dimension(2, "matokit_key")
    result = run_matokit(*SETUP, "--site", "1", "--site", "2", env=env)
    assert result.code == 0, result
    assert result.stdout.splitlines() == [
        "site 1: matokit_key is dimension 1 (action index 1): created",
        "site 2: matokit_key is dimension 1 (action index 1): found",
    ]


def test_a_view_only_token_cannot_create_it_and_exits_77(run_matokit, fake_matomo, env):
    result = run_matokit(*SETUP, env={**env, "MATOMO_TOKEN": VIEW_TOKEN})
    assert result.code == 77, result
    assert result.stdout == ""
    assert "site 1: Creating the matokit_key dimension on site 1 needs admin" in result.stderr
    assert "Traceback" not in result.stderr
    assert _key_dimensions(fake_matomo, 1) == []
    # Once an admin has created it, the same view token finds it.
    assert run_matokit(*SETUP, env=env).code == 0
    found = run_matokit(*SETUP, env={**env, "MATOMO_TOKEN": VIEW_TOKEN})
    assert found.code == 0, found
    assert found.stdout.endswith(": found\n")


def test_the_token_never_appears_in_output_or_a_url(run_matokit, fake_matomo, env):
    for token in (SUPERUSER_TOKEN, VIEW_TOKEN):
        for args in (("--debug", *SETUP), ("--debug", "--log-format", "json", *SETUP)):
            result = run_matokit(
                *args, "--site", "1", "--site", "2", env={**env, "MATOMO_TOKEN": token}
            )
            assert result.code in (0, 77), result
            assert token not in result.stdout, args
            assert token not in result.stderr, args
    for record in fake_matomo.requests:
        assert SUPERUSER_TOKEN not in record.path + "?" + record.query
        assert VIEW_TOKEN not in record.path + "?" + record.query
