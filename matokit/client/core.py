"""MatomoClient: ties the request builders, the wire and the answer interpreters together.

`_send` is the only place that touches the network: token cool-down check, the server's pause
(Retry-After: kept for every request, enforced on tracking requests), rate limit, timeouts,
TLS, logging, and translation of every requests/urllib3 exception into a typed `MatomoError`
(chained, redacted).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from matokit import writeguard
from matokit.client import reporting, tracking, transport
from matokit.client.failures import Failures
from matokit.client.tracking import TRACKING, PreparedRequest, TrackResult
from matokit.closing import Closing
from matokit.errors import MatomoError, PermissionDeniedError, StorageError
from matokit.hits import USER_AGENT, Hit
from matokit.policy import TokenBucket, parse_retry_after
from matokit.redact import display_url, redact, register_secret

if TYPE_CHECKING:
    import requests

    from matokit.serverpause import PauseKeeper
    from matokit.tokenmemory import RejectedTokens


class MatomoClient(Closing):
    """Matomo's Tracking API (always bulk) and Reporting API (`index.php?module=API`).

    Never prints, never exits: returns values or raises `MatomoError` subclasses whose
    messages are redacted and carry method, status, URL and a hint.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str | None = None,
        session: requests.Session | None = None,
        tracking_session: requests.Session | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        connect_retries: int = 2,
        ca_bundle: str | None = None,
        rate_limit: float | None = None,
        token_memory: RejectedTokens | None = None,
        server_pause: PauseKeeper | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = USER_AGENT,
        queuedtracking: bool = False,
        logger: logging.Logger | None = None,
        allow_write: bool = False,
        allowed_writes: Iterable[str] = (),
    ) -> None:
        # user:password@ in the URL goes in a header, never in a URL that is logged or cached.
        self._auth = transport.basic_auth(base_url)
        self.base_url = transport.normalize_base_url(display_url(base_url) or base_url)
        self._token = token or None
        register_secret(self._token)
        self._timeout = (connect_timeout, timeout)
        self._verify: str | bool = ca_bundle or True
        self._clock = clock
        self._bucket = TokenBucket(rate_limit, clock=clock, sleep=sleep)
        self._memory = token_memory
        self._pause = server_pause
        self._user_agent = user_agent
        self._queuedtracking = queuedtracking
        # Reporting API methods that change Matomo are refused unless the caller opts in:
        # to all of them (`api --allow-write`) or to the few it needs (`allowed_writes`).
        self._allow_write = allow_write
        self._allowed_writes = frozenset(allowed_writes)
        self._log = logger or logging.getLogger("matokit.client")
        self._failures = Failures(
            token=self._token, clock=clock, memory=token_memory, log=self._log
        )
        self._owned: list[requests.Session] = []
        self._session = session or self._own(transport.reporting_session(connect_retries))
        # Tracking never shares the reporting session: that one may retry or cache POSTs,
        # and a hit that is re-sent or answered from a cache is a duplicate or a loss.
        self._tracking_session = tracking_session or self._own(transport.tracking_session())

    # -- lifecycle

    def _own(self, session: requests.Session) -> requests.Session:
        self._owned.append(session)
        return session

    def close(self) -> None:
        """Close the HTTP sessions this client created (injected ones are the caller's)."""
        for session in self._owned:
            session.close()
        self._owned.clear()

    # -- tracking

    def prepare(self, hits: Sequence[Hit]) -> PreparedRequest:
        """The bulk request `track(hits)` would send."""
        return tracking.prepare_tracking(
            hits,
            base_url=self.base_url,
            token=self._token,
            user_agent=self._user_agent,
            queuedtracking=self._queuedtracking,
        )

    def dry_run(self, hits: Sequence[Hit]) -> str:
        """The request `track(hits)` would send, as text with the token masked."""
        return tracking.render_dry_run(self.prepare(hits))

    def track(self, hits: Sequence[Hit]) -> TrackResult:
        """Send `hits` in one bulk request (never retried) and return per-hit outcomes.

        Raises for whole-batch failures: `UnavailableError` (with `maybe_stored` telling
        whether Matomo may have stored the batch), `RateLimitedError`, `AuthenticationError`,
        `RejectedHitError` (batch refused, nothing stored), `ProtocolError`.
        """
        if not hits:
            return TrackResult((), 0, 0)
        prepared = self.prepare(hits)
        response = self._send(
            prepared.url,
            data=prepared.body,
            headers=prepared.headers,
            api_method=TRACKING,
            batch_size=len(hits),
            session=self._tracking_session,
            respect_pause=True,
        )
        with self._verdict(tracking=True):
            return tracking.interpret_tracking(response, len(hits), prepared.url, self._failures)

    # -- reporting

    def call(self, method: str, /, **params: Any) -> Any:
        """Call Reporting API `method` (e.g. "VisitsSummary.get") and return its parsed JSON.

        A method that changes Matomo raises WriteRefusedError unless the client allows writes.
        """
        self._check_write(method, params)
        url = reporting.api_url(self.base_url, method, "JSON")
        response = self._send(url, data=reporting.form(params, self._token), api_method=method)
        with self._verdict():
            return reporting.interpret_api(response, method, url, self._failures)

    def call_raw(self, method: str, /, *, format: str = "CSV", **params: Any) -> str:
        """Call `method` in CSV, TSV or XML and return the text (UTF-8 decoded)."""
        self._check_write(method, params)
        fmt = reporting.raw_format(format)
        url = reporting.api_url(self.base_url, method, fmt)
        form = reporting.form({**params, "convertToUnicode": 0}, self._token)
        response = self._send(url, data=form, api_method=method)
        with self._verdict():
            return reporting.interpret_raw(response, method, url, fmt, self._failures)

    def bulk(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Any | MatomoError]:
        """Several API calls in one `API.getBulkRequest`; failed entries come back as errors.

        Per-entry errors are returned (not raised) in the entry's place; a failure of the
        whole request (token, network, Matomo down) is raised.
        """
        if not calls:
            return []
        for method, params in calls:
            self._check_write(method, params)
        urls = reporting.bulk_urls(calls)
        url = reporting.api_url(self.base_url, reporting.BULK_METHOD, "JSON")
        form = reporting.form({"urls": urls}, self._token)
        response = self._send(url, data=form, api_method=reporting.BULK_METHOD)
        with self._verdict():
            return reporting.interpret_bulk(response, calls, url, self._failures)

    def _check_write(self, method: str, params: Mapping[str, Any]) -> None:
        if not self._allow_write:
            writeguard.require_read_only(method, params, allowed=self._allowed_writes)

    # -- the wire

    def _send(
        self,
        url: str,
        *,
        data: bytes | list[tuple[str, str]],
        api_method: str,
        headers: Mapping[str, str] | None = None,
        batch_size: int | None = None,
        session: requests.Session | None = None,
        respect_pause: bool = False,
    ) -> requests.Response:
        """POST once; every transport failure becomes a typed, chained, redacted error.

        `respect_pause` (tracking): raise `ServerPausedError` while Matomo's Retry-After holds.
        Reporting requests are not held back (their answers may come from the report cache),
        but a Retry-After they get pauses tracking all the same: it is about the server.
        """
        if self._token and self._memory is not None:
            try:
                self._memory.check(self._token, tracking=api_method == TRACKING)
            except MatomoError as exc:
                exc.method, exc.url = api_method, redact(url)
                raise
        with self._verdict_on_failure():
            return self._post(
                url,
                data=data,
                api_method=api_method,
                headers=headers,
                batch_size=batch_size,
                session=session,
                respect_pause=respect_pause,
            )

    def _post(
        self,
        url: str,
        *,
        data: bytes | list[tuple[str, str]],
        api_method: str,
        headers: Mapping[str, str] | None,
        batch_size: int | None,
        session: requests.Session | None,
        respect_pause: bool,
    ) -> requests.Response:
        """`_send` once the token may go: the pause, the rate limit, the request."""
        import requests

        if respect_pause and self._pause is not None:
            try:
                self._pause.check()
            except MatomoError as exc:
                exc.method, exc.url = api_method, redact(url)
                raise
        self._bucket.acquire()
        sender = session or self._session
        all_headers = {"User-Agent": self._user_agent, **(headers or {})}
        started = time.perf_counter()
        try:
            # Never redirected: a redirected POST would re-send the token elsewhere.
            response = transport.lean_post(
                sender,
                url,
                data=data,
                headers=all_headers,
                timeout=self._timeout,
                verify=self._verify,
                auth=self._auth,
            )
        except (requests.RequestException, OSError, http.client.HTTPException) as exc:
            # requests wraps urllib3's errors; the others are belt and braces so that no
            # library exception escapes untranslated.
            self._log_request(url, None, started, batch_size, api_method)
            raise transport.transport_error(
                exc, api_method, url, read_timeout=self._timeout[1], token=self._token
            ) from exc
        self._log_request(url, response.status_code, started, batch_size, api_method)
        if response.status_code in (429, 503):
            self._bucket.on_throttled()
            self._record_pause(response, api_method)
        elif response.status_code < 400:
            self._bucket.on_success()
        return response

    # -- what an answer said about the token (the token memory shares it with other processes)

    @contextlib.contextmanager
    def _verdict(self, *, tracking: bool = False) -> Iterator[None]:
        """Around interpreting an answer: an answer, or a refusal of access, means Matomo
        accepted the token; a rejection is remembered by `Failures`; anything else (a proxy's
        503, a page that is not Matomo's) says nothing about it."""
        try:
            yield
        except PermissionDeniedError:
            self._settle(accepted=True, tracking=tracking)
            raise
        except BaseException:
            self._settle(accepted=False, tracking=tracking)
            raise
        self._settle(accepted=True, tracking=tracking)

    @contextlib.contextmanager
    def _verdict_on_failure(self) -> Iterator[None]:
        """Around sending: a request that got no answer says nothing about the token."""
        try:
            yield
        except BaseException:
            self._settle(accepted=False)
            raise

    def _settle(self, *, accepted: bool, tracking: bool = False) -> None:
        if not self._token or self._memory is None:
            return
        try:
            if accepted:
                self._memory.record_acceptance(self._token, tracking=tracking)
            else:
                self._memory.release(self._token)
        except StorageError as exc:
            self._log.warning("could not share the token's outcome: %s", exc)

    def _record_pause(self, response: requests.Response, api_method: str) -> None:
        if self._pause is None:
            return
        seconds = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
        if seconds is None:
            return
        try:
            self._pause.record(seconds, status=response.status_code, method=api_method)
        except StorageError as exc:
            # The server's answer matters more than the memory of it; say so in the log.
            self._log.warning("could not record Matomo's Retry-After pause: %s", exc)

    def _log_request(
        self,
        url: str,
        status: int | None,
        started: float,
        batch_size: int | None,
        api_method: str,
    ) -> None:
        if not self._log.isEnabledFor(logging.DEBUG):
            return
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        safe_url = redact(display_url(url) or "", [self._token])
        self._log.debug(
            "POST %s -> %s in %.1f ms",
            safe_url,
            status if status is not None else "no answer",
            duration_ms,
            extra={
                "http_method": "POST",
                "url": safe_url,
                "status": status,
                "duration_ms": duration_ms,
                "batch_size": batch_size,
                "api_method": api_method,
            },
        )
