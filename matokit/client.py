"""MatomoClient: Matomo's tracking and reporting HTTP APIs over an injected requests.Session.

Three layers (like stripe-python's requestor/http-client split):
  * `_send` is the only place that touches the network: token cool-down check, rate limit,
    timeouts, TLS, logging, and translation of every requests/urllib3 exception into a typed
    `MatomoError` (chained, redacted);
  * `_interpret_api` / `_interpret_bulk` turn Matomo's answers into values or typed errors
    (Matomo's status codes are unreliable: the body decides);
  * the public methods (`track`, `call`, `call_raw`, `bulk`) build requests.

The token travels only in POST bodies (form field or bulk JSON), never in a URL. Tracking is
never retried here: a re-sent hit is counted twice, so that decision belongs to the caller
(delivery), which gets `maybe_stored` on every failure that happened after the body was sent.
"""

from __future__ import annotations

import html
import http.client
import json
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from matokit.errors import (
    AuthenticationError,
    ConfigError,
    LockedOutError,
    MatomoError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    RejectedHitError,
    StorageError,
    UnavailableError,
    UsageError,
)
from matokit.hits import USER_AGENT, Hit
from matokit.policy import (
    TokenBucket,
    classify_api_error,
    classify_status,
    hint_for,
    parse_retry_after,
)
from matokit.redact import MASK, redact, register_secret

if TYPE_CHECKING:
    import requests

    from matokit.tokenmemory import TokenMemory

TRACKING = "tracking"
_NOT_JSON = object()
_RAW_FORMATS = ("CSV", "TSV", "XML")
_XML_ERROR = re.compile(r"<error\s+message=\"([^\"]*)\"", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


# --- results -------------------------------------------------------------------------------


class Outcome(StrEnum):
    """What Matomo's bulk answer says about one hit."""

    DELIVERED = "delivered"  # counted as tracked; re-sending would duplicate it
    REJECTED = "rejected"  # Matomo refused this very hit (listed in invalid_indices)
    BATCH_INVALID = "batch_invalid"  # some hits of the batch were refused, not known which
    UNCONFIRMED = "unconfirmed"  # Matomo's counts do not add up: it may or may not be stored


@dataclass(frozen=True)
class TrackResult:
    """Per-hit outcomes (in the order sent) and Matomo's counts for one bulk request."""

    outcomes: tuple[Outcome, ...]
    tracked: int
    invalid: int
    invalid_indices: tuple[int, ...] | None = None
    note: str | None = None

    @property
    def delivered(self) -> int:
        """How many hits are known to be delivered."""
        return sum(1 for o in self.outcomes if o is Outcome.DELIVERED)

    @property
    def ok(self) -> bool:
        """True when every hit was delivered."""
        return all(o is Outcome.DELIVERED for o in self.outcomes)


@dataclass(frozen=True)
class PreparedRequest:
    """An HTTP request ready to send (and to show, redacted, for --dry-run)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


# --- pure helpers ------------------------------------------------------------------------


def normalize_base_url(url: str) -> str:
    """Matomo's base URL without a trailing slash, `index.php`/`matomo.php`, query or fragment."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"Matomo URL {url!r} is not an http(s) URL.",
            hint="set MATOMO_URL or --url to e.g. https://analytics.example.com/",
        )
    path = parts.path
    for script in ("index.php", "matomo.php", "piwik.php"):
        if path.endswith("/" + script):
            path = path[: -len(script)]
    return urlunsplit((parts.scheme, parts.netloc, path.rstrip("/"), "", ""))


def prepare_tracking(
    hits: Sequence[Hit],
    *,
    base_url: str,
    token: str | None,
    user_agent: str = USER_AGENT,
    queuedtracking: bool = False,
) -> PreparedRequest:
    """The bulk tracking request for `hits` (one hit is a bulk of one)."""
    url = normalize_base_url(base_url) + "/matomo.php"
    if queuedtracking:
        # QueuedTracking reads this from the URL, not the JSON; without it, no counts come back.
        url += "?queuedtracking=0"
    body: dict[str, Any] = {"requests": ["?" + urlencode(h.params, quote_via=quote) for h in hits]}
    if token:
        body["token_auth"] = token
    headers = {"Content-Type": "application/json", "User-Agent": user_agent}
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return PreparedRequest("POST", url, headers, data)


