"""The fake Matomo's capacity: PHP workers, per-hit cost, one lock per visit, deadlocks, 413.

Real concurrent HTTP requests from threads. No timing assertions: requests are pinned in the
middle of their transaction with a `hold` fault, and the tests wait for the server's gauges
(workers busy and queued, visits locked, lock waits) before they look.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.fakematomo import SUPERUSER_TOKEN, FakeMatomo, Fault
from tests.fakematomo.__main__ import build
from tests.fakematomo.client import api, bulk, track

ROLLED_BACK = b'{"status":"error","tracked":0,"invalid":0}'


def vid(n: int) -> str:
    return f"{n:016x}"


def hit(visitor: int, seq: int, **extra: str) -> str:
    params = {"idsite": "1", "rec": "1", "cid": vid(visitor), "action_name": f"p{seq}", **extra}
    return "?" + "&".join(f"{k}={v}" for k, v in params.items())


def seqs(hits: list[dict[str, Any]]) -> list[str]:
    return [h["action_name"] for h in hits]


def wait_until(check: Callable[[], bool], what: str) -> None:
    """Wait for the server to reach a state (a liveness bound, not a timing assertion)."""
    deadline = time.monotonic() + 15
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.002)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=16) as executor:
        yield executor


@pytest.fixture
def srv() -> Iterator[FakeMatomo]:
    # Stopped before the pool's threads are joined: a held request never outlives a test.
    server = FakeMatomo().start()
    try:
        yield server
    finally:
        server.stop()


def held(srv: FakeMatomo, times: int | None = None) -> threading.Event:
    """Hold tracking requests (on a worker, their visits locked) until the event is set."""
    event = threading.Event()
    srv.add_fault(Fault(endpoint="tracking", hold=event, times=times))
    return event


def post(pool: ThreadPoolExecutor, srv: FakeMatomo, items: list[Any], **kw: Any) -> Future[Any]:
    return pool.submit(bulk, srv, items, **kw)


# --- workers ----------------------------------------------------------------------------------


def test_n_workers_process_n_requests_and_queue_the_rest(
    srv: FakeMatomo, pool: ThreadPoolExecutor
) -> None:
    srv.workers = 2
    release = held(srv)
    futures = [post(pool, srv, [hit(v, 0), hit(v, 1)]) for v in range(4)]
    wait_until(lambda: srv.workers_busy == 2 and srv.workers_queued == 2, "2 busy, 2 queued")
    assert srv.max_concurrent_bulks == 2 and srv.max_concurrent_requests == 2
    assert srv.hits == []
    release.set()
    for future in futures:
        assert future.result().json() == {"status": "success", "tracked": 2, "invalid": 0}
    assert len(srv.hits) == 8
    assert srv.max_concurrent_bulks == 2
    assert (srv.workers_busy, srv.workers_queued) == (0, 0)


def test_more_workers_take_queued_requests_at_once(
    srv: FakeMatomo, pool: ThreadPoolExecutor
) -> None:
    srv.workers = 1
    release = held(srv)
    futures = [post(pool, srv, [hit(v, 0)]) for v in range(3)]
    wait_until(lambda: srv.workers_busy == 1 and srv.workers_queued == 2, "1 busy, 2 queued")
    srv.workers = 3
    wait_until(lambda: srv.workers_busy == 3 and srv.workers_queued == 0, "3 busy")
    release.set()
    assert all(f.result().status_code == 200 for f in futures)
    assert srv.max_concurrent_bulks == 3


def test_unlimited_workers_by_default(srv: FakeMatomo, pool: ThreadPoolExecutor) -> None:
    assert srv.workers is None
    release = held(srv)
    futures = [post(pool, srv, [hit(v, 0)]) for v in range(6)]
    wait_until(lambda: srv.workers_busy == 6, "6 busy")
    assert srv.workers_queued == 0
    release.set()
    assert all(f.result().status_code == 200 for f in futures)
    assert srv.max_concurrent_bulks == 6


def test_api_requests_wait_for_a_worker_too(srv: FakeMatomo, pool: ThreadPoolExecutor) -> None:
    srv.workers = 1
    release = held(srv)
    tracking = post(pool, srv, [hit(1, 0)])
    wait_until(lambda: srv.workers_busy == 1, "the bulk on the worker")
    version = pool.submit(api, srv, "API.getMatomoVersion", SUPERUSER_TOKEN)
    wait_until(lambda: srv.workers_queued == 1, "the API call queued")
    release.set()
    assert version.result().json() == {"value": "5.11.2"}
    assert tracking.result().status_code == 200
    assert srv.max_concurrent_requests == 1 and srv.max_concurrent_bulks == 1


def test_hit_cost_is_spent_in_parallel_before_anything_is_stored(
    pool: ThreadPoolExecutor,
) -> None:
    srv = FakeMatomo(workers=3, hit_cost=60.0).start()
    try:
        futures = [post(pool, srv, [hit(v, 0), hit(v, 1)]) for v in range(3)]
        # All three are working at once (their visits locked), none has stored yet.
        wait_until(lambda: srv.workers_busy == 3 and srv.locked_visits == 3, "3 working")
        assert srv.hits == [] and srv.max_concurrent_bulks == 3
    finally:
        srv.stop()  # wakes them: a PHP worker killed mid-transaction stores nothing
    for future in futures:
        with pytest.raises(requests.ConnectionError):
            future.result()
    assert srv.hits == []


def test_settings_are_validated() -> None:
    srv = FakeMatomo(workers=4, hit_cost=0.5, deadlock_on_contention=True, max_body_bytes=10)
    assert (srv.workers, srv.hit_cost, srv.deadlock_on_contention, srv.max_body_bytes) == (
        4,
        0.5,
        True,
        10,
    )
    with pytest.raises(ValueError):
        srv.workers = 0
    with pytest.raises(ValueError):
        srv.hit_cost = -1
    srv.workers, srv.hit_cost, srv.max_body_bytes = None, 0.0, None
    assert (srv.workers, srv.hit_cost, srv.max_body_bytes) == (None, 0.0, None)


# --- one lock per visit -----------------------------------------------------------------------


def test_bulks_of_one_visit_serialize(srv: FakeMatomo, pool: ThreadPoolExecutor) -> None:
    release = held(srv, times=1)
    first = post(pool, srv, [hit(1, 0), hit(1, 1)])
    wait_until(lambda: srv.locked_visits == 1, "the first bulk holds the visit")
    second = post(pool, srv, [hit(1, 2), hit(1, 3)])
    wait_until(lambda: srv.visit_lock_waits == 1, "the second bulk waits for it")
    assert srv.hits == [] and srv.max_concurrent_bulks_per_visit == 2
    release.set()
    assert first.result().json()["tracked"] == 2
    assert second.result().json()["tracked"] == 2
    assert seqs(srv.hits_by_visitor()["cid:" + vid(1)]) == ["p0", "p1", "p2", "p3"]
    assert srv.rollbacks == 0


def test_bulks_of_other_visits_do_not_wait(srv: FakeMatomo, pool: ThreadPoolExecutor) -> None:
    srv.deadlock_on_contention = True
    release = held(srv, times=1)
    first = post(pool, srv, [hit(1, 0)])
    wait_until(lambda: srv.locked_visits == 1, "the first bulk holds its visit")
    other = bulk(srv, [hit(2, 0), hit(3, 0)])
    assert other.json()["tracked"] == 2
    assert seqs(srv.hits) == ["p0", "p0"]  # visitors 2 and 3, while 1 is still held
    release.set()
    assert first.result().status_code == 200
    assert (srv.rollbacks, srv.visit_lock_waits, srv.max_concurrent_bulks_per_visit) == (0, 0, 1)


def test_a_single_hit_waits_for_its_visit_too(srv: FakeMatomo, pool: ThreadPoolExecutor) -> None:
    release = held(srv, times=1)
    first = post(pool, srv, [hit(1, 0)])
    wait_until(lambda: srv.locked_visits == 1, "the bulk holds the visit")
    single = pool.submit(track, srv, idsite=1, rec=1, cid=vid(1), action_name="p1")
    wait_until(lambda: srv.visit_lock_waits == 1, "the single hit waits")
    release.set()
    assert first.result().status_code == 200 and single.result().status_code == 200
    assert seqs(srv.hits) == ["p0", "p1"]


def test_deadlock_on_contention_rolls_the_waiting_bulk_back(
    srv: FakeMatomo, pool: ThreadPoolExecutor
) -> None:
    srv.deadlock_on_contention = True
    release = held(srv, times=1)
    first = post(pool, srv, [hit(1, 0), hit(1, 1)])
    wait_until(lambda: srv.locked_visits == 1, "the first bulk holds visit 1")
    # A bulk touching visit 1 (after a hit of visit 2) deadlocks: the whole of it goes.
    second = bulk(srv, [hit(2, 0), hit(1, 2)], SUPERUSER_TOKEN)
    assert second.status_code == 500
    assert second.content == ROLLED_BACK
    assert second.headers["Content-Type"].startswith("application/json")
    assert srv.rollbacks == 1 and srv.hits == []
    release.set()
    assert first.result().json()["tracked"] == 2
    assert list(srv.hits_by_visitor()) == ["cid:" + vid(1)]
    assert seqs(srv.hits) == ["p0", "p1"]
    assert srv.locked_visits == 0
    # Re-sent once the visit is free, it is stored whole.
    assert bulk(srv, [hit(2, 0), hit(1, 2)]).json()["tracked"] == 2
    assert srv.rollbacks == 1


def test_deadlocked_single_hit_answers_400_and_is_not_stored(
    srv: FakeMatomo, pool: ThreadPoolExecutor
) -> None:
    srv.deadlock_on_contention = True
    release = held(srv, times=1)
    first = post(pool, srv, [hit(1, 0)])
    wait_until(lambda: srv.locked_visits == 1, "the bulk holds the visit")
    assert track(srv, idsite=1, rec=1, cid=vid(1), action_name="p1").status_code == 400
    release.set()
    assert first.result().status_code == 200
    assert seqs(srv.hits) == ["p0"] and srv.rollbacks == 1


def test_hits_without_cid_from_one_host_share_a_visit_whatever_their_id(
    srv: FakeMatomo, pool: ThreadPoolExecutor
) -> None:
    """Matomo matches a hit with `_id` (no `cid`) by its visitor id OR by IP + User-Agent."""
    srv.deadlock_on_contention = True
    release = held(srv, times=1)
    first = post(pool, srv, [f"?idsite=1&rec=1&_id={vid(1)}"])
    wait_until(lambda: srv.locked_visits == 2, "visitor id and configuration locked")
    assert bulk(srv, [f"?idsite=1&rec=1&_id={vid(2)}"]).status_code == 500
    # Another IP (cip, with a token) is another configuration: no contention.
    other = bulk(srv, [f"?idsite=1&rec=1&_id={vid(3)}&cip=10.0.0.3"], SUPERUSER_TOKEN)
    assert other.status_code == 200
    # So is another site.
    assert bulk(srv, [f"?idsite=2&rec=1&_id={vid(2)}"]).status_code == 200
    release.set()
    assert first.result().status_code == 200
    assert srv.rollbacks == 1


def test_deadlock_fault_rolls_back_without_contention(srv: FakeMatomo) -> None:
    srv.add_fault(Fault(endpoint="tracking", deadlock=True, times=2))
    rolled = bulk(srv, [hit(1, 0), hit(2, 0)], SUPERUSER_TOKEN)
    assert (rolled.status_code, rolled.content) == (500, ROLLED_BACK)
    assert track(srv, idsite=1, rec=1, cid=vid(1)).status_code == 400
    assert srv.hits == [] and srv.rollbacks == 2
    assert bulk(srv, [hit(1, 0), hit(2, 0)]).json()["tracked"] == 2
    assert srv.rollbacks == 2


def test_lanes_never_contend(pool: ThreadPoolExecutor) -> None:
    """Each visitor's bulks sent one after another: all stored in order, no rollback."""
    srv = FakeMatomo(workers=3, hit_cost=0.0005, deadlock_on_contention=True).start()

    def lane(visitor: int) -> list[int]:
        return [
            bulk(srv, [hit(visitor, b * 5 + i) for i in range(5)]).status_code for b in range(4)
        ]

    try:
        statuses = [s for f in [pool.submit(lane, v) for v in range(8)] for s in f.result()]
    finally:
        srv.stop()
    assert statuses == [200] * 32
    by_visitor = srv.hits_by_visitor()
    assert sorted(by_visitor) == sorted("cid:" + vid(v) for v in range(8))
    for hits in by_visitor.values():
        assert seqs(hits) == [f"p{n}" for n in range(20)]
    assert srv.rollbacks == 0 and srv.visit_lock_waits == 0
    assert srv.max_concurrent_bulks_per_visit == 1
    assert 1 <= srv.max_concurrent_bulks <= 3


