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


def test_config_init_rejects_bad_url_with_exit_78(capsys, cfg):
    result = invoke(capsys, "config", "init", "--url", "not a url")
    assert result.code == 78
    assert "not an http(s) URL" in result.stderr
    assert "Traceback" not in result.stderr


# Bad input through the real CLI: one clear line, documented exit code, no traceback.
BAD = [
    (["--site", "abc", "config", "show"], 2, "site_id 'abc' from option --site"),
    (["--url", "ftp://x", "config", "show"], 2, "not an http(s) URL"),
    (["--profile", "ghost", "config", "show"], 78, "Profile 'ghost'"),
    (["--timeout", "-3", "config", "show"], 2, "not a positive number"),
    (["config", "show", "--format", "xml"], 2, "must be one of"),
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
