"""FakeMatomo's capacity knobs and counters (a mixin: server.py stays about HTTP)."""

from __future__ import annotations

from typing import Any

from tests.fakematomo.capacity import Capacity
from tests.fakematomo.state import ServerState
from tests.fakematomo.visits import sender_identity


class CapacityView:
    """Workers, per-hit cost, deadlocks and body limit as properties; counters to read."""

    state: ServerState

    @property
    def capacity(self) -> Capacity:
        return self.state.capacity

    # --- knobs (settable at any time) ------------------------------------------------------

    @property
    def workers(self) -> int | None:
        """PHP workers: at most this many requests processed at once, the others wait in a
        queue as PHP-FPM's do (None: unlimited)."""
        return self.state.capacity.workers

    @workers.setter
    def workers(self, value: int | None) -> None:
        self.state.capacity.workers = value

    @property
    def hit_cost(self) -> float:
        """Seconds of work per tracked hit (a bulk of 100 costs 100 times this), spent on a
        worker while holding the locks of the visits it updates, not the server's lock."""
        return self.state.capacity.hit_cost

    @hit_cost.setter
    def hit_cost(self, value: float) -> None:
        self.state.capacity.hit_cost = value

    @property
    def deadlock_on_contention(self) -> bool:
        """A request that would wait for a visit another one holds is rolled back instead
        (MariaDB error 1213): a bulk answers 500 with tracked 0, nothing of it stored."""
        return self.state.capacity.deadlock_on_contention

    @deadlock_on_contention.setter
    def deadlock_on_contention(self, value: bool) -> None:
        self.state.capacity.deadlock_on_contention = value

    @property
    def max_body_bytes(self) -> int | None:
        """A proxy in front answers 413 to a larger request body (None: no proxy limit)."""
        return self.state.capacity.max_body_bytes

    @max_body_bytes.setter
    def max_body_bytes(self, value: int | None) -> None:
        self.state.capacity.max_body_bytes = value

    # --- counters (since start or the last reset) ------------------------------------------

    @property
    def rollbacks(self) -> int:
        """Tracking transactions rolled back (deadlocks, injected or on contention)."""
        return self.state.capacity.rollbacks

    @property
    def max_concurrent_requests(self) -> int:
        """The most requests (of any kind) processed at the same time."""
        return self.state.capacity.max_concurrent_requests

    @property
    def max_concurrent_bulks(self) -> int:
        """The most bulk tracking requests processed at the same time."""
        return self.state.capacity.max_concurrent_bulks

    @property
    def max_concurrent_bulks_per_visit(self) -> int:
        """The most tracking requests that wanted one visit at the same time (holding its
        lock, waiting for it, or rolled back over it): 1 when a client never sends hits of
        one visit concurrently. Counted on workers, so only up to `workers`."""
        return self.state.capacity.max_concurrent_bulks_per_visit

    @property
    def visit_lock_waits(self) -> int:
        """How often a tracking request waited for a visit another one held."""
        return self.state.capacity.visit_lock_waits

    @property
    def rejected_too_large(self) -> int:
        """Requests answered 413 because of their body size."""
        return self.state.capacity.rejected_too_large

    @property
    def workers_busy(self) -> int:
        """Requests being processed now."""
        return self.state.capacity.workers_busy

    @property
    def workers_queued(self) -> int:
        """Requests waiting for a worker now."""
        return self.state.capacity.workers_queued

    @property
    def locked_visits(self) -> int:
        """Visits locked by open tracking transactions now."""
        return self.state.capacity.locked_visits

    @property
    def counters(self) -> dict[str, int]:
        """Every counter above by name (also served as JSON at GET /_fakematomo/counters)."""
        return self.state.capacity.counters()

    def reset_counters(self) -> None:
        self.state.capacity.reset_counters()

    def hits_by_visitor(self, *, idsite: int | None = None) -> dict[str, list[dict[str, Any]]]:
        """Stored hits grouped by sender, each group in the order its hits were stored.

        The sender is "cid:<id>", else "_id:<id>", else "uid:<user>", else "ip+ua:<ip> <ua>"
        (sites are not told apart unless `idsite` picks one). Bulks are stored whole, in the
        order their transactions committed.
        """
        with self.state.lock:
            pairs = list(zip(self.state.hits, self.state.meta, strict=True))
        groups: dict[str, list[dict[str, Any]]] = {}
        for params, meta in pairs:
            if idsite is None or params.get("idsite") == str(idsite):
                groups.setdefault(sender_identity(params, meta), []).append(params)
        return groups
