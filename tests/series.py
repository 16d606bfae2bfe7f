"""The set of series in a Prometheus or OpenMetrics exposition, and the set the series table
(matokit.health.series) promises: what the tests compare to prove that no series appears or
disappears whatever state health is in."""

from __future__ import annotations

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from matokit.health import CHECKS
from matokit.health.series import CHECK_SERIES, RUN_SERIES

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
# Labels whose value is data, not identity: an info metric's version.
INFO_LABELS = {"matokit_matomo_info": "version", "matokit_build_info": "version"}

Series = tuple[str, tuple[tuple[str, str], ...]]


def series_of(text: str, *, openmetrics: bool = False) -> set[Series]:
    """(sample name, sorted labels) of every sample; an info metric's version as "*"."""
    parse = openmetrics_families if openmetrics else text_string_to_metric_families
    found: set[Series] = set()
    for family in parse(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            if sample.name in INFO_LABELS:
                labels[INFO_LABELS[sample.name]] = "*"
            found.add((sample.name, tuple(sorted(labels.items()))))
    return found


def expected_series(checks: tuple[str, ...] = CHECKS, profile: str = "default") -> set[Series]:
    """What the series table promises for a run of `checks`."""
    found: set[Series] = set()
    run = [*RUN_SERIES, *(s for check in checks for s in CHECK_SERIES[check])]
    for series in run:
        base = {"profile": profile} | {label: "*" for label in series.labels}
        if "check" in series.labels:
            found |= {
                (series.name, tuple(sorted((base | {"check": check}).items()))) for check in checks
            }
        else:
            found.add((series.name, tuple(sorted(base.items()))))
    return found
