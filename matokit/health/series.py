"""Every Prometheus series a health run can expose, in one place.

`RUN_SERIES` belong to the run (status, durations, MatoKit's version, when it ran);
`CHECK_SERIES[check]` to one check: a `Series` per metric key the check reports (its
`CheckResult.metrics`, which `Check.metrics` declares from here) and, for the api check, the
`matokit_matomo_info` info series. The Prometheus renderer walks this table, not a result's
keys, so it cannot drop a series: a value the check could not measure is NaN, and an info
label the check could not learn is "unknown" (`UNKNOWN_LABEL`). docs/monitoring.md's metric
table, the alert rules and the Grafana dashboard in contrib/ are tested against it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from matokit.health.model import CheckResult, MetricValue

# An info series' label value that could not be learnt in this run (Matomo did not answer).
UNKNOWN_LABEL: Final = "unknown"
# Every sample carries the profile label (several profiles share one textfile directory).
PROFILE_LABEL: Final = "profile"


@dataclass(frozen=True)
class Series:
    """One metric family: its name and HELP text, and where its value comes from.

    `key`: the check's metric key (JSON `metrics`), for a check's measured value.
    `labels`: labels besides `profile`. `info`: for an info series (value 1), the
    `CheckResult.info` key whose value its one label carries.
    """

    name: str
    help: str
    key: str | None = None
    labels: tuple[str, ...] = ()
    info: str | None = None


RUN_SERIES: Final[tuple[Series, ...]] = (
    Series(
        "matokit_up", "1 when the last health run was OK or WARNING, 0 when CRITICAL or UNKNOWN."
    ),
    Series("matokit_health_status", "Overall health: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."),
    Series(
        "matokit_check_status",
        "Status of one check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        labels=("check",),
    ),
    Series("matokit_check_duration_seconds", "Time one check took.", labels=("check",)),
    Series("matokit_build_info", "MatoKit's version.", labels=("version",)),
    Series("matokit_health_run_duration_seconds", "Time the whole health run took."),
    Series("matokit_health_run_timestamp_seconds", "Unix time the health run started."),
)

CHECK_SERIES: Final[Mapping[str, tuple[Series, ...]]] = {
    "config": (),
    "api": (
        Series(
            "matokit_api_latency_seconds",
            "Time Matomo took to answer API.getMatomoVersion.",
            key="latency_seconds",
        ),
        Series(
            "matokit_api_reachable",
            "1 when Matomo's API answered as Matomo (even to refuse the token), 0 when it "
            "could not be reached or did not answer in time or as Matomo (connection, TLS, "
            "HTTP 5xx, maintenance, a proxy's page); NaN when it was not asked.",
            key="reachable",
        ),
        Series(
            "matokit_api_token_accepted",
            "1 when Matomo accepted the token, 0 when it refused it (now or within the "
            "cool-down) or blocks this host after failed logins; NaN when not learnt.",
            key="token_accepted",
        ),
        Series(
            "matokit_matomo_info",
            "Matomo's version as reported by API.getMatomoVersion; the version label is "
            "unknown when Matomo did not answer.",
            labels=("version",),
            info="matomo_version",
        ),
    ),
    "site": (),
    "replay-access": (
        Series(
            "matokit_replay_admin_access",
            "1 when the token can replay hits older than 24 h on the site, 0 when it cannot.",
            key="admin_access",
        ),
    ),
    "tracking": (
        Series(
            "matokit_tracking_latency_seconds",
            "Time the tracker took to answer the bulk probe.",
            key="latency_seconds",
        ),
        Series(
            "matokit_tracking_paused_until_timestamp_seconds",
            "Unix time until which Matomo asked (Retry-After) for no tracking requests; "
            "NaN when there is no such pause.",
            key="paused_until_timestamp_seconds",
        ),
    ),
    "tracking-failures": (
        Series(
            "matokit_tracking_failures",
            "Tracking failures Matomo reports (kept about two days).",
            key="failures",
        ),
    ),
    "journal": (
        Series(
            "matokit_journal_usable",
            "1 when the journal's backend (SQLite file or Redis) takes writes, 0 when it cannot.",
            key="usable",
        ),
        Series(
            "matokit_journal_durable",
            "1 when every acknowledged write is on disk before the answer (SQLite; Redis with "
            "appendonly and appendfsync always); NaN when the server does not tell.",
            key="durable",
        ),
        Series(
            "matokit_journal_evicts_keys",
            "1 when Redis's maxmemory-policy may evict journal keys; NaN when unknown.",
            key="evicts_keys",
        ),
        Series(
            "matokit_journal_replicas",
            "Replicas connected to the Redis primary; NaN on SQLite.",
            key="replicas",
        ),
        Series(
            "matokit_journal_latency_seconds",
            "Time the journal's backend took to answer the check's probe.",
            key="latency_seconds",
        ),
    ),
    "queue": (
        Series(
            "matokit_queue_depth",
            "Hits in the journal still to deliver.",
            key="depth",
        ),
        Series(
            "matokit_queue_due",
            "Queued hits due for sending now.",
            key="due",
        ),
        Series(
            "matokit_queue_oldest_age_seconds",
            "Age of the oldest hit still to deliver (0 when none).",
            key="oldest_age_seconds",
        ),
        Series(
            "matokit_queue_dead_letters",
            "Hits given up on (dead letters).",
            key="dead_letters",
        ),
        Series(
            "matokit_queue_unattributed",
            "Hits in batches Matomo partly refused without saying which.",
            key="unattributed",
        ),
        Series(
            "matokit_queue_unconfirmed",
            "Hits sent whose answer was lost (Matomo may have stored them).",
            key="unconfirmed",
        ),
        Series(
            "matokit_queue_possible_duplicates",
            "Delivered hits that had been sent before with the answer lost.",
            key="possible_duplicates",
        ),
        Series(
            "matokit_queue_awaiting_lookup",
            "Hits whose last send is uncertain, waiting for an exactly-once lookup in Matomo.",
            key="awaiting_lookup",
        ),
        Series(
            "matokit_queue_confirmed_by_lookup",
            "Uncertain deliveries an exactly-once lookup confirmed (no re-send).",
            key="confirmed_by_lookup",
        ),
        Series(
            "matokit_queue_file_size_bytes",
            "Size of the journal file (on Redis: the memory its keys take).",
            key="file_size_bytes",
        ),
        Series(
            "matokit_last_flush_timestamp_seconds",
            "Unix time of the last recorded queue flush; NaN when none has run.",
            key="last_flush_timestamp_seconds",
        ),
        Series(
            "matokit_last_flush_delivered",
            "Hits the last recorded queue flush delivered; NaN when none has run.",
            key="last_flush_delivered",
        ),
    ),
    "cache": (
        Series(
            "matokit_cache_size_bytes",
            "Size of the report cache (on Redis: the memory its keys take).",
            key="size_bytes",
        ),
    ),
}


def sanitized_name(check: str, key: str) -> str:
    """`matokit_<check>_<key>` with every character a metric name cannot hold as `_`."""
    raw = f"matokit_{check}_{key}"
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in raw)


def metric_keys(check: str) -> tuple[str, ...]:
    """The metric keys check `check` always reports, in order (its schema)."""
    return tuple(s.key for s in CHECK_SERIES[check] if s.key is not None)


def check_values(result: CheckResult) -> Iterator[tuple[Series, MetricValue]]:
    """Each value series of `result`'s check with its value (None when not measured), then
    any metric key the table does not know (a check outside the standard set) under its
    sanitized name."""
    known = CHECK_SERIES.get(result.name, ())
    for series in known:
        if series.key is not None:
            yield series, result.metrics.get(series.key)
    keys = {s.key for s in known}
    for key, value in result.metrics.items():
        if key not in keys:
            help_text = f"{key} reported by the {result.name} check."
            yield Series(sanitized_name(result.name, key), help_text, key=key), value


def check_infos(result: CheckResult) -> Iterator[tuple[Series, dict[str, str]]]:
    """Each info series of `result`'s check with its label ("unknown" when not learnt)."""
    for series in CHECK_SERIES.get(result.name, ()):
        if series.info is not None:
            value = result.info.get(series.info) or UNKNOWN_LABEL
            yield series, {series.labels[0]: value}


def series_names(checks: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Every metric name a run of `checks` (default: all standard checks) exposes."""
    chosen = tuple(CHECK_SERIES) if checks is None else checks
    names = [s.name for s in RUN_SERIES]
    names += [s.name for check in chosen for s in CHECK_SERIES[check]]
    return tuple(names)
