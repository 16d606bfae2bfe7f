"""Settings resolution: precedence, profiles, token sources, permissions, bad input."""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from pathlib import Path

import pytest

from matokit.config import KEYS, Settings, locate, resolve, resolve_logging
from matokit.durations import parse_duration
from matokit.errors import ConfigError, InsecurePermissionsError, InsecureURLError, UsageError
from tests.conftest import SENTINEL_TOKEN


def write_config(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "cfg" / "config.toml",
        """
[profiles.default]
url = "https://file.example/"
site_id = 3
timeout = 7

[profiles.other]
url = "https://other.example/"
site_id = 9
""",
    )


# (flag, env, dotenv, file) -> expected value and source; None means "not set in that layer".
PRECEDENCE = [
    ("https://flag.example/", "https://env.example/", "https://dotenv.example/", "flag"),
    (None, "https://env.example/", "https://dotenv.example/", "env"),
    (None, None, "https://dotenv.example/", ".env"),
    (None, None, None, "config file"),
]


@pytest.mark.parametrize(("flag", "env", "dotenv", "source"), PRECEDENCE)
def test_url_precedence_is_flag_env_dotenv_file(config_file, flag, env, dotenv, source):
    environ = {"MATOKIT_CONFIG": str(config_file)}
    if env:
        environ["MATOMO_URL"] = env
    if dotenv:
        Path(".env").write_text(f"MATOMO_URL={dotenv}\n")
    settings = resolve({"--url": flag}, env=environ)
    expected = {"flag": flag, "env": env, ".env": dotenv, "config file": "https://file.example/"}
    assert settings.url == expected[source]
    assert settings.sources["url"] == source


# Settings fields that are not KEYS entries, and keys whose None default resolve() fills in.
NOT_KEYS = {
    "profile",
    "config_path",
    "config_exists",
    "sources",
    "token_source",
    "redis_password_env",
}
FILLED_BY_RESOLVE = {"cache_dir", "data_dir"}


def _allowed(hint: object) -> set[object]:
    return set(typing.get_args(hint)) if isinstance(hint, types.UnionType) else {hint}


def test_every_key_is_a_settings_field_of_its_parsed_type_and_back():
    hints = typing.get_type_hints(Settings)
    assert {f.name for f in dataclasses.fields(Settings)} - NOT_KEYS == {k.name for k in KEYS}
    for key in KEYS:
        allowed = _allowed(hints[key.name])
        assert typing.get_type_hints(key.parse)["return"] in allowed, key.name
        optional = key.default is None and key.name not in FILLED_BY_RESOLVE
        assert (type(None) in allowed) == optional, key.name
        assert key.default is None or isinstance(key.default, tuple(allowed)), key.name


def test_resolved_values_have_their_field_types(tmp_path):
    every_key = """
[profiles.default]
url = "https://file.example/matomo.php"
site_id = "3"
timeout = "7"
connect_timeout = 2
rate_limit = "1.5"
ca_bundle = "~/ca.pem"
allow_insecure_http = "yes"
cache_dir = "cache"
data_dir = "data"
ttl_today = "5m"
ttl_past = 60
token_cooldown = "1h"
token_command_timeout = "3s"
batch_size = "50"
max_attempts = 4
max_age = "2d"
dedup_window = "1d"
queuedtracking = "true"
log_format = "JSON"
csv_safe = "on"
"""
    config = write_config(tmp_path / "config.toml", every_key)
    hints = typing.get_type_hints(Settings)
    for settings in (
        resolve({}, env={"MATOKIT_CONFIG": str(config)}),
        resolve({}, env={"MATOKIT_CONFIG": str(tmp_path / "missing.toml")}),
    ):
        for key in KEYS:
            value = getattr(settings, key.name)
            assert isinstance(value, tuple(_allowed(hints[key.name]))), (key.name, value)
    assert settings.batch_size == 100 and settings.timeout == 10.0  # the defaults
    configured = resolve({}, env={"MATOKIT_CONFIG": str(config)})
    assert configured.site_id == 3 and configured.batch_size == 50
    assert configured.max_age == 2 * 86400.0 and configured.csv_safe is True


def test_dotenv_never_overrides_real_environment(config_file):
    Path(".env").write_text("MATOMO_SITE_ID=5\n")
    settings = resolve({}, env={"MATOKIT_CONFIG": str(config_file), "MATOMO_SITE_ID": "4"})
    assert settings.site_id == 4
    assert "MATOMO_SITE_ID" not in os.environ or os.environ["MATOMO_SITE_ID"] != "5"


