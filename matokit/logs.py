"""Logging on stderr: text for people, JSON lines for machines; always redacted.

Core modules log with `logging.getLogger("matokit.<module>")` and pass context as `extra`
fields (http_method, url, status, duration_ms, batch_size, ...); this module renders them.
In json mode the CLI's own stderr lines (errors, hints, summaries) use `json_line`, so every
line on stderr is one JSON object with the run's `profile` and `command`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from matokit.redact import redact
from matokit.sanitize import printable

# Attributes every LogRecord has; anything else was passed through `extra`.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}


# The run's stderr format (None until setup_logging) and context (profile, command).
_run: dict[str, Any] = {"format": None}
_context: dict[str, Any] = {}
# CLI lines start with these words; in JSON they become the level.
_PREFIXES = (
    ("matokit: error: ", "error"),
    ("matokit: warning: ", "warning"),
    ("matokit: ", "info"),
)


def stderr_format() -> str:
    """text or json: what setup_logging chose, else the flag, env or `.env` (the lean cache path
    writes before any setup; `matokit.config` is the one reader of those)."""
    chosen = _run["format"]
    if not chosen:
        from matokit.config import resolve_logging

        chosen = resolve_logging()[0]
    return "json" if chosen == "json" else "text"


def set_context(**fields: Any) -> None:
    """Add fields (e.g. the resolved profile) to every later log record and stderr line."""
    _context.update({k: v for k, v in fields.items() if v is not None})


def json_line(message: str, *, level: str | None = None, **fields: Any) -> str:
    """One stderr line as JSON: ts, level, logger, message, the run's context, `fields`.

    Without `level`, a `matokit: error: ` (warning, plain) prefix of `message` is the level.
    """
    if level is None:
        level = "info"
        for prefix, prefix_level in _PREFIXES:
            if message.startswith(prefix):
                message, level = message[len(prefix) :], prefix_level
                break
    payload: dict[str, Any] = {
        "ts": _timestamp(time.time()),
        "level": level,
        "logger": "matokit",
        "message": message.strip(),
    }
    payload.update(_context)
    payload.update({k: v for k, v in fields.items() if v is not None})
    return redact(json.dumps(payload, ensure_ascii=False, default=str))


def _timestamp(created: float) -> str:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{ts}.{int(created % 1 * 1000):03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class ContextFilter(logging.Filter):
    """Adds the run's context (profile, command) to every record."""

    def __init__(self, context: Mapping[str, Any]) -> None:
        super().__init__()
        self.context = context

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.context.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC), level, logger, message and context fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            payload[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """`matokit: warning: message key=value ...` for people."""

    def format(self, record: logging.LogRecord) -> str:
        extras = _extras(record)
        extras.pop("profile", None)
        extras.pop("command", None)
        tail = " ".join(f"{k}={v}" for k, v in extras.items())
        line = f"matokit: {record.levelname.lower()}: {record.getMessage()}"
        if tail:
            line += f" ({tail})"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        # Messages may quote Matomo's data: its control characters are shown, not obeyed.
        return printable(redact(line), keep_newlines=True)


def set_format(fmt: str) -> None:
    """Switch the stderr format after setup (the profile's log_format key, once resolved)."""
    fmt = "json" if fmt == "json" else "text"
    if _run["format"] == fmt:
        return
    _run["format"] = fmt
    for handler in logging.getLogger("matokit").handlers:
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())


def setup_logging(
    *,
    fmt: str = "text",
    level: int = logging.WARNING,
    context: Mapping[str, Any] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Send matokit's log records to stderr in the chosen format, replacing earlier setup."""
    logger = logging.getLogger("matokit")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    _run["format"] = "json" if fmt == "json" else "text"
    _context.clear()
    set_context(**(context or {}))
    handler.addFilter(ContextFilter(_context))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    # urllib3 logs connection details at DEBUG; keep them, redacted, only with --debug.
    url3 = logging.getLogger("urllib3")
    for h in list(url3.handlers):
        url3.removeHandler(h)
    if level <= logging.DEBUG:
        url3.addHandler(handler)
        url3.setLevel(logging.DEBUG)
        url3.propagate = False
