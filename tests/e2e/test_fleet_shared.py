"""A fleet on one Redis, with the installed `matokit`: "hosts" are separate HOME and data
directories sharing one `redis_url`. Rejected-token memory, Matomo's pause and the flush lock
are shared by every host; Redis faults are clear errors (exit 74, `health` CRITICAL); `track`
keeps a hit it could neither deliver nor journal on stderr.

The token and pause tests need no journal (`health`, `api`, `queue status`); the flush tests
queue hits with `track --queue` first, which works on either journal backend. The tests marked
`needs_redis_journal` need the journal itself on Redis (helper "rjournal"): until it is built
they are expected to fail (strict xfail), and they run as ordinary tests once it is.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis

import tests.fakematomo.tracking as fake_tracking
from tests.e2e.conftest import Result, RunMatokit, SpawnMatokit
from tests.fakematomo import FakeMatomo, Fault
from tests.redisserver import RedisServer
from tests.tlscert import needs_openssl, tls_server

STALE_TOKEN = "0badc0de" * 4
NAMESPACE = "matokit:{default}"

needs_redis_journal = pytest.mark.xfail(
    importlib.util.find_spec("matokit.redisstore.journal") is None,
    reason="needs the journal on Redis (helper rjournal's matokit.redisstore.journal)",
    strict=True,
)


def host_env(root: Path, name: str, redis_url: str, *, profile: str = "") -> dict[str, str]:
    """One "host": its own HOME, config, cache and data directories; the fleet's Redis."""
    home = root / "hosts" / name
    config = home / ".config" / "matokit" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"[profiles.default]\n{profile}\n")
    config.chmod(0o600)
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "MATOKIT_CONFIG": str(config),
        "MATOKIT_CACHE_DIR": str(home / ".cache" / "matokit"),
        "MATOKIT_DATA_DIR": str(home / ".local" / "share" / "matokit"),
        "MATOKIT_REDIS_URL": redis_url,
    }


def fleet(
    tmp_path: Path, redis_url: str, env: Mapping[str, str], *, count: int = 4, profile: str = ""
) -> list[dict[str, str]]:
    """The environments of `count` hosts pointed at the fake Matomo and one Redis."""
    return [
        {**env, **host_env(tmp_path, f"host{n}", redis_url, profile=profile)} for n in range(count)
    ]


def tracking_requests(fake: FakeMatomo) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("matomo.php"))


def queue_events(run: RunMatokit, env: dict[str, str], prefix: str, count: int) -> None:
    lines = "".join(
        json.dumps({"type": "event", "category": "fleet", "action": "a", "id": f"{prefix}{i}"})
        + "\n"
        for i in range(count)
    )
    result = run("track", "import", "-", "--queue", input=lines, env=env)
    assert result.code == 0, result


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> Result:
    out, err = proc.communicate(timeout=timeout)
    return Result(proc.returncode, out, err, tuple(str(a) for a in proc.args))


# --- the rejected-token memory ------------------------------------------------------------------


def test_a_stale_token_across_four_hosts_reaches_matomo_once_per_cool_down_in_total(
    tmp_path: Path,
    redis_url: str,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
) -> None:
    hosts = fleet(
        tmp_path,
        redis_url,
        {**env, "MATOMO_TOKEN": STALE_TOKEN},
        profile='token_cooldown = "2s"',
    )
    # Two hosts ask through the health check, two through the API command: each run sends
    # the token at most once, all four start together, round after round.
    commands = [
        ("health", "--check", "api", "--format", "json"),
        ("api", "API.getMatomoVersion"),
    ]
    started = time.monotonic()
    codes: Counter[int] = Counter()
    rounds = 0
    while time.monotonic() - started < 10:
        procs = [spawn_matokit(*commands[n % 2], env=host) for n, host in enumerate(hosts)]
        for proc in procs:
            result = finish(proc)
            codes[result.code] += 1
            assert STALE_TOKEN not in result.output
        rounds += 1
    elapsed = time.monotonic() - started
    with_stale = [r for r in fake_matomo.requests if STALE_TOKEN.encode() in r.body]
    bound = int(elapsed / 2.0) + 1
    print(
        f"\n[fleet stale token] {rounds} rounds of 4 hosts in {elapsed:.1f}s (exit codes "
        f"{dict(codes)}); invalid-token requests reaching Matomo: {len(with_stale)} (cool-down "
        f"2 s -> at most {bound}); failed logins: {fake_matomo.failed_logins}"
    )
    assert set(codes) <= {2, 77}  # health CRITICAL; api: the token is refused
    assert 1 <= len(with_stale) <= bound
    assert sum(fake_matomo.failed_logins.values()) == len(with_stale) < 20
    stored = redis.Redis.from_url(redis_url)
    try:
        memory = stored.hgetall(f"{NAMESPACE}:token:rejected")
    finally:
        stored.close()
    assert memory and STALE_TOKEN.encode() not in b"".join(k + v for k, v in memory.items())
    # Each host's own file stays empty: the memory is on Redis.
    for host in hosts:
        assert not (Path(host["MATOKIT_DATA_DIR"]) / "default" / "rejected-token.json").exists()