def test_defaults_apply_when_nothing_is_set(tmp_path):
    settings = resolve({}, env={"MATOKIT_CONFIG": str(tmp_path / "missing.toml")})
    assert settings.timeout == 10.0
    assert settings.sources["timeout"] == "default"
    assert settings.url is None
    assert not settings.config_exists


def test_profile_selects_its_own_section(config_file):
    settings = resolve({"--profile": "other"}, env={"MATOKIT_CONFIG": str(config_file)})
    assert settings.url == "https://other.example/"
    assert settings.site_id == 9
    assert settings.timeout == 10.0  # not inherited from another profile


def test_profiles_get_separate_cache_and_data_directories(config_file, tmp_path):
    env = {"MATOKIT_CONFIG": str(config_file), "MATOKIT_DATA_DIR": str(tmp_path / "data")}
    a = resolve({}, env=env)
    b = resolve({"--profile": "other"}, env=env)
    assert a.data_dir != b.data_dir and a.cache_dir != b.cache_dir
    assert a.journal_path.parent == tmp_path / "data" / "default"
    assert b.journal_path.parent == tmp_path / "data" / "other"
    assert a.token_memory_path != b.token_memory_path


def test_profiles_never_share_credentials(tmp_path):
    token_a = write_config(tmp_path / "a.token", "a" * 32 + "\n")
    cfg = write_config(
        tmp_path / "config.toml",
        f'[profiles.a]\nurl = "https://a.example/"\ntoken_file = "{token_a}"\n'
        '[profiles.b]\nurl = "https://b.example/"\n',
    )
    a = resolve({"--profile": "a"}, env={"MATOKIT_CONFIG": str(cfg)})
    b = resolve({"--profile": "b"}, env={"MATOKIT_CONFIG": str(cfg)})
    assert a.token() == "a" * 32
    assert not b.has_token()
    with pytest.raises(ConfigError, match="No Matomo token"):
        b.token()


# ---- token sources ------------------------------------------------------------------------


def test_token_from_environment():
    settings = resolve({}, env={"MATOMO_TOKEN": SENTINEL_TOKEN})
    assert settings.token() == SENTINEL_TOKEN
    assert "MATOMO_TOKEN" in settings.token_source.describe()
    assert SENTINEL_TOKEN not in settings.token_source.describe()


def test_token_from_file_flag_and_env(tmp_path):
    path = write_config(tmp_path / "t", SENTINEL_TOKEN + "\nsecond line ignored\n")
    assert resolve({"--token-file": str(path)}, env={}).token() == SENTINEL_TOKEN
    assert resolve({}, env={"MATOMO_TOKEN_FILE": str(path)}).token() == SENTINEL_TOKEN


def test_token_from_token_env(tmp_path):
    cfg = write_config(tmp_path / "c.toml", '[profiles.default]\ntoken_env = "MY_MATOMO"\n')
    settings = resolve({}, env={"MATOKIT_CONFIG": str(cfg), "MY_MATOMO": SENTINEL_TOKEN})
    assert settings.token() == SENTINEL_TOKEN


def test_token_from_command(tmp_path):
    helper = write_config(tmp_path / "helper.py", f"print({SENTINEL_TOKEN!r})\n")
    cfg = write_config(
        tmp_path / "c.toml", f'[profiles.default]\ntoken_command = "{sys.executable} {helper}"\n'
    )
    assert resolve({}, env={"MATOKIT_CONFIG": str(cfg)}).token() == SENTINEL_TOKEN


def test_token_from_dotenv_file(tmp_path):
    Path(".env").write_text(f"MATOMO_TOKEN={SENTINEL_TOKEN}\n")
    Path(".env").chmod(0o600)
    settings = resolve({}, env={})
    assert settings.token() == SENTINEL_TOKEN
    assert settings.token_source.origin == ".env"


def test_environment_token_wins_over_config_file(tmp_path):
    cfg = write_config(tmp_path / "c.toml", '[profiles.default]\ntoken_env = "OTHER"\n')
    settings = resolve({}, env={"MATOKIT_CONFIG": str(cfg), "MATOMO_TOKEN": SENTINEL_TOKEN})
    assert settings.token_source.kind == "env"


# ---- refusals -----------------------------------------------------------------------------


def test_world_readable_token_file_is_refused(tmp_path):
    path = write_config(tmp_path / "t", SENTINEL_TOKEN, mode=0o644)
    with pytest.raises(InsecurePermissionsError) as info:
        resolve({"--token-file": str(path)}, env={}).token()
    assert str(path) in info.value.message
    assert "chmod 600" in info.value.message


