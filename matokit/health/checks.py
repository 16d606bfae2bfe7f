"""The standard health checks: one function per check, each returning a CheckResult.

`STANDARD_CHECKS` maps each name to its `Check` (the function and the metric keys it always
reports); `matokit.health.runner` runs them. Each function gets the run's shared state
(`HealthRun`: settings, token, client, the shared version call, the journal stats) and its
own name, and may raise: `Skip` for "cannot run because a dependency failed", any other error
is classified by `classify_error`. The queue check lives in `matokit.health.queue`, the journal
check (the backend: SQLite file or Redis) in `matokit.health.journal`.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from matokit.durations import format_duration
from matokit.errors import (
    ConfigError,
    MatomoError,
    PermissionDeniedError,
    ProtocolError,
    StorageError,
    UsageError,
)
from matokit.health.classify import api_facts, classify_error
from matokit.health.journal import JOURNAL_METRICS, check_journal
from matokit.health.model import VERSION_METHOD, Check, CheckResult, MetricValue, Status
from matokit.health.queue import QUEUE_METRICS, check_queue
from matokit.health.series import metric_keys
from matokit.health.text import line, seconds_text
from matokit.redact import display_url
from matokit.sizes import byte_text, database_size

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.health.runner import HealthRun

# Matomo refuses a hit older than 24 h from a token without admin access on the site.
REPLAY_HORIZON = 24 * 3600.0
PROBE_URL = "https://matokit.invalid/health-probe"
# The api check's stage while Matomo has the version call (the run's deadline may end it).
VERSION_STAGE = f"waiting for Matomo's answer to {VERSION_METHOD}"


# --- the checks ----------------------------------------------------------------------------------


def check_config(run: HealthRun, name: str) -> CheckResult:
    """Profile resolves, URL acceptable, token present and readable, private files private."""
    run.set_stage(name, "resolving the configuration")
    try:
        settings = run.settings()
        url = display_url(settings.require_url()) or ""
        run.set_stage(name, "reading the token")
        run.token()
    except ConfigError as exc:
        return CheckResult(name, Status.CRITICAL, line(exc.message), hint=exc.hint)
    source = settings.token_source.describe() if settings.token_source else "?"
    problems = _loose_modes(settings)
    site = settings.site_id
    info = {"profile": settings.profile, "url": url, "token_source": source}
    if site is None:
        return CheckResult(
            name,
            Status.WARNING,
            f"profile {settings.profile}: no site id configured; the site, replay-access, "
            "tracking and tracking-failures checks need one",
            hint=_no_site_hint(settings),
            info=info,
        )
    if problems:
        path, mode = problems[0]
        return CheckResult(
            name,
            Status.WARNING,
            f"{path} is accessible by other users (mode {mode:04o})",
            hint=f"Run: chmod {'700' if Path(path).is_dir() else '600'} {shlex.quote(path)}",
            info=info,
        )
    return CheckResult(
        name,
        Status.OK,
        f"profile {settings.profile}: {url} site {site}, token from {source}",
        info=info,
    )


def _no_site_hint(settings: Settings) -> str | None:
    """Where a site id can be set (the configuration's own hint)."""
    try:
        settings.require_site()
    except ConfigError as exc:
        return exc.hint
    return None


def _site_sources() -> str:
    """Where the site id comes from (the configuration's flag and variable)."""
    from matokit.config import KEYS_BY_NAME

    key = KEYS_BY_NAME["site_id"]
    return " / ".join(source for source in (key.flag, key.env) if source)


def _loose_modes(settings: Settings) -> list[tuple[str, int]]:
    """MatoKit's own directories and files that group or others can access."""
    if os.name != "posix":
        return []
    paths = [
        settings.data_dir,
        settings.cache_dir,
        settings.journal_path,
        settings.cache_path,
        settings.token_memory_path,
    ]
    found = []
    for path in paths:
        try:
            mode = stat.S_IMODE(Path(path).stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            found.append((str(path), mode))
    return found


def check_api(run: HealthRun, name: str) -> CheckResult:
    """API.getMatomoVersion with the token: reachability, database, token, latency."""
    run.need_token()
    run.set_stage(name, VERSION_STAGE)
    try:
        auth = run.auth()
    except Exception as exc:
        status, summary, hint = classify_error(exc)
        return CheckResult(name, status, summary, hint=hint, metrics=api_facts(exc))
    limits = run.thresholds
    status = Status.OK
    if auth.latency >= limits.crit_latency:
        status = Status.CRITICAL
    elif auth.latency >= limits.warn_latency:
        status = Status.WARNING
    summary = f"Matomo {auth.version} answered in {seconds_text(auth.latency)}"
    if status is not Status.OK:
        bound = limits.crit_latency if status is Status.CRITICAL else limits.warn_latency
        summary += f" (slower than {bound:g} s)"
    return CheckResult(
        name,
        status,
        summary,
        metrics={"latency_seconds": round(auth.latency, 4), "reachable": 1, "token_accepted": 1},
        info={"matomo_version": auth.version},
    )


def _api_late(stage: str) -> dict[str, MetricValue]:
    """The run's time ran out: while Matomo had the version call, it did not answer in time."""
    return {"reachable": 0} if stage == VERSION_STAGE else {}


def check_site(run: HealthRun, name: str) -> CheckResult:
    """The configured site exists and the token can see it; its timezone as info."""
    site = run.need_site()
    run.need_auth(name)
    try:
        answer = run.call(name, "SitesManager.getSiteFromId", idSite=site)
    except PermissionDeniedError as exc:
        return CheckResult(
            name, Status.CRITICAL, f"the token cannot view site {site}", hint=exc.hint
        )
    except MatomoError as exc:
        if "unexpected website" in exc.message.casefold():
            return CheckResult(
                name,
                Status.CRITICAL,
                f"site {site} does not exist or the token cannot see it",
                hint=f"Check the site id ({_site_sources()}) and the token's access in Matomo.",
            )
        raise
    if not isinstance(answer, dict) or not answer.get("idsite"):
        raise ProtocolError(
            f"SitesManager.getSiteFromId answered {str(answer)[:80]!r}, not a site.",
            method="SitesManager.getSiteFromId",
        )
    site_name = str(answer.get("name") or "")
    timezone = str(answer.get("timezone") or "UTC")
    return CheckResult(
        name,
        Status.OK,
        f"site {site} {site_name!r} visible (timezone {timezone})",
        info={"name": site_name, "timezone": timezone},
    )


def check_replay_access(run: HealthRun, name: str) -> CheckResult:
    """Whether the token can replay hits older than 24 h (admin access), and whether it must."""
    site = run.need_site()
    run.need_auth(name)
    answer = run.call(name, "SitesManager.getSitesIdWithAdminAccess")
    if not isinstance(answer, list):
        raise ProtocolError(
            f"SitesManager.getSitesIdWithAdminAccess answered {str(answer)[:80]!r}, not a list.",
            method="SitesManager.getSitesIdWithAdminAccess",
        )
    admin = {str(item) for item in answer}
    if str(site) in admin:
        return CheckResult(
            name,
            Status.OK,
            f"the token has admin access on site {site}: hits older than 24 h can be replayed",
            metrics={"admin_access": 1},
        )
    run.set_stage(name, "reading the journal")
    stats = run.journal_stats()
    oldest = stats.oldest_age if stats is not None else None
    limit = run.thresholds.replay_warn_age
    if oldest is not None and oldest >= limit:
        left = REPLAY_HORIZON - oldest
        when = f"in {format_duration(left)}" if left > 0 else "already"
        return CheckResult(
            name,
            Status.WARNING,
            f"the token lacks admin access on site {site} and the oldest queued hit is "
            f"{format_duration(oldest)} old: Matomo refuses it {when} (24 h)",
            metrics={"admin_access": 0},
            hint="Flush the queue now (`matokit queue flush`), or use a token with admin "
            "access on the site.",
        )
    age = f"oldest {format_duration(oldest)}" if oldest is not None else "queue empty"
    return CheckResult(
        name,
        Status.OK,
        f"the token lacks admin access on site {site}, but no queued hit is near 24 h ({age})",
        metrics={"admin_access": 0},
    )


def check_tracking(run: HealthRun, name: str) -> CheckResult:
    """A bulk of one item without rec=1: proves the tracker answers, stores nothing."""
    site = run.need_site()
    settings = run.need_settings()
    run.need_url()
    paused = _paused(name, settings, run.clock)
    if paused is not None:
        return paused
    # Send the token only once the shared call proved it valid; otherwise probe without one
    # (the tracker does not need it), so a bad token is never sent twice.
    run.set_stage(name, f"waiting for the shared {VERSION_METHOD} call")
    token_ok = False
    if settings.has_token():
        try:
            run.auth()
            token_ok = True
        except Exception:  # the api check reports it
            token_ok = False
    client = run.client() if token_ok else run.tokenless_client()
    run.set_stage(name, "waiting for the tracker's answer to the probe")
    started = time.perf_counter()
    result = client.track([_probe_hit(site, run.clock())])
    latency = time.perf_counter() - started
    metrics = {"latency_seconds": round(latency, 4)}
    how = "" if token_ok else " (sent without the token)"
    if result.tracked == 1 and result.invalid == 0:
        return CheckResult(
            name,
            Status.OK,
            f"tracker accepted a probe for site {site} in {seconds_text(latency)}{how}; "
            "nothing stored",
            metrics=metrics,
        )
    if result.invalid:
        return CheckResult(
            name,
            Status.CRITICAL,
            f"tracker refused the probe for site {site}{how}",
            metrics=metrics,
            hint="Does the site exist? Does bulk tracking require authentication "
            "(bulk_requests_require_authentication)?",
        )
    if "QueuedTracking" in (result.note or ""):
        return CheckResult(
            name,
            Status.WARNING,
            f"tracker accepted the probe for site {site} without counts{how}",
            metrics=metrics,
            hint="If Matomo's QueuedTracking plugin is active, set queuedtracking = true.",
        )
    return CheckResult(
        name,
        Status.CRITICAL,
        f"tracker processed {result.tracked} of 1 probe item for site {site}{how}: "
        "hits are not being recorded",
        metrics=metrics,
        hint="Is Matomo in maintenance mode or record_statistics = 0? Check Matomo's "
        "general settings and its error log.",
    )


def _paused(name: str, settings: Settings, clock: Callable[[], float]) -> CheckResult | None:
    """WARNING, probe not sent, while Matomo's Retry-After pause holds for the profile."""
    from matokit.shared import server_pause_for

    pause = server_pause_for(settings, clock=clock).current()
    if pause is None:
        return None
    error = pause.error(clock())
    return CheckResult(
        name,
        Status.WARNING,
        line(f"tracking paused, probe not sent: {error.message}"),
        metrics={"paused_until_timestamp_seconds": round(pause.until, 3)},
        hint=error.hint,
    )


def _probe_hit(site: int, now: float) -> Any:
    from matokit.hits import Hit

    # Built directly, not with the builders: those always add rec=1, and without rec=1
    # Matomo answers success and stores nothing, which is exactly the probe.
    return Hit(params={"idsite": str(site), "url": PROBE_URL}, created_at=now)


def check_tracking_failures(run: HealthRun, name: str) -> CheckResult:
    """CoreAdminHome.getTrackingFailures (Matomo keeps them ~2 days): WARNING when any exist."""
    run.need_settings()
    run.need_auth(name)
    try:
        answer = run.call(name, "CoreAdminHome.getTrackingFailures")
    except PermissionDeniedError:
        return CheckResult(
            name,
            Status.UNKNOWN,
            "not checked: the token lacks admin access (needed to read tracking failures)",
            hint="Use a token with admin access, or leave this check out of the run.",
        )
    if not isinstance(answer, list):
        raise ProtocolError(
            f"CoreAdminHome.getTrackingFailures answered {str(answer)[:80]!r}, not a list.",
            method="CoreAdminHome.getTrackingFailures",
        )
    failures = [f for f in answer if isinstance(f, dict)]
    if not failures:
        return CheckResult(name, Status.OK, "no tracking failures", metrics={"failures": 0})
    reasons: dict[str, int] = {}
    for failure in failures:
        text = f"site {failure.get('idsite', '?')}: {failure.get('problem') or 'unknown problem'}"
        reasons[text] = reasons.get(text, 0) + 1
    latest = max(str(f.get("date_first_occurred") or "") for f in failures)
    listed = "; ".join(f"{text}" for text in sorted(reasons))
    solution = next((str(f["solution"]) for f in failures if f.get("solution")), None)
    return CheckResult(
        name,
        Status.WARNING,
        line(f"{len(failures)} tracking failure(s), latest {latest} UTC: {listed}"),
        metrics={"failures": len(failures)},
        hint=solution or "See Matomo > Administration > Diagnostic > Tracking Failures.",
    )


def check_cache(run: HealthRun, name: str) -> CheckResult:
    """The report cache database opens (read-only); its size. On Redis: its keys can be read."""
    settings = run.need_settings()
    if settings.redis_url:
        return _check_redis_cache(run, name, settings)
    path = settings.cache_path
    run.set_stage(name, "opening the cache database")
    if not path.exists():
        return CheckResult(
            name, Status.OK, "no cache yet (the first report creates it)", metrics={"size_bytes": 0}
        )
    size = database_size(path)
    try:
        uri = f"file:{quote(str(path))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=2.0)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return CheckResult(
            name,
            Status.WARNING,
            line(f"cache database {path} cannot be read: {exc}"),
            metrics={"size_bytes": size},
            hint="Run `matokit cache clear`, or delete the file: it only holds cached reports.",
        )
    return CheckResult(
        name,
        Status.OK,
        f"cache database opens ({byte_text(size)})",
        metrics={"size_bytes": size},
    )


def _check_redis_cache(run: HealthRun, name: str, settings: Settings) -> CheckResult:
    """The report cache on Redis: WARNING when it cannot be read (reports then go to Matomo)."""
    from matokit.cache import profile_stats

    run.set_stage(name, "reading the report cache on Redis")
    try:
        found = profile_stats(settings)
    except StorageError as exc:
        return CheckResult(
            name,
            Status.WARNING,
            line(exc.message),
            metrics={"size_bytes": 0},
            hint="Reports are asked from Matomo meanwhile. " + (exc.hint or ""),
        )
    return CheckResult(
        name,
        Status.OK,
        f"cache on Redis readable: {found.entries} entries ({byte_text(found.size_bytes)})",
        metrics={"size_bytes": found.size_bytes},
    )


# Each check's metric keys come from its series in `matokit.health.series`.
STANDARD_CHECKS: dict[str, Check] = {
    "config": Check(check_config, metric_keys("config")),
    "api": Check(check_api, metric_keys("api"), late=_api_late),
    "site": Check(check_site, metric_keys("site")),
    "replay-access": Check(check_replay_access, metric_keys("replay-access")),
    "tracking": Check(check_tracking, metric_keys("tracking")),
    "tracking-failures": Check(check_tracking_failures, metric_keys("tracking-failures")),
    "journal": Check(check_journal, JOURNAL_METRICS),
    "queue": Check(check_queue, QUEUE_METRICS),
    "cache": Check(check_cache, metric_keys("cache")),
}
# The standard checks' names, in the order they run and are reported.
CHECKS: tuple[str, ...] = tuple(STANDARD_CHECKS)


class NoCheckSelectedError(UsageError):
    """A check selection names no check: a run that checks nothing must not report OK."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(
            f"{text!r} names no check.",
            hint=f"Name at least one of: {', '.join(CHECKS)} (or all).",
        )


def parse_checks(text: str | None) -> tuple[str, ...]:
    """Check names from a comma-separated selection (None or "all": every check), in the
    canonical order; naming no check at all is a NoCheckSelectedError."""
    if text is None or text.strip() == "all":
        return CHECKS
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    if not wanted:
        raise NoCheckSelectedError(text)
    unknown = sorted(wanted - set(CHECKS))
    if unknown:
        raise UsageError(
            f"Unknown check {', '.join(repr(u) for u in unknown)}.",
            hint=f"Choose from: {', '.join(CHECKS)}.",
        )
    return tuple(name for name in CHECKS if name in wanted)