def test_a_changed_token_is_used_at_once_on_every_host(
    tmp_path: Path,
    redis_url: str,
    run_matokit: RunMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
) -> None:
    a, b = fleet(tmp_path, redis_url, env, count=2)
    stale = run_matokit("api", "API.getMatomoVersion", env={**a, "MATOMO_TOKEN": STALE_TOKEN})
    assert stale.code == 77, stale
    cooling = run_matokit("api", "API.getMatomoVersion", env={**b, "MATOMO_TOKEN": STALE_TOKEN})
    assert cooling.code == 77 and "will not send it again until" in cooling.stderr, cooling
    good = run_matokit("api", "API.getMatomoVersion", env=b)
    assert good.code == 0, good
    assert sum(1 for r in fake_matomo.requests if STALE_TOKEN.encode() in r.body) == 1


# --- Matomo's pause -------------------------------------------------------------------------------


def test_one_429_with_retry_after_on_host_a_pauses_host_b(
    tmp_path: Path,
    redis_url: str,
    run_matokit: RunMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
) -> None:
    a, b, c = fleet(tmp_path, redis_url, env, count=3)
    fake_matomo.add_fault(Fault(endpoint="tracking", status=429, retry_after="120", times=1))
    first = run_matokit("track", "event", "--category", "c", "--action", "a", env=a)
    assert first.code == 75, first
    assert tracking_requests(fake_matomo) == 1
    # Host B never talked to Matomo, and still holds back: the pause is the fleet's.
    track = run_matokit("track", "event", "--category", "c", "--action", "b", env=b)
    assert track.code == 75, track
    assert "no requests before" in track.stderr
    health = run_matokit("health", "--check", "tracking", "--format", "json", env=b)
    assert health.code == 1, health
    (check,) = json.loads(health.stdout)["checks"]
    assert check["summary"].startswith("tracking paused, probe not sent")
    flush = run_matokit("queue", "flush", "--all", "--format", "json", env=b)
    assert flush.code == 75, flush
    record = json.loads(flush.stdout)
    assert record["stopped_reason"] == "rate_limited" and record["requests"] == 0
    status = json.loads(run_matokit("queue", "status", "--format", "json", env=c).stdout)
    assert status["paused_until"] == pytest.approx(record["paused_until"], abs=0.01)
    assert status["pause"]["status"] == 429 and 0 < status["pause"]["remaining"] <= 120
    assert tracking_requests(fake_matomo) == 1
    for host in (a, b, c):  # kept on Redis, not in a host's file
        assert not (Path(host["MATOKIT_DATA_DIR"]) / "default" / "server-pause.json").exists()


# --- the flush lock -------------------------------------------------------------------------------


@pytest.fixture
def in_flight() -> Iterator[dict[str, int]]:
    """Counts the fake Matomo's bulk tracking requests being answered at once (max)."""
    original = fake_tracking.handle_bulk
    seen = {"now": 0, "max": 0, "total": 0}
    lock = threading.Lock()

    def counting(*args: Any, **kwargs: Any) -> Any:
        with lock:
            seen["now"] += 1
            seen["total"] += 1
            seen["max"] = max(seen["max"], seen["now"])
        try:
            time.sleep(0.03)  # widen the window in which two flushers would overlap
            return original(*args, **kwargs)
        finally:
            with lock:
                seen["now"] -= 1

    fake_tracking.handle_bulk = counting
    try:
        yield seen
    finally:
        fake_tracking.handle_bulk = original


def test_flushers_on_two_hosts_never_hold_the_lock_at_once(
    tmp_path: Path,
    redis_url: str,
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    in_flight: dict[str, int],
) -> None:
    a, b = fleet(tmp_path, redis_url, env, count=2)
    queue_events(run_matokit, a, "a", 60)
    queue_events(run_matokit, b, "b", 60)
    flushers = [
        spawn_matokit("queue", "flush", "--wait", "--batch-size", "5", "--format", "json", env=host)
        for host in (a, b, a, b)
    ]
    results = [finish(proc) for proc in flushers]
    for result in results:
        assert result.code == 0, result
    delivered = sum(json.loads(r.stdout)["delivered"] for r in results)
    print(
        f"\n[fleet lock] 4 flushers on 2 hosts: {in_flight['total']} bulk requests, at most "
        f"{in_flight['max']} at once; delivered {delivered}"
    )
    assert in_flight["max"] == 1  # one flusher at a time across both hosts
    assert delivered == 120
    assert Counter(h.get("e_a") for h in fake_matomo.hits) == Counter({"a": 120})


