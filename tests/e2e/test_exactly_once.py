"""Exactly-once end to end: the real `matokit` against the Matomo-compatible server.

With the site's `matokit_key` dimension set up, every uncertain send (a flusher killed with -9
at a random moment, a connection dropped or a timeout after Matomo stored the batch, a garbled
2xx answer, a batch refused in part) is looked up before anything is sent again: every hit is
stored exactly once, counted by its key in the dimension. Without Live, delivery falls back to
the bounded duplicates of at-least-once, and says so.
"""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import RunMatokit, SpawnMatokit
from tests.fakematomo import VIEW_TOKEN, FakeMatomo, Fault

SETTLE = "1s"


@pytest.fixture
def eo_env(env: dict[str, str]) -> dict[str, str]:
    """The e2e environment with a short settle time (the fake stores within milliseconds), one
    lane (tests/e2e/test_lanes.py proves exactly-once with several)."""
    return {**env, "MATOKIT_SETTLE_TIME": SETTLE, "MATOKIT_CONCURRENCY": "1"}


@pytest.fixture
def dimension(run_matokit: RunMatokit, fake_matomo: FakeMatomo, eo_env: dict[str, str]) -> int:
    """`matokit setup exactly-once` on site 1: the id of its matokit_key dimension."""
    done = run_matokit("setup", "exactly-once", "--format", "json", env=eo_env)
    assert done.code == 0, done
    (row,) = json.loads(done.stdout)
    assert row["action"] == "created"
    return int(row["dimension_id"])


def events(count: int, prefix: str = "e", **params: str) -> str:
    return "".join(
        json.dumps(
            {
                "type": "event",
                "category": "exactly-once",
                "action": "a",
                "id": f"{prefix}{i}",
                **({"params": params} if params else {}),
            }
        )
        + "\n"
        for i in range(count)
    )


def journal_keys(run: RunMatokit, env: dict[str, str]) -> int:
    status = json.loads(run("queue", "status", "--format", "json", env=env).stdout)
    return int(status["queued"])


def deliver_everything(run: RunMatokit, env: dict[str, str], *, rounds: int = 30) -> dict:
    """Flush (and let uncertain sends settle) until nothing is queued; the last status."""
    for _ in range(rounds):
        run("queue", "flush", env=env)
        status = json.loads(run("queue", "status", "--format", "json", env=env).stdout)
        if status["queued"] == 0:
            return status
        time.sleep(1.1)  # past the settle time: what awaits a lookup is looked up next
    pytest.fail(f"the journal never emptied: {status}")


def assert_exactly_once(fake: FakeMatomo, dimension: int, count: int) -> None:
    stored = fake.stored_keys(dimension)
    assert fake.duplicate_keys(dimension) == {}
    assert len(stored) == count and sum(stored.values()) == count
    assert len(fake.hits) == count


def tracking_requests(fake: FakeMatomo) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("matomo.php"))


def kill_flushers(
    spawn: SpawnMatokit,
    fake: FakeMatomo,
    env: dict[str, str],
    *,
    kills: int,
    batch: int,
    seed: int,
) -> int:
    """Start `queue flush` and kill -9 it at a random moment after it began sending, `kills`
    times; how many died mid-flight. Waiting for its first tracking request (not a fixed
    delay) keeps the kills mid-send however slowly the machine starts a process."""
    rng = random.Random(seed)
    killed = 0
    for _ in range(kills):
        before = tracking_requests(fake)
        proc = spawn("queue", "flush", "--batch-size", batch, env=env)
        deadline = time.monotonic() + 30
        while tracking_requests(fake) == before and proc.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed += proc.returncode == -signal.SIGKILL
    return killed


