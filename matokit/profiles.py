"""Profiles as files: describe the resolved settings, list profiles, write a profile.

Writing never puts a token in the config file: the token goes to its own 0600 file next to
it, and the profile names that file. Whole files are replaced atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from matokit.config import (
    DEFAULT,
    FILE,
    FLAG,
    KEYS,
    KEYS_BY_NAME,
    Key,
    Settings,
    check_transport,
    check_unknown_keys,
    load_config_file,
    locate,
    parse_setting,
)
from matokit.errors import ConfigError, InsecureURLError, StorageError
from matokit.private_files import make_private_dir, write_atomic
from matokit.redact import display_url
from matokit.urls import normalize_url


def describe_settings(settings: Settings) -> dict[str, Any]:
    """Every resolved value with its source; the token only as set/missing and from where."""
    shown: dict[str, dict[str, Any]] = {}
    for key in KEYS:
        value = getattr(settings, key.name)
        if key.name == "url":
            value = display_url(value)
        elif key.name == "redis_url" and value:
            value = display_url(value) or "(set, not shown)"  # never its password
        shown[key.name] = {
            "value": str(value) if isinstance(value, Path) else value,
            "source": settings.sources.get(key.name, DEFAULT),
        }
    source = settings.token_source
    return {
        "profile": settings.profile,
        "profile_source": settings.sources.get("profile", DEFAULT),
        "config_file": str(settings.config_path),
        "config_file_state": "found" if settings.config_exists else "not found",
        "token": {
            "state": "set" if source else "missing",
            "source": source.describe() if source else None,
        },
        "settings": shown,
        "journal": _journal_location(settings),
        "cache": _cache_location(settings),
    }


def _journal_location(settings: Settings) -> str:
    from matokit.journal.opening import journal_location

    return journal_location(settings)


def _cache_location(settings: Settings) -> str:
    """The report cache: its file, or on Redis the server (no password) and key prefix."""
    if not settings.redis_url:
        return str(settings.cache_path)
    from matokit.redact import redact
    from matokit.redisstore.answers import cache_prefix

    server = display_url(settings.redis_url) or redact(settings.redis_url)
    return f"{server} {cache_prefix(settings.redis_namespace)}:*"


def list_profiles(settings: Settings) -> list[dict[str, Any]]:
    """The profiles of the config file, the active one marked."""
    profiles = load_config_file(settings.config_path).get("profiles", {})
    rows = []
    for name in sorted(profiles):
        section = profiles[name]
        token_key = next(
            (k for k in ("token_file", "token_command", "token_env", "token") if k in section),
            None,
        )
        rows.append(
            {
                "name": name,
                "active": name == settings.profile,
                "url": display_url(str(section["url"])) if section.get("url") else None,
                "site_id": section.get("site_id"),
                "token": token_key or "none",
            }
        )
    return rows


@dataclass(frozen=True)
class InitResult:
    """What `config init` wrote."""

    profile: str
    config_path: Path
    token_path: Path | None


def init_profile(
    flags: Mapping[str, Any], *, updates: Mapping[str, Any], token: str | None
) -> InitResult:
    """Create or update the selected profile; store a given token in a 0600 token file."""
    import tomli_w

    # The profile and the config file may not exist yet: only where they are is looked up.
    where = locate(flags)
    profile, config_path = where.profile, where.config_path
    document = load_config_file(config_path)
    section = dict(document.setdefault("profiles", {}).get(profile, {}))
    for name, value in updates.items():
        if value is None:
            continue
        parsed = parse_setting(
            _init_key(name), value, source=FLAG, config_path=config_path, profile=profile
        )
        section[name] = str(parsed) if isinstance(parsed, Path) else parsed
    check_profile(section, profile=profile, config_path=config_path)
    token_path: Path | None = None
    if token is not None:
        if any(ch.isspace() for ch in token) or not token:
            raise ConfigError("The token is empty or contains whitespace.", hint="Paste it again.")
        token_path = config_path.parent / "tokens" / f"{profile}.token"
        _write_private(token_path, token + "\n")
        for key in ("token", "token_env", "token_command"):
            section.pop(key, None)
        section["token_file"] = str(token_path)
    document["profiles"][profile] = section
    _write_private(config_path, tomli_w.dumps(document))
    return InitResult(profile=profile, config_path=config_path, token_path=token_path)


def _init_key(name: str) -> Key:
    """The setting, named by the `config init` option that sets it (for error messages)."""
    key = KEYS_BY_NAME[name]
    return replace(key, flag=key.flag or "--" + name.replace("_", "-"))


def check_profile(section: Mapping[str, Any], *, profile: str, config_path: Path) -> None:
    """Refuse a profile that no command could use, by the rules every command applies.

    Every value must parse, a URL must be set, and it must not send the token in clear.
    """
    check_unknown_keys(section, profile, config_path)
    for name, raw in section.items():
        if name in KEYS_BY_NAME:
            parse_setting(
                KEYS_BY_NAME[name], raw, source=FILE, config_path=config_path, profile=profile
            )
    url = section.get("url")
    if not url:
        raise ConfigError(
            f"Profile {profile!r} would have no Matomo URL; nothing was written.",
            hint=f"Pass --url, e.g. `matokit --profile {profile} config init "
            "--url https://analytics.example.com/`.",
        )
    allowed = bool(section.get("allow_insecure_http"))
    try:
        check_transport(normalize_url(url), allow_insecure_http=allowed)
    except InsecureURLError as exc:
        raise InsecureURLError(
            f"{exc.message} Nothing was written.",
            hint="Use https://, or pass --allow-insecure-http if the network is trusted.",
        ) from None


def _write_private(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`, mode 0600, parent directories 0700."""
    try:
        make_private_dir(path.parent)
        write_atomic(path, text, mode=0o600)
    except OSError as exc:
        raise StorageError(
            f"Cannot write {path}: {exc.strerror}.",
            path=str(path),
            hint=f"Check that {path.parent} is writable by you.",
        ) from None
