"""Everything the fake Matomo remembers, behind one lock."""

from __future__ import annotations

import bisect
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakematomo.access import Access, Site, default_sites, default_tokens
from tests.fakematomo.capacity import Capacity
from tests.fakematomo.faults import FaultBook

# Matomo's brute-force detection defaults: 20 failed logins per IP within 60 minutes.
MAX_FAILED_LOGINS = 20
FAILED_LOGIN_WINDOW = 3600.0

_TOKENISH = re.compile(r"(token_auth|token|tokenauth|token__auth)=[^&]*|\b[0-9a-fA-F]{29,36}\b")


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request as received, for assertions such as "no token in a URL"."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    client_ip: str


# Matomo's [General] visitor_log_maximum_actions_per_visit default.
MAX_ACTIONS_PER_VISIT = 500
_NO_VALUES: dict[int, str] = {}


@dataclass(frozen=True)
class HitMeta:
    """What reports need about a stored hit besides its parameters.

    action_dims/visit_dims: the custom dimension values Matomo stored with the hit (id ->
    value), decided when it was tracked: only dimensions configured and active then count.
    """

    ts: float  # the hit's time (cdt/cdo resolved), Unix seconds
    ip: str
    ua: str
    action_dims: dict[int, str] = field(default_factory=lambda: _NO_VALUES)
    visit_dims: dict[int, str] = field(default_factory=lambda: _NO_VALUES)


