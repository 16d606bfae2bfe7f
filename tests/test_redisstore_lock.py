"""The flush lock on a real redis-server, held and contended by real processes ("hosts")."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from matokit.errors import FlushInProgressError, FlushWaitTimeoutError, StorageError
from matokit.redisstore.connection import RedisTarget
from matokit.redisstore.lock import redis_flush_lock
from tests.redisserver import RedisServer

NAMESPACE = "matokit:{default}"
KEY = f"{NAMESPACE}:flush:lock"

_HOLDER = """
import sys, time
from matokit.redisstore.connection import RedisTarget
from matokit.redisstore.lock import redis_flush_lock
target = RedisTarget(url=sys.argv[1], namespace="matokit:{default}")
with redis_flush_lock(target, wait=False, lease=float(sys.argv[3])):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""

_RUNNER = """
import os, sys, time
from matokit.redisstore.connection import RedisTarget
from matokit.redisstore.lock import redis_flush_lock
target = RedisTarget(url=sys.argv[1], namespace="matokit:{default}")
log = open(sys.argv[2], "a")
for _ in range(int(sys.argv[3])):
    with redis_flush_lock(target, wait=True, lease=0.5):
        log.write(f"{time.monotonic():.6f} in {os.getpid()}\\n"); log.flush()
        time.sleep(0.02)
        log.write(f"{time.monotonic():.6f} out {os.getpid()}\\n"); log.flush()
"""


def target_at(url: str) -> RedisTarget:
    return RedisTarget(url=url, namespace=NAMESPACE)


