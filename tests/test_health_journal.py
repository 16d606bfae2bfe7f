"""The journal health check and the durability it reads, against real files and real
redis-servers: every fault a clear CRITICAL, weak durability a WARNING, one metric schema."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from matokit.config import Settings, resolve
from matokit.health import STANDARD_CHECKS, CheckResult, Status, run_health
from matokit.health.journal import JOURNAL_METRICS
from matokit.journal import Journal, NewHit
from matokit.redisstore.connection import RedisTarget
from matokit.redisstore.durability import Durability, forget_durability, read_durability
from tests.redisserver import RedisServer
from tests.tlscert import needs_openssl, tls_server

NAMESPACE = "matokit:{default}"


@pytest.fixture(autouse=True)
def _fresh_durability() -> Iterator[None]:
    forget_durability()
    yield
    forget_durability()


def loader(tmp_path: Path, *, profile: str = "", **env: str) -> Callable[[], Settings]:
    """Settings from `env` and, when given, these lines of the default profile's config."""
    config = tmp_path / "config.toml"
    config.write_text(f"[profiles.default]\n{profile}\n")
    config.chmod(0o600)
    base = {
        "MATOKIT_CONFIG": str(config),
        "MATOKIT_DATA_DIR": str(tmp_path / "data"),
        **env,
    }
    return lambda: resolve(env=base, cwd=tmp_path)


def journal_check(tmp_path: Path, *, profile: str = "", **env: str) -> CheckResult:
    report = run_health(loader(tmp_path, profile=profile, **env), checks=("journal",), max_time=30)
    (check,) = report.checks
    assert tuple(check.metrics) == JOURNAL_METRICS == STANDARD_CHECKS["journal"].metrics
    return check


def configure(url: str, **settings: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        for name, value in settings.items():
            client.config_set(name.replace("_", "-"), value)
    finally:
        client.close()


# --- SQLite ------------------------------------------------------------------------------------


def test_sqlite_without_a_journal_yet_is_ok(tmp_path: Path) -> None:
    check = journal_check(tmp_path)
    assert check.status is Status.OK, check
    assert check.summary.startswith("no journal yet: the first queued hit creates ")
    assert check.metrics == {
        "usable": 1,
        "durable": 1,
        "evicts_keys": 0,
        "replicas": None,
        "latency_seconds": None,
    }
    assert check.info["backend"] == "sqlite"
    assert not (tmp_path / "data").exists()  # never creates anything


def test_sqlite_journal_usable_is_ok(tmp_path: Path) -> None:
    settings = loader(tmp_path)()
    with Journal(settings.journal_path) as journal:
        journal.enqueue([NewHit("k", {"idsite": "1", "url": "https://x/"}, 1.0)])
    check = journal_check(tmp_path)
    assert check.status is Status.OK, check
    assert check.summary.startswith(f"journal file {settings.journal_path} usable (")
    assert check.metrics["usable"] == 1 and check.metrics["durable"] == 1
    assert check.metrics["latency_seconds"] is not None


def test_a_file_that_is_not_a_journal_is_critical_and_left_alone(tmp_path: Path) -> None:
    path = loader(tmp_path)().journal_path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database at all" * 10)
    check = journal_check(tmp_path)
    assert check.status is Status.CRITICAL, check
    assert "not a SQLite database" in check.summary and check.metrics["usable"] == 0
    assert check.hint and "move it aside" in check.hint
    assert path.read_bytes() == b"not a database at all" * 10


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_data_directory_that_cannot_be_written_is_critical(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        check = journal_check(tmp_path, MATOKIT_DATA_DIR=str(locked / "data"))
    finally:
        locked.chmod(0o700)
    assert check.status is Status.CRITICAL and "not writable" in check.summary, check


def test_a_data_directory_under_a_file_is_critical(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    check = journal_check(tmp_path, MATOKIT_DATA_DIR=str(blocker / "data"))
    assert check.status is Status.CRITICAL, check
    assert check.metrics["usable"] == 0


# --- Redis: durability --------------------------------------------------------------------------


def test_redis_with_aof_always_and_noeviction_is_ok(tmp_path: Path, redis_url: str) -> None:
    check = journal_check(tmp_path, MATOKIT_REDIS_URL=redis_url)
    assert check.status is Status.OK, check
    assert check.summary.startswith(f"journal on Redis at {redis_url}: AOF with appendfsync ")
    assert check.metrics["usable"] == 1 and check.metrics["durable"] == 1
    assert check.metrics["evicts_keys"] == 0 and check.metrics["replicas"] == 0
    assert check.info == {
        "backend": "redis",
        "location": redis_url,
        "appendonly": "yes",
        "appendfsync": "always",
        "maxmemory_policy": "noeviction",
    }


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"appendfsync": "everysec"}, "appendfsync everysec: a crash of the Redis host"),
        ({"appendonly": "no"}, "AOF is off (appendonly no)"),
    ],
)
def test_redis_that_may_lose_the_last_writes_is_a_warning(
    tmp_path: Path, redis_url: str, settings: dict[str, str], says: str
) -> None:
    configure(redis_url, **settings)
    check = journal_check(tmp_path, MATOKIT_REDIS_URL=redis_url)
    assert check.status is Status.WARNING, check
    assert says in check.summary
    assert check.metrics["durable"] == 0 and check.metrics["usable"] == 1
    assert check.hint and "CONFIG SET" in check.hint


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_redis_that_may_evict_keys_is_critical(tmp_path: Path, redis_url: str, policy: str) -> None:
    configure(redis_url, maxmemory="512mb", maxmemory_policy=policy)
    check = journal_check(tmp_path, MATOKIT_REDIS_URL=redis_url)
    assert check.status is Status.CRITICAL, check
    assert f"maxmemory-policy {policy} (maxmemory 536870912) lets Redis evict keys" in (
        check.summary
    )
    assert check.metrics["evicts_keys"] == 1
    assert check.hint and "noeviction" in check.hint