def _directory(tmp: Path) -> Path:
    path = tmp / "tokens"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    return path


NOT_TOKEN_FILES = [
    ("/dev/null", lambda tmp: Path("/dev/null"), "a character device"),
    ("directory 0755", _directory, "a directory"),
]


@pytest.mark.parametrize(
    ("case", "path_for", "kind"), NOT_TOKEN_FILES, ids=[c[0] for c in NOT_TOKEN_FILES]
)
def test_token_file_that_is_not_a_regular_file_is_refused_without_chmod_advice(
    tmp_path, case, path_for, kind
):
    path = path_for(tmp_path)
    with pytest.raises(ConfigError) as info:
        resolve({"--token-file": str(path)}, env={}).token()
    assert info.value.message == f"Token file {path} is not a regular file (it is {kind})."
    assert not isinstance(info.value, InsecurePermissionsError)
    assert "chmod" not in info.value.message + (info.value.hint or "")


def test_token_file_without_a_line_break_in_its_first_4_kib_is_refused(tmp_path):
    path = write_config(tmp_path / "big", "a" * 100_000)
    with pytest.raises(ConfigError) as info:
        resolve({"--token-file": str(path)}, env={}).token()
    assert "first line is longer than 4096 bytes" in info.value.message


def test_token_file_first_line_is_the_token_whatever_follows(tmp_path):
    path = write_config(tmp_path / "t", SENTINEL_TOKEN + "\r\n" + "x" * 100_000)
    assert resolve({"--token-file": str(path)}, env={}).token() == SENTINEL_TOKEN


def test_readable_dotenv_holding_a_token_is_refused():
    Path(".env").write_text(f"MATOMO_TOKEN={SENTINEL_TOKEN}\n")
    Path(".env").chmod(0o644)
    with pytest.raises(InsecurePermissionsError, match=r"\.env"):
        resolve({}, env={})


def test_readable_config_holding_a_token_is_refused(tmp_path):
    cfg = write_config(
        tmp_path / "c.toml", f'[profiles.default]\ntoken = "{SENTINEL_TOKEN}"\n', mode=0o644
    )
    with pytest.raises(InsecurePermissionsError, match="chmod"):
        resolve({}, env={"MATOKIT_CONFIG": str(cfg)})


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8080/", True),
        ("http://localhost/", True),
        ("http://[::1]/", True),
        ("https://analytics.example/", True),
        ("http://analytics.example/", False),
    ],
)
def test_plain_http_only_to_loopback(url, allowed):
    settings = resolve({"--url": url}, env={})
    if allowed:
        assert settings.require_url().startswith(url.split("/")[0])
    else:
        with pytest.raises(InsecureURLError, match="clear"):
            settings.require_url()


def test_allow_insecure_http_in_profile(tmp_path):
    cfg = write_config(
        tmp_path / "c.toml",
        '[profiles.default]\nurl = "http://intranet.example/"\nallow_insecure_http = true\n',
    )
    settings = resolve({}, env={"MATOKIT_CONFIG": str(cfg)})
    assert settings.require_url() == "http://intranet.example/"


def test_url_is_normalised_to_base():
    settings = resolve({"--url": "https://a.example/matomo/index.php"}, env={})
    assert settings.url == "https://a.example/matomo/"


# ---- bad input: one clear message, ConfigError (exit 78) or UsageError (2) ----------

BAD_INPUT = [
    ("corrupt toml", {"config": "[profiles.default\nurl = 1"}, {}, "not valid TOML"),
    (
        "unknown profile",
        {"config": '[profiles.a]\nurl="https://a.example/"\n'},
        {"--profile": "nope"},
        "Profile 'nope' is not defined",
    ),
    (
        "bad log level",
        {"config": '[profiles.default]\nlog_level = "loud"\n'},
        {},
        "log_level 'loud' from",
    ),
    ("unknown key", {"config": '[profiles.default]\nurll = "x"\n'}, {}, "Did you mean 'url'"),
    (
        "duration beyond the maximum",
        {"config": '[profiles.default]\ntoken_cooldown = "999999999d"\n'},
        {},
        "longer than the maximum duration, 3650d",
    ),
    (
        "number of seconds beyond the maximum",
        {"config": "[profiles.default]\nmax_age = 1e12\n"},
        {},
        "longer than the maximum duration, 3650d",
    ),
    (
        "two token sources",
        {"config": '[profiles.default]\ntoken_env = "A"\ntoken_command = "b"\n'},
        {},
        "set only one",
    ),
]


