"""What limits concurrent tracking: PHP workers, a cost per hit, and MariaDB's lock per visit.

A real Matomo has a fixed number of PHP-FPM workers: at most that many requests run at once and
the others wait in a queue. A bulk is one database transaction; every hit of it updates its
visit's `log_visit` row and keeps that row locked until the commit, so two bulks that update one
visit serialize (the second waits), or, when MariaDB sees a deadlock (error 1213), one of them
is rolled back: Matomo answers HTTP 500 with `tracked: 0` and nothing of that bulk is stored.

Capacity models that. All of it is off by default (unlimited workers, no cost, no deadlock);
the counters are kept always, at the price of one lock round per request.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterator
from contextlib import contextmanager


class Rollback(Exception):
    """The transaction was rolled back (MariaDB error 1213, deadlock): nothing was stored."""


class Stopped(Exception):
    """The server is stopping: give up the request unanswered, nothing stored."""


class Capacity:
    """Workers, per-hit cost, visit locks and the counters tests and benchmarks read."""

    def __init__(
        self,
        stopping: threading.Event,
        *,
        workers: int | None = None,
        hit_cost: float = 0.0,
        deadlock_on_contention: bool = False,
        max_body_bytes: int | None = None,
    ) -> None:
        self._stopping = stopping
        self._cond = threading.Condition()
        self._workers: int | None = None
        self._hit_cost = 0.0
        self.workers = workers
        self.hit_cost = hit_cost
        self.deadlock_on_contention = deadlock_on_contention
        self.max_body_bytes = max_body_bytes
        self._held: set[Hashable] = set()
        self._wanted: Counter[Hashable] = Counter()
        # Gauges: requests on a worker, requests waiting for one, bulks on a worker.
        self._busy = self._queued = self._bulks = 0
        self.reset_counters()

    # --- settings -----------------------------------------------------------------------------

    @property
    def workers(self) -> int | None:
        """At most this many requests are processed at once (None: unlimited)."""
        return self._workers

    @workers.setter
    def workers(self, value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError(f"workers must be at least 1 (or None), not {value!r}")
        with self._cond:
            self._workers = value
            self._cond.notify_all()

    @property
    def hit_cost(self) -> float:
        """Seconds of work per tracked hit, spent on a worker, holding the visits' locks."""
        return self._hit_cost

    @hit_cost.setter
    def hit_cost(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"hit_cost must not be negative, not {value!r}")
        self._hit_cost = float(value)

    # --- counters -----------------------------------------------------------------------------

    def reset_counters(self) -> None:
        """Zero the counters (not the gauges: requests in flight stay in flight)."""
        with self._cond:
            self.max_concurrent_requests = 0
            self.max_concurrent_bulks = 0
            self.max_concurrent_bulks_per_visit = 0
            self.visit_lock_waits = 0
            self.rollbacks = 0
            self.rejected_too_large = 0

    @property
    def workers_busy(self) -> int:
        """Requests being processed now."""
        with self._cond:
            return self._busy

    @property
    def workers_queued(self) -> int:
        """Requests waiting for a free worker now."""
        with self._cond:
            return self._queued

    @property
    def locked_visits(self) -> int:
        """Visits locked by open transactions now."""
        with self._cond:
            return len(self._held)

    def counters(self) -> dict[str, int]:
        with self._cond:
            return {
                "max_concurrent_requests": self.max_concurrent_requests,
                "max_concurrent_bulks": self.max_concurrent_bulks,
                "max_concurrent_bulks_per_visit": self.max_concurrent_bulks_per_visit,
                "visit_lock_waits": self.visit_lock_waits,
                "rollbacks": self.rollbacks,
                "rejected_too_large": self.rejected_too_large,
                "workers_busy": self._busy,
                "workers_queued": self._queued,
                "locked_visits": len(self._held),
            }

    def count_too_large(self) -> None:
        with self._cond:
            self.rejected_too_large += 1

    # --- workers --------------------------------------------------------------------------------

    @contextmanager
    def worker(self) -> Iterator[None]:
        """Hold one PHP worker while the request is processed; wait in the queue for one."""
        with self._cond:
            if self._workers is not None and self._busy >= self._workers:
                self._queued += 1
                try:
                    self._wait(lambda: self._workers is None or self._busy < self._workers)
                finally:
                    self._queued -= 1
            self._busy += 1
            self.max_concurrent_requests = max(self.max_concurrent_requests, self._busy)
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    @contextmanager
    def bulk(self) -> Iterator[None]:
        """Count a bulk request as processed (for max_concurrent_bulks)."""
        with self._cond:
            self._bulks += 1
            self.max_concurrent_bulks = max(self.max_concurrent_bulks, self._bulks)
        try:
            yield
        finally:
            with self._cond:
                self._bulks -= 1

    # --- one transaction ----------------------------------------------------------------------

    @contextmanager
    def transaction(
        self,
        visits: Collection[Hashable],
        hits: int,
        *,
        deadlock: bool = False,
        holds: Collection[threading.Event] = (),
    ) -> Iterator[None]:
        """Lock the visits, spend the hits' cost, let the caller store, then commit.

        With contention (another transaction holds one of the visits) the transaction waits,
        or, under deadlock_on_contention, is rolled back (Rollback). deadlock=True rolls it
        back regardless (an injected fault). `holds` keep it, locks held, until each is set.
        """
        keys = frozenset(visits)
        self._lock_visits(keys, deadlock)
        try:
            for event in holds:
                while not event.wait(0.05):
                    if self._stopping.is_set():
                        raise Stopped()
            cost = self._hit_cost * hits
            if cost > 0 and self._stopping.wait(cost):
                raise Stopped()
            yield
        finally:
            with self._cond:
                self._held -= keys
                self._unwant(keys)
                self._cond.notify_all()

    def _lock_visits(self, keys: frozenset[Hashable], deadlock: bool) -> None:
        with self._cond:
            wanted = self._wanted
            for key in keys:
                wanted[key] += 1
            if keys:
                most = max(wanted[key] for key in keys)
                self.max_concurrent_bulks_per_visit = max(self.max_concurrent_bulks_per_visit, most)
            try:
                contended = not self._held.isdisjoint(keys)
                if deadlock or (contended and self.deadlock_on_contention):
                    self.rollbacks += 1
                    raise Rollback()
                if contended:
                    self.visit_lock_waits += 1
                    self._wait(lambda: self._held.isdisjoint(keys))
                self._held |= keys
            except BaseException:
                self._unwant(keys)
                raise

    def _unwant(self, keys: frozenset[Hashable]) -> None:
        wanted = self._wanted
        for key in keys:
            left = wanted[key] - 1
            if left:
                wanted[key] = left
            else:
                del wanted[key]

    def _wait(self, ready: Callable[[], bool]) -> None:
        """Wait (holding self._cond) until ready(); Stopped when the server stops first."""
        while not ready():
            if self._stopping.is_set():
                raise Stopped()
            self._cond.wait(0.05)

    def wake(self) -> None:
        """Wake every waiting request (the server is stopping)."""
        with self._cond:
            self._cond.notify_all()
