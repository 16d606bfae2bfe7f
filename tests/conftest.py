"""Shared fixtures: every test runs with its own config, cache and data directories."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.fakematomo.fixtures", "tests.redisserver", "tests.journals"]

# Sentinel used by leak tests: a token that must never appear anywhere MatoKit writes.
SENTINEL_TOKEN = "5e" + "c0ffee" * 5


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point HOME, XDG dirs and MatoKit's dirs at tmp_path; clear MATOMO_*/MATOKIT_*."""
    for name in list(os.environ):
        if name.startswith(("MATOMO_", "MATOKIT_")):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("NO_COLOR", "1")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    from matokit.redact import forget_secrets

    forget_secrets()
    yield tmp_path
    forget_secrets()
