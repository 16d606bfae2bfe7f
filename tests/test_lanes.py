"""Lanes: several bulks in flight, never two of one visit; the guarantees hold with N > 1."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from matokit import hits
from matokit.client import TrackResult, bulk_outcomes
from matokit.delivery import Delivery, FlushOptions
from matokit.delivery.lanes import LaneWidth, bulks, item_size, lane_key, partition
from matokit.errors import AuthenticationError, PayloadTooLargeError, RolledBackError
from matokit.hits import Hit

T0 = 1_800_000_000.0


class ConcurrentMatomo:
    """A thread-safe bulk endpoint that records how many bulks (and of one visit) overlap."""

    def __init__(self, *, delay: float = 0.02) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.visits_in_flight: Counter[str] = Counter()
        self.visit_overlap = 0
        self.stored: list[dict[str, str]] = []
        self.requests = 0
        self.sizes: list[int] = []
        self.fail: list[BaseException] = []  # raised by the next requests, in order
        self.max_items: int | None = None

    def track(self, batch: Sequence[Hit]) -> TrackResult:
        keys = {lane_key(h.params) for h in batch}
        with self.lock:
            self.requests += 1
            self.sizes.append(len(batch))
            error = self.fail.pop(0) if self.fail else None
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            for key in keys:
                self.visits_in_flight[key] += 1
                if self.visits_in_flight[key] > 1:
                    self.visit_overlap += 1
        try:
            time.sleep(self.delay)
            if error is not None:
                raise error
            if self.max_items is not None and len(batch) > self.max_items:
                raise PayloadTooLargeError("too large", status=413)
            with self.lock:
                self.stored.extend(dict(h.params) for h in batch)
            body = {"status": "success", "tracked": len(batch), "invalid": 0, "invalid_indices": []}
            return bulk_outcomes(len(batch), body)
        finally:
            with self.lock:
                self.in_flight -= 1
                for key in keys:
                    self.visits_in_flight[key] -= 1

    def call(self, method: str, /, **params: Any) -> Any:
        return [1]


@pytest.fixture
def matomo() -> ConcurrentMatomo:
    return ConcurrentMatomo()


@pytest.fixture
def delivery(tmp_path: Path, matomo: ConcurrentMatomo) -> Iterator[Delivery]:
    service = Delivery(
        journal_path=tmp_path / "journal.sqlite",
        client_factory=lambda: matomo,  # type: ignore[arg-type,return-value]
        has_token=True,
        rng=lambda: 0.5,
    )
    with service:
        yield service


def visitor(n: int) -> str:
    return f"{n:016x}"


def queue_visitors(delivery: Delivery, visitors: int, per_visitor: int) -> None:
    for i in range(per_visitor):
        for v in range(visitors):
            hit = hits.pageview(
                1,
                url=f"https://example.org/{v}/{i}",
                visitor_id=visitor(v),
                at=T0 + i,
                clock=lambda: T0 + 10_000,
            )
            delivery.queue(hit)


def in_order_per_visitor(stored: list[dict[str, str]]) -> bool:
    seen: dict[str, list[int]] = defaultdict(list)
    for params in stored:
        seen[params["cid"]].append(int(params["url"].rsplit("/", 1)[1]))
    return all(order == sorted(order) for order in seen.values())


def test_lanes_overlap_bulks_but_never_two_of_one_visit(
    delivery: Delivery, matomo: ConcurrentMatomo
) -> None:
    queue_visitors(delivery, visitors=200, per_visitor=5)
    result = delivery.flush(FlushOptions(batch_size=20, concurrency=4))
    assert result.delivered == 1000 and result.remaining_queued == 0
    assert matomo.most > 1 and result.concurrency == 4
    assert matomo.visit_overlap == 0
    assert len(matomo.stored) == 1000 and in_order_per_visitor(matomo.stored)


def test_one_visitor_goes_through_one_lane(delivery: Delivery, matomo: ConcurrentMatomo) -> None:
    queue_visitors(delivery, visitors=1, per_visitor=300)
    result = delivery.flush(FlushOptions(batch_size=50, concurrency=8))
    assert result.delivered == 300 and matomo.most == 1
    assert in_order_per_visitor(matomo.stored)


def test_the_first_request_goes_alone_so_a_bad_token_is_sent_once(
    delivery: Delivery, matomo: ConcurrentMatomo
) -> None:
    queue_visitors(delivery, visitors=100, per_visitor=3)
    matomo.fail = [AuthenticationError("Unable to authenticate")]
    result = delivery.flush(FlushOptions(batch_size=10, concurrency=8))
    assert result.stopped_reason == "auth_failed"
    assert matomo.requests == 1
    assert delivery.journal.stats().queued == 300


def test_a_stop_in_one_lane_stops_them_all(delivery: Delivery, matomo: ConcurrentMatomo) -> None:
    queue_visitors(delivery, visitors=100, per_visitor=4)
    matomo.fail = [None, AuthenticationError("Unable to authenticate")]  # type: ignore[list-item]
    result = delivery.flush(FlushOptions(batch_size=10, concurrency=4))
    assert result.stopped_reason == "auth_failed"
    # The lanes in flight finish their request; none starts another.
    assert matomo.requests <= 1 + 4
    assert delivery.journal.stats().queued == 400 - len(matomo.stored)
    assert {e.state for e in delivery.journal.entries()} <= {"pending"}


def test_a_rolled_back_bulk_is_sent_again_and_counted(
    delivery: Delivery, matomo: ConcurrentMatomo
) -> None:
    queue_visitors(delivery, visitors=50, per_visitor=2)
    matomo.fail = [None, None, RolledBackError("deadlock", status=500)]  # type: ignore[list-item]
    result = delivery.flush(FlushOptions(batch_size=10, concurrency=4))
    assert result.delivered == 100 and result.rollbacks == 1
    assert result.sent_unconfirmed == 0
    assert len(matomo.stored) == 100


def test_a_413_splits_the_bulk(delivery: Delivery, matomo: ConcurrentMatomo) -> None:
    queue_visitors(delivery, visitors=40, per_visitor=1)
    matomo.max_items = 5
    result = delivery.flush(FlushOptions(batch_size=40, concurrency=1))
    assert result.delivered == 40 and result.dead == 0
    assert max(n for n in matomo.sizes if n <= 5) == 5


def test_bulks_respect_the_payload_limit() -> None:
    params = [{"url": "x" * 500, "idsite": "1"} for _ in range(10)]
    sizes = [item_size(p) for p in params]
    chunks = list(bulks(params, sizes, max_count=100, max_bytes=2000))
    assert all(sum(item_size(p) for p in c) + 64 <= 2000 for c in chunks)
    assert sum(len(c) for c in chunks) == 10


def test_identity_chooses_the_lane() -> None:
    assert lane_key({"cid": "ABCDEF0123456789"}) == "cid:abcdef0123456789"
    assert lane_key({"uid": "u1", "_id": "0" * 16}) == "uid:u1"
    # _id does not keep visits apart: same IP and browser is one visit whatever its _id.
    assert lane_key({"_id": "1" * 16}) == lane_key({"_id": "2" * 16})
    items = list(range(100))
    params = [{"cid": f"{i % 10:016x}"} for i in items]
    lanes = partition(items, params, 4)
    owner = {params[i]["cid"]: n for n, lane in enumerate(lanes) for i in lane}
    assert all(owner[params[i]["cid"]] == n for n, lane in enumerate(lanes) for i in lane)
    assert all(lane == sorted(lane) for lane in lanes)


def test_auto_width_grows_while_the_rate_rises_and_halves_under_strain() -> None:
    width = LaneWidth(fixed=None)
    assert width.width == 2
    width.observe(100, 1.0, strained=False)
    width.observe(200, 1.0, strained=False)
    assert width.width == 4
    width.observe(200, 1.0, strained=False)  # no gain: stays
    assert width.width == 4
    width.observe(200, 1.0, strained=True)
    assert width.width == 2
    fixed = LaneWidth(fixed=3)
    fixed.observe(10, 1.0, strained=True)
    assert fixed.width == 3


def test_next_bulk_is_the_first_of_bulks_and_encodes_only_near_the_limit() -> None:
    from matokit.delivery.lanes import next_bulk, size_bound

    params = [{"idsite": "1", "url": f"https://example.org/é/{'x' * (i % 50)}"} for i in range(300)]
    assert all(size_bound(p) >= item_size(p) for p in params)
    for limit in (200, 1_000, 5_000, 1_000_000):
        sizes = [item_size(p) for p in params]
        first = next(bulks(params, sizes, max_count=100, max_bytes=limit))
        assert next_bulk(params, lambda p: p, max_count=100, max_bytes=limit) == first
