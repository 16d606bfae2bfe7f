"""`matokit queue` as an installed executable: one flusher per profile, limits, status."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import RunMatokit, SpawnMatokit
from tests.fakematomo import FakeMatomo, Fault


def queue_lines(run: RunMatokit, env: dict[str, str], count: int) -> None:
    lines = "".join(
        json.dumps({"type": "event", "category": "c", "action": "a", "id": f"q{i}"}) + "\n"
        for i in range(count)
    )
    result = run("track", "import", "-", "--queue", input=lines, env=env)
    assert result.code == 0, result


def test_status_of_a_new_profile_creates_nothing(
    run_matokit: RunMatokit, matokit_env: dict[str, str]
) -> None:
    result = run_matokit("queue", "status", "--format", "json")
    assert result.code == 0, result
    assert json.loads(result.stdout)["queued"] == 0
    assert not (Path(matokit_env["MATOKIT_DATA_DIR"]) / "default").exists()


def test_second_flusher_exits_at_once_and_a_waiting_one_runs_after(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    env: dict[str, str],
) -> None:
    queue_lines(run_matokit, env, 200)
    fake_matomo.add_fault(Fault(endpoint="tracking", latency=0.2))
    first = spawn_matokit("queue", "flush", "--batch-size", "20", env=env)
    deadline = time.monotonic() + 10
    while not fake_matomo.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    second = run_matokit("queue", "flush", env=env)
    assert second.code == 0, second
    assert "another queue flush is running" in second.stderr
    assert time.monotonic() - started < 5
    waiting = spawn_matokit("queue", "flush", "--wait", "--format", "json", env=env)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert json.loads(out)["stopped_reason"] == "nothing_due"
    assert len(fake_matomo.hits) == 200


def test_max_time_stops_a_slow_flush_with_75_and_status_tells(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str]
) -> None:
    queue_lines(run_matokit, env, 100)
    fake_matomo.add_fault(Fault(endpoint="tracking", latency=0.3))
    result = run_matokit(
        "queue", "flush", "--batch-size", "10", "--max-time", "1s", "--format", "json", env=env
    )
    assert result.code == 75, result
    record = json.loads(result.stdout)
    assert record["stopped_reason"] == "max_time"
    assert 0 < record["delivered"] < 100 and record["remaining_due"] > 0
    status = json.loads(run_matokit("queue", "status", "--format", "json").stdout)
    assert status["last_flush"]["stopped_reason"] == "max_time"
    assert status["queued"] == 100 - record["delivered"]


def test_max_events_limits_one_flush(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str]
) -> None:
    queue_lines(run_matokit, env, 30)
    result = run_matokit("queue", "flush", "--max-events", "12", "--format", "json", env=env)
    assert result.code == 75, result
    assert json.loads(result.stdout)["delivered"] == 12
    assert run_matokit("queue", "flush", env=env).code == 0
    assert len(fake_matomo.hits) == 30


def test_site_admin_token_keeps_outcomes_attributable_and_sets_aside_what_is_not(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str]
) -> None:
    from tests.fakematomo import ADMIN_TOKEN

    admin = {**env, "MATOMO_TOKEN": ADMIN_TOKEN}
    old = int(time.time()) - 2 * 86400
    records = [
        {"type": "event", "category": "c", "action": "old-1", "at": old, "id": "o1"},
        {"type": "event", "category": "c", "action": "old-2", "at": old, "id": "o2", "site_id": 2},
        {"type": "event", "category": "c", "action": "fresh-0", "id": "f0"},
        {"type": "goal", "goal": 99, "id": "bad"},  # no such goal: Matomo counts it invalid
        {"type": "event", "category": "c", "action": "fresh-1", "id": "f1"},
    ]
    text = "".join(json.dumps(r) + "\n" for r in records)
    assert run_matokit("track", "import", "-", "--queue", input=text, env=admin).code == 0
    result = run_matokit("queue", "flush", "--format", "json", env=admin)
    assert result.code == 0, result
    record = json.loads(result.stdout)
    stored = sorted(h.get("e_a", "goal") for h in fake_matomo.hits)
    # The old hit on site 1 goes alone (admin there) and makes site 1 known; the old hit on
    # site 2 is a dead letter (no admin access there); the rest share one bulk, in which one
    # is invalid and Matomo (not a superuser token) does not say which: set aside, not re-sent.
    assert stored == ["fresh-0", "fresh-1", "old-1"]
    assert (record["delivered"], record["dead"], record["unattributed"]) == (1, 1, 3)
    assert "unattributed" in result.stderr
    listed = json.loads(run_matokit("queue", "list", "--format", "json", env=admin).stdout)
    assert sorted(e["state"] for e in listed) == ["unattributed"] * 3
    dead = json.loads(run_matokit("queue", "list", "--dead", "--format", "json", env=admin).stdout)
    assert "no admin access on site 2" in dead[0]["reason"]
    again = run_matokit("queue", "flush", "--all", "--format", "json", env=admin)
    assert json.loads(again.stdout)["requests"] == 0
    assert len(fake_matomo.hits) == 3


def _tracking_requests(fake: FakeMatomo) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("matomo.php"))


def test_retry_after_pauses_the_profile_for_every_later_process(
    run_matokit: RunMatokit, fake_matomo: FakeMatomo, env: dict[str, str]
) -> None:
    queue_lines(run_matokit, env, 5)
    fake_matomo.add_fault(Fault(endpoint="tracking", status=429, retry_after="120"))
    first = run_matokit("queue", "flush", env=env)
    assert first.code == 75, first
    assert _tracking_requests(fake_matomo) == 1
    # A second flush started at once: the server said "not before", so it sends nothing.
    second = run_matokit("queue", "flush", "--format", "json", env=env)
    assert second.code == 75, second
    record = json.loads(second.stdout)
    assert record["stopped_reason"] == "rate_limited" and record["requests"] == 0
    assert record["paused_until"] is not None
    assert "no requests before" in second.stderr
    # track queues at once, health does not probe, status shows when the pause ends.
    track = run_matokit("track", "event", "--category", "c", "--action", "a", env=env)
    assert track.code == 75, track
    assert "no requests before" in track.stderr
    health = run_matokit("health", "--check", "tracking", "--format", "json", env=env)
    assert health.code == 1, health
    (check,) = json.loads(health.stdout)["checks"]
    assert check["summary"].startswith("tracking paused, probe not sent")
    assert check["metrics"]["paused_until_timestamp_seconds"] == pytest.approx(
        record["paused_until"], abs=0.01
    )
    prometheus = run_matokit("health", "--check", "tracking", "--format", "prometheus", env=env)
    assert '\nmatokit_tracking_paused_until_timestamp_seconds{profile="default"} 1' in (
        prometheus.stdout
    ), prometheus
    nagios = run_matokit("health", "--check", "tracking", "--format", "nagios", env=env)
    assert nagios.code == 1 and "no requests before" in nagios.stdout, nagios
    assert _tracking_requests(fake_matomo) == 1
    status = json.loads(run_matokit("queue", "status", "--format", "json", env=env).stdout)
    assert status["paused_until"] == record["paused_until"]
    assert status["pause"]["status"] == 429 and 0 < status["pause"]["remaining"] <= 120
    text = run_matokit("queue", "status", env=env)
    assert "matomo pause" in text.stdout and ", HTTP 429)" in text.stdout


_HOLDER = """
import sys, time
from pathlib import Path
from matokit.locking import flush_lock
with flush_lock(Path(sys.argv[1]), wait=False):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_waiting_flush_says_who_holds_the_lock_and_wait_timeout_gives_up_with_75(
    run_matokit: RunMatokit,
    spawn_matokit: SpawnMatokit,
    fake_matomo: FakeMatomo,
    matokit_env: dict[str, str],
    env: dict[str, str],
) -> None:
    queue_lines(run_matokit, env, 3)
    lock = Path(matokit_env["MATOKIT_DATA_DIR"]) / "default" / "flush.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        who = f"holds the lock (pid {holder.pid}, running since "
        gave_up = run_matokit(
            "queue", "flush", "--wait-timeout", "0.3s", "--format", "json", env=env
        )
        assert gave_up.code == 75, gave_up
        assert json.loads(gave_up.stdout)["stopped_reason"] == "wait_timeout"
        assert who in gave_up.stderr and "after waiting 0.3s" in gave_up.stderr
        waiting = spawn_matokit("queue", "flush", "--wait", env=env)
        assert waiting.stderr is not None
        assert who in waiting.stderr.readline()  # said while it waits, not after
        assert fake_matomo.requests == []
    finally:
        holder.kill()
        holder.communicate(timeout=10)
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert len(fake_matomo.hits) == 3


def test_dead_letter_ids_are_shown_whole_enough_at_80_columns_and_retried_by_prefix(
    run_matokit: RunMatokit, env: dict[str, str]
) -> None:
    for _ in range(2):  # goal 99 does not exist: Matomo refuses both, they become dead letters
        assert run_matokit("track", "goal", "--goal", "99", "--queue", env=env).code == 0
    assert run_matokit("queue", "flush", env=env).code == 0
    narrow = {**env, "COLUMNS": "80"}
    whole = [
        e["id"]
        for e in json.loads(
            run_matokit("queue", "list", "--dead", "--format", "json", env=env).stdout
        )
    ]
    table = run_matokit("queue", "list", "--dead", env=narrow)
    assert table.code == 0, table
    shown = [line.split()[1] for line in table.stdout.splitlines() if " dead " in line]
    assert len(shown) == 2
    assert all(len(s) >= 8 and w.startswith(s) for s, w in zip(shown, whole, strict=True))

    retried = run_matokit("queue", "retry-dead", shown[1].lower(), "--format", "json", env=env)
    assert retried.code == 0, retried
    assert json.loads(retried.stdout) == {"retried": 1}
    unknown = run_matokit("queue", "retry-dead", "ZZZZZZZZ", shown[1], env=env)
    assert unknown.code == 65, unknown
    assert "No dead letter has id ZZZZZZZZ" in unknown.stderr
    assert f"{whole[1]} is pending, not a dead letter" in unknown.stderr
    left = json.loads(run_matokit("queue", "list", "--dead", "--format", "json", env=env).stdout)
    assert [e["id"] for e in left] == whole[:1]  # nothing changed by the refused command