# --- 413 ----------------------------------------------------------------------------------------


def test_body_above_max_body_bytes_is_413_and_stores_nothing(srv: FakeMatomo) -> None:
    srv.max_body_bytes = 2000
    small = [hit(1, n) for n in range(10)]
    large = [hit(1, n) for n in range(100)]
    assert len(json.dumps({"requests": small})) <= 2000 < len(json.dumps({"requests": large}))
    assert bulk(srv, small).json()["tracked"] == 10
    refused = bulk(srv, large)
    assert refused.status_code == 413
    assert "<title>413 Request Entity Too Large</title>" in refused.text
    assert refused.headers["Connection"] == "close"
    chunked = requests.post(
        srv.url + "matomo.php",
        data=iter([json.dumps({"requests": large}).encode()]),
        timeout=10,
    )
    assert chunked.status_code == 413
    assert len(srv.hits) == 10 and srv.rejected_too_large == 2
    srv.max_body_bytes = None
    assert bulk(srv, large).json()["tracked"] == 100


def test_413_applies_to_api_calls_and_single_hits(srv: FakeMatomo) -> None:
    srv.max_body_bytes = 100
    version = api(srv, "API.getMatomoVersion", SUPERUSER_TOKEN, pad="x" * 200)
    assert version.status_code == 200  # the padding travelled in the URL, not the body
    padded = requests.post(
        srv.url + "index.php?module=API&method=API.getMatomoVersion&format=JSON",
        data={"token_auth": SUPERUSER_TOKEN, "pad": "x" * 200},
        timeout=10,
    )
    assert padded.status_code == 413
    assert track(srv, method="POST", idsite=1, rec=1, pad="x" * 200).status_code == 413
    assert srv.hits == [] and srv.rejected_too_large == 2