def test_a_flush_on_another_host_says_who_holds_the_lock(
    tmp_path: Path,
    redis_url: str,
    run_matokit: RunMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
) -> None:
    (b,) = fleet(tmp_path, redis_url, env, count=1)
    queue_events(run_matokit, b, "b", 3)
    # Another host's flusher: holds the lock on the fleet's Redis.
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, redis_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        busy = run_matokit("queue", "flush", env=b)
        assert busy.code == 0, busy
        assert "another queue flush is running for this profile (pid " in busy.stderr
        assert f"pid {holder.pid} on host " in busy.stderr
        assert f"key {NAMESPACE}:flush:lock" in busy.stderr
        gave_up = run_matokit("queue", "flush", "--wait-timeout", "0.3s", env=b)
        assert gave_up.code == 75, gave_up
        assert "after waiting 0.3s" in gave_up.stderr and f"pid {holder.pid}" in gave_up.stderr
        assert tracking_requests(fake_matomo) == 0
    finally:
        holder.kill()
        holder.communicate(timeout=10)
    # The holder died without releasing: the lease runs out, a waiting flush gets the lock.
    done = run_matokit("queue", "flush", "--wait-timeout", "60s", env=b, timeout=90)
    assert done.code == 0, done
    assert len(fake_matomo.hits) == 3


_HOLDER = """
import sys, time
from matokit.redisstore.connection import RedisTarget
from matokit.redisstore.lock import redis_flush_lock
target = RedisTarget(url=sys.argv[1], namespace="matokit:{default}")
with redis_flush_lock(target, wait=False, lease=1.0):
    print("locked", flush=True)
    time.sleep(600)
"""


# --- Redis faults: a clear message, exit 74; `health` CRITICAL -----------------------------------


def _break(kind: str, server: RedisServer, tmp_path: Path) -> tuple[str, RedisServer | None]:
    """Break the fleet's Redis as `kind` says; the URL the host then uses (and a server to
    stop afterwards)."""
    url = server.url
    if kind == "down":
        server.kill()
        return url, None
    if kind == "wrong password":
        client = redis.Redis.from_url(url)
        client.config_set("requirepass", "the-right-one-42")
        client.close()
        return f"redis://:not-the-password-42@127.0.0.1:{server.port}/0", None
    if kind == "read-only replica":
        replica = RedisServer(tmp_path / "replica", replicaof=f"127.0.0.1 {server.port}").start()
        _wait_for_sync(replica)
        return replica.url, replica
    client = redis.Redis.from_url(url)
    try:
        if kind == "out of memory":
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", "1")
        else:  # another program's key under the prefix
            client.hset(f"{NAMESPACE}:flush:lock", "owner", "someone else")
    finally:
        client.close()
    return url, None


def _wait_for_sync(replica: RedisServer) -> None:
    client = redis.Redis.from_url(replica.url)
    try:
        for _ in range(400):
            if client.info("replication").get("master_link_status") == "up":
                return
            time.sleep(0.025)
    finally:
        client.close()
    pytest.fail("the replica never synced with its primary")


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("down", "Redis is unreachable"),
        ("wrong password", "Redis refused the credentials"),
        ("read-only replica", "the server is a read-only replica"),
        ("out of memory", "Redis is out of memory and refuses writes"),
        ("wrong type", "a key under the profile's prefix holds another kind of value"),
    ],
)
def test_a_broken_redis_is_a_clear_error_with_exit_74_and_health_critical(
    tmp_path: Path,
    redis_server: RedisServer,
    run_matokit: RunMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    kind: str,
    says: str,
) -> None:
    (host,) = fleet(tmp_path, redis_server.url, env, count=1)
    queue_events(run_matokit, host, "f", 3)
    url, extra = _break(kind, redis_server, tmp_path)
    broken = {**host, "MATOKIT_REDIS_URL": url}
    try:
        flush = run_matokit("queue", "flush", env=broken)
        health = run_matokit("health", "--check", "journal", "--format", "json", env=broken)
    finally:
        if extra is not None:
            extra.stop()
    assert flush.code == 74, flush
    assert "matokit: error: cannot " in flush.stderr and says in flush.stderr, flush
    assert "Traceback" not in flush.output
    assert "not-the-password-42" not in flush.output + health.output
    assert health.code == 2, health
    (check,) = json.loads(health.stdout)["checks"]
    assert check["status"] == "CRITICAL" and check["metrics"]["usable"] == 0
    assert tracking_requests(fake_matomo) == 0


