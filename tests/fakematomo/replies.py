"""HTTP answers as plain values, and the fixed bodies Matomo and proxies send."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAAAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
assert len(GIF) == 43

TRACKER_TEXT = (
    "This resource is part of Matomo. Keep full control of your data with the leading free and "
    "open source <a href='https://matomo.org' target='_blank' rel='noopener noreferrer nofollow'>"
    "web analytics & conversion optimisation tool</a>.<br>\n"
    "This file is the endpoint for the Matomo tracking API. If you want to access the Matomo UI "
    "or use the Matomo Reporting API, please use <a href='index.php'>index.php</a> instead.\n"
)

MAINTENANCE_HTML = (
    "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Matomo &rsaquo; Maintenance"
    "</title></head><body><h1>Matomo is under maintenance</h1><p>We are currently performing "
    "scheduled maintenance. Please come back later.</p></body></html>\n"
)

LOGIN_HTML = (
    '<!DOCTYPE html>\n<html id="ng-app"><head><meta charset="utf-8"><title>Sign in - Matomo'
    '</title></head><body class="login"><form id="login_form" method="post"></form>'
    "</body></html>\n"
)

# What a garbled 2xx looks like: a PHP notice printed before a cut-off answer.
GARBLE_PREFIX = (
    b"<br />\n<b>Notice</b>:  Undefined index: HTTP_X in <b>/var/www/matomo/core/Common.php</b>"
    b" on line <b>1042</b><br />\n"
)

_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def reason(status: int) -> str:
    return _REASONS.get(status, "Status")


@dataclass
class Reply:
    """An answer to send; close=True closes the connection afterwards."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False


def garbled(reply: Reply) -> Reply:
    """The same answer as a 200 whose body is not JSON (a notice, then half the body)."""
    body = GARBLE_PREFIX + reply.body[: len(reply.body) // 2]
    return Reply(200, body, "application/json; charset=utf-8", dict(reply.headers), reply.close)


def json_bytes(payload: Any) -> bytes:
    """JSON the way PHP's json_encode writes it: compact, ASCII, slashes escaped."""
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    return text.replace("/", "\\/").encode("ascii")


def json_reply(status: int, payload: Any) -> Reply:
    return Reply(status, json_bytes(payload), "application/json; charset=utf-8")


def text_reply(status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> Reply:
    return Reply(status, text.encode("utf-8"), content_type)


def proxy_page(status: int, phrase: str | None = None) -> str:
    """What nginx or a load balancer sends for a status of its own."""
    title = f"{status} {phrase or reason(status)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )


def guess_type(body: bytes) -> str:
    head = body.lstrip()[:1]
    if head in (b"{", b"["):
        return "application/json; charset=utf-8"
    if head == b"<":
        return "text/html; charset=utf-8"
    return "text/plain; charset=utf-8"
