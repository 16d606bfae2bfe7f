"""`matokit config show|init|profiles` in-process: output, sources, files and exit codes."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest

from tests.clirunner import invoke
from tests.conftest import SENTINEL_TOKEN


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "conf" / "config.toml"
    monkeypatch.setenv("MATOKIT_CONFIG", str(path))
    return path


def test_config_show_json_lists_values_with_sources(capsys, cfg, monkeypatch):
    monkeypatch.setenv("MATOMO_URL", "https://env.example/")
    monkeypatch.setenv("MATOMO_TOKEN", SENTINEL_TOKEN)
    result = invoke(capsys, "--site", "4", "config", "show", "--format", "json")
    assert result.code == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["settings"]["url"] == {"value": "https://env.example/", "source": "env"}
    assert view["settings"]["site_id"] == {"value": 4, "source": "flag"}
    assert view["token"]["state"] == "set"
    assert "MATOMO_TOKEN" in view["token"]["source"]
    assert SENTINEL_TOKEN not in result.stdout + result.stderr


def test_config_show_lists_log_level_with_its_source(capsys, cfg, monkeypatch):
    monkeypatch.setenv("MATOKIT_LOG_LEVEL", "info")
    view = json.loads(invoke(capsys, "config", "show", "--format", "json").stdout)
    assert view["settings"]["log_level"] == {"value": "info", "source": "env"}
    result = invoke(capsys, "--quiet", "config", "show", "--format", "json")
    view = json.loads(result.stdout)
    assert view["settings"]["log_level"] == {"value": "error", "source": "flag"}


def test_config_show_text_says_token_missing(capsys, cfg):
    result = invoke(capsys, "config", "show")
    assert result.code == 0
    assert "missing" in result.stdout
    assert "token" in result.stdout


def test_config_init_writes_profile_and_separate_token_file(capsys, cfg):
    result = invoke(
        capsys,
        "--profile",
        "prod",
        "config",
        "init",
        "--url",
        "https://a.example/",
        "--site",
        "2",
        "--token-stdin",
        stdin=SENTINEL_TOKEN + "\n",
    )
    assert result.code == 0, result.stderr
    assert SENTINEL_TOKEN not in cfg.read_text()
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    profile = tomllib.loads(cfg.read_text())["profiles"]["prod"]
    token_path = Path(profile["token_file"])
    assert token_path.read_text().strip() == SENTINEL_TOKEN
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    assert profile["url"] == "https://a.example/" and profile["site_id"] == 2
    shown = invoke(capsys, "--profile", "prod", "config", "show", "--format", "json")
    assert json.loads(shown.stdout)["token"]["state"] == "set"
    assert SENTINEL_TOKEN not in result.stdout + result.stderr + shown.stdout + shown.stderr


def test_config_init_updates_without_losing_other_profiles(capsys, cfg):
    invoke(capsys, "--profile", "a", "config", "init", "--url", "https://a.example/")
    invoke(capsys, "--profile", "b", "config", "init", "--url", "https://b.example/")
    invoke(capsys, "--profile", "a", "config", "init", "--site", "7")
    profiles = tomllib.loads(cfg.read_text())["profiles"]
    assert profiles["a"] == {"url": "https://a.example/", "site_id": 7}
    assert profiles["b"]["url"] == "https://b.example/"


def test_config_profiles_lists_and_marks_active(capsys, cfg):
    invoke(capsys, "--profile", "a", "config", "init", "--url", "https://a.example/")
    invoke(capsys, "--profile", "b", "config", "init", "--url", "https://b.example/")
    result = invoke(capsys, "--profile", "b", "config", "profiles", "--format", "json")
    rows = json.loads(result.stdout)
    assert [(r["name"], r["active"]) for r in rows] == [("a", False), ("b", True)]


def test_config_init_rejects_bad_url_given_as_a_flag_with_exit_2(capsys, cfg):
    result = invoke(capsys, "config", "init", "--url", "not a url")
    assert result.code == 2
    assert "not an http(s) URL" in result.stderr
    assert "Traceback" not in result.stderr


# Bad input through the real CLI: one clear line, documented exit code, no traceback.
BAD = [
    (["--site", "abc", "config", "show"], 2, "site_id 'abc' from option --site"),
    (["--url", "ftp://x", "config", "show"], 2, "not an http(s) URL"),
    (["--profile", "ghost", "config", "show"], 78, "Profile 'ghost'"),
    (["--timeout", "-3", "config", "show"], 2, "not a positive number"),
    (["config", "show", "--format", "xml"], 2, "'xml' is not one of 'text', 'json'"),
    (["config", "show", "--format", "JSON"], 2, "'JSON' is not one of 'text', 'json'"),
    (["config", "nope"], 2, "No such command"),
    (["--bogus"], 2, "No such option"),
]


@pytest.mark.parametrize(("args", "code", "message"), BAD)
def test_bad_input_gives_one_clear_line_and_exit_code(capsys, cfg, args, code, message):
    if "ghost" in args:
        cfg.parent.mkdir(parents=True)
        cfg.write_text('[profiles.real]\nurl = "https://r.example/"\n')
    result = invoke(capsys, *args)
    assert result.code == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_config_file_is_exit_78_naming_the_file(capsys, cfg):
    cfg.parent.mkdir(parents=True)
    cfg.write_text("[profiles.default\n")
    result = invoke(capsys, "config", "show")
    assert result.code == 78
    assert str(cfg) in result.stderr and "not valid TOML" in result.stderr


def test_config_init_refuses_http_to_a_remote_host_and_writes_nothing(capsys, cfg):
    result = invoke(capsys, "config", "init", "--url", "http://remote.example/")
    assert result.code == 78, result.stderr
    assert "Refusing http:// to remote.example" in result.stderr
    assert "--allow-insecure-http" in result.stderr
    assert not cfg.exists()


def test_config_init_accepts_http_to_a_remote_host_when_allowed(capsys, cfg):
    result = invoke(
        capsys, "config", "init", "--url", "http://remote.example/", "--allow-insecure-http"
    )
    assert result.code == 0, result.stderr
    assert tomllib.loads(cfg.read_text())["profiles"]["default"]["allow_insecure_http"] is True


def test_config_init_with_nothing_given_writes_no_empty_profile(capsys, cfg):
    # stdin is not a terminal (as with </dev/null): no prompts, no values.
    result = invoke(capsys, "config", "init", stdin="")
    assert result.code == 78, result.stderr
    assert "would have no Matomo URL; nothing was written" in result.stderr
    assert not cfg.exists()


@pytest.mark.parametrize(
    ("option", "value", "message", "hint"),
    [
        ("--site", "-3", "site_id -3 from option --site", "Pass a valid value to --site"),
        ("--rate-limit", "0", "from option --rate-limit", "Pass a valid value to --rate-limit"),
    ],
)
def test_config_init_bad_value_names_the_option_like_every_command(
    capsys, cfg, option, value, message, hint
):
    result = invoke(capsys, "config", "init", "--url", "https://a.example/", option, value)
    assert result.code == 2, result.stderr  # invalid on the command line: usage, as everywhere
    assert message in result.stderr and hint in result.stderr
    assert not cfg.exists()


def test_config_init_refuses_a_profile_whose_existing_values_cannot_work(capsys, cfg):
    cfg.parent.mkdir(parents=True)
    cfg.write_text('[profiles.default]\nurl = "https://a.example/"\ntimeout = "soon"\n')
    result = invoke(capsys, "config", "init", "--site", "2")
    assert result.code == 78, result.stderr
    assert "timeout 'soon'" in result.stderr and str(cfg) in result.stderr
    assert "site_id" not in cfg.read_text()


def test_missing_config_file_given_by_flag_is_named(capsys, tmp_path):
    missing = tmp_path / "nonexistent.toml"
    result = invoke(capsys, "--config", str(missing), "--site", "1", "report", "visits")
    assert result.code == 78, result.stderr
    assert f"Config file {missing} (from --config) does not exist." in result.stderr
    assert "No site id" not in result.stderr


def test_config_init_creates_the_file_named_by_the_config_flag(capsys, tmp_path):
    target = tmp_path / "new" / "config.toml"
    result = invoke(capsys, "--config", str(target), "config", "init", "--url", "https://a.ex/")
    assert result.code == 0, result.stderr
    assert tomllib.loads(target.read_text())["profiles"]["default"]["url"] == "https://a.ex/"


def test_config_file_with_a_utf8_bom_is_read(capsys, cfg):
    cfg.parent.mkdir(parents=True)
    cfg.write_bytes(b'\xef\xbb\xbf[profiles.default]\nurl = "https://bom.example/"\nsite_id = 4\n')
    result = invoke(capsys, "config", "show", "--format", "json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["settings"]["url"]["value"] == "https://bom.example/"


def test_config_show_names_the_journal_and_cache_on_redis_without_the_password(
    capsys, cfg, monkeypatch
):
    monkeypatch.setenv("MATOKIT_REDIS_URL", "redis://:pw-7-secret@127.0.0.1:6390/2")
    result = invoke(capsys, "config", "show", "--format", "json")
    assert result.code == 0, result.stderr
    view = json.loads(result.stdout)
    assert view["journal"] == "redis://127.0.0.1:6390/2 matokit:{default}:journal:*"
    assert view["cache"] == "redis://127.0.0.1:6390/2 matokit:{default}:cache:*"
    assert "pw-7-secret" not in result.stdout + result.stderr
