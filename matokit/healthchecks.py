"""The health checks themselves: one function per check, each returning a CheckResult.

`matokit.health.run_health` runs them (concurrently, under one deadline); each function gets
the run's shared state (`HealthRun`: settings, token, client, the shared version call, the
journal stats) and its own name, and may raise: `Skip` for "cannot run because a dependency
failed", any other error is classified by `classify_error`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from matokit.durations import format_duration
from matokit.errors import ConfigError, MatomoError, PermissionDeniedError, ProtocolError
from matokit.health import (
    PROBE_URL,
    REPLAY_HORIZON,
    VERSION_METHOD,
    CheckResult,
    HealthRun,
    Status,
    Thresholds,
    classify_error,
    line,
    seconds_text,
)
from matokit.redact import display_url

if TYPE_CHECKING:
    from matokit.config import Settings
    from matokit.journal import JournalStats


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
            hint="Pass --site ID, set MATOMO_SITE_ID, or set site_id in the profile.",
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
    run.set_stage(name, f"waiting for Matomo's answer to {VERSION_METHOD}")
    try:
        auth = run.auth()
    except Exception as exc:
        status, summary, hint = classify_error(exc)
        return CheckResult(name, status, summary, hint=hint)
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
        metrics={"latency_seconds": round(auth.latency, 4)},
        info={"matomo_version": auth.version},
    )


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
                hint="Check --site / MATOMO_SITE_ID and the token's access in Matomo.",
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
    from matokit.serverpause import ServerPause

    pause = ServerPause(settings.server_pause_path, clock=clock).current()
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
            hint="Use a token with admin access, or leave this check out with --check.",
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


def check_queue(run: HealthRun, name: str) -> CheckResult:
    """The retry journal: depth, oldest age, dead letters, unconfirmed, last flush."""
    run.need_settings()
    run.set_stage(name, "reading the journal")
    stats = run.journal_stats()
    if stats is None:
        return CheckResult(
            name,
            Status.OK,
            "no journal yet: nothing queued",
            metrics={
                "depth": 0,
                "due": 0,
                "oldest_age_seconds": 0,
                "dead_letters": 0,
                "unattributed": 0,
                "unconfirmed": 0,
            },
        )
    return queue_result(name, stats, run.thresholds, now=run.clock())


def queue_result(name: str, stats: JournalStats, limits: Thresholds, *, now: float) -> CheckResult:
    """The queue verdict for journal `stats` against `limits`."""
    from matokit.journal import EntryState

    depth = stats.queued
    age = stats.oldest_age or 0.0
    unattributed = stats.counts.get(EntryState.UNATTRIBUTED, 0)
    unconfirmed = stats.counts.get(EntryState.SENT_UNCONFIRMED, 0)
    metrics: dict[str, float] = {
        "depth": depth,
        "due": stats.due,
        "oldest_age_seconds": round(age, 3),
        "dead_letters": stats.dead,
        "unattributed": unattributed,
        "unconfirmed": unconfirmed,
        "possible_duplicates": stats.delivered_unconfirmed,
        "file_size_bytes": stats.file_size,
    }
    flush = stats.last_flush
    flush_at = _flush_time(flush)
    if flush_at is not None:
        metrics["last_flush_timestamp_seconds"] = round(flush_at, 3)
    crit: list[str] = []
    warn: list[str] = []
    if flush is not None and flush_stopped_on_auth(flush):
        crit.append("the last flush stopped: Matomo rejected the token")
    elif flush is not None and flush.get("stopped_reason") == "permission_denied":
        warn.append("the last flush stopped: the token lacks access to a site")
    _limit(crit, warn, "queued hits", depth, limits.warn_queue_depth, limits.crit_queue_depth)
    if depth:
        _limit(
            crit,
            warn,
            "oldest queued hit age",
            age,
            limits.warn_queue_age,
            limits.crit_queue_age,
            fmt=format_duration,
        )
    if stats.dead:
        reasons = ", ".join(sorted(r or "?" for r in stats.dead_by_reason)) or "?"
        warn.append(f"{stats.dead} dead letter(s) ({line(reasons, 80)})")
    if unattributed:
        warn.append(f"{unattributed} hit(s) in batches Matomo partly refused (unattributed)")
    parts = [f"{depth} queued"]
    if depth:
        parts.append(f"oldest {format_duration(age)}")
    parts.append(f"{stats.dead} dead")
    if unconfirmed:
        parts.append(f"{unconfirmed} unconfirmed")
    if flush_at is not None:
        parts.append(f"last flush {format_duration(now - flush_at)} ago ({_flush_outcome(flush)})")
    else:
        parts.append("never flushed")
    facts = ", ".join(parts)
    if crit or warn:
        status = Status.CRITICAL if crit else Status.WARNING
        summary = line("; ".join(crit + warn) + f" ({facts})")
        if any("token" in c for c in crit):
            hint = "Fix the token, then run `matokit queue flush`."
        else:
            hint = "Run `matokit queue status` and `matokit queue flush`; see `queue list --dead`."
            if unattributed:
                hint += (
                    " Look the unattributed hits up in Matomo (`queue list --unattributed`),"
                    " then `queue purge --unattributed`."
                )
        return CheckResult(name, status, summary, metrics=metrics, hint=hint)
    return CheckResult(name, Status.OK, facts, metrics=metrics)


def _limit(
    crit: list[str],
    warn: list[str],
    what: str,
    value: float,
    warn_at: float,
    crit_at: float,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
) -> None:
    if value >= crit_at:
        crit.append(f"{what} {fmt(value)} >= {fmt(crit_at)}")
    elif value >= warn_at:
        warn.append(f"{what} {fmt(value)} >= {fmt(warn_at)}")


def _flush_time(flush: Mapping[str, Any] | None) -> float | None:
    if not flush:
        return None
    value = flush.get("recorded_at")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


_AUTH_MARKERS = ("auth", "token", "locked")


def flush_stopped_on_auth(flush: Mapping[str, Any]) -> bool:
    """Whether a recorded flush stopped because Matomo rejected the token (or locked us out).

    Reads what `delivery.FlushResult.record()` writes (`auth_failed`, `stopped_reason`
    "auth_failed"/"locked_out"), tolerating older or partial records.
    """
    for key in ("auth_failed", "authentication_failed", "stopped_on_auth"):
        if flush.get(key) is True:
            return True
    for key in ("stopped_reason", "stopped_by", "stop_reason", "error_kind"):
        value = flush.get(key)
        if isinstance(value, str) and any(m in value.casefold() for m in _AUTH_MARKERS):
            return True
    return False


def _flush_outcome(flush: Mapping[str, Any] | None) -> str:
    if not flush:
        return "?"
    if flush_stopped_on_auth(flush):
        return "stopped: token rejected"
    for key in ("result", "outcome", "status", "stopped_by", "stop_reason"):
        value = flush.get(key)
        if isinstance(value, str) and value:
            return line(value, 60)
    delivered = flush.get("delivered")
    if isinstance(delivered, int) and not isinstance(delivered, bool):
        return f"{delivered} delivered"
    return "recorded"


def check_cache(run: HealthRun, name: str) -> CheckResult:
    """The report cache database opens (read-only); its size."""
    path = run.need_settings().cache_path
    run.set_stage(name, "opening the cache database")
    if not path.exists():
        return CheckResult(
            name, Status.OK, "no cache yet (the first report creates it)", metrics={"size_bytes": 0}
        )
    size = _size_with_wal(path)
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
        f"cache database opens ({_bytes(size)})",
        metrics={"size_bytes": size},
    )


def _size_with_wal(path: Path) -> int:
    total = 0
    for candidate in (path, Path(f"{path}-wal")):
        with contextlib.suppress(OSError):
            total += candidate.stat().st_size
    return total


def _bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


CHECK_FUNCTIONS: dict[str, Callable[[HealthRun, str], CheckResult]] = {
    "config": check_config,
    "api": check_api,
    "site": check_site,
    "replay-access": check_replay_access,
    "tracking": check_tracking,
    "tracking-failures": check_tracking_failures,
    "queue": check_queue,
    "cache": check_cache,
}
