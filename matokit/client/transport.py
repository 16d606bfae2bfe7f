"""The wire under MatomoClient: base URL, sessions, and transport failures as typed errors.

requests and urllib3 are imported inside the functions that need them, so importing the
client (and `matokit --help`) stays fast.
"""

from __future__ import annotations

import functools
import http.client
import socket
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from matokit.errors import ConfigError, UnavailableError
from matokit.redact import display_host, display_url, redact
from matokit.urls import normalize_url

if TYPE_CHECKING:
    import requests


def normalize_base_url(url: str) -> str:
    """Matomo's base URL in its one canonical form (`matokit.urls.normalize_url`), with a
    trailing slash; a ConfigError when it is not an http(s) base URL."""
    try:
        return normalize_url(url)
    except ValueError as exc:
        raise ConfigError(
            f"Matomo URL {url!r} {exc}.",
            hint="set MATOMO_URL or --url to e.g. https://analytics.example.com/",
        ) from None


def basic_auth(url: str) -> tuple[str, str] | None:
    """The (user, password) of a `https://user:password@host/` URL, percent-decoded; or None.

    The client sends them as an Authorization header (which the cache never stores) and keeps
    them out of every URL it builds, logs or stores.
    """
    parts = urlsplit(url.strip())
    if parts.username is None and parts.password is None:
        return None
    return unquote(parts.username or ""), unquote(parts.password or "")


# --- sessions ------------------------------------------------------------------------------


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


def reporting_session(connect_retries: int) -> requests.Session:
    """A Session that retries connection failures only."""
    import requests

    session = requests.Session()
    mount_connect_retries(session, connect_retries)
    return session


@functools.cache
def _environment_once() -> type[requests.Session]:
    import requests

    class EnvironmentOnce(requests.Session):
        """A Session that reads the environment's proxy and CA settings (HTTP(S)_PROXY,
        NO_PROXY, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) once per origin and request settings,
        not on every request: requests walks the whole environment twice per request, a few
        percent of a flush's time. The environment does not change under a running command."""

        def __init__(self) -> None:
            super().__init__()
            self._merged: dict[tuple[Any, ...], Any] = {}
            self._urls: dict[str, str] = {}
            self._logins: dict[str, Any] = {}

        def merge_environment_settings(
            self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
        ) -> Any:
            parts = urlsplit(url)
            key: tuple[Any, ...] = (parts.scheme, parts.netloc, stream, verify, cert)
            try:
                key += (frozenset((proxies or {}).items()),)
                hash(key)
            except TypeError:  # settings that cannot be a key: as requests does it
                return super().merge_environment_settings(url, proxies, stream, verify, cert)
            merged = self._merged.get(key)
            if merged is None:
                merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
                self._merged[key] = merged
            return {**merged, "proxies": dict(merged["proxies"])}

        def lean_post(
            self,
            url: str,
            *,
            data: bytes,
            headers: Mapping[str, str],
            timeout: Any,
            verify: Any,
            auth: Any,
        ) -> requests.Response:
            """`post(url, data=..., headers=..., timeout=..., verify=..., auth=...,
            allow_redirects=False)`: the same request, without the merging `Session.request`
            redoes per call (a third of its CPU, 0.4 ms a bulk here): the URL is prepared
            once, the session's headers, cookies and hooks are taken as they are, and a
            netrc login is looked up once per URL, as `trust_env` asks."""
            from requests.structures import CaseInsensitiveDict

            request = requests.PreparedRequest()
            request.prepare_method("POST")
            request.url = self._prepared_url(url)
            merged = CaseInsensitiveDict(self.headers)
            merged.update(headers)
            request.prepare_headers({k: v for k, v in merged.items() if v is not None})
            request.prepare_body(data, None)
            if not auth and not self.auth and self.trust_env:
                auth = self._netrc(request.url)
            request.prepare_auth(auth or self.auth, request.url)
            request.prepare_cookies(self.cookies)
            request.prepare_hooks(self.hooks)
            settings = self.merge_environment_settings(request.url, {}, None, verify, None)
            return self.send(request, timeout=timeout, allow_redirects=False, **settings)

        def _prepared_url(self, url: str) -> str:
            prepared = self._urls.get(url)
            if prepared is None:
                probe = requests.PreparedRequest()
                probe.prepare_url(url, None)
                prepared = self._urls[url] = str(probe.url)
            return prepared

        def _netrc(self, url: str) -> Any:
            from requests.utils import get_netrc_auth

            if url not in self._logins:
                self._logins[url] = get_netrc_auth(url)
            return self._logins[url]

    return EnvironmentOnce


def lean_post(session: requests.Session, url: str, **request: Any) -> requests.Response:
    """`session.post(url, allow_redirects=False, **request)` (data, headers, timeout, verify,
    auth), through the tracking session's leaner path when `session` is one."""
    if isinstance(session, _environment_once()):
        return session.lean_post(url, **request)  # type: ignore[attr-defined,no-any-return]
    return session.post(url, allow_redirects=False, **request)


def tracking_session() -> requests.Session:
    """A Session that never retries anything: a re-sent hit is a duplicate."""
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = _environment_once()()
    # One keep-alive connection per lane of a flush (at most 32 bulks in flight).
    adapter = HTTPAdapter(
        max_retries=Retry(total=0, read=False, redirect=0), pool_connections=4, pool_maxsize=32
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


# --- transport failures --------------------------------------------------------------------


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


def transport_error(
    exc: BaseException,
    api_method: str,
    url: str,
    *,
    read_timeout: float,
    token: str | None,
) -> UnavailableError:
    """The typed, redacted error for a request that got no answer (`maybe_stored` set)."""
    import requests

    sent = request_may_have_been_sent(exc)
    host = display_host(url)
    reason = _reason(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        message = f"TLS with {host} failed: {reason}"
        hint = "check the server's certificate, or set ca_bundle to your CA's PEM file"
    elif isinstance(exc, requests.exceptions.ReadTimeout):
        message = f"No answer from {host} within {read_timeout:g} s after sending"
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
        redact(message + ".", [token]),
        maybe_stored=sent,
        method=api_method,
        url=redact(display_url(url) or "", [token]),
        hint=hint,
    )


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


def _reason(exc: BaseException) -> str:
    """The most specific human reason in an exception chain ("Connection refused")."""
    for error in _exception_chain(exc):
        if isinstance(error, OSError) and error.strerror:
            return str(error.strerror)
        if isinstance(error, http.client.RemoteDisconnected):
            return "the server closed the connection without answering"
    return type(exc).__name__
