"""The exporter's cache of health reports: at most one run per interval, shared by callers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from matokit.health.model import HealthReport


class CachedHealth:
    """Runs `produce` at most once per `interval` s; concurrent callers share one run."""

    def __init__(
        self,
        produce: Callable[[], HealthReport],
        *,
        interval: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._produce = produce
        self._interval = interval
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._report: HealthReport | None = None
        self._at = 0.0
        self._running = False
        self.runs = 0

    def get(self) -> HealthReport:
        """The cached report, or a fresh one (waiting for a run already in progress)."""
        with self._cond:
            while True:
                fresh = self._report is not None and (self._monotonic() - self._at < self._interval)
                if fresh:
                    return self._report  # type: ignore[return-value]
                if not self._running:
                    self._running = True
                    break
                self._cond.wait()
        report: HealthReport | None = None
        try:
            report = self._produce()
        finally:
            with self._cond:
                self._running = False
                if report is not None:
                    self._report, self._at = report, self._monotonic()
                    self.runs += 1
                self._cond.notify_all()
        return report
