"""`matokit queue ...` in-process: status, flush, list, retry-dead, purge, export."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from matokit.journal import EntryState, Journal
from matokit.locking import LOCK_NAME, flush_lock
from tests.clirunner import invoke
from tests.conftest import SENTINEL_TOKEN
from tests.fakematomo import SUPERUSER_TOKEN, FakeMatomo, Fault


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, fake_matomo: FakeMatomo) -> FakeMatomo:
    monkeypatch.setenv("MATOMO_URL", fake_matomo.url)
    monkeypatch.setenv("MATOMO_SITE_ID", "1")
    monkeypatch.setenv("MATOMO_TOKEN", SUPERUSER_TOKEN)
    return fake_matomo


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "home" / ".local" / "share" / "matokit" / "default" / "journal.sqlite"


def queue_events(capsys: pytest.CaptureFixture[str], count: int, *extra: str) -> None:
    for i in range(count):
        result = invoke(
            capsys, "track", "event", "--category", "c", "--action", f"a{i}", "--queue", *extra
        )
        assert result.code == 0, result


def entries(path: Path, *states: EntryState) -> list:
    with Journal(path) as journal:
        return journal.entries(states=list(states) or None)


# --- status ---------------------------------------------------------------------------------


def test_status_without_a_journal_shows_zeros_and_creates_nothing(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, path: Path
) -> None:
    result = invoke(capsys, "queue", "status", "--format", "json")
    assert result.code == 0, result
    view = json.loads(result.stdout)
    assert view["queued"] == 0 and view["counts"]["dead"] == 0
    assert view["exists"] is False
    assert not path.exists() and not path.parent.exists()
    assert invoke(capsys, "queue", "status").code == 0
    assert invoke(capsys, "queue", "list").code == 0
    assert invoke(capsys, "queue", "export").stdout == ""
    assert not path.parent.exists()


def test_status_shows_counts_due_age_and_the_last_flush(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo
) -> None:
    queue_events(capsys, 3)
    view = json.loads(invoke(capsys, "queue", "status", "--format", "json").stdout)
    assert (view["counts"]["pending"], view["due"], view["last_flush"]) == (3, 3, None)
    assert view["oldest_age"] >= 0 and view["file_size"] > 0
    assert invoke(capsys, "queue", "flush").code == 0
    view = json.loads(invoke(capsys, "queue", "status", "--format", "json").stdout)
    assert view["queued"] == 0
    assert view["last_flush"]["delivered"] == 3
    assert view["last_flush"]["auth_failed"] is False
    text = invoke(capsys, "queue", "status")
    assert "last flush" in text.stdout and "3 delivered" in text.stdout


@pytest.mark.parametrize(
    "stored",
    [
        {"stopped_reason": "locked_out", "delivered": 0},  # no auth_failed key
        {"auth_failed": True},  # no stopped_reason
    ],
)
def test_status_and_health_read_an_older_flush_record_alike(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, path: Path, stored: dict[str, object]
) -> None:
    queue_events(capsys, 1)
    with Journal(path) as journal:
        journal.record_flush(stored)
    view = json.loads(invoke(capsys, "queue", "status", "--format", "json").stdout)
    assert "the last flush stopped: Matomo rejected the token" in view["warnings"]
    assert view["last_flush"]["auth_failed"] is True
    assert view["last_flush"]["outcome"] == "stopped: Matomo rejected the token"
    health = invoke(capsys, "health", "--check", "queue", "--format", "json")
    assert health.code == 2, health
    assert "the last flush stopped: Matomo rejected the token" in json.dumps(
        json.loads(health.stdout)
    )


# --- flush ------------------------------------------------------------------------------------


def test_flush_delivers_due_hits_and_prints_json(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo
) -> None:
    queue_events(capsys, 5)
    result = invoke(capsys, "queue", "flush", "--batch-size", "2", "--format", "json")
    assert result.code == 0, result
    record = json.loads(result.stdout)
    assert (record["delivered"], record["remaining_queued"]) == (5, 0)
    assert record["stopped_reason"] == "done"
    assert len(env.hits) == 5
    assert invoke(capsys, "queue", "flush").code == 0
    assert len(env.hits) == 5


def test_flush_of_nothing_exits_0(capsys: pytest.CaptureFixture[str], env: FakeMatomo) -> None:
    result = invoke(capsys, "queue", "flush")
    assert result.code == 0, result
    assert "nothing to flush" in result.stderr


def test_flush_stops_on_503_and_exits_75(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo
) -> None:
    queue_events(capsys, 4)
    env.add_fault(Fault(endpoint="tracking", status=503, retry_after="60"))
    result = invoke(capsys, "queue", "flush", "--format", "json")
    assert result.code == 75, result
    record = json.loads(result.stdout)
    assert record["stopped_reason"] == "unavailable"
    assert record["requests"] == 1
    tracking = [r for r in env.requests if r.path.endswith("matomo.php")]
    assert len(tracking) == 1


def test_flush_stops_on_429(capsys: pytest.CaptureFixture[str], env: FakeMatomo) -> None:
    queue_events(capsys, 2)
    env.add_fault(Fault(endpoint="tracking", status=429, retry_after="5"))
    result = invoke(capsys, "queue", "flush", "--format", "json")
    assert result.code == 75, result
    record = json.loads(result.stdout)
    assert record["stopped_reason"] == "rate_limited" and record["retry_after"] == 5


def test_second_flusher_exits_0_at_once(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, path: Path
) -> None:
    queue_events(capsys, 1)
    with flush_lock(path.parent / LOCK_NAME, wait=False):
        result = invoke(capsys, "queue", "flush")
    assert result.code == 0, result
    assert "another queue flush is running" in result.stderr
    assert env.requests == []


def test_flush_json_has_one_schema_whatever_happened(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, path: Path
) -> None:
    def flush_json(*extra: str) -> dict:
        result = invoke(capsys, "queue", "flush", "--format", "json", *extra)
        return json.loads(result.stdout)

    records = {"no journal": flush_json()}
    queue_events(capsys, 2)
    with flush_lock(path.parent / LOCK_NAME, wait=False):
        records["flush running"] = flush_json()
        records["wait timeout"] = flush_json("--wait-timeout", "0.1s")
    records["delivered"] = flush_json()
    records["nothing due"] = flush_json()
    queue_events(capsys, 1)
    env.add_fault(Fault(endpoint="tracking", status=429, retry_after="5"))
    records["rate limited"] = flush_json()
    keys = {name: sorted(record) for name, record in records.items()}
    assert all(k == keys["delivered"] for k in keys.values()), keys
    assert records["no journal"]["stopped_reason"] == "nothing_due"
    assert records["flush running"]["stopped_reason"] == "flush_running"
    assert records["flush running"]["remaining_queued"] == 2
    assert "another queue flush is running" in records["flush running"]["error"]
    assert records["wait timeout"]["stopped_reason"] == "wait_timeout"
    assert records["rate limited"]["paused_until"] is not None


def test_wait_timeout_says_who_holds_the_lock_and_exits_75(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, path: Path
) -> None:
    queue_events(capsys, 1)
    with flush_lock(path.parent / LOCK_NAME, wait=False):
        result = invoke(capsys, "queue", "flush", "--wait-timeout", "0.2s")
    assert result.code == 75, result
    holder = f"pid {os.getpid()}, running since "
    waiting, *rest = result.stderr.splitlines()
    assert waiting.startswith(f"matokit: another queue flush holds the lock ({holder}")
    assert waiting.endswith("; waiting for it to finish, for at most 0.2s.")
    assert "still holds the lock after waiting 0.2s" in rest[0] and holder in rest[0]
    assert "--wait-timeout" in rest[1]
    assert env.requests == []
    assert invoke(capsys, "queue", "flush", "--wait-timeout", "5s").code == 0
    assert len(env.hits) == 1


def test_flush_with_an_invalid_token_and_old_hits_exits_77(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, monkeypatch, path: Path
) -> None:
    queue_events(capsys, 2, "--at", str(int(time.time()) - 2 * 86400))
    monkeypatch.setenv("MATOMO_TOKEN", SENTINEL_TOKEN)
    result = invoke(capsys, "queue", "flush", "--format", "json")
    assert result.code == 77, result
    assert json.loads(result.stdout)["auth_failed"] is True
    assert [e.state for e in entries(path)] == [EntryState.PENDING] * 2
    assert SENTINEL_TOKEN not in result.stdout + result.stderr
    status = json.loads(invoke(capsys, "queue", "status", "--format", "json").stdout)
    assert "rejected the token" in " ".join(status["warnings"])


def test_flush_without_url_exits_78_and_keeps_the_hits(
    capsys: pytest.CaptureFixture[str], monkeypatch, path: Path
) -> None:
    monkeypatch.setenv("MATOMO_SITE_ID", "1")
    queue_events(capsys, 1)
    result = invoke(capsys, "queue", "flush")
    assert result.code == 78, result
    assert [e.state for e in entries(path)] == [EntryState.PENDING]


# --- list / export / retry-dead / purge -------------------------------------------------------


def test_dead_letters_can_be_listed_exported_retried_and_purged(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, path: Path
) -> None:
    queue_events(capsys, 1)
    invoke(capsys, "track", "goal", "--goal", "99", "--queue")
    assert invoke(capsys, "queue", "flush").code == 0
    listed = json.loads(invoke(capsys, "queue", "list", "--dead", "--format", "json").stdout)
    assert len(listed) == 1 and "refused" in listed[0]["reason"]
    assert json.loads(invoke(capsys, "queue", "list", "--format", "json").stdout) == []
    table = invoke(capsys, "queue", "list", "--dead")
    assert "dead" in table.stdout
    exported = [
        json.loads(line) for line in invoke(capsys, "queue", "export", "--dead").stdout.splitlines()
    ]
    assert exported[0]["params"]["idgoal"] == "99"
    assert "token_auth" not in json.dumps(exported)

    retried = invoke(capsys, "queue", "retry-dead", listed[0]["id"], "--format", "json")
    assert json.loads(retried.stdout) == {"retried": 1}
    assert [e.state for e in entries(path)] == [EntryState.PENDING]
    invoke(capsys, "queue", "flush")
    purged = invoke(capsys, "queue", "purge", "--dead", "--older-than", "30d")
    assert "0 dead letter(s) purged" in purged.stderr
    assert invoke(capsys, "queue", "purge", "--dead").code == 0
    assert entries(path) == []


def test_retry_dead_needs_ids_or_all(capsys: pytest.CaptureFixture[str], env: FakeMatomo) -> None:
    assert invoke(capsys, "queue", "retry-dead").code == 2
    assert invoke(capsys, "queue", "retry-dead", "--all").code == 0


@pytest.mark.parametrize("command", ["retry-dead", "retry-unattributed"])
def test_retry_by_id_without_a_journal_is_a_data_error_naming_the_id(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, path: Path, command: str
) -> None:
    result = invoke(capsys, "queue", command, "01M8A79G6C46FJB4")
    assert result.code == 65, result
    assert "has id 01M8A79G6C46FJB4: this profile has no journal yet" in result.stderr
    assert not path.exists()


def test_retry_unattributed_refuses_a_dead_letter_id(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, path: Path
) -> None:
    invoke(capsys, "track", "goal", "--goal", "99", "--queue")
    invoke(capsys, "queue", "flush")
    (dead,) = entries(path, EntryState.DEAD)
    result = invoke(capsys, "queue", "retry-unattributed", dead.id[:10])
    assert result.code == 65, result
    assert f"{dead.id} is dead, not an unattributed hit" in result.stderr
    assert "queue list --unattributed" in result.stderr
    assert [e.state for e in entries(path)] == [EntryState.DEAD]


def test_purge_without_dead_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo
) -> None:
    assert invoke(capsys, "queue", "purge").code == 2
    assert invoke(capsys, "queue", "purge", "--dead", "--older-than", "soon").code == 2


def test_export_streams_queued_hits_as_json_lines(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo
) -> None:
    queue_events(capsys, 3)
    out = invoke(capsys, "queue", "export").stdout.splitlines()
    assert [json.loads(line)["params"]["e_a"] for line in out] == ["a0", "a1", "a2"]


def test_list_limit(capsys: pytest.CaptureFixture[str], env: FakeMatomo) -> None:
    queue_events(capsys, 3)
    listed = json.loads(invoke(capsys, "queue", "list", "--limit", "2", "--format", "json").stdout)
    assert len(listed) == 2


# --- local storage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("queue", "status"), ("queue", "flush"), ("queue", "list"), ("queue", "export")],
)
def test_corrupt_journal_exits_74_and_stays_byte_identical(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, path: Path, args: tuple[str, ...]
) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    result = invoke(capsys, *args)
    assert result.code == 74, result
    assert str(path) in result.stderr
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_flush_against_a_url_without_tracker_exits_78_and_keeps_the_hits(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, monkeypatch, path: Path
) -> None:
    queue_events(capsys, 2)
    env.add_fault(Fault(endpoint="tracking", status=404))
    result = invoke(capsys, "queue", "flush")
    assert result.code == 78, result
    assert "tracker" in result.stderr
    assert [e.state for e in entries(path)] == [EntryState.PENDING] * 2


# --- unattributed hits: list, purge, retry --------------------------------------------------------

IMPORT = "".join(
    json.dumps(record) + "\n"
    for record in (
        {"type": "event", "category": "c", "action": "a0", "id": "u0"},
        {"type": "goal", "goal": 99, "id": "bad"},  # no such goal: Matomo counts it invalid
        {"type": "event", "category": "c", "action": "a1", "id": "u1"},
    )
)


def set_aside_unattributed(capsys: pytest.CaptureFixture[str], monkeypatch, path: Path) -> int:
    """Import three hits and flush them with an admin token: Matomo counts one of the bulk
    invalid without saying which, so the flush sets hits aside as unattributed; how many."""
    from tests.fakematomo import ADMIN_TOKEN

    monkeypatch.setenv("MATOMO_TOKEN", ADMIN_TOKEN)
    assert invoke(capsys, "track", "import", "-", "--queue", stdin=IMPORT).code == 0
    flushed = json.loads(invoke(capsys, "queue", "flush", "--format", "json").stdout)
    assert flushed["unattributed"] >= 2, flushed
    assert len(entries(path, EntryState.UNATTRIBUTED)) == flushed["unattributed"]
    return int(flushed["unattributed"])


def test_unattributed_hits_are_listed_and_exported_on_their_own(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, monkeypatch, path: Path
) -> None:
    count = set_aside_unattributed(capsys, monkeypatch, path)
    queue_events(capsys, 1)  # one pending hit, which --unattributed leaves out
    listed = invoke(capsys, "queue", "list", "--unattributed", "--format", "json")
    assert listed.code == 0, listed
    views = json.loads(listed.stdout)
    assert len(views) == count
    assert {v["state"] for v in views} == {"unattributed"} and all(v["reason"] for v in views)
    both = json.loads(
        invoke(capsys, "queue", "list", "--dead", "--unattributed", "--format", "json").stdout
    )
    assert both == views  # no dead letters
    table = invoke(capsys, "queue", "list", "--unattributed")
    assert table.stdout.count("unattributed") == count
    exported = invoke(capsys, "queue", "export", "--unattributed").stdout.splitlines()
    assert [json.loads(line)["id"] for line in exported] == [v["id"] for v in views]
    status = json.loads(invoke(capsys, "queue", "status", "--format", "json").stdout)
    assert any("queue purge --unattributed" in w for w in status["warnings"])


def test_list_unattributed_when_there_are_none(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, path: Path
) -> None:
    result = invoke(capsys, "queue", "list", "--unattributed")
    assert result.code == 0, result
    assert "no unattributed hits" in result.stderr
    assert not path.exists()
    queue_events(capsys, 1)
    assert (
        json.loads(invoke(capsys, "queue", "list", "--unattributed", "--format", "json").stdout)
        == []
    )


def test_purge_unattributed_clears_the_health_warning_and_keeps_the_keys(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, monkeypatch, path: Path
) -> None:
    count = set_aside_unattributed(capsys, monkeypatch, path)
    health = invoke(capsys, "health", "--check", "queue", "--format", "json")
    assert health.code == 1, health  # WARNING
    assert "queue purge --unattributed" in json.loads(health.stdout)["checks"][0]["hint"]

    kept = invoke(capsys, "queue", "purge", "--unattributed", "--older-than", "30d")
    assert kept.code == 0, kept
    assert "0 unattributed hit(s) purged" in kept.stderr
    purged = invoke(capsys, "queue", "purge", "--unattributed", "--format", "json")
    assert purged.code == 0, purged
    assert json.loads(purged.stdout) == {"purged": count, "unattributed": count}
    assert entries(path, EntryState.UNATTRIBUTED) == []

    health = invoke(capsys, "health", "--check", "queue", "--format", "json")
    assert health.code == 0, health
    assert json.loads(health.stdout)["checks"][0]["status"] == "OK"
    assert (
        json.loads(invoke(capsys, "queue", "status", "--format", "json").stdout)["warnings"] == []
    )
    # Matomo may hold the purged hits: importing them again sends none of them.
    sent = len(env.hits)
    again = invoke(capsys, "track", "import", "-", stdin=IMPORT)
    assert again.code == 0, again
    assert len(env.hits) == sent


def test_purge_dead_and_unattributed_together_reports_each(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, path: Path
) -> None:
    queue_events(capsys, 3)
    with Journal(path) as journal:
        dead, unattributed, _ = journal.claim("test", limit=3, lease_seconds=60)
        journal.kill([(dead.id, "rejected")])
        journal.mark_unattributed([unattributed.id], reason="batch_invalid")
    result = invoke(capsys, "queue", "purge", "--dead", "--unattributed", "--format", "json")
    assert result.code == 0, result
    assert json.loads(result.stdout) == {"purged": 2, "dead": 1, "unattributed": 1}
    assert [e.state for e in entries(path)] == [EntryState.INFLIGHT]
    text = invoke(capsys, "queue", "purge", "--dead", "--unattributed")
    assert "0 dead letter(s) purged" in text.stderr
    assert "0 unattributed hit(s) purged" in text.stderr


def test_purge_dead_json_keeps_its_total(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo
) -> None:
    result = invoke(capsys, "queue", "purge", "--dead", "--format", "json")
    assert result.code == 0, result
    assert json.loads(result.stdout)["purged"] == 0


def test_purge_unattributed_usage_errors(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, path: Path
) -> None:
    bare = invoke(capsys, "queue", "purge", "--older-than", "30d")
    assert bare.code == 2, bare
    assert "--unattributed" in bare.stderr
    assert invoke(capsys, "queue", "purge", "--unattributed", "--older-than", "soon").code == 2
    assert invoke(capsys, "queue", "purge", "--unattributed", "--format", "xml").code == 2
    assert not path.exists()


def test_retry_unattributed_says_it_may_double_count(
    capsys: pytest.CaptureFixture[str], env: FakeMatomo, monkeypatch, path: Path
) -> None:
    count = set_aside_unattributed(capsys, monkeypatch, path)
    assert invoke(capsys, "queue", "retry-unattributed").code == 2
    first = entries(path, EntryState.UNATTRIBUTED)[0]
    both = invoke(capsys, "queue", "retry-unattributed", first.id, "--all")
    assert both.code == 2, both
    one = invoke(capsys, "queue", "retry-unattributed", first.id, "--format", "json")
    assert one.code == 0, one
    assert json.loads(one.stdout) == {"retried": 1}
    assert "counted twice" in one.stderr
    assert [e.state for e in entries(path) if e.id == first.id] == [EntryState.PENDING]
    rest = invoke(capsys, "queue", "retry-unattributed", "--all")
    assert rest.code == 0, rest
    assert f"{count - 1} unattributed hit(s) made due again" in rest.stderr
    assert "counted twice" in rest.stderr
    assert entries(path, EntryState.UNATTRIBUTED) == []
    none = invoke(capsys, "queue", "retry-unattributed", "--all")
    assert "0 unattributed hit(s) made due again" in none.stderr
    assert "counted twice" not in none.stderr