# --- counters -----------------------------------------------------------------------------------


def test_counters_are_served_unlogged_and_reset(srv: FakeMatomo) -> None:
    srv.add_fault(Fault(endpoint="tracking", deadlock=True, times=1))
    bulk(srv, [hit(1, 0)])
    bulk(srv, [hit(1, 1)])
    requests_before = len(srv.requests)
    served = requests.get(srv.url + "_fakematomo/counters", timeout=5).json()
    assert len(srv.requests) == requests_before
    assert served == srv.counters
    assert served == {
        "max_concurrent_requests": 1,
        "max_concurrent_bulks": 1,
        "max_concurrent_bulks_per_visit": 1,
        "visit_lock_waits": 0,
        "rollbacks": 1,
        "rejected_too_large": 0,
        "workers_busy": 0,
        "workers_queued": 0,
        "locked_visits": 0,
    }
    srv.reset_counters()
    assert srv.rollbacks == 0 and srv.max_concurrent_bulks == 0 and len(srv.hits) == 1
    bulk(srv, [hit(1, 2)])
    srv.reset()
    assert set(srv.counters.values()) == {0}


def test_hits_by_visitor_groups_by_sender_in_stored_order(srv: FakeMatomo) -> None:
    items = [
        hit(1, 0),
        f"?idsite=1&rec=1&_id={vid(7).upper()}&action_name=p0",
        "?idsite=1&rec=1&uid=alice&action_name=p0",
        "?idsite=2&rec=1&action_name=p0",
        hit(1, 1),
        "?idsite=1&rec=1&uid=alice&action_name=p1",
    ]
    bulk(srv, items, SUPERUSER_TOKEN)
    bulk(srv, [hit(1, 2, ua="Firefox")], SUPERUSER_TOKEN)
    groups = srv.hits_by_visitor()
    ua = requests.utils.default_user_agent()
    assert {k: seqs(v) for k, v in groups.items()} == {
        "cid:" + vid(1): ["p0", "p1", "p2"],
        "_id:" + vid(7): ["p0"],
        "uid:alice": ["p0", "p1"],
        f"ip+ua:127.0.0.1 {ua}": ["p0"],
    }
    assert "ip+ua:127.0.0.1 " + ua not in srv.hits_by_visitor(idsite=1)


def test_standalone_flags_set_the_capacity() -> None:
    srv = build(
        [
            *("--workers", "4", "--hit-cost", "0.002"),
            *("--deadlock-on-contention", "--max-body-bytes", "65536"),
        ]
    )
    assert (srv.workers, srv.hit_cost, srv.deadlock_on_contention, srv.max_body_bytes) == (
        4,
        0.002,
        True,
        65536,
    )
    plain = build([])
    assert (plain.workers, plain.hit_cost, plain.deadlock_on_contention) == (None, 0.0, False)
    assert plain.max_body_bytes is None