class ServerState:
    """Tokens, sites, stored hits, request log, failed logins, tracking failures, capacity."""

    def __init__(
        self,
        tokens: Mapping[str, Access | Mapping[str, Any]] | None,
        sites: Mapping[int, Site | Mapping[str, Any]] | None,
        clock: Callable[[], float],
        capacity: Capacity | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        # Workers, per-hit cost, visit locks and their counters (all off by default).
        self.capacity = capacity or Capacity(threading.Event())
        self.tokens: dict[str, Access] = (
            default_tokens()
            if tokens is None
            else {t: Access.from_spec(s) for t, s in tokens.items()}
        )
        self.sites: dict[int, Site] = (
            default_sites()
            if sites is None
            else {int(i): Site.from_spec(int(i), s) for i, s in sites.items()}
        )
        self.faults = FaultBook()
        self.hits: list[dict[str, Any]] = []
        self.meta: list[HitMeta] = []
        self.requests: list[RequestRecord] = []
        self.record_requests = True
        self.tracking_failures: list[dict[str, Any]] = []
        self.custom_dimensions: list[dict[str, Any]] = []
        # idsite -> the active dimensions the tracker applies (rebuilt on every change).
        self.tracked_dimensions: dict[int, tuple[dict[str, Any], ...]] = {}
        self.failed: dict[str, list[float]] = {}
        # Bumped on every change to the hits so computed visits can be cached.
        self.generation = 0
        self.deactivated_plugins: set[str] = set()
        self.bulk_requests_require_authentication = False
        self.queued_tracking = False
        # When each hit was stored (never decreasing), parallel to `hits`.
        self.stored_at: list[float] = []
        # Seconds between storing a hit and Live/reports seeing it (a queue being processed).
        self.visible_after = 0.0
        self.max_actions_per_visit = MAX_ACTIONS_PER_VISIT
        # Live's privacy switch: "disable visits log" per site, or for the whole server.
        self.visits_log_disabled: set[int] = set()
        self.visits_log_disabled_globally = False

    # --- hits -------------------------------------------------------------------------------

    def store(self, batch: list[tuple[dict[str, Any], HitMeta]]) -> None:
        if not batch:
            return
        with self.lock:
            # Never earlier than the previous store, so the visible hits are always a prefix.
            stored_at = max(self.clock(), self.stored_at[-1] if self.stored_at else 0.0)
            for params, meta in batch:
                params["_stored_at"] = stored_at
                self.hits.append(params)
                self.meta.append(meta)
                self.stored_at.append(stored_at)
            self.generation += 1

    def visible_count(self) -> int:
        """How many stored hits Live and reports see now (all, unless visible_after is set)."""
        if self.visible_after <= 0:
            return len(self.hits)
        cutoff = self.clock() - self.visible_after
        with self.lock:
            return bisect.bisect_right(self.stored_at, cutoff)

    def snapshot(self, count: int | None = None) -> tuple[int, list[dict[str, Any]], list[HitMeta]]:
        """The generation and the first `count` hits (all by default) with their metadata."""
        with self.lock:
            end = len(self.hits) if count is None else count
            return self.generation, self.hits[:end], self.meta[:end]

    def log_request(self, record: RequestRecord) -> None:
        if self.record_requests:
            with self.lock:
                self.requests.append(record)

    # --- brute-force detection --------------------------------------------------------------

    def record_failed_login(self, ip: str) -> None:
        with self.lock:
            self.failed.setdefault(ip, []).append(self.clock())

    def failed_count(self, ip: str) -> int:
        cutoff = self.clock() - FAILED_LOGIN_WINDOW
        with self.lock:
            recent = [t for t in self.failed.get(ip, []) if t > cutoff]
            self.failed[ip] = recent
            return len(recent)

    def is_blocked(self, ip: str) -> bool:
        return self.failed_count(ip) >= MAX_FAILED_LOGINS

    def failed_logins(self) -> dict[str, int]:
        with self.lock:
            ips = list(self.failed)
        counts = {ip: self.failed_count(ip) for ip in ips}
        return {ip: n for ip, n in counts.items() if n}

    # --- tracking failures (CoreAdminHome.getTrackingFailures) ------------------------------

    def add_tracking_failure(
        self, idsite: int, idfailure: int = 1, request_url: str = "", when: float | None = None
    ) -> dict[str, Any]:
        """Record a failure the way Matomo does: only the first per (idsite, idfailure)."""
        with self.lock:
            for row in self.tracking_failures:
                if row["idsite"] == idsite and row["idfailure"] == idfailure:
                    return row
            row = _failure_row(self, idsite, idfailure, request_url, when or self.clock())
            self.tracking_failures.append(row)
            return row

    def reset(self) -> None:
        with self.lock:
            self.hits.clear()
            self.meta.clear()
            self.stored_at.clear()
            self.requests.clear()
            self.failed.clear()
            self.tracking_failures.clear()
            self.generation += 1
        self.faults.clear()
        self.capacity.reset_counters()


_PROBLEMS = {
    1: (
        "The site does not exist.",
        "Check if the configured Site ID (idsite) in the tracking code is correct.",
        "https://matomo.org/faq/how-to/faq_30838/",
    ),
    2: (
        "Request was not authenticated but authentication was required.",
        "Send a valid token_auth of a user with at least write access, or do not send "
        "parameters that require authentication.",
        "https://matomo.org/faq/how-to/faq_30835/",
    ),
}


def _failure_row(
    state: ServerState, idsite: int, idfailure: int, request_url: str, when: float
) -> dict[str, Any]:
    # Matomo masks anything token-like before storing the URL.
    masked = _TOKENISH.sub(
        lambda m: (m.group(1) + "=__TOKEN_AUTH__") if m.group(1) else "__TOKEN_AUTH__",
        request_url,
    )
    stamp = datetime.fromtimestamp(when, UTC)
    problem, solution, solution_url = _PROBLEMS.get(idfailure, ("Unknown problem.", "", ""))
    site = state.sites.get(idsite)
    return {
        "idsite": idsite,
        "idfailure": idfailure,
        "date_first_occurred": stamp.strftime("%Y-%m-%d %H:%M:%S"),
        "request_url": masked,
        "site_name": site.name if site else "General_Unknown",
        "pretty_date_first_occurred": stamp.strftime("%b %-d, %Y %H:%M:%S"),
        "url": "",
        "problem": problem,
        "solution": solution,
        "solution_url": solution_url,
    }


def default_clock() -> float:
    return time.time()
