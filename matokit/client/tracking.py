"""Bulk tracking: the request for a batch of hits, and what Matomo's answer says per hit.

Tracking is never retried here: a re-sent hit is counted twice, so that decision belongs to
the caller (delivery), which gets `maybe_stored` on every failure that happened after the
body was sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from matokit.client.failures import Failures, clean, json_or_none
from matokit.errors import (
    AuthenticationError,
    LockedOutError,
    MatomoError,
    PayloadTooLargeError,
    RejectedHitError,
    RolledBackError,
)
from matokit.hits import USER_AGENT, Hit
from matokit.policy import classify_api_error, parse_retry_after
from matokit.redact import MASK, display_url, redact
from matokit.urls import endpoint

if TYPE_CHECKING:
    import requests

TRACKING = "tracking"
_RESERVED = re.compile(r"[^A-Za-z0-9_.~-]")  # what quote(safe="") escapes
_ASCII_ESCAPES: Final = {code: f"%{code:02X}" for code in range(128) if _RESERVED.match(chr(code))}


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


@dataclass(frozen=True)
class PreparedRequest:
    """An HTTP request ready to send (and to show, redacted, for --dry-run)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


# --- the request ---------------------------------------------------------------------------


def prepare_tracking(
    hits: Sequence[Hit],
    *,
    base_url: str,
    token: str | None,
    user_agent: str = USER_AGENT,
    queuedtracking: bool = False,
) -> PreparedRequest:
    """The bulk tracking request for `hits` (one hit is a bulk of one)."""
    url = endpoint(base_url, "matomo.php")
    if queuedtracking:
        # QueuedTracking reads this from the URL, not the JSON; without it, no counts come back.
        url += "?queuedtracking=0"
    body: dict[str, Any] = {"requests": ["?" + hit_query(h.params) for h in hits]}
    if token:
        body["token_auth"] = token
    headers = {"Content-Type": "application/json", "User-Agent": user_agent}
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return PreparedRequest("POST", url, headers, data)


def hit_query(params: Mapping[str, str]) -> str:
    """A hit's query string: `urlencode(params, quote_via=quote)`, several times faster."""
    if not _RESERVED.search("".join(params) + "".join(params.values())):
        return "&".join([name + "=" + value for name, value in params.items()])
    return "&".join([_escape(name) + "=" + _escape(value) for name, value in params.items()])


def _escape(text: str) -> str:
    """`quote(text, safe="")`: ASCII through one translation table (in C), the rest by quote."""
    if not _RESERVED.search(text):
        return text
    if text.isascii():
        return text.translate(_ASCII_ESCAPES)
    return quote(text, safe="")


def render_dry_run(prepared: PreparedRequest) -> str:
    """The request as text (request line, headers, pretty JSON body), token masked."""
    view = dry_run_view(prepared)
    lines = [f"{view['method']} {view['url']}"]
    lines += [f"{name}: {value}" for name, value in view["headers"].items()]
    lines += ["", json.dumps(view["body"], indent=2, ensure_ascii=False)]
    return "\n".join(lines)


def dry_run_view(prepared: PreparedRequest) -> dict[str, Any]:
    """The request as JSON-able data (method, url, headers, body), token masked, redacted."""
    body = json.loads(prepared.body)
    if "token_auth" in body:
        body["token_auth"] = MASK
    view = {
        "method": prepared.method,
        "url": display_url(prepared.url),
        "headers": dict(prepared.headers),
        "body": body,
    }
    # Redacted as text, so that a secret anywhere (a URL's password, a hit's value) is masked.
    redacted: dict[str, Any] = json.loads(redact(json.dumps(view, ensure_ascii=False)))
    return redacted


# --- the answer ----------------------------------------------------------------------------


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


def interpret_tracking(
    response: requests.Response, count: int, url: str, failures: Failures
) -> TrackResult:
    """Per-hit outcomes from the tracker's answer, or the whole-batch error it means."""
    status = response.status_code
    data = json_or_none(response.content)
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
    raise _bulk_error(response, data, count, url, failures)


def _bulk_error(
    response: requests.Response, data: Any, count: int, url: str, failures: Failures
) -> MatomoError:
    status = response.status_code
    where: dict[str, Any] = {"method": TRACKING, "status": status, "url": redact(url)}
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now=failures.now())
    message = data.get("message") if isinstance(data, dict) else None
    if isinstance(message, str) and message:
        # Tracker debug mode adds Matomo's message; trust it for lockout and bad tokens.
        error_class = classify_api_error(status, message)
        if error_class in (LockedOutError, AuthenticationError):
            return failures.api_error(error_class, message, where)
    if status == 413:
        return PayloadTooLargeError(
            f"The server refused the bulk of {count} hits as too large (HTTP 413); nothing "
            "was stored.",
            hint="Lower max_payload_bytes (or batch_size), or raise the proxy's body limit "
            "(nginx: client_max_body_size).",
            **where,
        )
    if isinstance(data, dict) and data.get("status") == "error" and status != 400:
        return RolledBackError(
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
        return failures.api_error(
            AuthenticationError,
            f"HTTP {status} from the tracker: {clean(response.text, [failures.token])}",
            where,
            record=False,  # not Matomo's verdict on the token (the tracker never says 401)
        )
    return failures.status_error(response, data, where, tracking=True)


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _is_bulk_answer(data: Any) -> bool:
    return isinstance(data, dict) and ("tracked" in data or data.get("status") == "success")


def _looks_like_tracker_ack(response: requests.Response) -> bool:
    if response.status_code == 204 and not response.content:
        return True
    return response.headers.get("Content-Type", "").startswith("image/")
