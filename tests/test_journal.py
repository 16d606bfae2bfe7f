"""The retry journal's contract on every backend (SQLite and Redis: `journal_backend`), and the
SQLite file's own guarantees: reopened, corrupted, killed and shared."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from matokit.errors import (
    AmbiguousEntryError,
    JournalCorruptError,
    StorageError,
    UnknownEntryError,
)
from matokit.journal import (
    APPLICATION_ID,
    FLUSH_HISTORY,
    SCHEMA_VERSION,
    EntryState,
    Journal,
    NewHit,
    lookup,
)
from matokit.journal.contract import JournalStore
from matokit.journal.records import Entry, entry_of
from matokit.redisstore.connection import RedisTarget
from tests.journals import OPEN_FROM_SPEC, StoreOpener, journal_spec, stored_bytes

T0 = 1_700_000_000.0
WINDOW = 7 * 86400.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def hit(key: str, *, at: float = T0, **params: str) -> NewHit:
    return NewHit(key=key, params={"idsite": "1", "rec": "1", **params}, created_at=at)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "default" / "journal.sqlite"


@pytest.fixture
def journal(store_opener: StoreOpener, clock: FakeClock) -> Iterator[JournalStore]:
    """The test's journal on the backend under test (SQLite, then Redis)."""
    with store_opener(clock=clock) as opened:
        yield opened


@pytest.fixture
def sqlite_journal(path: Path, clock: FakeClock) -> Iterator[Journal]:
    with Journal(path, clock=clock) as opened:
        yield opened


