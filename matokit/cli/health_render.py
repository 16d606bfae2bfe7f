"""Renderers of a HealthReport: text (a rich table), JSON, Prometheus text, Nagios plugin output.

All but the text table return strings, so `--output FILE`, stdout and `health serve` share them.
prometheus_client writes the Prometheus and OpenMetrics expositions; it is imported only when one
is asked for (ADR-0005).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from matokit import __version__
from matokit.health import (
    SCHEMA,
    SKIPPED_AFTER_API,
    CheckResult,
    HealthReport,
    MetricValue,
    Status,
)
from matokit.sanitize import printable
from matokit.times import utc_iso

if TYPE_CHECKING:
    from prometheus_client.metrics_core import GaugeMetricFamily
    from prometheus_client.registry import CollectorRegistry
    from rich.console import Console


_STYLES = {
    Status.OK: "green",
    Status.WARNING: "yellow",
    Status.CRITICAL: "bold red",
    Status.UNKNOWN: "magenta",
}


# --- JSON ----------------------------------------------------------------------------------------


def to_json_dict(report: HealthReport) -> dict[str, Any]:
    """The versioned JSON document (schema `matokit.health/1`)."""
    limits = report.thresholds
    return {
        "schema": SCHEMA,
        "status": report.status.name,
        "exit_code": int(report.status),
        "generated_at": utc_iso(report.generated_at),
        "generated_at_unix": round(report.generated_at, 3),
        "duration_s": report.duration_s,
        "matokit_version": __version__,
        "profile": report.profile,
        "url": report.url,
        "site_id": report.site_id,
        "thresholds": {
            "warn_latency_s": limits.warn_latency,
            "crit_latency_s": limits.crit_latency,
            "warn_queue_age_s": limits.warn_queue_age,
            "crit_queue_age_s": limits.crit_queue_age,
            "warn_queue_depth": limits.warn_queue_depth,
            "crit_queue_depth": limits.crit_queue_depth,
        },
        "checks": [_check_dict(check) for check in report.checks],
    }


def _check_dict(check: CheckResult) -> dict[str, Any]:
    return {
        "name": check.name,
        "status": check.status.name,
        "summary": check.summary,
        "hint": check.hint,
        "duration_s": check.duration_s,
        "metrics": {k: _plain(v) for k, v in check.metrics.items()},
        "info": dict(check.info),
    }


def render_json(report: HealthReport, *, pretty: bool = False) -> str:
    """The JSON document as text (one line unless `pretty`)."""
    return json.dumps(to_json_dict(report), indent=2 if pretty else None, ensure_ascii=False) + "\n"


def _plain(value: MetricValue) -> float | int | None:
    if value is None:
        return None  # not measured in this run: null, the key is still there
    return int(value) if float(value).is_integer() else value


# --- Prometheus ----------------------------------------------------------------------------------


class _Families:
    """Gauge families in first-seen order, every sample with the base labels: the collector of
    a private prometheus_client registry."""

    def __init__(self, base_labels: Mapping[str, str]) -> None:
        self._base = dict(base_labels)
        self._families: dict[str, GaugeMetricFamily] = {}

    def add(
        self, name: str, help_text: str, value: float, labels: Mapping[str, str] | None = None
    ) -> None:
        from prometheus_client.metrics_core import GaugeMetricFamily

        family = self._families.get(name)
        if family is None:
            family = self._families[name] = GaugeMetricFamily(name, help_text)
        # Samples of one family may carry different labels: add_sample, not add_metric.
        family.add_sample(name, {**self._base, **(labels or {})}, float(value))

    def collect(self) -> list[GaugeMetricFamily]:
        return list(self._families.values())


def _families(report: HealthReport) -> _Families:
    """Every series of `report`, walked from the series table (matokit.health.series), so no
    series of a check that ran can be missing: NaN for a value not measured, "unknown" for an
    info label not learnt."""
    from matokit.health.series import RUN_SERIES, check_infos, check_values

    run = {series.name: series for series in RUN_SERIES}
    families = _Families({"profile": report.profile or "unknown"})

    def add(name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        families.add(name, run[name].help, value, labels)

    add("matokit_up", 1 if report.status in (Status.OK, Status.WARNING) else 0)
    add("matokit_health_status", int(report.status))
    for check in report.checks:
        add("matokit_check_status", int(check.status), {"check": check.name})
    for check in report.checks:
        add("matokit_check_duration_seconds", check.duration_s, {"check": check.name})
    for check in report.checks:
        for series, value in check_values(check):
            families.add(series.name, series.help, math.nan if value is None else value)
    for check in report.checks:
        for series, labels in check_infos(check):
            families.add(series.name, series.help, 1, labels)
    add("matokit_build_info", 1, {"version": __version__})
    add("matokit_health_run_duration_seconds", report.duration_s)
    add("matokit_health_run_timestamp_seconds", round(report.generated_at, 3))
    return families


def _registry(report: HealthReport) -> CollectorRegistry:
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_families(report))
    return registry


def render_prometheus(report: HealthReport) -> str:
    """Prometheus text exposition (format 0.0.4); every sample carries the profile label."""
    from prometheus_client.exposition import generate_latest

    return generate_latest(_registry(report)).decode("utf-8")


def prometheus_exposition(report: HealthReport, accept: str | None) -> tuple[bytes, str]:
    """`(body, Content-Type)` for a scrape: OpenMetrics when `accept` (the request's Accept
    header) asks for application/openmetrics-text, else the Prometheus text format (0.0.4
    unless text/plain version 1.0.0 is asked for). prometheus_client's own negotiation."""
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    return encoder(_registry(report)), content_type