def test_a_server_refusing_config_is_a_warning_not_an_error(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # As managed services do: the ACL forbids CONFIG (or the command is renamed).
    client = redis.Redis.from_url(redis_server.url)
    client.execute_command("ACL", "SETUSER", "default", "-config")
    client.close()
    target = RedisTarget(url=redis_server.url, namespace=NAMESPACE)
    found = read_durability(target)
    assert not found.known and found.fsync_always is None and found.evicts is None
    check = journal_check(tmp_path, MATOKIT_REDIS_URL=redis_server.url)
    assert check.status is Status.WARNING, check
    assert "durability unknown: the server refuses CONFIG GET" in check.summary
    assert check.metrics["durable"] is None and check.metrics["evicts_keys"] is None
    assert check.metrics["usable"] == 1


def test_durability_is_read_once_per_process_and_minute(redis_url: str) -> None:
    target = RedisTarget(url=redis_url, namespace=NAMESPACE)
    first = read_durability(target)
    configure(redis_url, appendfsync="everysec")
    assert read_durability(target) == first  # cached
    assert read_durability(target, max_age=0).appendfsync == "everysec"


def test_durability_problems_name_the_fix() -> None:
    assert Durability("yes", "always", "noeviction", 0).problems() == []
    (problem,) = Durability("yes", "no", "noeviction", 0).problems()
    assert not problem.critical and "appendfsync no" in problem.text
    evicting = Durability("no", "everysec", "allkeys-lfu", 0).problems()
    assert [p.critical for p in evicting] == [True, False]
    assert "no maxmemory yet" in evicting[0].text


def test_fewer_replicas_than_redis_min_replicas_is_critical(tmp_path: Path, redis_url: str) -> None:
    check = journal_check(tmp_path, MATOKIT_REDIS_URL=redis_url, profile="redis_min_replicas = 1")
    assert check.status is Status.CRITICAL, check
    assert "redis_min_replicas is 1 but the server has 0 connected replica(s)" in check.summary


def test_a_connected_replica_counts(redis_server: RedisServer, tmp_path: Path) -> None:
    replica = RedisServer(tmp_path / "replica", replicaof=f"127.0.0.1 {redis_server.port}").start()
    try:
        client = redis.Redis.from_url(redis_server.url)
        for _ in range(200):
            if client.info("replication").get("connected_slaves"):
                break
            __import__("time").sleep(0.05)
        client.close()
        check = journal_check(
            tmp_path, MATOKIT_REDIS_URL=redis_server.url, profile="redis_min_replicas = 1"
        )
    finally:
        replica.stop()
    assert check.status is Status.OK, check
    assert check.metrics["replicas"] == 1


# --- Redis: faults, each CRITICAL with what and how to fix it ----------------------------------


def test_redis_down_is_critical(tmp_path: Path) -> None:
    down = RedisServer(tmp_path / "never-started")
    check = journal_check(tmp_path, MATOKIT_REDIS_URL=down.url)
    assert check.status is Status.CRITICAL, check
    assert f"cannot write a probe key on Redis at {down.url}: Redis is unreachable" in (
        check.summary
    )
    assert check.hint and "redis_url" in check.hint
    assert check.metrics == dict.fromkeys(JOURNAL_METRICS) | {"usable": 0}


def test_a_wrong_password_is_critical_and_never_shown(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r", requirepass="right-pass-1").start()
    try:
        url = f"redis://:wrong-pass-77@127.0.0.1:{server.port}/0"
        check = journal_check(tmp_path, MATOKIT_REDIS_URL=url)
    finally:
        server.stop()
    assert check.status is Status.CRITICAL, check
    assert "Redis refused the credentials" in check.summary
    shown = check.summary + (check.hint or "") + str(dict(check.info))
    assert "wrong-pass-77" not in shown and "right-pass-1" not in shown


def test_a_read_only_replica_is_critical(redis_server: RedisServer, tmp_path: Path) -> None:
    replica = RedisServer(tmp_path / "replica", replicaof=f"127.0.0.1 {redis_server.port}").start()
    try:
        check = journal_check(tmp_path, MATOKIT_REDIS_URL=replica.url)
    finally:
        replica.stop()
    assert check.status is Status.CRITICAL, check
    assert "the server is a read-only replica" in check.summary
    assert check.hint and "primary" in check.hint


def test_out_of_memory_is_critical(redis_server: RedisServer, tmp_path: Path) -> None:
    configure(redis_server.url, maxmemory_policy="noeviction", maxmemory="1")
    check = journal_check(tmp_path, MATOKIT_REDIS_URL=redis_server.url)
    assert check.status is Status.CRITICAL, check
    assert "Redis is out of memory and refuses writes" in check.summary


@pytest.mark.parametrize(
    ("key", "kind"),
    [("pause", "list"), ("token:rejected", "string"), ("flush:lock", "hash")],
)
def test_another_programs_key_under_the_prefix_is_critical(
    tmp_path: Path, redis_url: str, key: str, kind: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    full = f"{NAMESPACE}:{key}"
    {"list": lambda: client.rpush(full, "x"), "string": lambda: client.set(full, "x"),
     "hash": lambda: client.hset(full, "x", "y")}[kind]()  # fmt: skip
    client.close()
    check = journal_check(tmp_path, MATOKIT_REDIS_URL=redis_url)
    assert check.status is Status.CRITICAL, check
    assert f"{full} under the profile's prefix is a {kind}" in check.summary
    assert check.metrics["usable"] == 0
    assert check.hint and "redis_prefix" in check.hint


@needs_openssl
def test_a_tls_failure_is_critical(tmp_path: Path) -> None:
    server, tls_port = tls_server(tmp_path)
    try:
        # The server's certificate is self-signed: nothing this client trusts.
        check = journal_check(tmp_path, MATOKIT_REDIS_URL=f"rediss://127.0.0.1:{tls_port}/0")
    finally:
        server.stop()
    assert check.status is Status.CRITICAL, check
    assert "the TLS handshake failed" in check.summary
    assert check.hint and "certificate" in check.hint