def digest(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def mode(file: Path) -> int:
    return stat.S_IMODE(file.stat().st_mode)


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- files, modes and reopening ---------------------------------------------------------


def test_new_journal_makes_private_directories_and_file(path: Path, clock: FakeClock) -> None:
    old_umask = os.umask(0)  # modes must not depend on the caller's umask
    try:
        with Journal(path, clock=clock) as journal:
            journal.enqueue_one(hit("a"))
    finally:
        os.umask(old_umask)
    assert mode(path.parent) == 0o700
    assert mode(path.parent.parent) == 0o700
    assert mode(path) == 0o600


def test_wal_and_shm_files_are_private_while_open(sqlite_journal: Journal, path: Path) -> None:
    sqlite_journal.enqueue_one(hit("a"))
    sidecars = [Path(f"{path}-wal"), Path(f"{path}-shm")]
    assert all(file.exists() for file in sidecars)
    assert [mode(file) for file in sidecars] == [0o600, 0o600]


def test_creation_leaves_no_temporary_file(sqlite_journal: Journal, path: Path) -> None:
    sqlite_journal.close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["journal.sqlite"]


def test_existing_directory_mode_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "existing"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    Journal(shared / "journal.sqlite").close()
    assert mode(shared) == 0o755


def test_journal_is_marked_with_application_id_and_schema_version(
    sqlite_journal: Journal,
) -> None:
    sqlite_journal.close()
    conn = sqlite3.connect(sqlite_journal.path)
    try:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_reopened_journal_keeps_entries_in_order(
    store_opener: StoreOpener, clock: FakeClock
) -> None:
    with store_opener(clock=clock) as journal:
        journal.enqueue([hit("b", at=T0 + 2), hit("a", at=T0 + 1), hit("c", at=T0 + 3)])
        claimed = journal.claim("f1", limit=1, lease_seconds=60)
    with store_opener(clock=clock) as journal:
        entries = journal.entries()
    assert [e.key for e in entries] == ["a", "b", "c"]
    assert [e.state for e in entries] == [EntryState.INFLIGHT, EntryState.PENDING, "pending"]
    assert entries[0].id == claimed[0].id


def test_closed_journal_refuses_work_and_closes_twice(journal: JournalStore) -> None:
    journal.close()
    journal.close()
    with pytest.raises(RuntimeError, match="closed"):
        journal.enqueue_one(hit("a"))


# --- enqueue and dedup --------------------------------------------------------------------


def test_enqueue_counts_added_and_duplicates_in_one_call(journal: JournalStore) -> None:
    result = journal.enqueue([hit("a"), hit("b"), hit("a")])
    assert (result.added, result.duplicates) == (2, 1)
    assert journal.enqueue_one(hit("b")) is False
    assert journal.enqueue_one(hit("c")) is True


def test_entry_records_params_times_and_state(journal: JournalStore, clock: FakeClock) -> None:
    clock.advance(30)
    journal.enqueue_one(hit("a", at=T0 - 5, url="https://example.com/é"))
    (entry,) = journal.entries()
    assert entry.params == {"idsite": "1", "rec": "1", "url": "https://example.com/é"}
    assert (entry.created_at, entry.enqueued_at, entry.next_attempt_at) == (
        T0 - 5,
        T0 + 30,
        T0 + 30,
    )
    assert (entry.state, entry.attempts, entry.sent_unconfirmed) == ("pending", 0, 0)
    assert entry.last_error is entry.lease_owner is entry.reason is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.state = EntryState.DEAD  # type: ignore[misc]


def test_token_auth_is_never_stored(
    journal: JournalStore, path: Path, redis_target: RedisTarget | None
) -> None:
    secret = "5ec0ffee5ec0ffee5ec0ffee5ec0ffee"
    journal.enqueue_one(hit("a", token_auth=secret))
    assert "token_auth" not in journal.entries()[0].params
    journal.close()
    written = list(stored_bytes(path, redis_target))
    assert written
    assert not any(secret.encode() in data for data in written)


def test_new_hit_refuses_empty_key_and_missing_time() -> None:
    with pytest.raises(ValueError):
        NewHit(key="", params={}, created_at=T0)
    with pytest.raises(ValueError):
        NewHit(key="a", params={}, created_at=float("nan"))


def test_ids_sort_by_hit_time_then_enqueue_order(journal: JournalStore) -> None:
    journal.enqueue([hit("late", at=T0 + 10), hit("x1"), hit("x2"), hit("early", at=T0 - 10)])
    entries = journal.entries()
    assert [e.key for e in entries] == ["early", "x1", "x2", "late"]
    assert all(len(e.id) == 26 and e.id.isalnum() and e.id.isupper() for e in entries)


def test_id_taken_by_another_process_is_retried_with_fresh_bits(
    store_opener: StoreOpener, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = store_opener(clock=clock), store_opener(clock=clock)
    bits = iter([5, 5, 7])
    monkeypatch.setattr("matokit.journal.ids.random.getrandbits", lambda _n: next(bits))
    try:
        assert first.enqueue_one(hit("a"))
        assert second.enqueue_one(hit("b"))  # same millisecond, same bits: a collision
        assert next(bits, None) is None  # the retry drew fresh bits
    finally:
        first.close()
        second.close()
    with store_opener(clock=clock) as journal:
        ids = [e.id for e in journal.entries()]
    assert len(ids) == len(set(ids)) == 2


def test_enqueue_streams_and_commits_each_chunk(
    store_opener: StoreOpener, clock: FakeClock
) -> None:
    seen_committed: list[int] = []

    def hits() -> Iterator[NewHit]:
        for i in range(2500):
            if i == 2100:
                with store_opener(clock=clock) as other:
                    seen_committed.append(other.stats().queued)
            yield hit(f"k{i}")

    with store_opener(clock=clock) as journal:
        assert journal.enqueue(hits()).added == 2500
    assert seen_committed == [2000]


def test_keys_in_any_state_are_duplicates(journal: JournalStore) -> None:
    journal.enqueue([hit(k) for k in ("pending", "inflight", "dead", "unattributed")])
    by_key = {e.key: e.id for e in journal.entries()}
    journal.claim("f", limit=4, lease_seconds=60)
    journal.reschedule([by_key["pending"]], error="503", next_attempt_at=T0 + 60)
    journal.kill([(by_key["dead"], "rejected")])
    journal.mark_unattributed([by_key["unattributed"]], reason="batch_invalid")
    states = {e.key: e.state for e in journal.entries()}
    assert states == {"pending": "pending", "inflight": "inflight", "dead": "dead",
                      "unattributed": "unattributed"}  # fmt: skip
    result = journal.enqueue([hit(k) for k in states])
    assert (result.added, result.duplicates) == (0, 4)
    assert all(journal.has_key(k) for k in states)
    assert not journal.has_key("never")


def test_delivered_key_is_a_duplicate_within_the_window(
    journal: JournalStore, clock: FakeClock
) -> None:
    journal.enqueue_one(hit("a"))
    journal.ack([e.id for e in journal.claim("f", limit=10, lease_seconds=60)])
    assert journal.entries() == []
    clock.advance(WINDOW - 1)
    assert journal.has_key("a")
    assert journal.enqueue_one(hit("a")) is False


def test_delivered_key_is_accepted_again_after_the_window(
    journal: JournalStore, clock: FakeClock
) -> None:
    journal.enqueue_one(hit("a"))
    journal.ack([e.id for e in journal.claim("f", limit=10, lease_seconds=60)])
    clock.advance(WINDOW + 1)
    assert not journal.has_key("a")
    assert journal.enqueue_one(hit("a")) is True


def test_custom_dedup_window(store_opener: StoreOpener, clock: FakeClock) -> None:
    with store_opener(clock=clock, dedup_window=60) as journal:
        journal.enqueue_one(hit("a"))
        journal.ack([journal.entries()[0].id])
        clock.advance(61)
        assert journal.enqueue_one(hit("a")) is True


def test_old_delivered_keys_are_pruned_on_ack(
    journal: JournalStore, clock: FakeClock, path: Path, redis_target: RedisTarget | None
) -> None:
    journal.enqueue([hit("old"), hit("new")])
    old, new = journal.entries()
    journal.ack([old.id])
    clock.advance(WINDOW + 1)
    journal.ack([new.id])
    assert journal.stats().delivered_keys == 1
    journal.close()
    if redis_target is not None:
        import redis

        client = redis.Redis.from_url(redis_target.url)
        key = redis_target.keys.journal("delivered")
        assert client.zrange(key, 0, -1) == [b"new"]
        client.close()
        return
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT key FROM delivered").fetchall() == [("new",)]
    finally:
        conn.close()


# --- claiming and the delivery cycle --------------------------------------------------------


def test_claim_leases_oldest_due_hits_and_counts_an_attempt(
    journal: JournalStore, clock: FakeClock
) -> None:
    journal.enqueue([hit(f"k{i}", at=T0 + i) for i in range(5)])
    first = journal.claim("f1", limit=3, lease_seconds=60)
    assert [e.key for e in first] == ["k0", "k1", "k2"]
    assert all(e.state == "inflight" and e.attempts == 1 for e in first)
    assert {(e.lease_owner, e.lease_expires_at) for e in first} == {("f1", T0 + 60)}
    second = journal.claim("f2", limit=10, lease_seconds=60)
    assert [e.key for e in second] == ["k3", "k4"]
    assert journal.claim("f3", limit=10, lease_seconds=60) == []


def test_claim_skips_hits_not_yet_due(journal: JournalStore, clock: FakeClock) -> None:
    journal.enqueue([hit("a"), hit("b", at=T0 + 1)])
    a = journal.claim("f", limit=1, lease_seconds=60)
    journal.reschedule([a[0].id], error="HTTP 503", next_attempt_at=T0 + 120)
    assert [e.key for e in journal.claim("f", limit=10, lease_seconds=600)] == ["b"]
    assert journal.claim("f", limit=10, lease_seconds=60, now=T0 + 119) == []
    again = journal.claim("f", limit=10, lease_seconds=60, now=T0 + 120)
    assert [(e.key, e.attempts, e.last_error) for e in again] == [("a", 2, "HTTP 503")]


def test_claim_with_zero_limit_claims_nothing(journal: JournalStore) -> None:
    journal.enqueue_one(hit("a"))
    assert journal.claim("f", limit=0, lease_seconds=60) == []
    with pytest.raises(ValueError):
        journal.claim("f", limit=1, lease_seconds=0)


def test_entry_of_builds_the_entry_the_constructor_builds() -> None:
    values = (
        "01ABCDEFGHJKMNPQRSTVWXYZ00", "k", {"idsite": "1"}, 1.5, 2.5, 3, 4.5,
        EntryState.INFLIGHT, "err", "owner", 5.5, "why", 2, 7, 6.5, True, False,
    )  # fmt: skip
    built = entry_of(values)
    assert built == Entry(*values)
    assert [getattr(built, f.name) for f in fields(Entry)] == list(values)
    with pytest.raises(ValueError):
        entry_of(values[:-1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.key = "other"  # type: ignore[misc]


def test_ack_deletes_entries_and_ignores_unknown_ids(journal: JournalStore) -> None:
    journal.enqueue([hit("a"), hit("b")])
    a, b = journal.claim("f", limit=2, lease_seconds=60)
    # Unknown ids, of the length of an id or not (Redis passes the ids joined), are skipped.
    assert journal.ack(["short", a.id, "01NOSUCHID0000000000000000", b.id + "x"]) == 1
    assert [e.key for e in journal.entries()] == ["b"]
    assert journal.ack([]) == 0
    with pytest.raises(TypeError):
        journal.ack(b.id)


def test_claim_acknowledges_what_it_is_given_first_in_the_same_write(
    journal: JournalStore,
) -> None:
    journal.enqueue([hit("a"), hit("b"), hit("c"), hit("d")])
    a, b = journal.claim("f", limit=2, lease_seconds=60)
    (c,) = journal.claim("f", limit=1, lease_seconds=60, ack=[a.id, b.id])
    assert c.key == "c"
    assert [e.key for e in journal.entries()] == ["c", "d"]
    assert journal.has_key("a") and journal.has_key("b")  # remembered as delivered
    journal.enqueue([hit("a")])
    assert [e.key for e in journal.entries()] == ["c", "d"]  # within the dedup window
    assert journal.claim("f", limit=0, lease_seconds=60, ack=[c.id]) == []
    assert [e.key for e in journal.entries()] == ["d"]
    (d,) = journal.claim("f", limit=5, lease_seconds=60, ack=["01NOSUCHID0000000000000000"])
    assert d.key == "d"


def test_reschedule_clears_lease_and_records_error(journal: JournalStore) -> None:
    journal.enqueue_one(hit("a"))
    (a,) = journal.claim("f", limit=1, lease_seconds=60)
    assert journal.reschedule([a.id], error="connection refused", next_attempt_at=T0 + 30) == 1
    (entry,) = journal.entries()
    assert (entry.state, entry.attempts, entry.next_attempt_at) == ("pending", 1, T0 + 30)
    assert (entry.last_error, entry.lease_owner, entry.lease_expires_at) == (
        "connection refused",
        None,
        None,
    )


def test_sent_unconfirmed_is_counted_and_sticks(journal: JournalStore, clock: FakeClock) -> None:
    journal.enqueue_one(hit("a"))
    (a,) = journal.claim("f", limit=1, lease_seconds=60)
    journal.reschedule([a.id], error="read timeout", next_attempt_at=T0, sent_unconfirmed=True)
    (entry,) = journal.entries()
    assert (entry.state, entry.sent_unconfirmed) == ("sent_unconfirmed", 1)
    (again,) = journal.claim("f", limit=1, lease_seconds=60)
    assert again.id == a.id
    journal.reschedule([a.id], error="connection refused", next_attempt_at=T0)
    (entry,) = journal.entries()
    # Matomo may already hold a copy, whatever later attempts said.
    assert (entry.state, entry.sent_unconfirmed) == ("sent_unconfirmed", 1)
    assert journal.stats().sent_unconfirmed_total == 1
    journal.claim("f", limit=1, lease_seconds=60)
    journal.ack([a.id])
    assert journal.stats().delivered_unconfirmed == 1


def test_release_returns_hits_without_counting_the_attempt(journal: JournalStore) -> None:
    journal.enqueue([hit("a"), hit("b")])
    claimed = journal.claim("f", limit=2, lease_seconds=60)
    assert journal.release([e.id for e in claimed]) == 2
    assert [(e.state, e.attempts, e.lease_owner) for e in journal.entries()] == [
        ("pending", 0, None),
        ("pending", 0, None),
    ]
    assert len(journal.claim("g", limit=5, lease_seconds=60)) == 2


def test_release_only_touches_inflight_hits(journal: JournalStore) -> None:
    journal.enqueue_one(hit("a"))
    assert journal.release([journal.entries()[0].id]) == 0
    assert journal.entries()[0].attempts == 0


def test_expired_lease_makes_a_dead_flushers_batch_due_again(
    journal: JournalStore, clock: FakeClock
) -> None:
    journal.enqueue([hit("a"), hit("b")])
    journal.claim("dead-flusher", limit=2, lease_seconds=30)
    assert journal.claim("f2", limit=10, lease_seconds=30, now=T0 + 29) == []
    assert journal.stats(now=T0 + 29).next_attempt_at == T0 + 30
    again = journal.claim("f2", limit=10, lease_seconds=30, now=T0 + 30)
    assert [e.key for e in again] == ["a", "b"]
    # The dead flusher may have sent them: counted as sends whose answer was lost.
    assert {(e.lease_owner, e.attempts, e.sent_unconfirmed) for e in again} == {("f2", 2, 1)}
    assert again[0].last_error == "lease of dead-flusher expired"


def test_a_lease_is_due_at_its_exact_time_not_a_fraction_of_a_millisecond_before(
    journal: JournalStore, clock: FakeClock
) -> None:
    # Redis scores leases in whole milliseconds; the exact expiry still decides.
    journal.enqueue([hit("a")])
    journal.claim("dead-flusher", limit=1, lease_seconds=30.0004)
    expires = T0 + 30.0004
    early = expires - 0.0002  # the same millisecond, before the lease ends
    assert journal.stats(now=early).due == 0
    assert journal.stats(now=early).next_attempt_at == expires
    assert journal.claim("f2", limit=10, lease_seconds=30, now=early) == []
    assert journal.stats(now=expires).due == 1
    assert [e.key for e in journal.claim("f2", limit=10, lease_seconds=30, now=expires)] == ["a"]


def test_killed_flusher_process_releases_its_batch_by_lease_expiry(
    store_opener: StoreOpener, path: Path, redis_target: RedisTarget | None
) -> None:
    with store_opener() as journal:
        journal.enqueue([hit(f"k{i}") for i in range(5)])
    flusher = run_python(
        OPEN_FROM_SPEC + "import time\n"
        "j = open_journal()\n"
        "print(len(j.claim('victim', limit=3, lease_seconds=2)), flush=True)\n"
        "time.sleep(60)\n",
        journal_spec(path, redis_target),
    )
    try:
        assert flusher.stdout is not None
        assert flusher.stdout.readline().strip() == "3"
    finally:
        flusher.send_signal(signal.SIGKILL)
        flusher.communicate(timeout=10)
    with store_opener() as journal:
        now = time.time()
        assert [e.key for e in journal.claim("f", limit=10, lease_seconds=60, now=now)] == [
            "k3",
            "k4",
        ]
        late = journal.claim("f", limit=10, lease_seconds=60, now=now + 3)
        assert sorted(e.key for e in late) == ["k0", "k1", "k2"]


# --- dead, unattributed and operator actions ------------------------------------------------


def test_kill_makes_hits_dead_with_reason_and_unclaimable(journal: JournalStore) -> None:
    journal.enqueue([hit("a"), hit("b")])
    a, b = journal.claim("f", limit=2, lease_seconds=60)
    assert journal.kill([(a.id, "rejected by Matomo"), (b.id, "max_attempts")]) == 2
    entries = journal.entries(states={EntryState.DEAD})
    assert [(e.state, e.reason, e.dead_reason, e.lease_owner) for e in entries] == [
        ("dead", "rejected by Matomo", "rejected by Matomo", None),
        ("dead", "max_attempts", "max_attempts", None),
    ]
    assert journal.claim("f", limit=10, lease_seconds=60, now=T0 + 1e6) == []
    assert journal.kill([(a.id, "again")]) == 0


def test_unattributed_hits_are_kept_but_never_resent(journal: JournalStore) -> None:
    journal.enqueue([hit("a"), hit("b")])
    a, b = journal.claim("f", limit=2, lease_seconds=60)
    assert journal.mark_unattributed([a.id, b.id], reason="batch_invalid") == 2
    assert journal.claim("f", limit=10, lease_seconds=60, now=T0 + 1e6) == []
    (entry, _) = journal.entries(states=[EntryState.UNATTRIBUTED])
    assert (entry.reason, entry.dead_reason) == ("batch_invalid", None)
    assert journal.stats().unattributed_by_reason == {"batch_invalid": 2}


def test_retry_dead_by_id_and_all(journal: JournalStore, clock: FakeClock) -> None:
    journal.enqueue([hit("a"), hit("b"), hit("c")])
    claimed = journal.claim("f", limit=3, lease_seconds=60)
    journal.kill([(e.id, "max_attempts") for e in claimed])
    clock.advance(100)
    assert journal.retry_dead([claimed[0].id]) == 1
    (entry,) = journal.entries(states=[EntryState.PENDING])
    assert (entry.key, entry.attempts, entry.next_attempt_at, entry.reason) == (
        "a",
        0,
        T0 + 100,
        None,
    )
    assert journal.retry_dead() == 2
    assert journal.stats().dead == 0
    assert len(journal.claim("f", limit=10, lease_seconds=60)) == 3


def test_retry_dead_restarts_the_max_age_clock(journal: JournalStore, clock: FakeClock) -> None:
    """A hit that died of old age must not die again at the next flush's age check."""
    journal.enqueue([hit("aged")])
    (entry,) = journal.claim("f", limit=1, lease_seconds=60)
    journal.kill([(entry.id, "max_age")])
    clock.advance(8 * 86400)
    assert journal.retry_dead() == 1
    (retried,) = journal.entries(states=[EntryState.PENDING])
    assert retried.enqueued_at == T0 + 8 * 86400
    assert retried.created_at == entry.created_at  # the hit's own time is never rewritten


def test_purge_dead_all_or_older_than(journal: JournalStore, clock: FakeClock) -> None:
    journal.enqueue([hit("old", at=T0 - 3 * 86400), hit("new", at=T0 - 60), hit("live")])
    old, new, _ = journal.entries()
    journal.kill([(old.id, "max_age"), (new.id, "rejected")])
    assert journal.purge_dead(older_than=86400) == 1
    assert [e.key for e in journal.entries()] == ["new", "live"]
    assert journal.purge_dead() == 1
    assert [e.key for e in journal.entries()] == ["live"]


def test_entries_filters_limits_and_streams(journal: JournalStore) -> None:
    journal.enqueue([hit(f"k{i:04d}", at=T0 + i) for i in range(1203)])
    journal.kill([(e.id, "x") for e in journal.entries(limit=3)])
    assert [e.key for e in journal.entries(states={EntryState.DEAD})] == ["k0000", "k0001", "k0002"]
    assert [e.key for e in journal.entries(limit=2)] == ["k0000", "k0001"]
    assert journal.entries(states=()) == []
    streamed = list(journal.iter_entries(states=[EntryState.PENDING]))
    assert len(streamed) == 1200
    assert [e.key for e in streamed] == sorted(e.key for e in streamed)
    assert len(list(journal.iter_entries())) == 1203


# --- stats and flush records ---------------------------------------------------------------


def test_stats_reports_counts_ages_and_next_attempt(
    journal: JournalStore, clock: FakeClock
) -> None:
    journal.enqueue([hit(f"k{i}", at=T0 - 100 + i) for i in range(6)])
    k0, k1, k2, k3, k4, _k5 = journal.entries()
    journal.claim("f", limit=5, lease_seconds=600)
    journal.reschedule([k0.id], error="503", next_attempt_at=T0 + 50)
    journal.reschedule([k1.id], error="timeout", next_attempt_at=T0 + 20, sent_unconfirmed=True)
    journal.kill([(k2.id, "rejected")])
    journal.mark_unattributed([k3.id], reason="unconfirmed")
    clock.advance(10)
    stats = journal.stats()
    assert dict(stats.counts) == {
        EntryState.PENDING: 2,
        EntryState.INFLIGHT: 1,
        EntryState.SENT_UNCONFIRMED: 1,
        EntryState.UNATTRIBUTED: 1,
        EntryState.DEAD: 1,
    }
    assert (stats.queued, stats.dead, stats.total) == (4, 1, 6)
    assert stats.due == 1  # only k5 was never claimed
    assert stats.oldest_created_at == pytest.approx(T0 - 100)
    assert stats.oldest_age == pytest.approx(110)
    assert stats.next_attempt_at == T0  # k5, due since it was enqueued
    assert stats.sent_unconfirmed_total == 1
    assert dict(stats.dead_by_reason) == {"rejected": 1}
    assert dict(stats.unattributed_by_reason) == {"unconfirmed": 1}
    assert stats.file_size > 0
    assert stats.last_flush is None
    assert k4.key == "k4"


def test_stats_of_an_empty_journal(journal: JournalStore) -> None:
    stats = journal.stats()
    assert (stats.total, stats.due, stats.oldest_created_at, stats.oldest_age) == (0, 0, None, None)
    assert stats.next_attempt_at is None
    assert str(stats.path) == journal.location


def test_record_flush_keeps_the_last_twenty(journal: JournalStore, clock: FakeClock) -> None:
    assert journal.last_flush() is None
    for i in range(FLUSH_HISTORY + 5):
        clock.advance(1)
        journal.record_flush({"sent": i, "outcome": "ok"})
    assert journal.last_flush() == {"recorded_at": clock.now, "sent": 24, "outcome": "ok"}
    history = journal.flush_history()
    assert [record["sent"] for record in history] == list(range(24, 4, -1))
    assert journal.stats().last_flush == journal.last_flush()


# --- files that are not journals --------------------------------------------------------------


def _foreign_sqlite(file: Path) -> None:
    conn = sqlite3.connect(file)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.commit()
    conn.close()


def _populated_journal(file: Path) -> None:
    with Journal(file) as journal:
        journal.enqueue([hit(f"k{i}", blob="x" * 500) for i in range(400)])


def _garbage(file: Path) -> None:
    file.write_bytes(os.urandom(8192))


def _garbled_header(file: Path) -> None:
    _populated_journal(file)
    data = bytearray(file.read_bytes())
    data[:16] = b"\xff" * 16
    file.write_bytes(bytes(data))


def _foreign_application_id(file: Path) -> None:
    _populated_journal(file)
    data = bytearray(file.read_bytes())
    data[68:72] = (0x12345678).to_bytes(4, "big")
    file.write_bytes(bytes(data))


def _truncated_to_a_few_bytes(file: Path) -> None:
    _populated_journal(file)
    file.write_bytes(file.read_bytes()[:40])


def _truncated_in_the_middle(file: Path) -> None:
    _populated_journal(file)
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _empty(file: Path) -> None:
    file.write_bytes(b"")


def _marked_but_without_tables(file: Path) -> None:
    conn = sqlite3.connect(file)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_garbage, "not a SQLite database"),
        (_foreign_sqlite, "another application"),
        (_garbled_header, "not a SQLite database"),
        (_foreign_application_id, "another application"),
        (_truncated_to_a_few_bytes, "not a SQLite database"),
        (_truncated_in_the_middle, "damaged"),
        (_empty, "is empty"),
        (_marked_but_without_tables, "missing or incomplete"),
    ],
)
def test_file_that_is_not_a_journal_is_refused_and_left_untouched(
    tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    folder = tmp_path / "damaged"
    folder.mkdir()
    file = folder / "journal.sqlite"
    damage(file)
    before = digest(file)
    with pytest.raises(JournalCorruptError, match=message) as caught:
        Journal(file)
    assert digest(file) == before
    assert caught.value.path == str(file)
    assert str(file) in caught.value.message
    assert caught.value.hint is not None and "move it aside" in caught.value.hint
    # Refused before SQLite ever opened it for writing: nothing appeared beside it.
    assert sorted(p.name for p in folder.iterdir()) == ["journal.sqlite"]


def test_damaged_page_found_later_raises_corrupt_not_sqlite_error(tmp_path: Path) -> None:
    file = tmp_path / "journal.sqlite"
    _populated_journal(file)
    data = bytearray(file.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    for page in range(2, len(data) // page_size):
        data[page * page_size : page * page_size + 64] = b"\xa5" * 64
    file.write_bytes(bytes(data))
    before = digest(file)
    with pytest.raises(JournalCorruptError, match="damaged"), Journal(file) as journal:
        journal.entries()
    assert digest(file) == before


def test_journal_from_a_newer_matokit_is_refused(path: Path) -> None:
    Journal(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StorageError, match="schema version") as caught:
        Journal(path)
    assert caught.value.hint is not None and "upgrade" in caught.value.hint
    assert not isinstance(caught.value, JournalCorruptError)
    assert digest(path) == before


# --- unusable storage ---------------------------------------------------------------------------


def test_directory_path_blocked_by_a_file_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError) as caught:
        Journal(blocker / "journal.sqlite")
    assert "data" in caught.value.message
    assert caught.value.hint


def test_journal_path_that_is_a_directory_raises_storage_error(tmp_path: Path) -> None:
    (tmp_path / "journal.sqlite").mkdir()
    with pytest.raises(StorageError):
        Journal(tmp_path / "journal.sqlite")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_read_only_directory_raises_storage_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        with pytest.raises(StorageError) as caught:
            Journal(locked / "journal.sqlite")
        assert str(locked) in caught.value.message
    finally:
        os.chmod(locked, 0o700)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_read_only_journal_file_raises_storage_error(path: Path) -> None:
    with Journal(path) as journal:
        journal.enqueue_one(hit("a"))
    os.chmod(path, 0o400)
    try:
        with pytest.raises(StorageError), Journal(path) as journal:
            journal.enqueue_one(hit("b"))
    finally:
        os.chmod(path, 0o600)


_READ_ONLY_PROBE = """
import sys
from pathlib import Path
from matokit.errors import StorageError
from matokit.journal import Journal, NewHit
for name in ("journal.sqlite", "fresh/journal.sqlite"):
    try:
        with Journal(Path(sys.argv[1]) / name) as journal:
            journal.enqueue_one(NewHit(key="b", params={}, created_at=0.0))
        print(name, "opened")
    except StorageError as exc:
        print(name, type(exc).__name__, exc.path, "read-only filesystem" in f"{exc} {exc.hint}")
"""


def test_read_only_filesystem_raises_storage_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    with Journal(ro / "journal.sqlite") as journal:
        journal.enqueue_one(hit("a"))
    before = digest(ro / "journal.sqlite")
    script = 'mount --bind -o ro "$0" "$0" || exit 99; exec "$1" -c "$2" "$0"'
    try:
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", script, str(ro), sys.executable, _READ_ONLY_PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("unshare is not installed")
    if done.returncode == 99 or "unshare failed" in done.stderr:
        pytest.skip("cannot make a read-only bind mount here")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"journal.sqlite StorageError {ro / 'journal.sqlite'} True",
        f"fresh/journal.sqlite StorageError {ro / 'fresh'} True",
    ]
    assert digest(ro / "journal.sqlite") == before


_DISK_FULL_PROBE = """
import resource, signal, sys
from pathlib import Path
from matokit.errors import StorageError
from matokit.journal import Journal, NewHit
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
journal = Journal(Path(sys.argv[1]))
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
committed = 0
try:
    for start in range(0, 3000, 100):
        hits = [NewHit(key=f"k{i}", params={"blob": "x" * 1000}, created_at=0.0)
                for i in range(start, start + 100)]
        committed += journal.enqueue(hits).added
    print("no error", committed)
except StorageError as exc:
    print(type(exc).__name__, committed, exc.hint is not None)
"""


def test_full_disk_raises_storage_error_and_keeps_committed_hits(path: Path) -> None:
    Journal(path).close()
    done = subprocess.run(
        [sys.executable, "-c", _DISK_FULL_PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    kind, committed, has_hint = done.stdout.split()
    assert (kind, has_hint) == ("StorageError", "True")
    with Journal(path) as journal:
        assert journal.stats().queued == int(committed) > 0


# --- crashes and concurrency --------------------------------------------------------------------

_WRITER_UNTIL_KILLED = (
    OPEN_FROM_SPEC
    + """
from matokit.journal import NewHit
journal = open_journal()
count = 0
while True:
    if count % 3:
        journal.enqueue_one(NewHit(key=f"k{count}", params={"n": str(count)}, created_at=0.0))
        count += 1
    else:
        journal.enqueue(NewHit(key=f"k{i}", params={"n": str(i)}, created_at=0.0)
                        for i in range(count, count + 50))
        count += 50
    print(count, flush=True)
"""
)


def test_hits_acknowledged_before_kill_9_survive(
    store_opener: StoreOpener, path: Path, redis_target: RedisTarget | None
) -> None:
    writer = run_python(_WRITER_UNTIL_KILLED, journal_spec(path, redis_target))
    assert writer.stdout is not None
    acknowledged = 0
    deadline = time.monotonic() + 10
    try:
        while acknowledged < 3000 and time.monotonic() < deadline:
            line = writer.stdout.readline()
            assert line, writer.stderr.read() if writer.stderr else ""
            acknowledged = int(line)
    finally:
        writer.send_signal(signal.SIGKILL)
        rest, _ = writer.communicate(timeout=10)
    # Lines already in the pipe were acknowledged too; a torn last line was not.
    lines = [line for line in rest.split("\n")[:-1] if line]
    if lines:
        acknowledged = int(lines[-1])
    assert acknowledged > 0
    with store_opener() as journal:
        keys = {e.key for e in journal.iter_entries()}
    assert {f"k{i}" for i in range(acknowledged)} <= keys
    if redis_target is not None:
        return
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


_WRITER = (
    OPEN_FROM_SPEC
    + """
from matokit.journal import NewHit
writer = sys.argv[2]
hits = [NewHit(key=f"w{writer}-{i}", params={"n": str(i)}, created_at=1.7e9 + i)
        for i in range(200)]
with open_journal() as journal:
    for one in hits[:100]:
        assert journal.enqueue_one(one)
    for start in range(100, 200, 20):
        assert journal.enqueue(hits[start:start + 20]).added == 20
"""
)

_CLAIMER = (
    OPEN_FROM_SPEC
    + """
import time
name, stop = sys.argv[2], Path(sys.argv[3])
deadline = time.monotonic() + 60
with open_journal() as journal:
    while time.monotonic() < deadline:
        batch = journal.claim(name, limit=25, lease_seconds=300)
        if batch:
            journal.ack([entry.id for entry in batch])
            print("\\n".join(entry.key for entry in batch), flush=True)
        elif stop.exists():
            break
        else:
            time.sleep(0.005)
"""
)


def test_eight_writers_and_two_claimers_deliver_every_hit_exactly_once(
    tmp_path: Path, store_opener: StoreOpener, redis_target: RedisTarget | None
) -> None:
    path = tmp_path / "data" / "default" / "journal.sqlite"  # created by whichever comes first
    spec = journal_spec(path, redis_target)
    stop = tmp_path / "stop"
    claimers = [run_python(_CLAIMER, spec, f"c{n}", str(stop)) for n in range(2)]
    writers = [run_python(_WRITER, spec, str(n)) for n in range(8)]
    try:
        for writer in writers:
            _, errors = writer.communicate(timeout=60)
            assert writer.returncode == 0, errors
        stop.touch()
        outputs = []
        for claimer in claimers:
            out, errors = claimer.communicate(timeout=60)
            assert claimer.returncode == 0, errors
            outputs.append(out.split())
    finally:
        for process in (*claimers, *writers):
            if process.poll() is None:
                process.kill()
                process.communicate()
    acked = Counter(key for output in outputs for key in output)
    expected = {f"w{w}-{i}" for w in range(8) for i in range(200)}
    assert set(acked) == expected
    assert set(acked.values()) == {1}
    with store_opener() as journal:
        stats = journal.stats()
    assert (stats.total, stats.delivered_keys) == (0, 1600)


# --- clearing unattributed hits --------------------------------------------------------------


def set_aside(journal: JournalStore, *keys: str) -> list[str]:
    """Claim the hits under `keys` and mark them unattributed, as a flush would; their ids."""
    claimed = journal.claim("f", limit=len(keys), lease_seconds=60, now=T0 + 1e6)
    assert sorted(e.key for e in claimed) == sorted(keys)
    assert journal.mark_unattributed([e.id for e in claimed], reason="batch_invalid") == len(keys)
    return [e.id for e in claimed]


def test_purge_unattributed_all_or_older_than_the_hit_time(
    journal: JournalStore, clock: FakeClock
) -> None:
    journal.enqueue([hit("old", at=T0 - 3 * 86400), hit("new", at=T0 - 60)])
    set_aside(journal, "old", "new")
    journal.enqueue([hit("live"), hit("dead")])
    (dead,) = [e for e in journal.entries() if e.key == "dead"]
    journal.kill([(dead.id, "rejected")])
    clock.advance(7200)  # older_than counts from the hit's time, not from now or the enqueue
    assert journal.purge_unattributed(older_than=86400) == 1
    assert [e.key for e in journal.entries()] == ["new", "live", "dead"]
    assert journal.purge_unattributed(older_than=3600, now=T0) == 0  # `now` moves the cutoff
    assert journal.purge_unattributed() == 1
    assert [e.key for e in journal.entries()] == ["live", "dead"]
    assert journal.purge_unattributed() == 0


def test_purged_unattributed_keys_stay_duplicates_for_the_dedup_window(
    journal: JournalStore, clock: FakeClock
) -> None:
    journal.enqueue([hit("a"), hit("b")])
    set_aside(journal, "a", "b")
    assert journal.purge_unattributed() == 2
    # Matomo may hold them: a re-run import must not send them again.
    assert journal.enqueue([hit("a"), hit("b")]).duplicates == 2
    assert journal.has_key("a")
    stats = journal.stats()
    assert (stats.total, stats.delivered_keys, stats.delivered_unconfirmed) == (0, 2, 0)
    clock.advance(WINDOW + 1)
    assert journal.enqueue_one(hit("a"))


def test_purging_unattributed_clears_the_stats_and_leaves_dead_letters(
    journal: JournalStore,
) -> None:
    journal.enqueue([hit("u"), hit("d")])
    u, d = journal.claim("f", limit=2, lease_seconds=60)
    journal.mark_unattributed([u.id], reason="batch_invalid")
    journal.kill([(d.id, "rejected")])
    assert journal.purge_unattributed() == 1
    stats = journal.stats()
    assert stats.counts[EntryState.UNATTRIBUTED] == 0
    assert dict(stats.unattributed_by_reason) == {}
    assert (stats.dead, dict(stats.dead_by_reason)) == (1, {"rejected": 1})
    assert journal.purge_dead() == 1


def test_retry_unattributed_by_id_and_all(journal: JournalStore, clock: FakeClock) -> None:
    journal.enqueue([hit("a"), hit("b"), hit("c")])
    ids = set_aside(journal, "a", "b", "c")
    clock.advance(8 * 86400)  # beyond max_age since the enqueue: the retry restarts that clock
    assert journal.retry_unattributed([ids[0]]) == 1
    (entry,) = journal.entries(states=[EntryState.PENDING])
    assert (entry.key, entry.attempts, entry.reason) == ("a", 0, None)
    assert entry.next_attempt_at == entry.enqueued_at == T0 + 8 * 86400
    assert journal.retry_unattributed([ids[0]]) == 0  # no longer unattributed
    assert journal.retry_unattributed() == 2
    assert journal.stats().counts[EntryState.UNATTRIBUTED] == 0
    assert len(journal.claim("f", limit=10, lease_seconds=60)) == 3


def test_retry_unattributed_keeps_a_lost_answer_flagged(journal: JournalStore) -> None:
    journal.enqueue_one(hit("a"))
    (a,) = journal.claim("f", limit=1, lease_seconds=60)
    journal.reschedule([a.id], error="timeout", next_attempt_at=T0, sent_unconfirmed=True)
    journal.claim("f", limit=1, lease_seconds=60)
    journal.mark_unattributed([a.id], reason="batch_invalid")
    assert journal.retry_unattributed() == 1
    (entry,) = journal.entries()
    assert (entry.state, entry.sent_unconfirmed) == (EntryState.SENT_UNCONFIRMED, 1)


def test_retry_unattributed_touches_no_other_state(journal: JournalStore) -> None:
    journal.enqueue([hit("d"), hit("p")])
    (d,) = journal.claim("f", limit=1, lease_seconds=60)
    journal.kill([(d.id, "rejected")])
    assert journal.retry_unattributed() == 0
    assert journal.retry_unattributed([e.id for e in journal.entries()]) == 0
    assert [e.state for e in journal.entries()] == [EntryState.DEAD, EntryState.PENDING]
    with pytest.raises(TypeError):
        journal.retry_unattributed("01ABC")  # type: ignore[arg-type]


# --- ids people type: unique prefixes -----------------------------------------------------------


@pytest.fixture
def id_table() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE entries (id TEXT PRIMARY KEY, state TEXT NOT NULL)")
    rows = [
        ("01M8A79G6C46FJB4AAAAAAAAAA", "dead"),
        ("01M8A79G6C46FJB4AAAAAAAAAB", "dead"),
        ("01M8A79G6C46FJB5ZZZZZZZZZZ", "dead"),
        ("01M8B00000000000000000000P", "pending"),
        ("01N0000000000000000000000D", "dead"),
    ]
    conn.executemany("INSERT INTO entries VALUES (?, ?)", rows)
    yield conn
    conn.close()


def test_short_ids_are_the_shortest_unique_prefix_at_least_8_long(
    id_table: sqlite3.Connection,
) -> None:
    ids = [row[0] for row in id_table.execute("SELECT id FROM entries ORDER BY id")]
    assert lookup.shortest_unique(id_table, ids) == {
        ids[0]: ids[0],  # differs from its neighbour only in the last character
        ids[1]: ids[1],
        ids[2]: "01M8A79G6C46FJB5",
        ids[3]: "01M8B000",
        ids[4]: "01N00000",
    }


def test_match_accepts_whole_ids_and_unique_prefixes_in_any_case(
    id_table: sqlite3.Connection,
) -> None:
    found = lookup.match(
        id_table, ["01m8a79g6c46fjb5", "01N0", "01N0000000000000000000000D"], state="dead"
    )
    assert found == ["01M8A79G6C46FJB5ZZZZZZZZZZ", "01N0000000000000000000000D"]


@pytest.mark.parametrize(
    ("typed", "error", "message"),
    [
        (["ZZZZZZZZ"], UnknownEntryError, "No dead letter has id ZZZZZZZZ; nothing was changed."),
        (
            ["01M8B000"],
            UnknownEntryError,
            "01M8B00000000000000000000P is pending, not a dead letter",
        ),
        (["01M"], UnknownEntryError, "Id prefix '01M' is shorter than 4 characters"),
        (
            ["01M8A79G6C46FJB4"],
            AmbiguousEntryError,
            "01M8A79G6C46FJB4 (matches 01M8A79G6C46FJB4AAAAAAAAAA, 01M8A79G6C46FJB4AAAAAAAAAB)",
        ),
        (
            ["01M8A79G", "NOPE1234"],
            UnknownEntryError,
            "No dead letter has id NOPE1234; ambiguous: 01M8A79G",
        ),
    ],
)
def test_match_refuses_unknown_wrong_state_short_and_ambiguous_ids_naming_them(
    id_table: sqlite3.Connection, typed: list[str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        lookup.match(id_table, typed, state="dead")
    assert message in str(info.value)
    assert "queue list --dead" in (info.value.hint or "")  # type: ignore[attr-defined]


def test_journal_short_ids_name_their_entries_for_retry(
    journal: JournalStore, clock: FakeClock
) -> None:
    journal.enqueue([hit("a", at=T0), hit("b", at=T0 + 3600), hit("c", at=T0 + 3600)])
    claimed = journal.claim("f", limit=3, lease_seconds=60)
    journal.kill([(e.id, "rejected") for e in claimed])
    shorts = journal.short_ids([e.id for e in claimed])
    assert len(shorts[claimed[0].id]) < 26  # an hour apart: the time part alone tells them apart
    assert journal.match_ids(list(shorts.values()), state=EntryState.DEAD) == [
        e.id for e in claimed
    ]
    assert journal.retry_dead(journal.match_ids([shorts[claimed[0].id]], state="dead")) == 1


def test_tally_counts_entries_after_a_mark_by_state_without_reading_their_ids(
    journal: JournalStore,
) -> None:
    journal.enqueue([hit("old-1", at=T0), hit("old-2", at=T0)])
    mark = journal.mark()
    journal.enqueue([hit("new-1", at=T0), hit("new-2", at=T0), hit("new-3", at=T0)])
    claimed = journal.claim("f", limit=5, lease_seconds=60)
    journal.kill([(e.id, "rejected") for e in claimed if e.key == "new-3"])
    assert journal.tally(mark) == {
        (False, "inflight"): 2,
        (True, "inflight"): 2,
        (True, "dead"): 1,
    }
    assert journal.tally(journal.mark()) == {(False, "inflight"): 4, (False, "dead"): 1}
