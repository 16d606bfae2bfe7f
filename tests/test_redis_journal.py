"""The Redis journal's own guarantees, against real redis-servers.

- Random sequences of every journal operation give the same results and the same states on
  Redis as on SQLite (a differential test), and after each step every Redis index holds exactly
  what the entries' fields call for (nothing in two states or none, counters right).
- Faults leave nothing half-written: a key of the wrong type, a full server, a journal of a
  newer layout, a server that lost its scripts; Redis down is a StorageError.
- `redis_min_replicas` waits for replicas and fails when too few confirm; writes acknowledged
  before a kill -9 of redis-server are there after its restart.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from matokit.errors import StorageError
from matokit.journal import EntryState, Journal, NewHit
from matokit.journal.contract import JournalStore
from matokit.redisstore.connection import RedisTarget, forget_clients
from matokit.redisstore.journal import RedisJournal
from matokit.redisstore.journal_codec import entry as decode_entry
from matokit.redisstore.journal_lua import KEY_PARTS
from tests.redisserver import RedisServer, require_redis_server

T0 = 1_700_000_000.0
NAMESPACE = "matokit:{test}"


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def hit(key: str, *, at: float = T0, **params: str) -> NewHit:
    return NewHit(key=key, params={"idsite": "1", "rec": "1", **params}, created_at=at)


@pytest.fixture
def target(redis_url: str) -> RedisTarget:
    return RedisTarget(url=redis_url, namespace=NAMESPACE)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    plain = redis.Redis.from_url(redis_url)
    yield plain
    plain.close()


def key_of(target: RedisTarget, part: str) -> str:
    return target.keys.journal(part)


# --- the indexes follow the entries' fields ---------------------------------------------------


def check_indexes(client: redis.Redis, target: RedisTarget) -> None:
    """Every index holds exactly what the entries' fields call for; counters add up."""
    k = {part: key_of(target, part) for part, _ in KEY_PARTS}
    records = {i.decode(): r for i, r in client.hgetall(k["entries"]).items()}
    entries = {i: decode_entry(i, r.decode()) for i, r in records.items()}
    want: dict[str, dict[str, float]] = {
        part: {} for part, kind in KEY_PARTS if kind == "zset" and "delivered" not in part
    }
    reasons: dict[str, dict[str, int]] = {"dead": {}, "unattributed": {}}
    for i, e in entries.items():
        if e.verify:
            want["lookups"][i] = e.next_attempt_at
        if e.state is EntryState.INFLIGHT:  # indexed by its lease alone
            assert e.lease_expires_at is not None  # scored in whole ms, rounded down
            lease = float(math.floor(e.lease_expires_at * 1000))
            want["leases" if e.dimension is None else "stamped"][i] = lease
            continue
        want[f"state:{e.state}"][i] = 0.0
        if e.state in (EntryState.PENDING, EntryState.SENT_UNCONFIRMED) and not e.verify:
            want["sched"][i] = e.next_attempt_at
        elif e.state in (EntryState.DEAD, EntryState.UNATTRIBUTED):
            by_reason = reasons[str(e.state)]
            by_reason[e.reason or ""] = by_reason.get(e.reason or "", 0) + 1
    for part, members in want.items():
        if part in ("ready", "waiting"):
            continue
        have = {m.decode(): s for m, s in client.zrange(k[part], 0, -1, withscores=True)}
        assert have == members, part
    ready = {m.decode() for m in client.zrange(k["ready"], 0, -1)}
    waiting = {m.decode(): s for m, s in client.zrange(k["waiting"], 0, -1, withscores=True)}
    assert ready | set(waiting) == set(want["sched"]) and not ready & set(waiting)
    assert all(want["sched"][i] == s for i, s in waiting.items())
    keys = {key.decode(): i.decode() for key, i in client.hgetall(k["keys"]).items()}
    assert keys == {e.key: i for i, e in entries.items()}
    for state in ("dead", "unattributed"):
        stored = {f.decode(): int(n) for f, n in client.hgetall(k[f"reasons:{state}"]).items()}
        assert stored == reasons[state], state
    counters = client.hgetall(k["counters"])
    assert int(counters.get(b"unconfirmed", 0)) == sum(e.sent_unconfirmed for e in entries.values())
    seqs = [int(r.split(b"\x1f", 1)[0]) for r in records.values()]
    assert len(set(seqs)) == len(seqs) and max(seqs, default=0) <= int(counters.get(b"seq", 0))
    delivered = set(client.zrange(k["delivered"], 0, -1))
    for subset in ("delivered:unconfirmed", "delivered:confirmed"):
        assert set(client.zrange(k[subset], 0, -1)) <= delivered, subset