def test_fifteen_kills_of_the_flusher_store_every_hit_exactly_once(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    eo_env: dict[str, str],
    dimension: int,
    tmp_path: Path,
) -> None:
    source = tmp_path / "hits.jsonl"
    source.write_text(events(2000))
    assert run_matokit("track", "import", str(source), "--queue", env=eo_env).code == 0
    fake_matomo.add_fault(Fault(endpoint="tracking", latency=0.08))
    killed = kill_flushers(spawn_matokit, fake_matomo, eo_env, kills=15, batch=50, seed=20261126)
    assert killed >= 12, "most flushers must die mid-flight for this test to prove anything"
    before = sum(fake_matomo.stored_keys(dimension).values())
    fake_matomo.clear_faults()
    status = deliver_everything(run_matokit, eo_env)
    print(
        f"\n[kill -9 x{killed}, batch 50] stored before the final flushes: {before}; "
        f"confirmed by lookup: {status['exactly_once']['confirmed_by_lookup']}"
    )
    assert_exactly_once(fake_matomo, dimension, 2000)
    assert status["delivered_unconfirmed"] == 0  # nothing was sent twice on a guess
    assert status["exactly_once"]["confirmed_by_lookup"] > 0  # kills did land after a store


def test_one_long_visit_past_the_live_action_limit_with_kills(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    eo_env: dict[str, str],
    dimension: int,
    tmp_path: Path,
) -> None:
    # One visitor id: all 2,000 actions are one visit, four times Live's 500-action limit.
    source = tmp_path / "visit.jsonl"
    source.write_text(events(2000, "v", cid="0123456789abcdef"))
    assert run_matokit("track", "import", str(source), "--queue", env=eo_env).code == 0
    fake_matomo.add_fault(Fault(endpoint="tracking", latency=0.08))
    killed = kill_flushers(spawn_matokit, fake_matomo, eo_env, kills=6, batch=100, seed=7)
    assert killed >= 4
    fake_matomo.clear_faults()
    deliver_everything(run_matokit, eo_env)
    assert_exactly_once(fake_matomo, dimension, 2000)


@pytest.mark.parametrize(
    "fault",
    [
        Fault(endpoint="tracking", drop="after", after=1, times=3),
        Fault(endpoint="tracking", stall_after=3.0, after=1, times=2),
        Fault(endpoint="tracking", garble_after=True, after=1, times=3),
    ],
    ids=["dropped-after-store", "timeout-after-store", "garbled-2xx"],
)
def test_answers_lost_after_matomo_stored_the_batch_are_confirmed_not_resent(
    run_matokit: RunMatokit,
    fake_matomo: FakeMatomo,
    eo_env: dict[str, str],
    dimension: int,
    fault: Fault,
) -> None:
    env = {**eo_env, "MATOKIT_TIMEOUT": "1"}
    assert run_matokit("track", "import", "-", "--queue", input=events(300), env=env).code == 0
    fake_matomo.add_fault(fault)
    first = run_matokit("queue", "flush", "--batch-size", "50", "--format", "json", env=env)
    record = json.loads(first.stdout)
    assert record["awaiting_lookup"] > 0, first
    assert "may count them twice" not in first.stderr
    status = deliver_everything(run_matokit, env)
    assert_exactly_once(fake_matomo, dimension, 300)
    assert status["exactly_once"]["confirmed_by_lookup"] >= record["awaiting_lookup"]


def test_an_uncertain_track_is_confirmed_by_the_next_flush(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, eo_env: dict[str, str], dimension: int
) -> None:
    fake_matomo.add_fault(Fault(endpoint="tracking", drop="after", times=1))
    sent = run_matokit(
        "track", "event", "--category", "c", "--action", "a", "--format", "json", env=eo_env
    )
    assert sent.code == 75, sent
    assert json.loads(sent.stdout)["maybe_stored"] is True
    deliver_everything(run_matokit, eo_env)
    assert_exactly_once(fake_matomo, dimension, 1)


