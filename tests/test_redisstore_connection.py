"""The Redis connection against a real redis-server: settings, namespace, and each failure as
a StorageError that names the problem and the fix (never the password)."""

from __future__ import annotations

from pathlib import Path

import pytest

from matokit.config import resolve
from matokit.errors import ConfigError, StorageError
from matokit.redisstore.connection import RedisTarget, redis_errors
from tests.redisserver import RedisServer


def settings_for(tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    return resolve(env={"MATOKIT_CONFIG": str(tmp_path / "none.toml"), **env}, cwd=tmp_path)


def test_no_redis_url_means_no_target(tmp_path: Path) -> None:
    assert RedisTarget.from_settings(settings_for(tmp_path)) is None


def test_namespace_is_per_profile_with_one_hash_tag(tmp_path: Path, redis_url: str) -> None:
    target = RedisTarget.from_settings(settings_for(tmp_path, MATOKIT_REDIS_URL=redis_url))
    assert target is not None
    assert target.namespace == "matokit:{default}"
    assert target.keys.journal("entries") == "matokit:{default}:journal:entries"
    with redis_errors(target, "ping"):
        assert target.client().ping()


@pytest.mark.parametrize("url", ["http://x", "redis://", "localhost:6379"])
def test_a_bad_redis_url_is_a_config_error(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="MATOKIT_REDIS_URL"):
        settings_for(tmp_path, MATOKIT_REDIS_URL=url)


def test_redis_down_is_a_storage_error_with_a_fix(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r")  # never started: nothing listens on its port
    target = RedisTarget.from_settings(settings_for(tmp_path, MATOKIT_REDIS_URL=server.url))
    assert target is not None
    with (
        pytest.raises(StorageError, match="unreachable") as caught,
        redis_errors(target, "read the journal"),
    ):
        target.client().ping()
    assert "redis_url" in (caught.value.hint or "")


def test_a_wrong_password_is_named_and_never_shown(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r", requirepass="s3cret-pass").start()
    try:
        url = f"redis://:wrong-pass-42@127.0.0.1:{server.port}/0"
        target = RedisTarget.from_settings(settings_for(tmp_path, MATOKIT_REDIS_URL=url))
        assert target is not None
        with (
            pytest.raises(StorageError, match="credentials") as caught,
            redis_errors(target, "read the journal"),
        ):
            target.client().ping()
        assert "wrong-pass-42" not in str(caught.value)
        ok = RedisTarget.from_settings(
            settings_for(
                tmp_path,
                MATOKIT_REDIS_URL=server.url,
                MATOKIT_REDIS_PASSWORD="s3cret-pass",
            )
        )
        assert ok is not None and ok.client().ping()
    finally:
        server.stop()


def test_wrongtype_under_the_prefix(tmp_path: Path, redis_url: str) -> None:
    target = RedisTarget.from_settings(settings_for(tmp_path, MATOKIT_REDIS_URL=redis_url))
    assert target is not None
    client = target.client()
    client.set(target.keys.pause, "x")
    with (
        pytest.raises(StorageError, match="another kind of value"),
        redis_errors(target, "read the pause"),
    ):
        client.hgetall(target.keys.pause)
