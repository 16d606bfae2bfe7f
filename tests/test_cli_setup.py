"""`matokit setup exactly-once` in-process against the fake Matomo: output, sites, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matokit.errors import StorageError
from matokit.journal import Journal
from tests.clirunner import invoke
from tests.fakematomo import ADMIN_TOKEN, SUPERUSER_TOKEN, VIEW_TOKEN, FakeMatomo

SETUP = ("setup", "exactly-once")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, fake_matomo: FakeMatomo) -> FakeMatomo:
    monkeypatch.setenv("MATOMO_URL", fake_matomo.url)
    monkeypatch.setenv("MATOMO_SITE_ID", "1")
    monkeypatch.setenv("MATOMO_TOKEN", SUPERUSER_TOKEN)
    return fake_matomo


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / ".local" / "share" / "matokit" / "default" / "journal.sqlite"


def key_dimensions(fake: FakeMatomo, site: int) -> list[dict]:
    return [
        d
        for d in fake.state.custom_dimensions
        if d["idsite"] == site and d["name"] == "matokit_key"
    ]


def test_creates_the_dimension_on_the_profile_site_then_finds_it(capsys, env):
    first = invoke(capsys, *SETUP)
    assert first.code == 0, first
    assert first.stdout == "site 1: matokit_key is dimension 1 (action index 1): created\n"
    assert first.stderr == ""
    (made,) = key_dimensions(env, 1)
    assert (made["scope"], made["active"]) == ("action", True)
    again = invoke(capsys, *SETUP)
    assert again.code == 0, again
    assert again.stdout == "site 1: matokit_key is dimension 1 (action index 1): found\n"
    assert len(key_dimensions(env, 1)) == 1


def test_json_lists_one_object_per_site(capsys, env):
    env.add_custom_dimension(2, "Page type")
    env.add_custom_dimension(2, "matokit_key")
    result = invoke(capsys, *SETUP, "--site", "2", "--site", "1", "--site", "2", "--format", "json")
    assert result.code == 0, result
    assert json.loads(result.stdout) == [
        {"site": 2, "dimension_id": 2, "index": 2, "action": "found"},
        {"site": 1, "dimension_id": 1, "index": 1, "action": "created"},
    ]


def test_the_global_site_option_is_the_default(capsys, env):
    result = invoke(capsys, "--site", "2", *SETUP)
    assert result.code == 0, result
    assert result.stdout.startswith("site 2: ")


def test_without_any_site_it_is_a_usage_error(capsys, env, monkeypatch):
    monkeypatch.delenv("MATOMO_SITE_ID")
    result = invoke(capsys, *SETUP)
    assert result.code == 2, result
    assert "matokit: error: No site to set up." in result.stderr
    assert "Pass --site ID" in result.stderr and "site_id" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("bad", ["0", "x"])
def test_a_bad_site_value_is_a_usage_error(capsys, env, bad):
    result = invoke(capsys, *SETUP, "--site", bad)
    assert result.code == 2, result


def test_every_site_is_reported_and_the_exit_code_is_the_worst(capsys, env):
    env.add_custom_dimension(2, "matokit_key", scope="visit")
    result = invoke(capsys, *SETUP, "--site", "9", "--site", "2", "--site", "1")
    assert result.code == 78, result  # 78 (the name is taken) before 65 (no such site)
    assert result.stdout == "site 1: matokit_key is dimension 1 (action index 1): created\n"
    errors = [line for line in result.stderr.splitlines() if line.startswith("matokit: error:")]
    assert errors[0].startswith("matokit: error: site 9: ") and "unexpected website" in errors[0]
    assert errors[1].startswith("matokit: error: site 2: Site 2 already has a visit-scope")
    assert len(errors) == 2


def test_a_site_admin_token_sets_up_its_site_and_is_refused_on_a_viewed_one(
    capsys, env, monkeypatch
):
    monkeypatch.setenv("MATOMO_TOKEN", ADMIN_TOKEN)  # admin on site 1, view on site 2
    result = invoke(capsys, *SETUP, "--site", "2", "--site", "1")
    assert result.code == 77, result
    assert result.stdout == "site 1: matokit_key is dimension 1 (action index 1): created\n"
    assert result.stderr.startswith(
        "matokit: error: site 2: Creating the matokit_key dimension on site 2 needs admin (or "
        "write) access to the site; this token has less.\n"
    )
    assert "a token with view access can use the dimension afterwards" in result.stderr
    assert key_dimensions(env, 2) == []


def test_json_reports_failed_sites_too(capsys, env, monkeypatch):
    monkeypatch.setenv("MATOMO_TOKEN", VIEW_TOKEN)
    result = invoke(capsys, *SETUP, "--format", "json")
    assert result.code == 77, result
    (view,) = json.loads(result.stdout)
    assert view["site"] == 1 and view["action"] == "failed" and view["dimension_id"] is None
    assert "needs admin" in view["error"] and view["hint"]


def test_a_view_token_uses_an_existing_dimension(capsys, env, monkeypatch):
    env.add_custom_dimension(1, "matokit_key")
    monkeypatch.setenv("MATOMO_TOKEN", VIEW_TOKEN)
    result = invoke(capsys, *SETUP)
    assert result.code == 0, result
    assert result.stdout.endswith(": found\n")


def test_a_visit_scope_dimension_of_that_name_exits_78(capsys, env):
    env.add_custom_dimension(1, "matokit_key", scope="visit")
    result = invoke(capsys, *SETUP)
    assert result.code == 78, result
    assert "site 1: Site 1 already has a visit-scope custom dimension named matokit_key" in (
        result.stderr
    )
    assert "Rename dimension 1 in Matomo (Administration > Websites > Custom Dimensions)" in (
        result.stderr
    )


def test_no_free_action_slot_exits_78_naming_the_fix(capsys, env):
    for n in range(5):
        env.add_custom_dimension(1, f"d{n}")
    result = invoke(capsys, *SETUP)
    assert result.code == 78, result
    assert "Every action-scope custom dimension slot of site 1 is in use" in result.stderr
    assert "customdimensions:add-custom-dimension --scope=action" in result.stderr


def test_the_plugin_switched_off_exits_78(capsys, env):
    env.deactivate_plugin("CustomDimensions")
    result = invoke(capsys, *SETUP)
    assert result.code == 78, result
    assert "CustomDimensions plugin is not enabled" in result.stderr
    assert "plugin:activate CustomDimensions" in result.stderr


def test_the_token_appears_nowhere_in_the_output(capsys, env, monkeypatch):
    for token in (SUPERUSER_TOKEN, VIEW_TOKEN):
        monkeypatch.setenv("MATOMO_TOKEN", token)
        result = invoke(capsys, "--debug", *SETUP, "--site", "1", "--site", "2")
        assert token not in result.stdout + result.stderr


# --- the journal remembers each site's dimension --------------------------------------------


def test_each_set_up_site_is_remembered_in_the_journal(capsys, env, journal_path, monkeypatch):
    monkeypatch.setenv("MATOMO_TOKEN", ADMIN_TOKEN)
    result = invoke(capsys, *SETUP, "--site", "1", "--site", "2")
    assert result.code == 77, result  # site 2 failed: only site 1 is remembered
    with Journal(journal_path) as journal:
        records = journal.site_dimensions()
    assert list(records) == [1] and records[1].dimension == 1


def test_nothing_set_up_creates_no_journal(capsys, env, journal_path, monkeypatch):
    monkeypatch.setenv("MATOMO_TOKEN", VIEW_TOKEN)
    assert invoke(capsys, *SETUP).code == 77
    assert not journal_path.exists()


def test_a_journal_that_cannot_record_is_a_warning_not_a_failure(capsys, env, monkeypatch):
    def remember(self: Journal, site: int, dimension_id: int | None) -> None:
        raise StorageError("disk full", path=str(self.path))

    monkeypatch.setattr(Journal, "remember_dimension", remember)
    result = invoke(capsys, *SETUP)
    assert result.code == 0, result
    assert result.stdout.endswith(": created\n")
    assert "warning: could not record the dimensions in the journal: disk full" in result.stderr


def test_describe_marks_the_command_as_a_write_to_matomo(capsys):
    manifest = json.loads(invoke(capsys, "describe", "--format", "json").stdout)
    (command,) = [c for c in manifest["commands"] if c["name"] == "setup exactly-once"]
    assert command["effect"] == "writes-matomo"