def render_dry_run(prepared: PreparedRequest) -> str:
    """The request as text (request line, headers, pretty JSON body), token masked."""
    body = json.loads(prepared.body)
    if "token_auth" in body:
        body["token_auth"] = MASK
    lines = [f"{prepared.method} {prepared.url}"]
    lines += [f"{name}: {value}" for name, value in prepared.headers.items()]
    lines += ["", json.dumps(body, indent=2, ensure_ascii=False)]
    return redact("\n".join(lines))


def bulk_outcomes(count: int, answer: Mapping[str, Any]) -> TrackResult:
    """Per-hit outcomes from a bulk answer `{"status", "tracked", "invalid", "invalid_indices"}`."""
    tracked, invalid = _count(answer.get("tracked")), _count(answer.get("invalid"))
    if tracked is None or invalid is None:
        return TrackResult(
            (Outcome.UNCONFIRMED,) * count,
            0,
            0,
            note="Matomo's answer has no tracked/invalid counts.",
        )
    raw_indices = answer.get("invalid_indices")
    indices = None
    if isinstance(raw_indices, list) and all(_count(i) is not None for i in raw_indices):
        indices = tuple(sorted(set(raw_indices)))
    if tracked + invalid > count:
        return TrackResult(
            (Outcome.UNCONFIRMED,) * count,
            tracked,
            invalid,
            note=f"Matomo counted {tracked + invalid} hits for a batch of {count}.",
        )
    complete = tracked + invalid == count
    rest = Outcome.DELIVERED if complete else Outcome.UNCONFIRMED
    note = None if complete else f"Matomo accounted for {tracked + invalid} of {count} hits."
    if invalid == 0:
        outcomes = (rest,) * count
    elif indices is not None and len(indices) == invalid and all(i < count for i in indices):
        outcomes = tuple(Outcome.REJECTED if i in indices else rest for i in range(count))
    elif invalid >= count:
        outcomes = (Outcome.REJECTED,) * count
    else:
        outcomes = (Outcome.BATCH_INVALID,) * count
        note = (
            f"Matomo refused {invalid} of {count} hits without saying which (only a superuser "
            "token gets invalid_indices); the others are stored, so the batch must not be re-sent."
        )
    return TrackResult(outcomes, tracked, invalid, indices, note)


def request_may_have_been_sent(exc: BaseException) -> bool:
    """Whether a transport failure happened after the request (body) may have reached Matomo.

    requests raises ConnectionError both for "connection refused" and for "connection reset
    while waiting for the answer"; only the exception chain tells them apart. Connect
    failures (refused, DNS, connect timeout, certificate) mean nothing was sent; read
    timeouts, resets and disconnects after sending mean Matomo may have processed it. Anything
    unrecognised counts as "may have been sent": a duplicate is better than a lost hit.
    """
    import requests
    import urllib3.exceptions as u3

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return True
    chain = list(_exception_chain(exc))
    after = (
        u3.ProtocolError,
        u3.ReadTimeoutError,
        requests.exceptions.ChunkedEncodingError,
        http.client.RemoteDisconnected,
        http.client.IncompleteRead,
        ConnectionResetError,
        BrokenPipeError,
        ConnectionAbortedError,
    )
    before = (
        u3.NewConnectionError,
        u3.ConnectTimeoutError,
        u3.NameResolutionError,
        u3.LocationParseError,
        u3.ProxyError,
        ConnectionRefusedError,
        socket.gaierror,
        requests.exceptions.InvalidURL,
        requests.exceptions.ProxyError,
    )
    if any(isinstance(e, after) for e in chain):
        return True
    if any(isinstance(e, before) for e in chain):
        return False
    return not _is_certificate_error(chain)


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        nested += list(current.args)
        stack.extend(e for e in nested if isinstance(e, BaseException))


def _is_certificate_error(chain: list[BaseException]) -> bool:
    import ssl

    return any(isinstance(e, ssl.SSLCertVerificationError) for e in chain)


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _clean(text: str, secrets: Sequence[str | None] = (), limit: int = 300) -> str:
    """One redacted line from a message or body that may hold HTML."""
    line = _SPACE.sub(" ", _TAGS.sub(" ", html.unescape(text))).strip()
    if len(line) > limit:
        line = line[: limit - 1] + "\u2026"
    return redact(line, secrets)