def hold_in_child(url: str, seconds: float, lease: float = 30.0) -> subprocess.Popen[str]:
    """Another "host" that takes the lock, says so, and keeps it for `seconds`."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url, str(seconds), str(lease)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked", child.stderr and child.stderr.read()
    return child


def stop(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.kill()
    child.communicate(timeout=10)


def test_the_lock_names_its_holder_and_is_gone_once_released(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with redis_flush_lock(target_at(redis_url), wait=False) as where:
        assert where == f"{redis_url} key {KEY}"
        held = json.loads(client.get(KEY) or b"")
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        assert 0 < client.pttl(KEY) <= 30_000
    assert client.exists(KEY) == 0
    client.close()


def test_a_second_holder_in_the_same_process_is_refused(redis_url: str) -> None:
    target = target_at(redis_url)
    with (
        redis_flush_lock(target, wait=False),
        pytest.raises(FlushInProgressError) as caught,
        redis_flush_lock(target, wait=False),
    ):
        pass
    assert f"pid {os.getpid()} on host {socket.gethostname()}, running since" in (
        caught.value.message
    )
    assert caught.value.hint is not None
    with redis_flush_lock(target, wait=False):
        pass  # free again once released


def test_a_lock_held_by_another_host_is_refused_with_its_pid_and_host(redis_url: str) -> None:
    child = hold_in_child(redis_url, 30)
    try:
        with (
            pytest.raises(FlushInProgressError) as caught,
            redis_flush_lock(target_at(redis_url), wait=False),
        ):
            pass
        message = caught.value.message
        assert f"(pid {child.pid} on host {socket.gethostname()}, running since " in message
        assert f"lock {redis_url} key {KEY}" in message
    finally:
        stop(child)


def test_waiting_names_the_holder_first_and_a_timeout_gives_up(redis_url: str) -> None:
    child = hold_in_child(redis_url, 30)
    heard: list[str] = []
    try:
        with (
            pytest.raises(FlushWaitTimeoutError) as caught,
            redis_flush_lock(target_at(redis_url), wait=True, timeout=0.2, on_wait=heard.append),
        ):
            pass
    finally:
        stop(child)
    (holder,) = heard
    assert holder.startswith(f"pid {child.pid} on host ") and holder.endswith(" ago)")
    assert "after waiting 0.2s" in caught.value.message


def test_waiting_gets_the_lock_when_the_holder_finishes(redis_url: str) -> None:
    child = hold_in_child(redis_url, 0.5)
    try:
        with redis_flush_lock(target_at(redis_url), wait=True, timeout=30):
            assert child.poll() is not None or child.wait(timeout=10) == 0
    finally:
        stop(child)


def test_the_lease_is_renewed_while_held(redis_url: str) -> None:
    # Waiting four leases: had the holder's lease not been renewed, the waiter would get it.
    child = hold_in_child(redis_url, 60, lease=0.5)
    try:
        with (
            pytest.raises(FlushWaitTimeoutError),
            redis_flush_lock(target_at(redis_url), wait=True, timeout=2.0),
        ):
            pass
        assert child.poll() is None
    finally:
        stop(child)


def test_a_holder_killed_with_sigkill_loses_the_lock_within_one_lease(redis_url: str) -> None:
    child = hold_in_child(redis_url, 60, lease=0.5)
    with pytest.raises(FlushInProgressError), redis_flush_lock(target_at(redis_url), wait=False):
        pass
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=10)
    with redis_flush_lock(target_at(redis_url), wait=True, timeout=30):
        pass


def test_only_its_holder_releases_or_renews_it(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with redis_flush_lock(target_at(redis_url), wait=False, lease=0.3):
        # The lease ran out (a stalled holder) and another flusher took the lock...
        client.set(KEY, json.dumps({"pid": 1, "host": "other", "since": time.time()}))
        time.sleep(0.3)  # ...our renewals must leave it alone
    assert json.loads(client.get(KEY) or b"")["host"] == "other"  # and so must our release
    assert client.pttl(KEY) == -1
    client.close()


def test_flushers_on_two_hosts_never_hold_it_at_once(redis_url: str, tmp_path: Path) -> None:
    log = tmp_path / "holds.log"
    runners = [
        subprocess.Popen([sys.executable, "-c", _RUNNER, redis_url, str(log), "25"])
        for _ in range(4)
    ]
    for runner in runners:
        assert runner.wait(timeout=120) == 0
    events = sorted(
        (float(at), kind, pid)
        for at, kind, pid in (row.split() for row in log.read_text().split("\n") if row)
    )
    holders = 0
    for _, kind, _ in events:
        holders += 1 if kind == "in" else -1
        assert holders in (0, 1), events
    assert sum(1 for _, kind, _ in events if kind == "in") == 100


def test_a_thread_waiting_gets_it_after_release(redis_url: str) -> None:
    order: list[str] = []
    with redis_flush_lock(target_at(redis_url), wait=False):

        def waiter() -> None:
            with redis_flush_lock(target_at(redis_url), wait=True, timeout=30):
                order.append("waiter")

        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.2)
        order.append("holder")
    thread.join(timeout=30)
    assert order == ["holder", "waiter"]


# --- faults: each a StorageError that says what and how to fix it -----------------------------


def test_redis_down_is_a_storage_error(tmp_path: Path) -> None:
    down = RedisServer(tmp_path / "never-started")
    with (
        pytest.raises(StorageError, match=r"take the flush lock.*unreachable") as caught,
        redis_flush_lock(target_at(down.url), wait=False),
    ):
        pass
    assert caught.value.hint and "redis_url" in caught.value.hint


def test_another_programs_key_under_the_prefix_is_a_storage_error(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.hset(KEY, "not", "ours")
    client.close()
    with (
        pytest.raises(StorageError, match="another kind of value") as caught,
        redis_flush_lock(target_at(redis_url), wait=False),
    ):
        pass
    assert caught.value.hint and "redis_prefix" in caught.value.hint


def test_a_read_only_replica_is_a_storage_error(redis_server: RedisServer, tmp_path: Path) -> None:
    replica = RedisServer(tmp_path / "replica", replicaof=f"127.0.0.1 {redis_server.port}").start()
    try:
        with (
            pytest.raises(StorageError, match="read-only replica") as caught,
            redis_flush_lock(target_at(replica.url), wait=False),
        ):
            pass
        assert caught.value.hint and "primary" in caught.value.hint
    finally:
        replica.stop()


def test_out_of_memory_is_a_storage_error(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")
    client.close()
    with (
        pytest.raises(StorageError, match="out of memory"),
        redis_flush_lock(target_at(redis_server.url), wait=False),
    ):
        pass