@pytest.mark.parametrize(
    ("case", "setup", "flags", "message"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT]
)
def test_bad_configuration_is_one_clear_config_error(tmp_path, case, setup, flags, message):
    env = {"MATOKIT_CONFIG": str(tmp_path / "config.toml")}
    if "config" in setup:
        write_config(tmp_path / "config.toml", setup["config"])
    with pytest.raises(ConfigError) as info:
        resolve(flags, env=env)
    assert message in info.value.message
    assert info.value.hint


# (flag, env var, bad value, message): the same bad value is a usage error (2) on the command
# line and a configuration error (78) from the environment.
BAD_VALUES = [
    ("--profile", "MATOKIT_PROFILE", "../etc", "not valid"),
    ("--url", "MATOMO_URL", "ftp://x", "is not an http(s) URL"),
    ("--site", "MATOMO_SITE_ID", "abc", "not a positive integer"),
    ("--site", "MATOMO_SITE_ID", "0", "not a positive integer"),
    ("--timeout", "MATOKIT_TIMEOUT", "soon", "not a positive number"),
    ("--log-format", "MATOKIT_LOG_FORMAT", "xml", "must be text or json"),
]


@pytest.mark.parametrize(("flag", "variable", "value", "message"), BAD_VALUES)
def test_bad_value_is_a_usage_error_as_a_flag_and_a_config_error_from_env(
    tmp_path, flag, variable, value, message
):
    env = {"MATOKIT_CONFIG": str(tmp_path / "config.toml")}
    with pytest.raises(UsageError) as info:
        resolve({flag: value}, env=env)
    assert message in info.value.message and info.value.hint
    assert not isinstance(info.value, ConfigError)
    with pytest.raises(ConfigError) as info:
        resolve({}, env={**env, variable: value})
    assert message in info.value.message and info.value.hint


BAD_TOKENS = [
    ("missing token file", lambda tmp: {"--token-file": str(tmp / "nope")}, "does not exist"),
    ("failing token command", None, "failed with exit status 3"),
    ("missing command", None, "was not found"),
    ("slow command", None, "did not finish"),
    ("empty token file", lambda tmp: {"--token-file": str(write_config(tmp / "e", ""))}, "empty"),
]


@pytest.mark.parametrize(
    ("case", "flags_for", "message"), BAD_TOKENS, ids=[c[0] for c in BAD_TOKENS]
)
def test_bad_token_sources_are_config_errors(tmp_path, case, flags_for, message):
    commands = {
        "failing token command": f"{sys.executable} -c 'import sys; sys.exit(3)'",
        "missing command": "/nonexistent/helper",
        "slow command": f"{sys.executable} -c 'import time; time.sleep(5)'",
    }
    env = {"MATOKIT_CONFIG": str(tmp_path / "config.toml")}
    flags = {}
    if flags_for:
        flags = flags_for(tmp_path)
    else:
        write_config(
            tmp_path / "config.toml",
            f'[profiles.default]\ntoken_command = "{commands[case]}"\n'
            'token_command_timeout = "1s"\n',
        )
    with pytest.raises(ConfigError) as info:
        resolve(flags, env=env).token()
    assert message in info.value.message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        (7, 7.0),
        ("3650d", 3650 * 86400.0),
    ],
)
def test_durations_as_people_write_them(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["3651d", "999999d", "522w", 10**12, 10**400, "soon", -1, float("nan")]
)
def test_durations_outside_the_documented_range_are_refused_at_parse_time(text):
    with pytest.raises(ValueError, match=r"maximum duration, 3650d|not a duration"):
        parse_duration(text)


# ---- logging settings: keys like any other, also asked before the profile is read --------

# (flags, env, .env, profile) -> log_level and its source; --debug > --quiet > --verbose.
LEVELS = [
    ({"--verbose": True, "--quiet": True}, {"MATOKIT_LOG_LEVEL": "debug"}, "", "error", "flag"),
    ({"--debug": True, "--quiet": True}, {}, "", "debug", "flag"),
    ({}, {"MATOKIT_LOG_LEVEL": "INFO"}, "MATOKIT_LOG_LEVEL=error", "info", "env"),
    ({}, {}, "MATOKIT_LOG_LEVEL=error", "error", ".env"),
    ({}, {}, "", "debug", "config file"),
]


@pytest.mark.parametrize(("flags", "env", "dotenv", "level", "source"), LEVELS)
def test_log_level_is_a_setting_with_a_source(tmp_path, flags, env, dotenv, level, source):
    path = write_config(tmp_path / "config.toml", '[profiles.default]\nlog_level = "debug"\n')
    Path(".env").write_text(dotenv + "\n")
    settings = resolve(flags, env={"MATOKIT_CONFIG": str(path), **env})
    assert (settings.log_level, settings.sources["log_level"]) == (level, source)


