"""`queue migrate`'s library: moving a journal between backends without loss or duplication.

Parametrized over the directions between SQLite and Redis; the Redis ones run once
`matokit.redisstore.journal.RedisJournal` exists (skipped before), against a real redis-server.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from matokit.errors import FlushInProgressError, UsageError
from matokit.journal import EntryState, Journal, NewHit
from matokit.journal.contract import Transferable
from matokit.journal.migrate import destination, migrate, migrate_profile
from matokit.journal.records import DeliveredKey
from matokit.stopping import StopRequest

T0 = time.time() - 3600.0
WINDOW = 7 * 86400.0

Make = Callable[[str, str], Any]
TRANSFER_METHODS = (
    "delivered_keys",
    "adopt_entries",
    "adopt_delivered",
    "adopt_flushes",
    "adopt_sites",
    "discard",
)

DIRECTIONS = [
    ("sqlite", "sqlite"),
    ("sqlite", "redis"),
    ("redis", "sqlite"),
    ("redis", "redis"),
]


def redis_journal_class() -> Any:
    """RedisJournal, or skip: the Redis journal is built by another lane (issue 13)."""
    try:
        from matokit.redisstore.journal import RedisJournal
    except ImportError:
        pytest.skip("the Redis journal (matokit.redisstore.journal) is not merged yet")
    return RedisJournal


@pytest.fixture
def make(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Make]:
    """make(kind, name) -> an open journal of that backend, distinct per name; closed after."""
    opened: list[Any] = []

    def build(kind: str, name: str) -> Any:
        if kind == "sqlite":
            journal: Any = Journal(tmp_path / name / "journal.sqlite", dedup_window=WINDOW)
        else:
            cls = redis_journal_class()
            from matokit.redisstore.connection import RedisTarget

            url = request.getfixturevalue("redis_url")
            target = RedisTarget(url=url, namespace=f"matokit:{{{name}}}")
            journal = cls(target, clock=time.time, dedup_window=WINDOW)
        opened.append(journal)
        return journal

    yield build
    for journal in opened:
        journal.close()


def hit(key: str, *, at: float = T0, site: str = "1", **params: str) -> NewHit:
    return NewHit(key=key, params={"idsite": site, "rec": "1", **params}, created_at=at)


def fill(journal: Any, count: int = 40) -> None:
    """Hits in every state, with history: attempts, errors, lost answers, exactly-once fields,
    deliveries (acknowledged, direct, confirmed by lookup), flush records, site records."""
    journal.remember_dimension(1, 7)
    journal.remember_dimension(2, None)
    journal.mark_lookups_unavailable(3, "Live is disabled")
    journal.enqueue([hit(f"key-{i:04d}", at=T0 + i) for i in range(count)])
    journal.enqueue([hit(f"goal-{i}", at=T0 + 100 + i, idgoal="1") for i in range(3)])
    batch = journal.claim("flusher-a", limit=14, lease_seconds=3600, stamp=True)
    ids = [e.id for e in batch]
    journal.ack(ids[:2])  # delivered: their keys go to the dedup window
    journal.reschedule(ids[2:4], error="HTTP 503", next_attempt_at=T0 + 999)
    journal.reschedule(ids[4:6], error="timeout", next_attempt_at=T0, sent_unconfirmed=True)
    journal.kill([(ids[6], "HTTP 400: invalid idsite")])
    journal.mark_unattributed(ids[7:9], reason="Matomo counted 1 of 2")
    journal.await_lookup(ids[9:11], error="answer lost", settle=300.0, alone=True)
    journal.await_lookup(ids[11:12], error="answer lost", settle=-10.0)
    journal.confirm([e.id for e in journal.due_lookups(now=time.time() + 10)])
    # ids[12:14] stay inflight: a flusher that died holding a lease.
    journal.remember_delivered(["direct-1", "direct-2"])
    for n in range(3):
        journal.record_flush({"delivered": n, "stopped_reason": "done"})


def snapshot(journal: Any) -> dict[str, Any]:
    return {
        "entries": sorted(journal.iter_entries(), key=lambda e: e.key),
        "delivered": sorted(journal.delivered_keys(), key=lambda d: d.key),
        "flushes": journal.flush_history(),
        "sites": journal.site_dimensions(),
    }


@pytest.mark.parametrize(("src_kind", "dst_kind"), DIRECTIONS)
def test_every_hit_moves_with_its_state_and_history(
    make: Make, src_kind: str, dst_kind: str
) -> None:
    source, dest = make(src_kind, "source"), make(dst_kind, "dest")
    fill(source)
    before = snapshot(source)
    states = {e.state for e in before["entries"]}
    assert states == set(EntryState)
    assert any(e.verify for e in before["entries"]) and any(e.alone for e in before["entries"])
    assert any(e.dimension == 7 for e in before["entries"])
    assert any(d.confirmed for d in before["delivered"])

    result = migrate(source, dest)

    assert result.complete and result.left == 0
    assert result.moved == result.written == len(before["entries"])
    assert sum(result.by_state.values()) == result.moved
    assert source.stats().total == 0
    assert snapshot(dest) == before  # ids, keys, params, attempts, errors, leases: all as were
    assert (result.delivered_keys, result.flushes, result.sites) == (
        len(before["delivered"]),
        3,
        3,
    )
    for record in before["delivered"]:
        assert dest.has_key(record.key)
    assert dest.enqueue_one(hit("key-0000")) is False  # the dedup holds in the destination
    assert dest.stats().counts == {
        state: sum(1 for e in before["entries"] if e.state is state) for state in EntryState
    }


@pytest.mark.parametrize(("src_kind", "dst_kind"), DIRECTIONS)
def test_a_second_run_moves_nothing_and_duplicates_nothing(
    make: Make, src_kind: str, dst_kind: str
) -> None:
    source, dest = make(src_kind, "source"), make(dst_kind, "dest")
    fill(source)
    migrate(source, dest)
    after_first = snapshot(dest)
    again = migrate(source, dest)
    assert (again.moved, again.written, again.delivered_keys, again.flushes, again.sites) == (
        0,
        0,
        0,
        0,
        0,
    )
    assert snapshot(dest) == after_first


@pytest.mark.parametrize(("src_kind", "dst_kind"), DIRECTIONS)
def test_a_run_killed_between_copy_and_delete_finishes_without_duplicates(
    make: Make, src_kind: str, dst_kind: str
) -> None:
    source, dest = make(src_kind, "source"), make(dst_kind, "dest")
    fill(source, count=120)
    entries = list(source.iter_entries())
    dest.adopt_entries(entries[:50])  # the copy of a page committed; its delete never ran
    result = migrate(source, dest, page=20)
    assert result.complete
    assert result.already == 50 and result.written == len(entries) - 50
    keys = [e.key for e in dest.iter_entries()]
    assert sorted(keys) == sorted(e.key for e in entries)
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(("src_kind", "dst_kind"), DIRECTIONS)
def test_hits_already_delivered_from_the_destination_are_not_queued_again(
    make: Make, src_kind: str, dst_kind: str
) -> None:
    source, dest = make(src_kind, "source"), make(dst_kind, "dest")
    source.enqueue([hit("a"), hit("b"), hit("c")])
    dest.remember_delivered(["b"])
    result = migrate(source, dest)
    assert (result.moved, result.written, result.delivered) == (3, 2, 1)
    assert sorted(e.key for e in dest.iter_entries()) == ["a", "c"]
    assert source.stats().total == 0


@pytest.mark.parametrize(("src_kind", "dst_kind"), DIRECTIONS)
def test_an_id_another_hit_holds_gets_a_fresh_one_of_the_same_time(
    make: Make, src_kind: str, dst_kind: str
) -> None:
    source, dest = make(src_kind, "source"), make(dst_kind, "dest")
    source.enqueue([hit("mine")])
    (entry,) = source.iter_entries()
    dest.adopt_entries([dataclasses.replace(entry, key="theirs")])
    migrate(source, dest)
    moved = dest.find("mine")
    assert moved is not None and moved.id != entry.id
    assert moved.id[:10] == entry.id[:10]  # the same millisecond: replay order kept
    assert dataclasses.replace(moved, id=entry.id) == entry
    assert dest.find("theirs") is not None


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_an_entry_changed_since_it_was_read_is_not_discarded(make: Make, kind: str) -> None:
    journal = make(kind, "j")
    journal.enqueue([hit("a"), hit("b")])
    a, b = journal.entries()
    journal.kill([(a.id, "given up meanwhile")])
    assert journal.discard([a, b]) == 1
    assert [e.key for e in journal.iter_entries()] == ["a"]


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_deliveries_and_site_records_keep_the_later_one(make: Make, kind: str) -> None:
    journal = make(kind, "j")
    now = time.time()
    assert journal.adopt_delivered([DeliveredKey("k", now - 100, 1, False)]) == 1
    assert journal.adopt_delivered([DeliveredKey("k", now - 200, 0, True)]) == 0
    assert list(journal.delivered_keys()) == [DeliveredKey("k", now - 100, 1, False)]
    journal.adopt_delivered([DeliveredKey("k", now - 50, 0, True)])
    assert list(journal.delivered_keys()) == [DeliveredKey("k", now - 50, 0, True)]
    journal.remember_dimension(1, 7)
    (mine,) = journal.site_dimensions().values()
    older = dataclasses.replace(mine, dimension=9, checked_at=mine.checked_at - 10)
    assert journal.adopt_sites([older]) == 0
    newer = dataclasses.replace(mine, dimension=9, checked_at=mine.checked_at + 10)
    assert journal.adopt_sites([newer]) == 1
    assert journal.site_dimensions() == {1: newer}


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_flush_records_merge_by_time_and_keep_the_last_twenty(make: Make, kind: str) -> None:
    journal = make(kind, "j")
    for n in range(15):
        journal.record_flush({"n": n})
    mine = journal.flush_history()
    theirs = [{"recorded_at": r["recorded_at"] - 0.5, "n": 100 + i} for i, r in enumerate(mine)]
    assert journal.adopt_flushes(theirs) == 5  # 30 records by time: the 20 newest kept
    assert journal.adopt_flushes(theirs) == 0
    history = journal.flush_history()
    assert len(history) == 20
    times = [r["recorded_at"] for r in history]
    assert times == sorted(times, reverse=True)


def test_every_transfer_method_is_in_the_sqlite_journal(make: Make) -> None:
    assert isinstance(make("sqlite", "j"), Transferable)
    for name in TRANSFER_METHODS:
        ours = inspect.signature(getattr(Journal, name))
        contract = inspect.signature(getattr(Transferable, name))
        assert list(ours.parameters) == list(contract.parameters), name


def test_the_redis_journal_has_every_transfer_method() -> None:
    cls = redis_journal_class()
    missing = [name for name in TRANSFER_METHODS if not callable(getattr(cls, name, None))]
    assert missing == [], "RedisJournal lacks the Transferable methods queue migrate needs"


def test_the_same_journal_on_both_sides_is_refused(make: Make) -> None:
    journal = make("sqlite", "same")
    with pytest.raises(UsageError, match="already at"):
        migrate(journal, journal)


def test_a_journal_without_transfer_operations_is_refused(make: Make) -> None:
    class Plain:
        location = "somewhere"

    with pytest.raises(UsageError, match="cannot take part in a migration"):
        migrate(Plain(), make("sqlite", "dest"))  # type: ignore[arg-type]


def test_a_stop_request_ends_between_pages_and_a_rerun_finishes(make: Make) -> None:
    source, dest = make("sqlite", "source"), make("sqlite", "dest")
    source.enqueue([hit(f"k{i:03d}", at=T0 + i) for i in range(100)])
    stop = StopRequest()
    pages: list[int] = []

    def progress(n: int) -> None:
        pages.append(n)
        if len(pages) == 2:
            stop.request()

    first = migrate(source, dest, page=10, stop=stop, on_progress=progress)
    assert first.stopped and not first.complete
    assert (first.moved, first.left) == (20, 80)
    second = migrate(source, dest, page=10)
    assert second.complete and second.moved == 80
    assert dest.stats().total == 100


# --- the profile's journal and --to --------------------------------------------------------------


def profile_settings(tmp_path: Path, **env: str) -> Any:
    from matokit.config import resolve

    return resolve({}, env={"MATOKIT_DATA_DIR": str(tmp_path / "data"), **env})


@pytest.mark.parametrize(
    ("to", "problem"),
    [
        ("http://host/", "must start with redis://"),
        ("redis://", "names no host"),
        ("sqlite:", "needs a path"),
        ("mysql://u:hunter22@h/db", "must start with redis://"),
    ],
)
def test_a_bad_destination_is_a_usage_error(tmp_path: Path, to: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem) as caught:
        destination(profile_settings(tmp_path), to)
    assert "hunter22" not in str(caught.value)


def test_the_profile_journal_moves_to_a_file_and_back(tmp_path: Path) -> None:
    settings = profile_settings(tmp_path)
    with Journal(settings.journal_path) as journal:
        fill(journal)
        before = snapshot(journal)
    elsewhere = tmp_path / "elsewhere" / "journal.sqlite"
    result = migrate_profile(settings, f"sqlite:{elsewhere}")
    assert result.complete and result.destination == str(elsewhere)
    with Journal(elsewhere) as moved:
        assert snapshot(moved) == before
    with pytest.raises(UsageError, match="already at"):
        migrate_profile(settings, "sqlite")


def test_no_journal_means_nothing_to_move_and_nothing_created(tmp_path: Path) -> None:
    settings = profile_settings(tmp_path)
    result = migrate_profile(settings, f"sqlite:{tmp_path / 'x' / 'j.sqlite'}")
    assert not result.source_exists and result.complete
    assert not (tmp_path / "x").exists() and not settings.journal_path.exists()


def test_a_running_flush_blocks_the_migration(tmp_path: Path) -> None:
    from matokit.locking import LOCK_NAME, flush_lock

    settings = profile_settings(tmp_path)
    with Journal(settings.journal_path) as journal:
        journal.enqueue([hit("a")])
    other = tmp_path / "other" / "journal.sqlite"
    for locked in (settings.data_dir, other.parent):
        with flush_lock(locked / LOCK_NAME, wait=False), pytest.raises(FlushInProgressError):
            migrate_profile(settings, f"sqlite:{other}")
    with Journal(settings.journal_path) as journal:
        assert journal.stats().total == 1
