"""Reporting API output formats: JSON (PHP-style), XML, CSV/TSV (UTF-16LE by default), HTML."""

from __future__ import annotations

import html
import re
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from tests.fakematomo.replies import Reply, json_bytes

FORMATS = ("json", "xml", "csv", "tsv", "html")
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


class Keyed(dict[str, Any]):
    """A multi-period or multi-site answer: keys are dates or site ids."""

    def __init__(self, key_name: str, items: dict[str, Any] | None = None) -> None:
        super().__init__(items or {})
        self.key_name = key_name


def render(payload: Any, fmt: str, status: int = 200, utf16: bool = True) -> Reply:
    if fmt == "json":
        return Reply(status, json_bytes(payload), "application/json; charset=utf-8")
    if fmt in ("csv", "tsv"):
        text = to_csv(payload, "," if fmt == "csv" else "\t")
        body = b"\xff\xfe" + text.encode("utf-16-le") if utf16 else text.encode("utf-8")
        ctype = "application/vnd.ms-excel" if fmt == "csv" else "text/tab-separated-values"
        if not utf16:
            ctype += "; charset=utf-8"
        disposition = f"attachment; filename=export.{fmt}"
        return Reply(status, body, ctype, {"Content-Disposition": disposition})
    if fmt == "html":
        return Reply(status, to_html(payload).encode("utf-8"), "text/html; charset=utf-8")
    return Reply(status, to_xml(payload).encode("utf-8"), "text/xml; charset=utf-8")


def render_error(message: str, fmt: str, status: int) -> Reply:
    if fmt == "json":
        return Reply(
            status,
            json_bytes({"result": "error", "message": message}),
            "application/json; charset=utf-8",
        )
    if fmt in ("csv", "tsv"):
        return Reply(status, f"Error: {message}".encode(), "text/plain; charset=utf-8")
    if fmt == "html":
        return Reply(status, f"Error: {html.escape(message)}".encode(), "text/html; charset=utf-8")
    body = (
        '<?xml version="1.0" encoding="utf-8" ?>\n'
        f"<result>\n\t<error message={quoteattr(message)} />\n</result>"
    )
    return Reply(status, body.encode("utf-8"), "text/xml; charset=utf-8")


# --- XML --------------------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return escape(str(value))


def _xml_fields(obj: dict[str, Any], depth: int) -> str:
    pad = "\t" * depth
    out = []
    for key, value in obj.items():
        tag, attr = (key, "") if _XML_NAME.fullmatch(key) else ("row", f" key={quoteattr(key)}")
        if isinstance(value, dict):
            out.append(f"{pad}<{tag}{attr}>\n{_xml_fields(value, depth + 1)}{pad}</{tag}>\n")
        elif isinstance(value, list):
            out.append(f"{pad}<{tag}{attr}>\n{_xml_rows(value, depth + 1)}{pad}</{tag}>\n")
        else:
            out.append(f"{pad}<{tag}{attr}>{_scalar(value)}</{tag}>\n")
    return "".join(out)


def _xml_rows(rows: list[Any], depth: int) -> str:
    pad = "\t" * depth
    out = []
    for row in rows:
        if isinstance(row, dict):
            out.append(f"{pad}<row>\n{_xml_fields(row, depth + 1)}{pad}</row>\n")
        else:
            out.append(f"{pad}<row>{_scalar(row)}</row>\n")
    return "".join(out)


def _xml_body(payload: Any, depth: int) -> str:
    if isinstance(payload, Keyed):
        pad = "\t" * depth
        parts = []
        for key, value in payload.items():
            attr = f"{payload.key_name}={quoteattr(str(key))}"
            inner = _xml_body(value, depth + 1)
            if inner.startswith("\n"):
                parts.append(f"{pad}<result {attr}>{inner}{pad}</result>\n")
            elif inner:
                parts.append(f"{pad}<result {attr}>{inner}</result>\n")
            else:
                parts.append(f"{pad}<result {attr} />\n")
        return "\n" + "".join(parts)
    if isinstance(payload, list):
        return "\n" + _xml_rows(payload, depth) if payload else ""
    if isinstance(payload, dict):
        if set(payload) == {"value"}:
            return _scalar(payload["value"])
        return "\n" + _xml_fields(payload, depth) if payload else ""
    return _scalar(payload)


def to_xml(payload: Any) -> str:
    head = '<?xml version="1.0" encoding="utf-8" ?>\n'
    if isinstance(payload, Keyed):
        return head + "<results>" + _xml_body(payload, 1) + "</results>"
    body = _xml_body(payload, 1)
    if not body:
        return head + "<result />"
    return head + "<result>" + body + "</result>"


# --- CSV / TSV --------------------------------------------------------------------------------


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "_"))
        elif isinstance(value, list):
            continue  # subtables do not fit in one CSV line
        else:
            flat[name] = value
    return flat


def _records(payload: Any, keys: dict[str, str]) -> list[dict[str, Any]]:
    if isinstance(payload, Keyed):
        out = []
        for key, value in payload.items():
            out.extend(_records(value, {**keys, payload.key_name: str(key)}))
        return out
    if isinstance(payload, list):
        return [{**keys, **_flatten(r if isinstance(r, dict) else {"value": r})} for r in payload]
    if isinstance(payload, dict):
        return [{**keys, **_flatten(payload)}] if payload else []
    return [{**keys, "value": payload}]


def _cell(value: Any, sep: str) -> str:
    text = (
        "" if value is None else ("1" if value is True else "0" if value is False else str(value))
    )
    if any(c in text for c in (sep, '"', "\n", "\r")):
        text = '"' + text.replace('"', '""') + '"'
    return text


def to_csv(payload: Any, sep: str) -> str:
    records = _records(payload, {})
    if not records:
        return "No data available"
    columns: list[str] = []
    for record in records:
        columns.extend(k for k in record if k not in columns)
    lines = [sep.join(columns)]
    lines += [sep.join(_cell(r.get(c), sep) for c in columns) for r in records]
    return "\n".join(lines)


def to_html(payload: Any) -> str:
    records = _records(payload, {})
    if not records:
        return "<div>No data available</div>"
    columns: list[str] = []
    for record in records:
        columns.extend(k for k in record if k not in columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
        for r in records
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody>\n</table>"
