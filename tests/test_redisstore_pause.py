"""Matomo's pause on a real redis-server: one Retry-After pauses every host of the profile."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from matokit.client import MatomoClient
from matokit.errors import RateLimitedError, ServerPausedError
from matokit.hits import pageview
from matokit.redisstore.connection import RedisTarget
from matokit.redisstore.fallback import forget_failures
from matokit.redisstore.pause import RedisServerPause
from matokit.serverpause import MAX_PAUSE, Pause, ServerPause
from tests.fakematomo import FakeMatomo, Fault
from tests.redisserver import RedisServer

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
NAMESPACE = "matokit:{default}"
KEY = f"{NAMESPACE}:pause"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _warn_again() -> None:
    forget_failures()


def host_pause(
    url: str, home: Path, clock: Callable[[], float]
) -> tuple[RedisServerPause, ServerPause]:
    """One "host": its own pause file (the fallback), the shared Redis."""
    local = ServerPause(home / "server-pause.json", clock=clock)
    target = RedisTarget(url=url, namespace=NAMESPACE)
    return RedisServerPause(target, fallback=local, clock=clock), local


def test_a_retry_after_on_one_host_pauses_every_host_until_its_end(
    redis_url: str, tmp_path: Path
) -> None:
    clock = Clock()
    a, _ = host_pause(redis_url, tmp_path / "a", clock)
    b, b_file = host_pause(redis_url, tmp_path / "b", clock)
    b.check()  # nothing recorded
    a.record(30, status=429, method="tracking")
    clock.now += 29
    with pytest.raises(ServerPausedError) as caught:
        b.check()
    error = caught.value
    assert error.until == T0 + 30 and error.retry_after == 1
    assert "2023-11-14 22:13:20 UTC (HTTP 429 with Retry-After)" in error.message
    assert "no requests before 2023-11-14 22:13:50 UTC" in error.message
    assert b.current() == Pause(T0 + 30, T0, 429, "tracking")
    assert b_file.current() is None  # host b's own file knows nothing: the pause is on Redis
    clock.now += 1
    b.check()
    assert b.current() is None


@pytest.mark.parametrize(
    ("first", "second", "expected_until"),
    [
        (60, 10, T0 + 60),  # a shorter pause never cuts a longer one short
        (10, 60, T0 + 60),  # a longer one extends it
        (60, 0, T0 + 60),  # Retry-After: 0 changes nothing
    ],
)
def test_the_later_end_wins_whichever_host_records_it(
    redis_url: str, tmp_path: Path, first: float, second: float, expected_until: float
) -> None:
    clock = Clock()
    a, _ = host_pause(redis_url, tmp_path / "a", clock)
    b, _ = host_pause(redis_url, tmp_path / "b", clock)
    a.record(first, status=429)
    kept = b.record(second, status=503)
    assert kept is not None and kept.until == expected_until
    current = a.current()
    assert current is not None and current.until == expected_until


def test_an_absurd_retry_after_is_capped_and_the_key_expires_with_the_pause(
    redis_url: str, tmp_path: Path
) -> None:
    pause, _ = host_pause(redis_url, tmp_path / "a", Clock())
    recorded = pause.record(30 * 86400, status=429)
    assert recorded is not None and recorded.until == T0 + MAX_PAUSE
    client = redis.Redis.from_url(redis_url)
    assert 0 < client.pttl(KEY) <= (MAX_PAUSE + 1) * 1000
    client.close()


def test_recording_at_once_from_many_processes_keeps_the_longest(redis_url: str) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from matokit.redisstore.connection import RedisTarget\n"
        "from matokit.redisstore.pause import RedisServerPause\n"
        "from matokit.serverpause import ServerPause\n"
        "target = RedisTarget(url=sys.argv[1], namespace='matokit:{default}')\n"
        "local = ServerPause(Path('/nonexistent/p.json'))\n"
        "pause = RedisServerPause(target, fallback=local)\n"
        "for _ in range(50):\n"
        "    pause.record(float(sys.argv[2]), status=429)\n"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", code, redis_url, str(seconds)])
        for seconds in (100, 300, 200, 50)
    ]
    for child in children:
        assert child.wait(timeout=60) == 0
    client = redis.Redis.from_url(redis_url)
    fields = client.hgetall(KEY)
    client.close()
    assert float(fields[b"until"]) - float(fields[b"recorded_at"]) == pytest.approx(300, abs=30)


@pytest.mark.parametrize(
    "fields",
    [
        {"until": "soon", "recorded_at": "0"},
        {"recorded_at": str(T0)},
        {"until": "nan", "recorded_at": str(T0)},
        # an end far beyond the cap: a damaged value or a clock set back, never a week's block
        {"until": str(T0 + 7 * 86400), "recorded_at": str(T0)},
    ],
)
def test_a_damaged_pause_is_no_pause_and_is_replaced(
    redis_url: str, tmp_path: Path, fields: dict[str, str]
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.hset(KEY, mapping=fields)
    client.close()
    pause, _ = host_pause(redis_url, tmp_path / "a", Clock())
    assert pause.current() is None
    pause.record(5, status=429)
    assert pause.current() == Pause(T0 + 5, T0, 429, None)


def test_a_429_answered_to_one_client_pauses_another_clients_tracking(
    redis_url: str, tmp_path: Path, fake_matomo: FakeMatomo
) -> None:
    fake_matomo.add_fault(Fault(endpoint="tracking", status=429, retry_after="120", times=1))
    hit = pageview(1, url="https://example.org/")

    def client_of(host: str) -> MatomoClient:
        pause, _ = host_pause(redis_url, tmp_path / host, time.time)
        return MatomoClient(base_url=fake_matomo.url, server_pause=pause)

    a, b = client_of("a"), client_of("b")
    with pytest.raises(RateLimitedError):
        a.track([hit])
    with pytest.raises(ServerPausedError):
        b.track([hit])
    assert sum(1 for r in fake_matomo.requests if r.path.endswith("matomo.php")) == 1
    a.close()
    b.close()


def test_redis_down_falls_back_to_the_hosts_file_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    down = RedisServer(tmp_path / "never-started")
    pause, local = host_pause(down.url, tmp_path / "a", Clock())
    with caplog.at_level(logging.WARNING, logger="matokit.redisstore"):
        assert pause.current() is None
        pause.record(60, status=503)
        with pytest.raises(ServerPausedError):
            pause.check()
    assert local.current() == Pause(T0 + 60, T0, 503, None)
    assert len(caplog.records) == 1
    assert "the shared Matomo pause" in caplog.text and "unreachable" in caplog.text


def test_redis_failing_while_the_pause_is_read_by_threads_never_raises(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    pause, _ = host_pause(redis_server.url, tmp_path / "a", Clock())
    pause.record(60, status=429)
    redis_server.kill()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            pause.current()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []


def test_after_a_failure_redis_is_tried_again_once_the_retry_time_passed(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matokit.redisstore.fallback as fallback

    clock = Clock()
    pause, local = host_pause(redis_server.url, tmp_path / "a", clock)
    redis_server.kill()
    pause.record(60, status=503)  # Redis down: kept in the host's file
    assert local.current() is not None
    redis_server.start()
    assert pause.current() is not None  # within the retry time: still the file, no wait
    monkeypatch.setattr(fallback, "RETRY_SECONDS", 0.0)
    assert pause.current() is None  # Redis again: it never heard of that pause
    other, _ = host_pause(redis_server.url, tmp_path / "b", clock)
    pause.record(30, status=429)
    assert other.current() == Pause(T0 + 30, T0, 429, None)
