"""Health checks for CI, cron and monitoring: each check returns a `CheckResult`.

The package, from the bottom up: `model` (Status, CheckResult, HealthReport, Check: a check's
function and the metric keys it always reports), `thresholds` (warning and critical limits),
`checks` and `queue` (the standard checks), `runner` (runs a mapping of checks concurrently
under one deadline) and `cached` (the exporter's shared run). Renderers (text, JSON,
Prometheus, Nagios) live in `matokit.cli.health_render`; nothing here prints or names a CLI
flag.
"""

from __future__ import annotations

from matokit.health.cached import CachedHealth
from matokit.health.checks import CHECKS, STANDARD_CHECKS, NoCheckSelectedError, parse_checks
from matokit.health.classify import classify_error
from matokit.health.model import (
    SCHEMA,
    SKIPPED_AFTER_API,
    VERSION_METHOD,
    Check,
    CheckResult,
    HealthReport,
    MetricValue,
    Skip,
    Status,
    worst,
)
from matokit.health.runner import HealthRun, run_checks, run_health
from matokit.health.thresholds import (
    THRESHOLD_PAIRS,
    MovedDefault,
    ThresholdError,
    Thresholds,
    thresholds_from,
)

__all__ = [
    "CHECKS",
    "SCHEMA",
    "SKIPPED_AFTER_API",
    "STANDARD_CHECKS",
    "THRESHOLD_PAIRS",
    "VERSION_METHOD",
    "CachedHealth",
    "Check",
    "CheckResult",
    "HealthReport",
    "HealthRun",
    "MetricValue",
    "MovedDefault",
    "NoCheckSelectedError",
    "Skip",
    "Status",
    "ThresholdError",
    "Thresholds",
    "classify_error",
    "parse_checks",
    "run_checks",
    "run_health",
    "thresholds_from",
    "worst",
]