# --- the same results as SQLite, whatever the sequence of operations ----------------------------


def normal(entry: Any) -> tuple[Any, ...]:
    """An entry without its id (ids are random per journal)."""
    return (
        entry.key,
        entry.params,
        entry.created_at,
        entry.enqueued_at,
        entry.attempts,
        entry.next_attempt_at,
        str(entry.state),
        entry.last_error,
        entry.lease_owner,
        entry.lease_expires_at,
        entry.reason,
        entry.sent_unconfirmed,
        entry.dimension,
        entry.sent_at,
        entry.verify,
        entry.alone,
    )


def snapshot(journal: JournalStore, clock: FakeClock) -> dict[str, Any]:
    stats = journal.stats()
    shown = {
        name: getattr(stats, name)
        for name in stats.__dataclass_fields__
        if name not in ("path", "file_size")
    }
    shown["counts"] = dict(stats.counts)
    earlier = journal.stats(now=clock.now - 50)
    return {
        "entries": [normal(e) for e in journal.entries()],
        "stats": shown,
        "due_earlier": (earlier.due, earlier.lookups_due),
        "lookups": sorted(e.key for e in journal.due_lookups(limit=1000)),
        "awaiting": journal.awaiting_lookup(),
        "sites": journal.site_dimensions(),
        "history": journal.flush_history(),
    }


class Twin:
    """One operation on both journals; results compared, ids translated through keys."""

    def __init__(self, sqlite: JournalStore, on_redis: JournalStore, rng: random.Random) -> None:
        self.sides = (sqlite, on_redis)
        self.rng = rng

    def ids(self, keys: list[str]) -> tuple[list[str], list[str]]:
        out: tuple[list[str], list[str]] = ([], [])
        for side, ids in zip(self.sides, out, strict=True):
            by_key = {e.key: e.id for e in side.entries()}
            ids.extend(by_key.get(key, "01NOSUCHID0000000000000000") for key in keys)
        return out

    def both(self, op: Callable[[JournalStore, int], Any]) -> Any:
        first, second = (op(side, n) for n, side in enumerate(self.sides))
        assert first == second
        return first


