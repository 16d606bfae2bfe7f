"""Programmable faults: what a proxy, an overloaded Matomo or a broken network does to requests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

Endpoint = Literal["tracking", "api", "any"]


@dataclass
class Fault:
    """One misbehaviour, applied to matching requests.

    endpoint: "tracking" (matomo.php), "api" (index.php) or "any"; method narrows API faults
    to one method such as "API.getMatomoVersion". after=N lets the first N matching requests
    through; times=K applies the fault to K requests and then expires (None: forever).

    Effects, in the order they are applied: latency (seconds of sleep before anything else),
    hang (never answer), drop="before" (close the socket unanswered, nothing stored),
    maintenance (503 HTML maintenance page), status/body (answer that status, default 200 when
    only a body is given, with an optional Retry-After), database_down (Matomo's own answers
    to a dead database), lose_items (a bulk silently skips its last K items), deadlock (the
    tracking transaction is rolled back as on MariaDB error 1213: a bulk answers 500 with
    `tracked: 0`, a single hit 400, nothing stored, counted in FakeMatomo.rollbacks), hold (a
    threading.Event: tracking waits until it is set, on a worker and holding its visits'
    locks, so tests can pin a request in the middle of its transaction), and after the
    request was processed (hits stored): stall_after (sleep that many seconds before
    answering, so a client times out after Matomo stored its hits), garble_after (answer 200
    with a body that is not JSON, e.g. a truncated answer behind a broken proxy), drop="after"
    (close the socket unanswered).
    """

    endpoint: Endpoint = "any"
    status: int | None = None
    retry_after: str | None = None
    latency: float = 0.0
    drop: Literal["before", "after"] | None = None
    lose_items: int = 0
    hang: bool = False
    maintenance: bool = False
    body: str | bytes | None = None
    times: int | None = None
    after: int = 0
    method: str | None = None
    database_down: bool = False
    content_type: str | None = None
    stall_after: float = 0.0
    garble_after: bool = False
    deadlock: bool = False
    hold: threading.Event | None = None
    # Bookkeeping, guarded by FaultBook's lock.
    seen: int = field(default=0, init=False, repr=False, compare=False)
    applied: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.endpoint not in ("tracking", "api", "any"):
            raise ValueError(f"unknown endpoint {self.endpoint!r}")
        if self.drop not in (None, "before", "after"):
            raise ValueError(f"drop must be 'before', 'after' or None, not {self.drop!r}")

    def matches(self, endpoint: str, method: str | None) -> bool:
        if self.endpoint != "any" and self.endpoint != endpoint:
            return False
        return self.method is None or self.method == method

    @property
    def expired(self) -> bool:
        return self.times is not None and self.applied >= self.times

    @property
    def answers(self) -> bool:
        """Whether this fault replaces Matomo's answer (rather than only delaying it)."""
        return self.status is not None or self.body is not None or self.maintenance


@dataclass
class Effects:
    """The combined effect of every fault that applies to one request."""

    latency: float = 0.0
    hang: bool = False
    drop_before: bool = False
    drop_after: bool = False
    maintenance: bool = False
    answer: Fault | None = None
    database_down: bool = False
    lose_items: int = 0
    stall_after: float = 0.0
    garble_after: bool = False
    deadlock: bool = False
    holds: list[threading.Event] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self == Effects()


class FaultBook:
    """The active faults, with per-fault counting of matching requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if not f.expired]

    def take(self, endpoint: str, method: str | None) -> Effects:
        """Count this request against every matching fault and combine those that apply."""
        effects = Effects()
        if not self._faults:
            return effects
        with self._lock:
            for fault in self._faults:
                if fault.expired or not fault.matches(endpoint, method):
                    continue
                fault.seen += 1
                if fault.seen <= fault.after:
                    continue
                fault.applied += 1
                _merge(effects, fault)
            self._faults = [f for f in self._faults if not f.expired]
        return effects


def _merge(effects: Effects, fault: Fault) -> None:
    effects.latency += max(0.0, fault.latency)
    effects.hang |= fault.hang
    effects.drop_before |= fault.drop == "before"
    effects.drop_after |= fault.drop == "after"
    effects.maintenance |= fault.maintenance
    effects.database_down |= fault.database_down
    effects.lose_items = max(effects.lose_items, fault.lose_items)
    effects.stall_after = max(effects.stall_after, fault.stall_after)
    effects.garble_after |= fault.garble_after
    effects.deadlock |= fault.deadlock
    if fault.hold is not None:
        effects.holds.append(fault.hold)
    # The first fault that supplies an answer wins; later ones only add delays.
    if effects.answer is None and (fault.status is not None or fault.body is not None):
        effects.answer = fault