@needs_openssl
def test_a_tls_failure_is_a_clear_error_with_exit_74_and_health_critical(
    tmp_path: Path, run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str]
) -> None:
    server, tls_port = tls_server(tmp_path / "redis")
    try:
        (host,) = fleet(tmp_path, server.url, env, count=1)
        queue_events(run_matokit, host, "t", 3)
        # Same server, through its TLS port: its self-signed certificate is not trusted.
        broken = {**host, "MATOKIT_REDIS_URL": f"rediss://127.0.0.1:{tls_port}/0"}
        flush = run_matokit("queue", "flush", env=broken)
        health = run_matokit("health", "--check", "journal", "--format", "json", env=broken)
    finally:
        server.stop()
    assert flush.code == 74, flush
    assert "the TLS handshake failed" in flush.stderr and "Traceback" not in flush.output
    assert health.code == 2, health
    assert json.loads(health.stdout)["checks"][0]["status"] == "CRITICAL"
    assert tracking_requests(fake_matomo) == 0


# --- track when the journal cannot be used and Matomo fails too ----------------------------------


def _unsent(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


def test_track_with_an_unusable_journal_and_matomo_down_prints_the_hit_and_exits_74(
    tmp_path: Path, run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    bad = {**env, "MATOKIT_DATA_DIR": str(blocker / "data")}
    fake_matomo.add_fault(Fault(endpoint="tracking", status=503))
    failed = run_matokit(
        "track", "pageview", "--url", "https://example.org/kept", "--idempotency-key", "k-1",
        env=bad,
    )  # fmt: skip
    assert failed.code == 74, failed
    (line,) = _unsent(failed)
    assert line["id"] == "k-1" and line["params"]["url"] == "https://example.org/kept"
    assert "NOT delivered" in failed.stderr and "track import" in failed.stderr
    assert env["MATOMO_TOKEN"] not in failed.output
    # The caller replays the line later: delivered once, however often it is replayed.
    fake_matomo.clear_faults()
    replay = json.dumps(line) + "\n"
    for _ in range(2):
        again = run_matokit("track", "import", "-", input=replay, env=env)
        assert again.code == 0, again
    assert [h["url"] for h in fake_matomo.hits] == ["https://example.org/kept"]


def test_track_in_json_log_mode_carries_the_hit_in_the_log_object(
    tmp_path: Path, run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    bad = {**env, "MATOKIT_DATA_DIR": str(blocker / "data"), "MATOKIT_LOG_FORMAT": "json"}
    fake_matomo.add_fault(Fault(endpoint="tracking", status=503))
    failed = run_matokit("track", "event", "--category", "c", "--action", "a", env=bad)
    assert failed.code == 74, failed
    lines = [json.loads(line) for line in failed.stderr.splitlines()]
    (kept,) = [line["unsent_hit"] for line in lines if "unsent_hit" in line]
    assert kept["params"]["e_c"] == "c" and kept["id"]


def test_track_with_redis_down_still_sends_to_matomo(
    tmp_path: Path,
    redis_server: RedisServer,
    run_matokit: RunMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
) -> None:
    (host,) = fleet(tmp_path, redis_server.url, env, count=1)
    redis_server.kill()
    sent = run_matokit("track", "event", "--category", "c", "--action", "down", env=host)
    assert sent.code == 0, sent
    assert [h.get("e_a") for h in fake_matomo.hits] == ["down"]


@needs_redis_journal
def test_track_with_redis_down_and_matomo_down_prints_the_hit_and_exits_74(
    tmp_path: Path,
    redis_server: RedisServer,
    run_matokit: RunMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
) -> None:
    (host,) = fleet(tmp_path, redis_server.url, env, count=1)
    redis_server.kill()
    fake_matomo.add_fault(Fault(endpoint="tracking", status=503))
    failed = run_matokit("track", "event", "--category", "c", "--action", "kept", env=host)
    assert failed.code == 74, failed
    assert "Redis is unreachable" in failed.stderr and "NOT queued" in failed.stderr
    (line,) = _unsent(failed)
    assert line["params"]["e_a"] == "kept"
    assert tracking_requests(fake_matomo) == 1  # Matomo was tried


@needs_redis_journal
def test_a_flush_on_one_host_delivers_what_every_host_queued_once(
    tmp_path: Path,
    redis_url: str,
    run_matokit: RunMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
) -> None:
    hosts = fleet(tmp_path, redis_url, env)
    for n, host in enumerate(hosts):
        queue_events(run_matokit, host, f"h{n}-", 25)
    flush = run_matokit("queue", "flush", "--all", "--format", "json", env=hosts[3])
    assert flush.code == 0, flush
    assert json.loads(flush.stdout)["delivered"] == 100
    assert len(fake_matomo.hits) == 100
