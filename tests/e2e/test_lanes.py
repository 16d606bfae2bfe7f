"""Lanes end to end: the real `matokit` with several bulks in flight against a test server with
PHP workers, a per-hit cost and one lock per visit that deadlocks (rolls a bulk back) when two
bulks of one visit meet. One lane per visitor: no rollback, every hit once, in order."""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.conftest import RunMatokit, SpawnMatokit
from tests.fakematomo import FakeMatomo

STALE_TOKEN = "0badc0de" * 4


@pytest.fixture
def busy_matomo(fake_matomo: FakeMatomo) -> FakeMatomo:
    """4 PHP workers, a small cost per hit, and a deadlock whenever two bulks of one visit meet."""
    fake_matomo.workers = 4
    fake_matomo.hit_cost = 0.0002
    fake_matomo.deadlock_on_contention = True
    return fake_matomo


def visitor_lines(visitors: int, per_visitor: int, prefix: str = "h") -> str:
    lines = []
    for i in range(per_visitor):
        for v in range(visitors):
            lines.append(
                json.dumps(
                    {
                        "type": "event",
                        "category": "lanes",
                        "action": f"{v}-{i}",
                        "id": f"{prefix}{v}-{i}",
                        "visitor_id": f"{v:016x}",
                    }
                )
            )
    return "\n".join(lines) + "\n"


def stored_actions(fake: FakeMatomo) -> Counter[str]:
    return Counter(h.get("e_a", "?") for h in fake.hits)


def in_order_within_each_visitor(fake: FakeMatomo) -> bool:
    for hits in fake.hits_by_visitor().values():
        order = [int(h["e_a"].split("-")[1]) for h in hits]
        if order != sorted(order):
            return False
    return True


def test_500_visitors_on_4_lanes_store_every_hit_once_in_order(
    run_matokit: RunMatokit, busy_matomo: FakeMatomo, env: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "hits.jsonl"
    source.write_text(visitor_lines(500, 10))
    done = run_matokit(
        "track", "import", str(source), "--concurrency", "4", "--format", "json",
        env=env, timeout=300,
    )  # fmt: skip
    assert done.code == 0, done
    summary = json.loads(done.stdout)
    assert summary["sent"] == 5000 and summary["queued"] == 0
    assert summary["flush"]["concurrency"] == 4
    counts = stored_actions(busy_matomo)
    assert len(counts) == 5000 and set(counts.values()) == {1}
    assert in_order_within_each_visitor(busy_matomo)
    assert busy_matomo.rollbacks == 0
    assert busy_matomo.max_concurrent_bulks > 1  # the lanes did overlap
    assert busy_matomo.max_concurrent_bulks_per_visit == 1
    assert "on up to 4 lanes" in done.stderr


def test_one_visitor_on_4_lanes_never_deadlocks(
    run_matokit: RunMatokit, busy_matomo: FakeMatomo, env: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text(visitor_lines(1, 5000))
    done = run_matokit(
        "track", "import", str(source), "--concurrency", "4", "--format", "json",
        env=env, timeout=300,
    )  # fmt: skip
    assert done.code == 0, done
    summary = json.loads(done.stdout)
    assert (summary["sent"], summary["rejected"], summary["queued"]) == (5000, 0, 0)
    assert busy_matomo.rollbacks == 0 and busy_matomo.max_concurrent_bulks == 1
    assert len(stored_actions(busy_matomo)) == 5000 and len(busy_matomo.hits) == 5000
    assert in_order_within_each_visitor(busy_matomo)


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_kill_9_with_lanes_loses_nothing_and_duplicates_at_most_n_bulks_per_kill(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    busy_matomo: FakeMatomo,
    env: dict[str, str],
    tmp_path: Path,
    exactly_once: bool,
) -> None:
    if exactly_once:
        env = {**env, "MATOKIT_SETTLE_TIME": "1s"}
        assert run_matokit("setup", "exactly-once", env=env).code == 0
    source = tmp_path / "hits.jsonl"
    source.write_text(visitor_lines(200, 10))
    assert run_matokit("track", "import", str(source), "--queue", env=env).code == 0
    busy_matomo.hit_cost = 0.002  # bulks of 50 take ~0.1 s: kills land mid-request
    rng = random.Random(14)
    kills, lanes, batch = 6, 4, 50
    for _ in range(kills):
        proc = spawn_matokit(
            "queue", "flush", "--concurrency", lanes, "--batch-size", batch, env=env
        )
        time.sleep(rng.uniform(0.3, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    busy_matomo.hit_cost = 0.0
    for _ in range(30):
        run_matokit("queue", "flush", "--all", env=env)
        status = json.loads(run_matokit("queue", "status", "--format", "json", env=env).stdout)
        if status["queued"] == 0:
            break
        time.sleep(1.1)  # hits awaiting a lookup settle
    assert status["queued"] == 0
    counts = stored_actions(busy_matomo)
    missing = 2000 - len(counts)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"\n[lanes kill -9 x{kills}] missing {missing}, duplicates {duplicates}")
    assert missing == 0
    assert duplicates <= kills * lanes * batch
    if exactly_once:
        assert duplicates == 0
    assert busy_matomo.rollbacks == 0


def test_a_bad_token_with_8_lanes_is_sent_once(
    run_matokit: RunMatokit, busy_matomo: FakeMatomo, env: dict[str, str], tmp_path: Path
) -> None:
    stale = {**env, "MATOMO_TOKEN": STALE_TOKEN}
    source = tmp_path / "hits.jsonl"
    source.write_text(visitor_lines(100, 5))
    assert run_matokit("track", "import", str(source), "--queue", env=stale).code == 0
    done = run_matokit("queue", "flush", "--concurrency", "8", "--batch-size", "10", env=stale)
    assert done.code == 77, done
    carrying = [r for r in busy_matomo.requests if STALE_TOKEN.encode() in r.body]
    assert len(carrying) == 1
    assert busy_matomo.hits == []


def test_a_bad_concurrency_is_a_usage_error(run_matokit: RunMatokit, env: dict[str, str]) -> None:
    for bad in ("0", "33", "many"):
        done = run_matokit("queue", "flush", "--concurrency", bad, env=env)
        assert done.code == 2, done
        assert "--concurrency" in done.stderr