def _form_pairs(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Form fields for API parameters: bools as 1/0, sequences as key[0], key[1], ..."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            pairs += [(f"{name}[{i}]", _scalar(v)) for i, v in enumerate(value)]
        else:
            pairs.append((name, _scalar(value)))
    return pairs


def _unreserved(params: Mapping[str, Any]) -> Mapping[str, Any]:
    for reserved in ("module", "method", "format", "token_auth"):
        if reserved in params:
            raise UsageError(
                f"Parameter {reserved!r} is set by MatoKit.",
                hint="the token comes from MATOMO_TOKEN or the token file; use call_raw for "
                "other formats",
            )
    return params


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


# --- the client --------------------------------------------------------------------------


class MatomoClient:
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
        token_memory: TokenMemory | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = USER_AGENT,
        queuedtracking: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self._token = token or None
        register_secret(self._token)
        self._timeout = (connect_timeout, timeout)
        self._verify: str | bool = ca_bundle or True
        self._clock = clock
        self._bucket = TokenBucket(rate_limit, clock=clock, sleep=sleep)
        self._memory = token_memory
        self._user_agent = user_agent
        self._queuedtracking = queuedtracking
        self._log = logger or logging.getLogger("matokit.client")
        self._owned: list[requests.Session] = []
        self._session = session or self._own(_reporting_session(connect_retries))
        # Tracking never shares the reporting session: that one may retry or cache POSTs,
        # and a hit that is re-sent or answered from a cache is a duplicate or a loss.
        self._tracking_session = tracking_session or self._own(_tracking_session())

    # -- lifecycle

    def _own(self, session: requests.Session) -> requests.Session:
        self._owned.append(session)
        return session

    def close(self) -> None:
        """Close the HTTP sessions this client created (injected ones are the caller's)."""
        for session in self._owned:
            session.close()
        self._owned.clear()

    def __enter__(self) -> MatomoClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- tracking

    def prepare(self, hits: Sequence[Hit]) -> PreparedRequest:
        """The bulk request `track(hits)` would send."""
        return prepare_tracking(
            hits,
            base_url=self.base_url,
            token=self._token,
            user_agent=self._user_agent,
            queuedtracking=self._queuedtracking,
        )

    def dry_run(self, hits: Sequence[Hit]) -> str:
        """The request `track(hits)` would send, as text with the token masked."""
        return render_dry_run(self.prepare(hits))

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
        )
        return self._interpret_bulk(response, len(hits), prepared.url)

    def _interpret_bulk(self, response: requests.Response, count: int, url: str) -> TrackResult:
        status = response.status_code
        data = _json_or_none(response.content)
        if status == 200 and _is_bulk_answer(data) and data.get("status") != "error":
            return bulk_outcomes(count, data)
        if status in (200, 204) and data is None and _looks_like_tracker_ack(response):
            # QueuedTracking (or a tracker that ignores bulk) answers the GIF or 204: accepted,
            # but no counts. Not an error to retry: re-sending would duplicate.
            return TrackResult(
                (Outcome.UNCONFIRMED,) * count,
                0,
                0,
                note="Matomo answered without counts: is QueuedTracking active? "
                "Set queuedtracking = true in the profile.",
            )
        raise self._bulk_error(response, data, count, url)

    def _bulk_error(
        self, response: requests.Response, data: Any, count: int, url: str
    ) -> MatomoError:
        status = response.status_code
        where: dict[str, Any] = {"method": TRACKING, "status": status, "url": redact(url)}
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
        message = data.get("message") if isinstance(data, dict) else None
        if isinstance(message, str) and message:
            # Tracker debug mode adds Matomo's message; trust it for lockout and bad tokens.
            error_class = classify_api_error(status, message)
            if error_class in (LockedOutError, AuthenticationError):
                return self._api_error(error_class, message, where)
        if isinstance(data, dict) and data.get("status") == "error" and status != 400:
            return UnavailableError(
                f"Matomo failed the whole batch of {count} hits (HTTP {status}) and rolled it "
                "back: nothing was stored.",
                retry_after=retry_after,
                maybe_stored=False,
                hint="Safe to re-send later. If it persists: the database may be down, this IP "
                "may be blocked after failed logins, or bulk tracking may require an admin token.",
                **where,
            )
        if status == 400:
            return RejectedHitError(
                f"Matomo refused the whole batch of {count} hits (HTTP 400); nothing was stored.",
                hint="Matomo requires authentication for bulk tracking and one hit is invalid: "
                "check the hits, or send them one at a time to find the bad one.",
                **where,
            )
        if status in (401, 403):
            return self._api_error(
                AuthenticationError,
                f"HTTP {status} from the tracker: {_clean(response.text, [self._token])}",
                where,
                record=False,  # not Matomo's verdict on the token (the tracker never says 401)
            )
        return self._status_error(response, data, where, tracking=True)

    # -- reporting

    def call(self, method: str, /, **params: Any) -> Any:
        """Call Reporting API `method` (e.g. "VisitsSummary.get") and return its parsed JSON."""
        url = self._api_url(method, "JSON")
        response = self._send(url, data=self._form(params), api_method=method)
        return self._interpret_api(response, method, url)

    def call_raw(self, method: str, /, *, format: str = "CSV", **params: Any) -> str:
        """Call `method` in CSV, TSV or XML and return the text (UTF-8 decoded)."""
        fmt = format.upper()
        if fmt not in _RAW_FORMATS:
            raise UsageError(f"format must be one of {', '.join(_RAW_FORMATS)}, not {format!r}.")
        url = self._api_url(method, fmt)
        form = self._form({**params, "convertToUnicode": 0})
        response = self._send(url, data=form, api_method=method)
        text = _decode(response.content)
        where: dict[str, Any] = {
            "method": method,
            "status": response.status_code,
            "url": redact(url),
        }
        message = _raw_error_message(text, fmt)
        if message is not None:
            error_class = classify_api_error(response.status_code, message)
            raise self._api_error(error_class, message, where, response)
        if response.status_code >= 300:
            raise self._status_error(response, None, where)
        return text

    def bulk(self, calls: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Any | MatomoError]:
        """Several API calls in one `API.getBulkRequest`; failed entries come back as errors.

        Per-entry errors are returned (not raised) in the entry's place; a failure of the
        whole request (token, network, Matomo down) is raised.
        """
        if not calls:
            return []
        urls = [urlencode([("method", m), *_form_pairs(_unreserved(p))]) for m, p in calls]
        url = self._api_url("API.getBulkRequest", "JSON")
        response = self._send(url, data=self._form({"urls": urls}), api_method="API.getBulkRequest")
        data = self._interpret_api(response, "API.getBulkRequest", url)
        if not isinstance(data, list) or len(data) != len(calls):
            raise ProtocolError(
                f"API.getBulkRequest returned {type(data).__name__} for {len(calls)} calls.",
                method="API.getBulkRequest",
                status=response.status_code,
                url=redact(url),
                hint=hint_for(ProtocolError),
            )
        results: list[Any | MatomoError] = []
        for (method, _), entry in zip(calls, data, strict=True):
            if isinstance(entry, dict) and entry.get("result") == "error":
                message = str(entry.get("message", ""))
                where: dict[str, Any] = {"method": method, "status": None, "url": redact(url)}
                results.append(self._api_error(classify_api_error(None, message), message, where))
            else:
                results.append(entry)
        return results

    def _api_url(self, method: str, fmt: str) -> str:
        query = urlencode({"module": "API", "method": method, "format": fmt})
        return f"{self.base_url}/index.php?{query}"

    def _form(self, params: Mapping[str, Any]) -> list[tuple[str, str]]:
        pairs = _form_pairs(_unreserved(params))
        if self._token:
            pairs.append(("token_auth", self._token))
        return pairs

    def _interpret_api(self, response: requests.Response, method: str, url: str) -> Any:
        """Matomo's answer as a value, or the typed error it means (the body decides)."""
        data = _json_or_none(response.content, default=_NOT_JSON)
        where: dict[str, Any] = {
            "method": method,
            "status": response.status_code,
            "url": redact(url),
        }
        if isinstance(data, dict) and data.get("result") == "error":
            message = str(data.get("message", ""))
            raise self._api_error(
                classify_api_error(response.status_code, message), message, where, response
            )
        if response.status_code >= 300:
            raise self._status_error(response, data, where)
        if data is _NOT_JSON:
            raise ProtocolError(
                f"Matomo answered {method} with something that is not JSON: "
                f"{_clean(response.text, [self._token], 120)!r}",
                hint=hint_for(ProtocolError),
                **where,
            )
        return data

    # -- errors

    def _api_error(
        self,
        error_class: type[MatomoError],
        message: str,
        where: Mapping[str, Any],
        response: requests.Response | None = None,
        *,
        record: bool = True,
    ) -> MatomoError:
        text = _clean(message, [self._token])
        method = where.get("method")
        full = f"Matomo refused {method}: {text}" if text else f"Matomo refused {method}."
        extra: dict[str, Any] = {}
        if error_class in (RateLimitedError, UnavailableError):
            header = response.headers.get("Retry-After") if response is not None else None
            extra["retry_after"] = parse_retry_after(header, now=self._clock())
        error = error_class(full, hint=hint_for(error_class), **where, **extra)
        if error_class is AuthenticationError and record:
            self._remember_rejection(text)
        return error

    def _status_error(
        self,
        response: requests.Response,
        data: Any,
        where: Mapping[str, Any],
        *,
        tracking: bool = False,
    ) -> MatomoError:
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
        snippet = "" if data is not None and data is not _NOT_JSON else _clean(response.text)
        detail = f"HTTP {status}" + (f": {snippet[:160]}" if snippet else "")
        if status < 300:
            return ProtocolError(
                f"Matomo's answer is not what Matomo sends ({detail}).",
                hint=hint_for(ProtocolError),
                **where,
            )
        if status == 429:
            return RateLimitedError(
                f"Matomo or a proxy is rate limiting ({detail}).",
                retry_after=retry_after,
                hint=hint_for(RateLimitedError),
                **where,
            )
        if 300 <= status < 400:
            target = redact(response.headers.get("Location", "?"))
            return ProtocolError(
                f"Matomo redirected to {target} ({detail}); MatoKit does not follow redirects "
                "of POST requests that carry a token.",
                hint="set the Matomo URL to the final address (https://?)",
                **where,
            )
        if tracking and status == 413:
            return RejectedHitError(
                f"The batch is too large for the server ({detail}); nothing was stored.",
                hint="lower --batch-size",
                **where,
            )
        if tracking and status == 404:
            return NotFoundError(
                f"No Matomo tracker at this URL ({detail}).",
                hint="check MATOMO_URL / --url: it must be Matomo's base URL",
                **where,
            )
        error_class = classify_status(status)
        if error_class is UnavailableError:
            # 503 is maintenance or a refusing proxy: not processed. Any other 5xx without
            # Matomo's JSON (a proxy's 502/504, a PHP fatal) may come after processing.
            maybe_stored = tracking and status != 503
            return UnavailableError(
                f"Matomo is unavailable ({detail}).",
                retry_after=retry_after,
                maybe_stored=maybe_stored,
                hint=hint_for(UnavailableError),
                **where,
            )
        return error_class(
            f"Matomo answered {where.get('method')} with {detail}.",
            hint=hint_for(error_class),
            **where,
        )

    def _remember_rejection(self, message: str) -> None:
        if self._memory is None or self._token is None:
            return
        try:
            self._memory.record_rejection(self._token, message)
        except StorageError as exc:
            # The authentication error matters more than the memory; say so in the log.
            self._log.warning("could not remember the rejected token: %s", exc)

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
    ) -> requests.Response:
        """POST once; every transport failure becomes a typed, chained, redacted error."""
        import requests

        if self._token and self._memory is not None:
            try:
                self._memory.check(self._token)
            except MatomoError as exc:
                exc.method, exc.url = api_method, redact(url)
                raise
        self._bucket.acquire()
        sender = session or self._session
        all_headers = {"User-Agent": self._user_agent, **(headers or {})}
        started = time.perf_counter()
        try:
            response = sender.post(
                url,
                data=data,
                headers=all_headers,
                timeout=self._timeout,
                verify=self._verify,
                allow_redirects=False,  # a redirected POST would re-send the token elsewhere
            )
        except (requests.RequestException, OSError, http.client.HTTPException) as exc:
            # requests wraps urllib3's errors; the others are belt and braces so that no
            # library exception escapes untranslated.
            self._log_request(url, None, started, batch_size, api_method)
            raise self._transport_error(exc, api_method, url) from exc
        self._log_request(url, response.status_code, started, batch_size, api_method)
        if response.status_code in (429, 503):
            self._bucket.on_throttled()
        elif response.status_code < 400:
            self._bucket.on_success()
        return response

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
        safe_url = redact(url, [self._token])
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

    def _transport_error(self, exc: BaseException, api_method: str, url: str) -> UnavailableError:
        import requests

        sent = request_may_have_been_sent(exc)
        host = urlsplit(url).netloc
        reason = _reason(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            message = f"TLS with {host} failed: {reason}"
            hint = "check the server's certificate, or set ca_bundle to your CA's PEM file"
        elif isinstance(exc, requests.exceptions.ReadTimeout):
            message = f"No answer from {host} within {self._timeout[1]:g} s after sending"
            hint = "Matomo may be overloaded: raise --timeout or send smaller batches"
        elif not sent:
            message = f"Cannot connect to {host}: {reason}"
            hint = "check the URL, DNS and that Matomo is up; nothing was sent"
        else:
            message = f"The connection to {host} broke after sending: {reason}"
            hint = "Matomo may be overloaded or a proxy cut the request"
        if sent:
            message += " (Matomo may have processed the request)"
        return UnavailableError(
            redact(message + ".", [self._token]),
            maybe_stored=sent,
            method=api_method,
            url=redact(url, [self._token]),
            hint=hint,
        )


# --- module-private helpers ---------------------------------------------------------------


def mount_connect_retries(session: requests.Session, connect_retries: int = 2) -> None:
    """Make `session` retry connection failures only (nothing was sent: always safe).

    Used for reporting calls, including the report cache's session; never for tracking.
    """
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(
        total=connect_retries,
        connect=connect_retries,
        read=False,  # a read error may come after Matomo processed the request
        status=0,
        other=0,
        redirect=0,
        backoff_factor=0.2,
        raise_on_status=False,
        raise_on_redirect=False,
        respect_retry_after_header=False,
    )
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def _reporting_session(connect_retries: int) -> requests.Session:
    """A Session that retries connection failures only."""
    import requests

    session = requests.Session()
    mount_connect_retries(session, connect_retries)
    return session


def _tracking_session() -> requests.Session:
    """A Session that never retries anything: a re-sent hit is a duplicate."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    adapter = HTTPAdapter(max_retries=Retry(total=0, read=False, redirect=0))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _is_bulk_answer(data: Any) -> bool:
    return isinstance(data, dict) and ("tracked" in data or data.get("status") == "success")


def _json_or_none(content: bytes, default: Any = None) -> Any:
    if not content:
        return default
    try:
        return json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return default


def _looks_like_tracker_ack(response: requests.Response) -> bool:
    if response.status_code == 204 and not response.content:
        return True
    return response.headers.get("Content-Type", "").startswith("image/")


def _decode(content: bytes) -> str:
    """Matomo's CSV/TSV is UTF-16LE with a BOM unless convertToUnicode=0; accept both."""
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        return content.decode("utf-16")
    return content.decode("utf-8-sig", errors="replace")


def _raw_error_message(text: str, fmt: str) -> str | None:
    """Matomo's error message in a CSV/TSV/XML (or JSON) body, if the body is an error."""
    head = text.lstrip()
    if head.startswith("Error:"):
        return head[len("Error:") :].strip()
    if fmt == "XML":
        match = _XML_ERROR.search(head[:4096])
        if match and "<result" in head[:200]:
            return html.unescape(match.group(1))
    if head.startswith("{"):
        data = _json_or_none(head.encode("utf-8"))
        if isinstance(data, dict) and data.get("result") == "error":
            return str(data.get("message", ""))
    return None


def _reason(exc: BaseException) -> str:
    """The most specific human reason in an exception chain ("Connection refused")."""
    for error in _exception_chain(exc):
        if isinstance(error, OSError) and error.strerror:
            return str(error.strerror)
        if isinstance(error, http.client.RemoteDisconnected):
            return "the server closed the connection without answering"
    return type(exc).__name__
