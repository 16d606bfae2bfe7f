"""What a health run produces: statuses, one check's result, the report, and a check's schema.

Every check declares the metric keys it reports (`Check.metrics`); the runner gives each result
exactly those keys, so a check's series never appear or disappear between runs. A value the
check could not measure (latency when Matomo is down, the last flush when there was none) is
`None`: JSON `null`, Prometheus `NaN`, Nagios `U`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matokit.health.runner import HealthRun
    from matokit.health.thresholds import Thresholds

SCHEMA = "matokit.health/1"
# The one call that first sends the token (the api check; other checks wait for it).
VERSION_METHOD = "API.getMatomoVersion"
# The summary of a check not run because the shared version call (the api check) failed.
SKIPPED_AFTER_API = "not checked: the api check failed"

# A measured value, or None when the check could not measure it in this run.
MetricValue = float | None


class Status(IntEnum):
    """A check's verdict; the values are the monitoring-plugin exit codes."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def severity(self) -> int:
        """Rank for "worst": CRITICAL > UNKNOWN > WARNING > OK (what we cannot vouch for
        ranks above a known warning, below a known failure)."""
        return _SEVERITY[self]


_SEVERITY = {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe of `statuses` (OK for none)."""
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: a one-line summary, numeric metrics and text facts (`info`)."""

    name: str
    status: Status
    summary: str
    metrics: Mapping[str, MetricValue] = field(default_factory=dict)
    duration_s: float = 0.0
    hint: str | None = None
    info: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthReport:
    """The outcome of one health run."""

    status: Status
    checks: tuple[CheckResult, ...]
    generated_at: float
    duration_s: float
    thresholds: Thresholds
    profile: str | None = None
    url: str | None = None
    site_id: int | None = None

    def check(self, name: str) -> CheckResult | None:
        """The result of check `name`, if it ran."""
        return next((c for c in self.checks if c.name == name), None)


class Skip(Exception):
    """A check cannot run because something it depends on failed; carries its verdict."""

    def __init__(self, status: Status, summary: str, hint: str | None = None) -> None:
        super().__init__(summary)
        self.status, self.summary, self.hint = status, summary, hint


@dataclass(frozen=True)
class Check:
    """One check: the function that runs it and the metric keys it always reports.

    `late(stage)`: the metrics the check still knows when the run's time ran out while it was
    in `stage` (e.g. the api check, still waiting for Matomo: Matomo did not answer in time).
    """

    run: Callable[[HealthRun, str], CheckResult]
    metrics: tuple[str, ...] = ()
    late: Callable[[str], Mapping[str, MetricValue]] | None = None

    def conform(self, result: CheckResult) -> CheckResult:
        """`result` with exactly the declared metric keys, in declared order (None when not
        measured); a key not declared is a bug in the check (ValueError)."""
        extra = sorted(set(result.metrics) - set(self.metrics))
        if extra:
            raise ValueError(f"check {result.name} reported undeclared metrics: {extra}")
        metrics = {key: result.metrics.get(key) for key in self.metrics}
        return replace(result, metrics=metrics)
