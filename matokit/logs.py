"""Logging on stderr: text for people, JSON lines for machines; always redacted.

Core modules log with `logging.getLogger("matokit.<module>")` and pass context as `extra`
fields (http_method, url, status, duration_ms, batch_size, ...); this module renders them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from matokit.redact import redact

# Attributes every LogRecord has; anything else was passed through `extra`.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class ContextFilter(logging.Filter):
    """Adds the run's context (profile, command) to every record."""

    def __init__(self, context: Mapping[str, Any]) -> None:
        super().__init__()
        self.context = dict(context)

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.context.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC), level, logger, message and context fields."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        payload: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
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
        return redact(line)


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
    handler.addFilter(ContextFilter(context or {}))
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
