"""The journal on Redis, end to end with the real `matokit`: four "hosts" (own HOME and data
directories, one Redis) each importing and flushing at once with flushers killed at random
moments deliver every hit exactly once (the key dimension settles what a kill left uncertain);
kill -9 of `redis-server` during a large import loses nothing the import acknowledged."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import RunMatokit, SpawnMatokit
from tests.e2e.test_fleet_shared import fleet
from tests.fakematomo import FakeMatomo, Fault
from tests.redisserver import RedisServer


def lines(prefix: str, count: int) -> str:
    return "".join(
        json.dumps(
            {"type": "event", "category": "fleet", "action": f"{prefix}{i}", "id": f"{prefix}{i}"}
        )
        + "\n"
        for i in range(count)
    )


def deliver_everything(run: RunMatokit, env: dict[str, str], *, rounds: int = 40) -> dict:
    for _ in range(rounds):
        run("queue", "flush", "--all", env=env)
        status = json.loads(run("queue", "status", "--format", "json", env=env).stdout)
        if status["queued"] == 0:
            return status
        time.sleep(1.1)
    pytest.fail(f"the shared journal never emptied: {status}")


def test_four_hosts_with_killed_flushers_deliver_every_hit_exactly_once(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    hosts = [{**h, "MATOKIT_SETTLE_TIME": "1s"} for h in fleet(tmp_path, redis_server.url, env)]
    done = run_matokit("setup", "exactly-once", "--format", "json", env=hosts[0])
    assert done.code == 0, done
    dimension = int(json.loads(done.stdout)[0]["dimension_id"])
    fake_matomo.add_fault(Fault(endpoint="tracking", latency=0.05))
    rng = random.Random(13)
    writers = []
    for n, h in enumerate(hosts):
        source = tmp_path / f"host{n}.jsonl"
        source.write_text(lines(f"h{n}-", 500))
        writers.append(spawn_matokit("track", "import", str(source), "--queue", env=h))
    kills = 0
    for _ in range(3):
        flushers = [spawn_matokit("queue", "flush", "--batch-size", "25", env=h) for h in hosts]
        time.sleep(rng.uniform(0.5, 1.2))
        for proc in rng.sample(flushers, 2):
            proc.send_signal(signal.SIGKILL)
            kills += 1
        for proc in flushers:
            proc.wait(timeout=60)
    for proc in writers:
        assert proc.wait(timeout=120) == 0
    fake_matomo.clear_faults()
    status = deliver_everything(run_matokit, hosts[1])
    stored = fake_matomo.stored_keys(dimension)
    print(f"\n[4 hosts, {kills} kills] stored {sum(stored.values())}, "
          f"confirmed by lookup {status['exactly_once']['confirmed_by_lookup']}")  # fmt: skip
    assert fake_matomo.duplicate_keys(dimension) == {}
    assert len(stored) == 2000 and sum(stored.values()) == 2000
    assert sorted(h["e_a"] for h in fake_matomo.hits) == sorted(
        f"h{n}-{i}" for n in range(4) for i in range(500)
    )


def test_kill_9_of_redis_during_a_large_import_loses_nothing_acknowledged(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    (host,) = fleet(tmp_path, redis_server.url, env, count=1)
    source = tmp_path / "large.jsonl"
    source.write_text(lines("L", 30_000))
    proc = spawn_matokit("track", "import", str(source), "--queue", "--format", "json", env=host)
    time.sleep(0.3)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # kill Redis once some chunks are acknowledged
        client = __import__("redis").Redis.from_url(redis_server.url)
        try:
            if client.hlen("matokit:{default}:journal:entries") >= 2000:
                break
        finally:
            client.close()
        time.sleep(0.02)
    redis_server.kill()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 74, err
    redis_server.start()  # same directory: the append-only file is read back
    status = json.loads(run_matokit("queue", "status", "--format", "json", env=host).stdout)
    acknowledged = status["queued"]
    assert acknowledged >= 2000
    # What the import said it committed is at least there (it may have committed more).
    said = [int(w) for w in err.replace(",", " ").split() if w.isdigit()]
    assert said and max(said) <= acknowledged <= 30_000
    again = run_matokit("track", "import", str(source), "--format", "json", env=host, timeout=300)
    assert again.code == 0, again
    deliver_everything(run_matokit, host)
    stored = sorted(h["e_a"] for h in fake_matomo.hits)
    assert len(stored) == 30_000 and len(set(stored)) == 30_000


def test_queue_migrate_to_redis_and_back_keeps_every_hit_once(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str], redis_server: RedisServer
) -> None:
    assert run_matokit("track", "import", "-", "--queue", input=lines("m", 300), env=env).code == 0
    to_redis = run_matokit(
        "queue", "migrate", "--to", redis_server.url, "--format", "json", env=env
    )
    assert to_redis.code == 0, to_redis
    on_redis = {**env, "MATOKIT_REDIS_URL": redis_server.url}
    status = json.loads(run_matokit("queue", "status", "--format", "json", env=on_redis).stdout)
    assert status["queued"] == 300
    back = run_matokit("queue", "migrate", "--to", "sqlite", "--format", "json", env=on_redis)
    assert back.code == 0, back
    deliver_everything(run_matokit, env)
    stored = [h["e_a"] for h in fake_matomo.hits]
    assert sorted(stored) == sorted(f"m{i}" for i in range(300))