def by_state(tally: dict[tuple[bool, str], int]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for (_, state), count in tally.items():
        totals[state] = totals.get(state, 0) + count
    return totals


def _pick(rng: random.Random, pool: list[str]) -> list[str]:
    return rng.sample(pool, rng.randint(0, min(6, len(pool)))) if pool else []


def run_random_step(twin: Twin, clock: FakeClock, pool: list[str]) -> None:
    rng = twin.rng
    sqlite = twin.sides[0]
    present = [e.key for e in sqlite.entries()]
    chosen = _pick(rng, present) + (["gone"] if rng.random() < 0.1 else [])
    a, b = twin.ids(chosen)
    pair = {0: a, 1: b}
    op = rng.choice(
        [
            "enqueue", "enqueue", "enqueue_one", "uncertain", "claim", "claim", "claim", "ack",
            "reschedule", "release", "kill", "unattributed", "retry_dead", "retry_unattributed",
            "purge_dead", "purge_unattributed", "await", "confirm", "missing", "failed",
            "give_up", "hold", "dimension", "site", "unavailable", "remember", "flush", "advance",
        ]
    )  # fmt: skip
    error = rng.choice(["HTTP 503", "read timed out", "x" * 2100, "with \x1f separator"])
    if op in ("enqueue", "enqueue_one", "uncertain"):
        keys = rng.sample(pool, rng.randint(1, 5))
        new = [
            hit(k, at=T0 + pool.index(k) * 0.01, **({"idgoal": "1"} if k.endswith("7") else {}))
            for k in keys + keys[:1]
        ]
        if op == "enqueue":
            chunk = rng.choice([1, 2, 100])
            twin.both(lambda j, n: j.enqueue(new, chunk_size=chunk))
        elif op == "enqueue_one":
            twin.both(lambda j, n: j.enqueue_one(new[0]))
        else:
            sent, settle = clock.now - 3, float(rng.choice([0, 60, 300]))
            twin.both(
                lambda j, n: j.enqueue_uncertain(
                    new[0], dimension=4, sent_at=sent, settle=settle, error=error
                )
            )
    elif op == "claim":
        expired = [
            e
            for e in sqlite.entries(states=[EntryState.INFLIGHT])
            if e.dimension is None and (e.lease_expires_at or 0) <= clock.now
        ]
        limit = max(rng.randint(1, 12), len(expired))
        now = clock.now - rng.choice([0, 0, 0, 20])
        stamp = rng.random() < 0.5
        lease = float(rng.choice([10, 100]))
        twin.both(
            lambda j, n: [
                normal(e)
                for e in j.claim("f", limit=limit, lease_seconds=lease, now=now, stamp=stamp)
            ]
        )
    elif op == "ack":
        twin.both(lambda j, n: j.ack(pair[n]))
    elif op == "reschedule":
        at, unconfirmed = clock.now + rng.choice([-5, 0, 30]), rng.random() < 0.5
        twin.both(
            lambda j, n: j.reschedule(
                pair[n], error=error, next_attempt_at=at, sent_unconfirmed=unconfirmed
            )
        )
    elif op == "release":
        twin.both(lambda j, n: j.release(pair[n]))
    elif op == "kill":
        reason = rng.choice(["rejected", "max_age", ""])
        twin.both(lambda j, n: j.kill([(i, reason) for i in pair[n]]))
    elif op == "unattributed":
        twin.both(lambda j, n: j.mark_unattributed(pair[n], reason="batch_invalid"))
    elif op in ("retry_dead", "retry_unattributed"):
        every = rng.random() < 0.5
        twin.both(lambda j, n: getattr(j, op)(None if every else pair[n]))
    elif op in ("purge_dead", "purge_unattributed"):
        older = rng.choice([None, 0.005, 100.0])
        twin.both(lambda j, n: getattr(j, op)(older_than=older, now=T0 + 0.05))
    elif op == "await":
        alone, settle = rng.random() < 0.5, float(rng.choice([0, 60]))
        twin.both(lambda j, n: j.await_lookup(pair[n], error=error, settle=settle, alone=alone))
    elif op == "confirm":
        twin.both(lambda j, n: j.confirm(pair[n]))
    elif op == "missing":
        twin.both(lambda j, n: j.lookup_missing(pair[n]))
    elif op == "failed":
        at = clock.now + 60
        twin.both(lambda j, n: j.lookup_failed(pair[n], error=error, next_attempt_at=at))
    elif op == "give_up":
        twin.both(lambda j, n: j.give_up_lookup(pair[n], error=error))
    elif op == "hold":
        until = clock.now + rng.choice([0, 600])
        twin.both(lambda j, n: j.hold(pair[n], error=error, until=until))
    elif op == "dimension":
        value = rng.choice([None, 4, 9])
        twin.both(lambda j, n: j.set_dimension(pair[n], value))
    elif op == "site":
        site, value = rng.choice([1, 2]), rng.choice([None, 4])
        twin.both(lambda j, n: j.remember_dimension(site, value))
    elif op == "unavailable":
        site = rng.choice([1, 3])
        twin.both(lambda j, n: j.mark_lookups_unavailable(site, "Live is off"))
    elif op == "remember":
        keys = rng.sample(pool, 2)
        twin.both(lambda j, n: j.remember_delivered(keys))
    elif op == "flush":
        sent = rng.randint(0, 9)
        twin.both(lambda j, n: j.record_flush({"sent": sent, "at": clock.now}))
    else:
        clock.now += rng.choice([1.0, 15.0, 200.0, 2000.0])


@pytest.mark.parametrize("seed", range(4))
def test_random_operations_give_the_same_results_on_redis_as_on_sqlite(
    seed: int, tmp_path: Path, target: RedisTarget, client: redis.Redis
) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    pool = [f"k{i:02d}" for i in range(40)]
    window = 1500.0  # short, so that delivered keys expire during the run
    with (
        Journal(tmp_path / "journal.sqlite", clock=clock, dedup_window=window) as sqlite,
        RedisJournal(target, clock=clock, dedup_window=window) as on_redis,
    ):
        twin = Twin(sqlite, on_redis, rng)
        marks = (sqlite.mark(), on_redis.mark())
        for step in range(100):
            run_random_step(twin, clock, pool)
            check_indexes(client, target)
            left, right = snapshot(sqlite, clock), snapshot(on_redis, clock)
            for name in left:
                assert left[name] == right[name], repr((step, name, left[name], right[name]))
            # (the split at the mark may differ: SQLite reuses the rowids of deleted entries)
            assert by_state(sqlite.tally(marks[0])) == by_state(on_redis.tally(marks[1]))
            assert {k for k in pool if sqlite.has_key(k)} == {
                k for k in pool if on_redis.has_key(k)
            }
            found = [sqlite.find(k) for k in pool], [on_redis.find(k) for k in pool]
            assert [e and normal(e) for e in found[0]] == [e and normal(e) for e in found[1]]


# --- faults leave nothing half-written ---------------------------------------------------------


def test_a_key_of_another_type_under_the_prefix_is_refused_before_anything_is_written(
    target: RedisTarget, client: redis.Redis
) -> None:
    client.set(key_of(target, "ready"), "someone else's value")
    with RedisJournal(target) as journal, pytest.raises(StorageError) as caught:
        journal.enqueue([hit("a"), hit("b")])
    assert "another kind of value" in caught.value.message
    assert "redis_prefix" in (caught.value.hint or "")
    assert client.exists(key_of(target, "entries"), key_of(target, "keys")) == 0
    assert client.get(key_of(target, "ready")) == b"someone else's value"


def test_a_journal_of_a_newer_layout_is_refused_unread_and_unwritten(
    target: RedisTarget, client: redis.Redis
) -> None:
    opened_before = RedisJournal(target)  # a process that opened it before the upgrade
    opened_before.enqueue_one(hit("a"))
    client.hset(key_of(target, "meta"), "layout", "99")
    with pytest.raises(StorageError, match="layout 99") as caught:
        RedisJournal(target)
    assert "upgrade" in (caught.value.hint or "")
    with pytest.raises(StorageError, match="layout 99"):
        opened_before.enqueue_one(hit("b"))
    assert client.hlen(key_of(target, "entries")) == 1


def test_a_layout_1_journal_is_rescored_when_opened_and_its_leases_still_expire_on_time(
    target: RedisTarget, client: redis.Redis
) -> None:
    with RedisJournal(target, clock=lambda: T0) as journal:
        journal.enqueue([hit("a"), hit("b")])
        journal.claim("dead-flusher", limit=1, lease_seconds=30)
    # Layout 1 scored leases by their expiry in (float) seconds.
    leases = key_of(target, "leases")
    (member,) = client.zrange(leases, 0, -1)
    client.zadd(leases, {member: T0 + 30})
    client.hset(key_of(target, "meta"), "layout", "1")
    with RedisJournal(target, clock=lambda: T0) as journal:
        assert client.hget(key_of(target, "meta"), "layout") == b"2"
        assert client.zscore(leases, member) == (T0 + 30) * 1000
        assert journal.stats(now=T0 + 29).due == 1  # b only
        assert [e.key for e in journal.claim("f", limit=5, lease_seconds=30, now=T0 + 29)] == ["b"]
        late = journal.claim("f", limit=5, lease_seconds=30, now=T0 + 30)
        assert [(e.key, e.sent_unconfirmed) for e in late] == [("a", 1)]


def test_a_full_server_refuses_the_chunk_before_writing_any_of_it(tmp_path: Path) -> None:
    require_redis_server()
    server = RedisServer(tmp_path / "full", maxmemory="3mb", **{"maxmemory-policy": "noeviction"})
    server.start()
    try:
        target = RedisTarget(url=server.url, namespace=NAMESPACE)
        plain = redis.Redis.from_url(server.url)
        journal = RedisJournal(target)
        blob = "x" * 2000
        with pytest.raises(StorageError) as caught:
            for start in range(0, 20_000, 200):
                journal.enqueue([hit(f"k{i}", blob=blob) for i in range(start, start + 200)])
        # (the wording is redisstore.connection's; redis-py drops Redis's "OOM" code)
        assert "maxmemory" in caught.value.message
        kept = plain.hlen(key_of(target, "entries"))
        assert kept > 0 and kept % 200 == 0  # whole chunks, never part of one
        check_indexes(plain, target)
        plain.close()
    finally:
        forget_clients()
        server.stop()


def test_redis_down_is_a_storage_error_naming_the_server_without_its_password() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = RedisTarget(url=f"redis://:s3cret-pass@127.0.0.1:{port}/0", namespace=NAMESPACE)
    try:
        with pytest.raises(StorageError) as caught:
            RedisJournal(target)
    finally:
        forget_clients()
    assert "unreachable" in caught.value.message
    assert "s3cret-pass" not in f"{caught.value.message} {caught.value.hint} {caught.value.path}"


def test_scripts_lost_by_the_server_are_loaded_again(
    target: RedisTarget, client: redis.Redis
) -> None:
    with RedisJournal(target) as journal:
        journal.enqueue_one(hit("a"))
        client.script_flush()
        assert [e.key for e in journal.claim("f", limit=5, lease_seconds=60)] == ["a"]
        client.script_flush()
        assert journal.stats().counts[EntryState.INFLIGHT] == 1


# --- big calls, paging and clocks ------------------------------------------------------------


def test_calls_over_thousands_of_ids_and_pages(target: RedisTarget, client: redis.Redis) -> None:
    clock = FakeClock()
    with RedisJournal(target, clock=clock) as journal:
        assert journal.enqueue([hit(f"k{i:05d}", at=T0 + i) for i in range(9000)]).added == 9000
        claimed = journal.claim("f", limit=9000, lease_seconds=60)
        assert len(claimed) == 9000
        assert journal.kill([(e.id, "rejected") for e in claimed[:8500]]) == 8500
        assert journal.ack([e.id for e in claimed[8500:]]) == 500
        assert journal.retry_dead() == 8500  # paged: a thousand per script
        assert len(journal.claim("f", limit=10_000, lease_seconds=60)) == 8500
        journal.kill([(e.id, "x") for e in journal.entries(states=[EntryState.INFLIGHT])])
        assert journal.tally(0) == {(True, "dead"): 8500}
        assert journal.purge_dead(older_than=4000, now=T0 + 8000) == 4000
        assert journal.purge_dead() == 4500
        assert journal.stats().total == 0
        check_indexes(client, target)


def test_a_claim_with_a_clock_behind_leaves_what_is_not_due_for_it(
    target: RedisTarget, client: redis.Redis
) -> None:
    clock = FakeClock()
    with RedisJournal(target, clock=clock) as journal:
        journal.enqueue([hit("a"), hit("b", at=T0 + 1)])
        # Another host, 30 s behind: nothing is due yet by its clock.
        assert journal.claim("behind", limit=10, lease_seconds=60, now=T0 - 30) == []
        check_indexes(client, target)
        assert [e.key for e in journal.claim("f", limit=10, lease_seconds=60)] == ["a", "b"]


def test_texts_with_any_character_come_back_as_given(target: RedisTarget) -> None:
    odd = "tab\tline\nsep\x1fesc\x1e0\x1e1 é 🦆"
    with RedisJournal(target) as journal:
        journal.enqueue_one(hit(f"key{odd}"))
        (entry,) = journal.claim(odd, limit=1, lease_seconds=60)
        assert (entry.key, entry.lease_owner) == (f"key{odd}", odd)
        journal.kill([(entry.id, odd)])
        assert journal.stats().dead_by_reason == {odd: 1}
        journal.retry_dead()
        (again,) = journal.claim("f", limit=1, lease_seconds=60)
        journal.reschedule([again.id], error=odd, next_attempt_at=0)
        assert journal.find(f"key{odd}").last_error == odd  # type: ignore[union-attr]
        journal.mark_lookups_unavailable(1, odd)
        assert journal.site_dimensions()[1].unavailable == odd


# --- durability and replicas -------------------------------------------------------------------


def test_hits_acknowledged_before_redis_is_killed_are_there_after_its_restart(
    redis_server: RedisServer,
) -> None:
    target = RedisTarget(url=redis_server.url, namespace=NAMESPACE)
    try:
        with RedisJournal(target) as journal:
            for start in range(0, 3000, 300):
                assert journal.enqueue([hit(f"k{i}") for i in range(start, start + 300)]).added
            claimed = journal.claim("f", limit=100, lease_seconds=60)
            journal.ack([e.id for e in claimed])
        redis_server.kill()
        forget_clients()
        redis_server.start()
        with RedisJournal(target) as journal:
            stats = journal.stats()
            assert (stats.queued, stats.delivered_keys) == (2900, 100)
            assert journal.enqueue([hit(e.key) for e in claimed]).duplicates == 100
    finally:
        forget_clients()


def test_min_replicas_waits_for_a_replica_and_fails_when_too_few_confirm(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica = RedisServer(tmp_path / "replica", replicaof=f"127.0.0.1 {redis_server.port}").start()
    try:
        plain = redis.Redis.from_url(redis_server.url)
        deadline = time.monotonic() + 20
        while plain.info("replication").get("connected_slaves", 0) < 1:
            assert time.monotonic() < deadline, "the replica never connected"
            time.sleep(0.05)
        one = RedisTarget(url=redis_server.url, namespace=NAMESPACE, min_replicas=1)
        with RedisJournal(one) as journal:
            assert journal.enqueue_one(hit("a"))
            assert journal.ack([e.id for e in journal.claim("f", limit=1, lease_seconds=60)])
        on_replica = redis.Redis.from_url(replica.url)
        assert on_replica.zcard(key_of(one, "delivered")) == 1  # already there: WAIT saw to it
        on_replica.close()
        monkeypatch.setattr("matokit.redisstore.journal.WAIT_TIMEOUT_MS", 300)
        two = RedisTarget(url=redis_server.url, namespace=NAMESPACE, min_replicas=2)
        with RedisJournal(two) as journal, pytest.raises(StorageError) as caught:
            journal.enqueue_one(hit("b"))
        assert "only 1 of the 2 replica(s)" in caught.value.message
        assert "redis_min_replicas" in (caught.value.hint or "")
        assert plain.hexists(key_of(two, "keys"), "b")  # on the primary: a re-run is a duplicate
        plain.close()
    finally:
        forget_clients()
        replica.stop()