# --- Nagios / monitoring plugins ------------------------------------------------------------------


def render_nagios(report: HealthReport) -> str:
    """Monitoring-plugin output: `MATOKIT STATUS - summary | perfdata`, then one line per check."""
    first = f"MATOKIT {report.status.name} - {_nagios_text(_nagios_summary(report))}"
    perf = " ".join(_perfdata(report))
    lines = [f"{first} | {perf}" if perf else first]
    for check in sorted(report.checks, key=lambda c: -c.status.severity):
        lines.append(f"[{check.status.name}] {check.name}: {_nagios_text(check.summary)}")
    return "\n".join(lines) + "\n"


def _nagios_summary(report: HealthReport) -> str:
    bad = [c for c in report.checks if c.status is not Status.OK]
    if not bad:
        api = report.check("api")
        version = api.info.get("matomo_version") if api else None
        tail = f" (Matomo {version})" if version else ""
        return f"{len(report.checks)} checks OK{tail}"
    bad.sort(key=lambda c: -c.status.severity)
    # Checks skipped because the api check failed add nothing but length to the first line.
    skipped = [c.name for c in bad if c.summary == SKIPPED_AFTER_API]
    parts = [
        f"{c.name} {c.status.name}: {c.summary.rstrip('.')}" for c in bad if c.name not in skipped
    ]
    if skipped:
        parts.append(f"not checked after the api failure: {', '.join(skipped)}")
    return "; ".join(parts)


def _nagios_text(text: str) -> str:
    # '|' starts the performance data; a newline would end the first line.
    return printable(" ".join(text.replace("|", "/").split()))


def _perfdata(report: HealthReport) -> Iterable[str]:
    limits = report.thresholds
    specs: list[tuple[str, str, str, str, float | None, float | None]] = [
        # (check, metric key, label, unit, warn, crit)
        ("api", "latency_seconds", "api_latency", "s", limits.warn_latency, limits.crit_latency),
        ("tracking", "latency_seconds", "tracking_latency", "s", None, None),
        ("queue", "depth", "queue_depth", "", limits.warn_queue_depth, limits.crit_queue_depth),
        (
            "queue",
            "oldest_age_seconds",
            "queue_oldest_age",
            "s",
            limits.warn_queue_age,
            limits.crit_queue_age,
        ),
        ("queue", "dead_letters", "queue_dead_letters", "", None, None),
        ("queue", "unconfirmed", "queue_unconfirmed", "", None, None),
        ("queue", "unattributed", "queue_unattributed", "", None, None),
        ("tracking-failures", "failures", "tracking_failures", "", None, None),
        ("cache", "size_bytes", "cache_size", "B", None, None),
    ]
    for check_name, key, label, unit, warn, crit in specs:
        check = report.check(check_name)
        if check is None or key not in check.metrics:
            continue
        value = check.metrics[key]
        # U: the guidelines' "value could not be determined" (no unit after it).
        shown = "U" if value is None else f"{_nagios_number(value)}{unit}"
        fields = [f"'{label}'={shown}", _opt(warn), _opt(crit), "0"]
        yield ";".join(fields)
    yield f"'duration'={_nagios_number(report.duration_s)}s;;;0"


def _opt(value: float | None) -> str:
    return "" if value is None else _nagios_number(value)


def _nagios_number(value: float) -> str:
    # The guidelines allow only plain decimals: no exponent, '.' as the separator.
    number = float(value)
    if number.is_integer():
        return str(int(number))
    return f"{number:.6f}".rstrip("0").rstrip(".")


# --- text ----------------------------------------------------------------------------------------


def print_text(report: HealthReport, console: Console) -> None:
    """A table (check, status, summary, duration), the overall verdict and fix hints."""
    from rich.table import Table
    from rich.text import Text

    table = Table(header_style="bold", show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("summary", overflow="fold")
    table.add_column("duration", justify="right")
    # Summaries quote Matomo's messages and the URL: text (Text, escaped), never markup.
    for check in report.checks:
        table.add_row(
            Text(printable(check.name)),
            Text(check.status.name, style=_STYLES[check.status]),
            Text(printable(check.summary)),
            f"{check.duration_s:.2f} s",
        )
    console.print(table)
    where = f" ({report.profile}: {report.url})" if report.profile and report.url else ""
    verdict = Text("overall: ")
    verdict.append(report.status.name, style=_STYLES[report.status])
    verdict.append(printable(f" in {report.duration_s:.2f} s{where}"))
    console.print(verdict)
    for check in report.checks:
        if check.hint and check.status is not Status.OK:
            console.print(Text(printable(f"  hint ({check.name}): {check.hint}")))


def render_text(report: HealthReport, *, width: int = 120) -> str:
    """The text table as plain text (no colour), for `--output FILE`."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, no_color=True, color_system=None, highlight=False, markup=False
    )
    print_text(report, console)
    return buffer.getvalue()


def render(report: HealthReport, fmt: str) -> str:
    """The report in `fmt` (text, json, prometheus, nagios) as a string."""
    if fmt == "json":
        return render_json(report)
    if fmt == "prometheus":
        return render_prometheus(report)
    if fmt == "nagios":
        return render_nagios(report)
    return render_text(report)
