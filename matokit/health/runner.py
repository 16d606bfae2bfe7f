"""Runs a mapping of health checks concurrently under one overall deadline.

`run_checks()` runs each check in a daemon thread (a hung check is abandoned at the deadline,
so the deadline bounds the whole process) and returns a `HealthReport` whose status is the
worst check's; every result carries exactly its check's declared metric keys. `run_health()`
runs the named checks of the standard set (`matokit.health.checks.CHECKS`).

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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar, Unpack

from matokit.errors import ConfigError, ProtocolError
from matokit.health.checks import CHECKS, STANDARD_CHECKS
from matokit.health.classify import classify_error
from matokit.health.model import (
    SKIPPED_AFTER_API,
    VERSION_METHOD,
    Check,
    CheckResult,
    HealthReport,
    Skip,
    Status,
    worst,
)
from matokit.health.text import line
from matokit.health.thresholds import Thresholds
from matokit.redact import display_url

if TYPE_CHECKING:
    import requests

    from matokit.client import MatomoClient
    from matokit.config import Settings
    from matokit.journal import JournalStats

T = TypeVar("T")

SLOW_HINT = "Matomo or the network is too slow; raise the time limit or the HTTP timeout."


class RunOptions(TypedDict, total=False):
    """The keyword options `run_checks` takes besides the checks and the settings."""

    thresholds: Thresholds | None
    max_time: float
    session: requests.Session | None
    clock: Callable[[], float]
    client_factory: Callable[..., MatomoClient] | None
    slow_hint: str


def run_health(
    load_settings: Callable[[], Settings],
    *,
    checks: Sequence[str] = CHECKS,
    **options: Unpack[RunOptions],
) -> HealthReport:
    """Run the standard checks named in `checks` (in that order); see `run_checks`."""
    return run_checks({name: STANDARD_CHECKS[name] for name in checks}, load_settings, **options)


def run_checks(
    checks: Mapping[str, Check],
    load_settings: Callable[[], Settings],
    *,
    thresholds: Thresholds | None = None,
    max_time: float = 20.0,
    session: requests.Session | None = None,
    clock: Callable[[], float] = time.time,
    client_factory: Callable[..., MatomoClient] | None = None,
    slow_hint: str = SLOW_HINT,
) -> HealthReport:
    """Run `checks` (name -> check) concurrently; one still running after `max_time` s is
    UNKNOWN, with `slow_hint` (the caller names its own knobs for the time limits).

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
    futures = {name: _start(run, name, check) for name, check in checks.items()}
    try:
        wait(futures.values(), timeout=max_time)
        for name, future in futures.items():
            if future.done():
                results[name] = future.result()
            else:
                check, stage = checks[name], run.stage(name)
                late = CheckResult(
                    name,
                    Status.UNKNOWN,
                    f"did not finish within {max_time:g} s (stage: {stage})",
                    metrics=check.late(stage) if check.late else {},
                    duration_s=round(time.monotonic() - started, 3),
                    hint=slow_hint,
                )
                results[name] = check.conform(late)
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


def _start(run: HealthRun, name: str, check: Check) -> Future[CheckResult]:
    """Run check `name` in a daemon thread: a check that hangs past the deadline is abandoned,
    so `--max-time` bounds the whole process (a pool's worker threads are joined at exit)."""
    future: Future[CheckResult] = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(run.execute(name, check))
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
        from matokit.journal.opening import journal_exists, open_journal

        settings = self.settings()
        if not journal_exists(settings):
            return None  # never create a journal just to look at it
        with open_journal(settings, clock=self.clock) as journal:
            return journal.stats(now=self.clock())

    # -- running one check

    def execute(self, name: str, check: Check) -> CheckResult:
        """Run `check` as `name`: its result, with exactly its declared metric keys."""
        started = time.perf_counter()
        try:
            result = check.conform(check.run(self, name))
        except Skip as skip:
            result = check.conform(CheckResult(name, skip.status, skip.summary, hint=skip.hint))
        except Exception as exc:  # one broken check must not hide the others
            status, summary, hint = classify_error(exc)
            result = check.conform(CheckResult(name, status, summary, hint=hint))
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
        settings = self.need_settings()
        try:
            return settings.require_site()
        except ConfigError as exc:  # the hint says where a site id is set
            raise Skip(Status.UNKNOWN, "not checked: no site id is configured", exc.hint) from None

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