def test_logging_settings_come_from_the_profile_and_dotenv(tmp_path):
    path = write_config(
        tmp_path / "config.toml", '[profiles.default]\nlog_format = "json"\nlog_level = "info"\n'
    )
    settings = resolve({}, env={"MATOKIT_CONFIG": str(path)})
    assert (settings.log_format, settings.log_level) == ("json", "info")
    Path(".env").write_text("MATOKIT_LOG_FORMAT=text\n")
    settings = resolve({}, env={"MATOKIT_CONFIG": str(path)})
    assert (settings.log_format, settings.sources["log_format"]) == ("text", ".env")


def test_early_logging_reads_flag_env_and_dotenv_but_never_raises(tmp_path):
    Path(".env").write_text("MATOKIT_LOG_FORMAT=json\nMATOKIT_LOG_LEVEL=info\n")
    assert resolve_logging({}, env={}) == ("json", "info")
    assert resolve_logging({"--debug": True}, env={"MATOKIT_LOG_FORMAT": "TEXT"}) == (
        "text",
        "debug",
    )
    # A bad value or an unsafe .env is resolve()'s to report; early logging keeps defaults.
    assert resolve_logging({}, env={"MATOKIT_LOG_LEVEL": "loud"}) == ("json", "warning")
    Path(".env").write_text(f"MATOMO_TOKEN={SENTINEL_TOKEN}\nMATOKIT_LOG_FORMAT=json\n")
    Path(".env").chmod(0o644)
    assert resolve_logging({}, env={}) == ("text", "warning")


def test_locate_picks_config_and_profile_like_resolve(tmp_path):
    path = write_config(tmp_path / "c.toml", '[profiles.shop]\nurl = "https://s.example/"\n')
    Path(".env").write_text(f"MATOKIT_CONFIG={path}\nMATOKIT_PROFILE=shop\n")
    where = locate({}, env={"MATOKIT_CONFIG": "", "MATOKIT_PROFILE": ""})
    assert (where.config_path, where.profile) == (path, "shop")
    assert (where.config_source, where.profile_source) == (".env", ".env")
    settings = resolve({}, env={"MATOKIT_CONFIG": "", "MATOKIT_PROFILE": ""})
    assert (settings.config_path, settings.profile) == (path, "shop")
    assert locate({"--profile": "new"}, env={}).profile == "new"  # need not exist yet


# ---- one reader: no module but config.py reads the environment or .env -------------------

PACKAGE = Path(__file__).resolve().parent.parent / "matokit"
# Modules that may read the environment, and why: none of them reads a MATOKIT_/MATOMO_ name.
OTHER_READERS = {
    "cli/output.py": "NO_COLOR, the convention every terminal program honours, not a setting",
}


def _environment_reads(source: str) -> list[tuple[int, str]]:
    """(line, code) of every os.environ, getenv or dotenv use in a module."""
    import ast

    tree = ast.parse(source)
    lines = source.splitlines()
    found = []
    for node in ast.walk(tree):
        named = (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")) or (
            isinstance(node, ast.Name) and node.id in ("environ", "getenv")
        )
        imported = isinstance(node, ast.Import | ast.ImportFrom) and "dotenv" in ast.dump(node)
        if named or imported:
            found.append((node.lineno, lines[node.lineno - 1].strip()))
    return found


def test_only_config_reads_the_environment_and_dotenv():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name == "config.py":
            continue
        for line, code in _environment_reads(path.read_text()):
            ours = "MATOKIT_" in code or "MATOMO_" in code
            if name not in OTHER_READERS or ours:
                offenders.append(f"matokit/{name}:{line}: {code}")
    assert offenders == [], "ask matokit.config (resolve, locate, resolve_logging) instead"


def test_the_environment_scan_sees_each_way_of_reading():
    for code in (
        'import os\nos.environ.get("MATOKIT_LOG_LEVEL")',
        'from os import environ\nenviron["MATOMO_URL"]',
        'import os\nos.getenv("MATOKIT_CONFIG")',
        "from dotenv import dotenv_values",
    ):
        assert _environment_reads(code), code


def test_readme_configuration_names_every_setting_and_its_variable():
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    from matokit.config import KEYS

    missing = [k.name for k in KEYS if f"`{k.name}`" not in section]
    missing += [k.env for k in KEYS if k.env and f"`{k.env}`" not in section]
    assert missing == [], "document these in README.md, Configuration"