def test_queue_reconcile_waits_and_confirms(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, eo_env: dict[str, str], dimension: int
) -> None:
    assert run_matokit("track", "import", "-", "--queue", input=events(40), env=eo_env).code == 0
    fake_matomo.add_fault(Fault(endpoint="tracking", drop="after", after=1, times=1))
    run_matokit("queue", "flush", "--batch-size", "40", env=eo_env)
    done = run_matokit("queue", "reconcile", "--wait", "--format", "json", env=eo_env)
    assert done.code == 0, done
    record = json.loads(done.stdout)
    assert (record["confirmed"], record["missing"], record["awaiting_lookup"]) == (39, 0, 0)
    assert "39 already stored" in done.stderr
    assert journal_keys(run_matokit, eo_env) == 0
    assert_exactly_once(fake_matomo, dimension, 40)


def test_unattributed_batches_are_resolved_with_nothing_left_for_the_operator(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, eo_env: dict[str, str], dimension: int
) -> None:
    # Not a superuser: no invalid_indices. One lane, so the bad hit shares a bulk with others
    # (with lanes its own IP would give it a lane, and a refusal of its own).
    view = {**eo_env, "MATOMO_TOKEN": VIEW_TOKEN, "MATOKIT_CONCURRENCY": "1"}
    lines = [json.loads(line) for line in events(6, "u").splitlines()]
    # Matomo counts a hit with `cip` invalid unless the token has admin access.
    lines.insert(
        3, {"type": "event", "category": "c", "action": "bad", "params": {"cip": "10.1.2.3"}}
    )
    # A goal cannot carry a key: with such a token it goes alone, so its refusal is its own.
    lines.insert(5, {"type": "goal", "goal": 99, "id": "no-such-goal"})
    text = "".join(json.dumps(line) + "\n" for line in lines)
    assert run_matokit("track", "import", "-", "--queue", input=text, env=view).code == 0
    first = json.loads(run_matokit("queue", "flush", "--format", "json", env=view).stdout)
    assert first["unattributed"] == 0 and first["awaiting_lookup"] > 0
    status = deliver_everything(run_matokit, view)
    assert status["counts"]["unattributed"] == 0
    # The hit with `cip`, sent alone after the lookups found it missing, and the goal.
    assert status["counts"]["dead"] == 2
    dead = json.loads(run_matokit("queue", "list", "--dead", "--format", "json", env=view).stdout)
    assert all("refused" in d["reason"] for d in dead)
    assert_exactly_once(fake_matomo, dimension, 6)


def test_without_live_delivery_falls_back_to_bounded_duplicates_and_says_so(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, eo_env: dict[str, str], dimension: int
) -> None:
    fake_matomo.disable_visits_log(1)
    assert run_matokit("track", "import", "-", "--queue", input=events(100), env=eo_env).code == 0
    fake_matomo.add_fault(Fault(endpoint="tracking", drop="after", after=1, times=1))
    run_matokit("queue", "flush", "--batch-size", "100", env=eo_env)
    time.sleep(1.1)
    again = run_matokit("queue", "flush", env=eo_env)
    assert "exactly-once is unavailable on site 1" in again.stderr
    assert "Visits log is deactivated" in again.stderr
    status = deliver_everything(run_matokit, eo_env)
    duplicates = fake_matomo.duplicate_keys(dimension)
    assert len(duplicates) == 99 and set(duplicates.values()) == {2}  # one batch, once
    assert len(fake_matomo.stored_keys(dimension)) == 100  # nothing lost
    assert any("exactly-once is unavailable on site 1" in w for w in status["warnings"])
    health = run_matokit("health", "--check", "queue", "--format", "json", env=eo_env)
    assert health.code == 1, health
    assert "exactly-once unavailable on site 1" in health.stdout


def test_on_refuses_a_site_without_the_dimension(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, eo_env: dict[str, str]
) -> None:
    env = {**eo_env, "MATOKIT_EXACTLY_ONCE": "on"}
    sent = run_matokit("track", "event", "--category", "c", "--action", "a", env=env)
    assert sent.code == 78, sent
    assert "setup exactly-once --site 1" in sent.stderr
    assert fake_matomo.hits == []
