"""Tiny request helpers for tests that talk to FakeMatomo with plain `requests`."""

from __future__ import annotations

import json
from typing import Any, Literal

import requests

from tests.fakematomo.server import FakeMatomo

Via = Literal["post", "url", "bearer", "none"]


def api(
    srv: FakeMatomo,
    method: str | None,
    token: str | None = None,
    *,
    via: Via = "post",
    fmt: str | None = "JSON",
    timeout: float = 10,
    **params: Any,
) -> requests.Response:
    """Call the Reporting API; the token travels as `via` says (POST body by default)."""
    query: dict[str, Any] = {"module": "API"}
    if method is not None:
        query["method"] = method
    if fmt is not None:
        query["format"] = fmt
    query.update({k: v for k, v in params.items() if v is not None})
    data: dict[str, str] = {}
    headers: dict[str, str] = {}
    if token is not None and via == "post":
        data["token_auth"] = token
    elif token is not None and via == "url":
        query["token_auth"] = token
    elif token is not None and via == "bearer":
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(
        srv.url + "index.php", params=query, data=data, headers=headers, timeout=timeout
    )


def track(
    srv: FakeMatomo, *, method: str = "GET", timeout: float = 10, **params: Any
) -> requests.Response:
    """One single tracking request with the given parameters (GET query or form POST).

    The pseudo-parameter `_header_ua` sets the User-Agent header instead of a parameter.
    """
    clean = {k: str(v) for k, v in params.items() if v is not None}
    headers = {"User-Agent": clean.pop("_header_ua")} if "_header_ua" in clean else {}
    if method == "POST":
        return requests.post(srv.url + "matomo.php", data=clean, headers=headers, timeout=timeout)
    return requests.get(srv.url + "matomo.php", params=clean, headers=headers, timeout=timeout)


def bulk(
    srv: FakeMatomo,
    items: list[Any],
    token: str | None = None,
    *,
    extra: dict[str, Any] | None = None,
    query: str = "",
    timeout: float = 10,
) -> requests.Response:
    """One bulk tracking POST: {"requests": items, "token_auth": token, **extra}."""
    payload: dict[str, Any] = {"requests": items}
    if token is not None:
        payload["token_auth"] = token
    payload.update(extra or {})
    return requests.post(
        srv.url + "matomo.php" + query,
        data=json.dumps(payload),
        headers={"Content-Type": "application/json"},
        timeout=timeout,
    )
