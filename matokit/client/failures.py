"""Matomo's refusals and odd answers as typed, redacted `MatomoError`s.

Shared by tracking and reporting: Matomo's status codes are unreliable, so the callers read
the body first and come here with the message or the status that decides the error class.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from matokit.errors import (
    AuthenticationError,
    MatomoError,
    NoMatomoError,
    ProtocolError,
    RateLimitedError,
    RejectedHitError,
    StorageError,
    UnavailableError,
)
from matokit.policy import classify_status, hint_for, parse_retry_after
from matokit.redact import redact

if TYPE_CHECKING:
    import requests

    from matokit.tokenmemory import RejectedTokens

NOT_JSON = object()
_TAGS = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


class Failures:
    """Builds the errors for one client: knows its token, clock and token memory."""

    def __init__(
        self,
        *,
        token: str | None,
        clock: Callable[[], float],
        memory: RejectedTokens | None,
        log: logging.Logger,
    ) -> None:
        self.token = token
        self._clock = clock
        self._memory = memory
        self._log = log

    def now(self) -> float:
        """The client's clock."""
        return self._clock()

    def api_error(
        self,
        error_class: type[MatomoError],
        message: str,
        where: Mapping[str, Any],
        response: requests.Response | None = None,
        *,
        record: bool = True,
    ) -> MatomoError:
        """The error for a message Matomo gave; a rejected token is remembered (`record`)."""
        text = clean(message, [self.token])
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

    def status_error(
        self,
        response: requests.Response,
        data: Any,
        where: Mapping[str, Any],
        *,
        tracking: bool = False,
    ) -> MatomoError:
        """The error for an HTTP status when the body says nothing Matomo-shaped."""
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
        snippet = "" if data is not None and data is not NOT_JSON else clean(response.text)
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
            return NoMatomoError(
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
        if self._memory is None or self.token is None:
            return
        try:
            self._memory.record_rejection(self.token, message)
        except StorageError as exc:
            # The authentication error matters more than the memory; say so in the log.
            self._log.warning("could not remember the rejected token: %s", exc)


def clean(text: str, secrets: Sequence[str | None] = (), limit: int = 300) -> str:
    """One redacted line from a message or body that may hold HTML."""
    line = _SPACE.sub(" ", _TAGS.sub(" ", html.unescape(text))).strip()
    if len(line) > limit:
        line = line[: limit - 1] + "\u2026"
    return redact(line, secrets)


def json_or_none(content: bytes, default: Any = None) -> Any:
    """The body parsed as JSON (a UTF-8 BOM allowed), or `default`."""
    if not content:
        return default
    try:
        return json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return default
