"""Health checks for CI, cron and monitoring: each check returns a `CheckResult`.

`run_health()` runs the selected checks concurrently under one overall deadline and returns a
`HealthReport` whose status is the worst check's. Renderers (text, JSON, Prometheus, Nagios)
live in `matokit.cli.health_render`; this module never prints.

Lockout safety: the token is first sent by one shared `API.getMatomoVersion` call (the `api`
check). Every other check that needs the token waits for that call and sends nothing when it
failed, so a bad token reaches Matomo at most once per run; the client's token memory then
keeps it from being sent again during the cool-down, across processes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from matokit.errors import (
    AuthenticationError,
    ConfigError,
    LockedOutError,
    MatokitError,
    ProtocolError,
    RateLimitedError,
    ServerPausedError,
    TokenCoolDownError,
    UnavailableError,
    UsageError,
)
from matokit.redact import display_url

if TYPE_CHECKING:
    import requests

    from matokit.client import MatomoClient
    from matokit.config import Settings
    from matokit.journal import JournalStats

T = TypeVar("T")

SCHEMA = "matokit.health/1"
CHECKS: tuple[str, ...] = (
    "config",
    "api",
    "site",
    "replay-access",
    "tracking",
    "tracking-failures",
    "queue",
    "cache",
)
VERSION_METHOD = "API.getMatomoVersion"
# Matomo refuses a hit older than 24 h from a token without admin access on the site.
REPLAY_HORIZON = 24 * 3600.0
# The summary of a check not run because the shared version call (the api check) failed.
SKIPPED_AFTER_API = "not checked: the api check failed"
PROBE_URL = "https://matokit.invalid/health-probe"
LOCKOUT_HINT = (
    "An admin must run `./console login:unblock-blocked-ips` on the Matomo server; first fix "
    "every cron job and monitor on this host that may be sending a stale token."
)


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
    metrics: Mapping[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    hint: str | None = None
    info: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Thresholds:
    """Warning and critical limits (seconds and hit counts)."""

    warn_latency: float = 2.0
    crit_latency: float = 5.0
    warn_queue_age: float = 3600.0
    crit_queue_age: float = 6 * 3600.0
    warn_queue_depth: float = 1000
    crit_queue_depth: float = 10000
    # replay-access warns when a queued hit is older than this and the token cannot replay it.
    replay_warn_age: float = 20 * 3600.0

    def __post_init__(self) -> None:
        for low, high in THRESHOLD_PAIRS:
            if getattr(self, low) < 0 or getattr(self, high) < 0:
                raise UsageError(f"{_flag(low)} and {_flag(high)} must not be negative.")
            if getattr(self, low) > getattr(self, high):
                raise UsageError(
                    f"{_flag(low)} ({_limit_text(low, getattr(self, low))}) is above "
                    f"{_flag(high)} ({_limit_text(high, getattr(self, high))}).",
                    hint="the warning threshold must not exceed the critical one",
                )


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


def parse_checks(text: str | None) -> tuple[str, ...]:
    """Check names from `--check a,b` (None or "all": every check), in the canonical order.

    Naming no check at all (`--check ","`) is a usage error: a run that checks nothing must
    not report OK.
    """
    if text is None or text.strip() == "all":
        return CHECKS
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    if not wanted:
        raise UsageError(
            f"--check {text!r} names no check.",
            hint=f"Name at least one of: {', '.join(CHECKS)} (or leave --check out: all).",
        )
    unknown = sorted(wanted - set(CHECKS))
    if unknown:
        raise UsageError(
            f"Unknown check {', '.join(repr(u) for u in unknown)}.",
            hint=f"Choose from: {', '.join(CHECKS)}.",
        )
    return tuple(name for name in CHECKS if name in wanted)


# (warning, critical) threshold pairs: the warning must not exceed the critical one.
THRESHOLD_PAIRS = (
    ("warn_latency", "crit_latency"),
    ("warn_queue_age", "crit_queue_age"),
    ("warn_queue_depth", "crit_queue_depth"),
)


def thresholds_from(given: Mapping[str, float]) -> tuple[Thresholds, list[str]]:
    """Thresholds from the limits given (by field name), and notes on defaults moved.

    A limit given alone moves the other one's default when they would cross, so that the pair
    stays ordered: `--crit-queue-age 1s` alone also warns from 1s. Both given and crossed is a
    UsageError (Thresholds refuses it).
    """
    values = dict(given)
    defaults = Thresholds()
    notes: list[str] = []
    for low, high in THRESHOLD_PAIRS:
        if (low in values) == (high in values):
            continue
        kept, moved = (low, high) if low in values else (high, low)
        value = values[kept]
        default = getattr(defaults, moved)
        crossed = value > default if kept == low else value < default
        if crossed and value >= 0:
            values[moved] = value
            notes.append(
                f"{_flag(kept)} {_limit_text(kept, value)} is "
                f"{'above' if kept == low else 'below'} the default {_flag(moved)} "
                f"({_limit_text(moved, default)}): {_flag(moved)} is {_limit_text(moved, value)} "
                "too."
            )
    return Thresholds(**values), notes


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _limit_text(name: str, value: float) -> str:
    if "depth" in name:
        return f"{value:g}"
    from matokit.durations import format_duration

    return format_duration(value) if value >= 60 else f"{value:g}s"


def run_health(
    load_settings: Callable[[], Settings],
    *,
    checks: Sequence[str] = CHECKS,
    thresholds: Thresholds | None = None,
    max_time: float = 20.0,
    session: requests.Session | None = None,
    clock: Callable[[], float] = time.time,
    client_factory: Callable[..., MatomoClient] | None = None,
) -> HealthReport:
    """Run `checks` concurrently; a check still running after `max_time` s is UNKNOWN.

    `load_settings` is called once (its ConfigError is the `config` check's verdict);
    `client_factory(settings, token=, timeout=, session=, clock=)` builds a MatomoClient
    (`token=None`: one that sends no token); the default uses `connect.client_for`.
    Never raises for a failing Matomo: every failure is a check result.
    """
    thresholds = thresholds or Thresholds()
    started = time.monotonic()
    generated_at = clock()
    run = HealthRun(
        load_settings,
        thresholds=thresholds,
        max_time=max_time,
        session=session,
        clock=clock,
        client_factory=client_factory or _default_client,
        api_selected="api" in checks,
        config_selected="config" in checks,
    )
    results: dict[str, CheckResult] = {}
    futures = {name: _start(run, name) for name in checks}
    try:
        wait(futures.values(), timeout=max_time)
        for name, future in futures.items():
            if future.done():
                results[name] = future.result()
            else:
                results[name] = CheckResult(
                    name,
                    Status.UNKNOWN,
                    f"did not finish within {max_time:g} s (stage: {run.stage(name)})",
                    duration_s=round(time.monotonic() - started, 3),
                    hint="Matomo or the network is too slow; raise --max-time or --timeout.",
                )
    finally:
        # Do not wait for a hung request: its own HTTP timeout ends the thread.
        run.close_when_idle(futures.values())
    ordered = tuple(results[name] for name in checks)
    settings = run.settings_or_none()
    return HealthReport(
        status=worst(r.status for r in ordered),
        checks=ordered,
        generated_at=generated_at,
        duration_s=round(time.monotonic() - started, 3),
        thresholds=thresholds,
        profile=settings.profile if settings else None,
        url=display_url(settings.url) if settings else None,
        site_id=settings.site_id if settings else None,
    )


def _start(run: HealthRun, name: str) -> Future[CheckResult]:
    """Run check `name` in a daemon thread: a check that hangs past the deadline is abandoned,
    so `--max-time` bounds the whole process (a pool's worker threads are joined at exit)."""
    future: Future[CheckResult] = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(run.execute(name))
        except BaseException as exc:  # re-raised by future.result() in the caller
            future.set_exception(exc)

    threading.Thread(target=work, name=f"health-{name}", daemon=True).start()
    return future


# --- the run's shared state ------------------------------------------------------------------


@dataclass(frozen=True)
class _Auth:
    """The shared API.getMatomoVersion answer."""

    version: str
    latency: float


class Skip(Exception):
    """A check cannot run because something it depends on failed; carries its verdict."""

    def __init__(self, status: Status, summary: str, hint: str | None = None) -> None:
        super().__init__(summary)
        self.status, self.summary, self.hint = status, summary, hint


class _Once(Generic[T]):
    """A value computed by the first caller; later callers wait and share it (or its error)."""

    def __init__(self, compute: Callable[[], T]) -> None:
        self._compute = compute
        self._lock = threading.Lock()
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None

    def get(self) -> T:
        with self._lock:
            if not self._done:
                try:
                    self._value = self._compute()
                except Exception as exc:
                    self._error = exc
                self._done = True
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set when _done without error

    def peek(self) -> T | None:
        """The value if computed without error, else None (never computes)."""
        return self._value if self._done and self._error is None else None


class HealthRun:
    """What the checks of one run share: settings, token, clients, the auth call, stats."""

    def __init__(
        self,
        load_settings: Callable[[], Settings],
        *,
        thresholds: Thresholds,
        max_time: float,
        session: requests.Session | None,
        clock: Callable[[], float],
        client_factory: Callable[..., MatomoClient],
        api_selected: bool,
        config_selected: bool = False,
    ) -> None:
        self.thresholds = thresholds
        self.clock = clock
        self.api_selected = api_selected
        self.config_selected = config_selected
        self._max_time = max_time
        self._session = session
        self._factory = client_factory
        self._stages: dict[str, str] = {}
        self._clients: list[MatomoClient] = []
        self._clients_lock = threading.Lock()
        self._settings: _Once[Settings] = _Once(load_settings)
        self._token: _Once[str] = _Once(lambda: self.settings().token())
        self._client: _Once[MatomoClient] = _Once(lambda: self._new_client(self.token()))
        self._auth: _Once[_Auth] = _Once(self._call_version)
        self._stats: _Once[JournalStats | None] = _Once(self._read_journal)

    # -- stages (what a check is doing, for the timeout message)

    def set_stage(self, name: str, stage: str) -> None:
        self._stages[name] = stage

    def stage(self, name: str) -> str:
        return self._stages.get(name, "starting")

    # -- shared values

    def settings(self) -> Settings:
        return self._settings.get()

    def settings_or_none(self) -> Settings | None:
        return self._settings.peek()

    def token(self) -> str:
        return self._token.get()

    def client(self) -> MatomoClient:
        return self._client.get()

    def tokenless_client(self) -> MatomoClient:
        return self._new_client(None)

    def _new_client(self, token: str | None) -> MatomoClient:
        settings = self.settings()
        settings.require_url()
        # Just above the deadline: the deadline reports the stage, then the thread ends.
        timeout = min(settings.timeout, self._max_time + 1.0)
        client = self._factory(
            settings, token=token, timeout=timeout, session=self._session, clock=self.clock
        )
        with self._clients_lock:
            self._clients.append(client)
        return client

    def auth(self) -> _Auth:
        """The shared API.getMatomoVersion call: the only first use of the token."""
        return self._auth.get()

    def _call_version(self) -> _Auth:
        client = self.client()
        started = time.perf_counter()
        answer = client.call(VERSION_METHOD)
        latency = time.perf_counter() - started
        version = answer.get("value") if isinstance(answer, dict) else answer
        if not isinstance(version, str) or not version:
            raise ProtocolError(
                f"{VERSION_METHOD} answered {str(answer)[:80]!r}, not a version.",
                method=VERSION_METHOD,
                hint="Is the URL Matomo's base URL? A proxy or another app may answer there.",
            )
        return _Auth(version=version, latency=latency)

    def journal_stats(self) -> JournalStats | None:
        """The journal's stats, or None when this profile has no journal yet."""
        return self._stats.get()

    def _read_journal(self) -> JournalStats | None:
        path = self.settings().journal_path
        if not path.exists():
            return None  # never create a journal just to look at it
        from matokit.journal import Journal

        with Journal(path, clock=self.clock) as journal:
            return journal.stats(now=self.clock())

    # -- running one check

    def execute(self, name: str) -> CheckResult:
        started = time.perf_counter()
        try:
            from matokit.healthchecks import CHECK_FUNCTIONS

            result = CHECK_FUNCTIONS[name](self, name)
        except Skip as skip:
            result = CheckResult(name, skip.status, skip.summary, hint=skip.hint)
        except Exception as exc:  # one broken check must not hide the others
            status, summary, hint = classify_error(exc)
            result = CheckResult(name, status, summary, hint=hint)
        return replace(result, duration_s=round(time.perf_counter() - started, 3))

    def config_skip(self, exc: ConfigError) -> Skip:
        """A configuration problem seen by another check: the config check's verdict when
        that check runs too (this one is then UNKNOWN), else CRITICAL here."""
        status = Status.UNKNOWN if self.config_selected else Status.CRITICAL
        return Skip(status, line(f"not checked: {exc.message}"), exc.hint)

    def need_settings(self) -> Settings:
        try:
            return self.settings()
        except ConfigError as exc:
            raise self.config_skip(exc) from None

    def need_url(self) -> str:
        try:
            return self.need_settings().require_url()
        except ConfigError as exc:
            raise self.config_skip(exc) from None

    def need_token(self) -> str:
        self.need_url()
        try:
            return self.token()
        except ConfigError as exc:
            raise self.config_skip(exc) from None

    def need_auth(self, name: str) -> _Auth:
        """Wait for the shared version call; skip (sending nothing) when it failed."""
        self.need_token()
        self.set_stage(name, f"waiting for the shared {VERSION_METHOD} call")
        try:
            return self.auth()
        except ConfigError as exc:
            raise self.config_skip(exc) from None
        except Exception as exc:
            status, summary, hint = classify_error(exc)
            if self.api_selected:
                raise Skip(Status.UNKNOWN, SKIPPED_AFTER_API) from None
            raise Skip(status, f"not checked: {summary}", hint) from None

    def need_site(self) -> int:
        site = self.need_settings().site_id
        if site is None:
            raise Skip(
                Status.UNKNOWN,
                "not checked: no site id is configured",
                "Pass --site ID, set MATOMO_SITE_ID, or set site_id in the profile.",
            )
        return site

    def call(self, name: str, method: str, **params: Any) -> Any:
        self.set_stage(name, f"waiting for Matomo's answer to {method}")
        return self.client().call(method, **params)

    def close_when_idle(self, futures: Iterable[Any]) -> None:
        """Close the clients now, or after the last hung check ends."""
        pending = [f for f in futures if not f.done()]
        if not pending:
            self._close_clients()
            return
        remaining = len(pending)
        lock = threading.Lock()

        def done(_: Any) -> None:
            nonlocal remaining
            with lock:
                remaining -= 1
                last = remaining == 0
            if last:
                self._close_clients()

        for future in pending:
            future.add_done_callback(done)

    def _close_clients(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):  # closing is best effort
                client.close()


def _default_client(
    settings: Settings,
    *,
    token: str | None,
    timeout: float,
    session: requests.Session | None = None,
    clock: Callable[[], float] = time.time,
) -> MatomoClient:
    """The profile's client (`connect.client_for`), read timeout capped at the run's limit.

    `token=None` builds a client that sends no token (the tracking probe when the token is
    not known to be valid).
    """
    from matokit.connect import client_for

    capped = replace(
        settings, timeout=timeout, connect_timeout=min(settings.connect_timeout, timeout)
    )
    if token is None:
        capped = replace(capped, token_source=None)
        return client_for(capped, session=session, need_token=False, clock=clock)
    return client_for(capped, session=session, clock=clock)


# --- classifying failures ----------------------------------------------------------------------


def classify_error(exc: BaseException) -> tuple[Status, str, str | None]:
    """(status, one-line summary, hint) for an error raised while checking."""
    hint = getattr(exc, "hint", None)
    if isinstance(exc, TokenCoolDownError):
        return (
            Status.CRITICAL,
            f"token rejected at {_utc(exc.rejected_at)}; not sent again until "
            f"{_utc(exc.until)} (lockout protection)",
            hint,
        )
    if isinstance(exc, LockedOutError):
        return (
            Status.CRITICAL,
            "Matomo blocks this host after too many failed logins",
            LOCKOUT_HINT,
        )
    if isinstance(exc, AuthenticationError):
        return Status.CRITICAL, line(f"token rejected: {exc.message}"), hint
    if isinstance(exc, UnavailableError) and _is_timeout(exc):
        method = exc.method or "the request"
        return Status.UNKNOWN, line(f"timed out waiting for {method}: {exc.message}"), hint
    if isinstance(exc, ServerPausedError):
        return Status.WARNING, line(f"tracking paused: {exc.message}"), hint
    if isinstance(exc, RateLimitedError):
        after = f"; retry after {exc.retry_after:g} s" if exc.retry_after else ""
        return Status.WARNING, line(f"rate limited: {exc.message}{after}"), hint
    if isinstance(exc, ProtocolError):
        return (
            Status.CRITICAL,
            line(f"not Matomo's answer (a proxy's error page?): {exc.message}"),
            hint,
        )
    if isinstance(exc, MatokitError):
        return Status.CRITICAL, line(exc.message), hint
    return (
        Status.UNKNOWN,
        line(f"internal error: {exc.__class__.__name__}: {exc}"),
        "This is a bug in MatoKit; rerun with --debug and report it.",
    )


def _is_timeout(exc: BaseException) -> bool:
    import requests

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, requests.exceptions.Timeout | TimeoutError):
            return True
        current = current.__cause__ or current.__context__
    return False


def line(text: str, limit: int = 240) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[: limit - 1] + "\u2026"


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds_text(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


# --- the exporter's cache ------------------------------------------------------------------------


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
