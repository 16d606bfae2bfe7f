"""End to end: `matokit queue migrate` as a real process, killed with SIGKILL mid-way and run
again: every hit ends in the destination exactly once, with its state and history.

Parametrized over directions; those involving Redis run once `matokit.redisstore.journal`
exists (skipped before), against a real redis-server.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from matokit.journal import Journal, NewHit
from tests.e2e.conftest import RunMatokit, SpawnMatokit

HITS = 40_000
PAGE = 500  # matokit.journal.migrate.PAGE: at most one page is in both journals after a kill


def redis_journal(url: str) -> Any:
    try:
        from matokit.redisstore.journal import RedisJournal
    except ImportError:
        pytest.skip("the Redis journal (matokit.redisstore.journal) is not merged yet")
    from matokit.redisstore.connection import RedisTarget

    return RedisJournal(RedisTarget(url=url, namespace="matokit:{default}"), clock=time.time)


@pytest.fixture(params=["sqlite->file", "sqlite->redis", "redis->sqlite"])
def sides(
    request: pytest.FixtureRequest, matokit_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[Any, Any, dict[str, str], str]]:
    """(source journal, destination journal, environment, --to) for one direction."""
    direction = request.param
    profile_file = Path(matokit_env["MATOKIT_DATA_DIR"]) / "default" / "journal.sqlite"
    env: dict[str, str] = {}
    if direction == "sqlite->file":
        other = tmp_path / "moved" / "journal.sqlite"
        source, dest, to = Journal(profile_file), Journal(other), f"sqlite:{other}"
    elif direction == "sqlite->redis":
        url = request.getfixturevalue("redis_url")
        source, dest, to = Journal(profile_file), redis_journal(url), url
    else:
        url = request.getfixturevalue("redis_url")
        env["MATOKIT_REDIS_URL"] = url
        source, dest, to = redis_journal(url), Journal(profile_file), "sqlite"
    try:
        yield source, dest, env, to
    finally:
        source.close()
        dest.close()


def fill(journal: Any) -> None:
    """HITS hits; some in every state, with attempts, errors, lost answers and a lookup due."""
    now = time.time()
    journal.enqueue(
        (
            NewHit(f"{i:032x}", {"idsite": "1", "url": f"https://e/{i}"}, now - HITS + i)
            for i in range(HITS)
        ),
        chunk_size=5000,
    )
    journal.remember_dimension(1, 4)
    batch = [e.id for e in journal.claim("dead-flusher", limit=60, lease_seconds=900, stamp=True)]
    journal.reschedule(batch[:10], error="HTTP 503", next_attempt_at=now + 60)
    journal.reschedule(batch[10:20], error="lost", next_attempt_at=now, sent_unconfirmed=True)
    journal.kill([(i, "HTTP 400") for i in batch[20:30]])
    journal.mark_unattributed(batch[30:40], reason="1 of 2 counted")
    journal.await_lookup(batch[40:50], error="answer lost", settle=300.0)
    journal.ack(batch[50:55])
    journal.remember_delivered(["direct-a", "direct-b"])
    journal.record_flush({"delivered": 5})


def keys_of(journal: Any) -> list[str]:
    return [e.key for e in journal.iter_entries()]


def test_a_migration_killed_mid_way_and_run_again_moves_every_hit_once(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    sides: tuple[Any, Any, dict[str, str], str],
) -> None:
    source, dest, env, to = sides
    fill(source)
    original = {e.key: e for e in source.iter_entries()}
    assert len(original) == HITS - 5  # five were acknowledged
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    thresholds = sorted(rng.sample(range(1_000, HITS - 5_000), 3))
    killed = 0
    for threshold in thresholds:
        proc = spawn_matokit("queue", "migrate", "--to", to, env=env)
        while proc.poll() is None and dest.stats().total < threshold:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.kill()  # SIGKILL: no cleanup, no lock release but the kernel's
            killed += 1
        assert proc.wait(timeout=30) in (-signal.SIGKILL, 0), (seed, proc.communicate())
        in_source, in_dest = set(keys_of(source)), keys_of(dest)
        assert len(in_dest) == len(set(in_dest)), seed  # never twice in the destination
        assert in_source | set(in_dest) == set(original), seed  # never lost
        assert len(in_source & set(in_dest)) <= PAGE, seed  # at most the page in flight
    assert killed >= 1, f"every run finished before its kill (seed {seed})"

    final = run_matokit("queue", "migrate", "--to", to, "--format", "json", env=env, timeout=120)
    assert final.code == 0, final
    report = json.loads(final.stdout)
    assert report["complete"] and report["left"] == 0
    assert source.stats().total == 0
    moved = {e.key: e for e in dest.iter_entries()}
    assert moved == original, seed  # every hit once, with its state and history
    for key in ("direct-a", "direct-b"):
        assert dest.has_key(key)
    assert [r["delivered"] for r in dest.flush_history()] == [5]
    again = run_matokit("queue", "migrate", "--to", to, "--format", "json", env=env)
    assert again.code == 0 and json.loads(again.stdout)["moved"] == 0, again


def test_migrate_refuses_while_a_flush_holds_the_lock(
    run_matokit: RunMatokit, matokit_env: dict[str, str], tmp_path: Path
) -> None:
    from matokit.locking import LOCK_NAME, flush_lock

    data = Path(matokit_env["MATOKIT_DATA_DIR"]) / "default"
    with Journal(data / "journal.sqlite") as journal:
        journal.enqueue([NewHit("k", {"idsite": "1"}, time.time())])
    with flush_lock(data / LOCK_NAME, wait=False):
        busy = run_matokit("queue", "migrate", "--to", f"sqlite:{tmp_path / 'x.sqlite'}")
    assert busy.code == 75, busy
    assert "another queue flush is running" in busy.stderr and "nothing was moved" in busy.stderr
    done = run_matokit("queue", "migrate", "--to", f"sqlite:{tmp_path / 'x.sqlite'}")
    assert done.code == 0, done
    assert "moved 1 hit(s)" in done.stderr and "(1 pending)" in done.stderr
