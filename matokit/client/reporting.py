"""The Reporting API (`index.php?module=API`): form bodies, and answers as values or errors.

The body decides, not the status: Matomo answers many errors with 200 and a JSON (or CSV,
TSV, XML) error message.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from matokit.client.failures import NOT_JSON, Failures, clean, json_or_none
from matokit.errors import MatomoError, ProtocolError, UsageError
from matokit.policy import classify_api_error, hint_for
from matokit.redact import redact
from matokit.urls import endpoint

if TYPE_CHECKING:
    import requests

BULK_METHOD = "API.getBulkRequest"
_RAW_FORMATS = ("CSV", "TSV", "XML")
_XML_ERROR = re.compile(r"<error\s+message=\"([^\"]*)\"", re.IGNORECASE)


# --- requests ------------------------------------------------------------------------------


def api_url(base_url: str, method: str, fmt: str) -> str:
    """The API URL for `method` in `fmt`; parameters and token go in the POST body."""
    query = urlencode({"module": "API", "method": method, "format": fmt})
    return f"{endpoint(base_url, 'index.php')}?{query}"


def form(params: Mapping[str, Any], token: str | None) -> list[tuple[str, str]]:
    """The POST form for API parameters, with the token (never in the URL)."""
    pairs = form_pairs(_unreserved(params))
    if token:
        pairs.append(("token_auth", token))
    return pairs


def raw_format(format: str) -> str:
    """`format` as Matomo spells it, if it is one call_raw supports."""
    fmt = format.upper()
    if fmt not in _RAW_FORMATS:
        raise UsageError(f"format must be one of {', '.join(_RAW_FORMATS)}, not {format!r}.")
    return fmt


def bulk_urls(calls: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """The `urls` of an `API.getBulkRequest`, one query string per call."""
    return [urlencode([("method", m), *form_pairs(_unreserved(p))]) for m, p in calls]


def form_pairs(params: Mapping[str, Any]) -> list[tuple[str, str]]:
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


# --- answers -------------------------------------------------------------------------------


def interpret_api(response: requests.Response, method: str, url: str, failures: Failures) -> Any:
    """Matomo's answer as a value, or the typed error it means (the body decides)."""
    data = json_or_none(response.content, default=NOT_JSON)
    where: dict[str, Any] = {
        "method": method,
        "status": response.status_code,
        "url": redact(url),
    }
    if isinstance(data, dict) and data.get("result") == "error":
        message = str(data.get("message", ""))
        raise failures.api_error(
            classify_api_error(response.status_code, message), message, where, response
        )
    if response.status_code >= 300:
        raise failures.status_error(response, data, where)
    if data is NOT_JSON:
        raise ProtocolError(
            f"Matomo answered {method} with something that is not JSON: "
            f"{clean(response.text, [failures.token], 120)!r}",
            hint=hint_for(ProtocolError),
            **where,
        )
    return data


def interpret_raw(
    response: requests.Response, method: str, url: str, fmt: str, failures: Failures
) -> str:
    """A CSV/TSV/XML answer as text, or the typed error its body or status means."""
    text = _decode(response.content)
    where: dict[str, Any] = {
        "method": method,
        "status": response.status_code,
        "url": redact(url),
    }
    message = _raw_error_message(text, fmt)
    if message is not None:
        error_class = classify_api_error(response.status_code, message)
        raise failures.api_error(error_class, message, where, response)
    if response.status_code >= 300:
        raise failures.status_error(response, None, where)
    return text


def interpret_bulk(
    response: requests.Response,
    calls: Sequence[tuple[str, Mapping[str, Any]]],
    url: str,
    failures: Failures,
) -> list[Any | MatomoError]:
    """One value or error per call; a failure of the whole request is raised."""
    data = interpret_api(response, BULK_METHOD, url, failures)
    if not isinstance(data, list) or len(data) != len(calls):
        raise ProtocolError(
            f"API.getBulkRequest returned {type(data).__name__} for {len(calls)} calls.",
            method=BULK_METHOD,
            status=response.status_code,
            url=redact(url),
            hint=hint_for(ProtocolError),
        )
    results: list[Any | MatomoError] = []
    for (method, _), entry in zip(calls, data, strict=True):
        if isinstance(entry, dict) and entry.get("result") == "error":
            message = str(entry.get("message", ""))
            where: dict[str, Any] = {"method": method, "status": None, "url": redact(url)}
            results.append(failures.api_error(classify_api_error(None, message), message, where))
        else:
            results.append(entry)
    return results


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
        data = json_or_none(head.encode("utf-8"))
        if isinstance(data, dict) and data.get("result") == "error":
            return str(data.get("message", ""))
    return None
