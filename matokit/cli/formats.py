"""The `--format` choices of each command, as enums Typer validates, completes and describes.

One enum per set of outputs a command supports: Click refuses anything else (exactly: `JSON`
is not `json`) with a usage error, shell completion offers the values, and `describe` lists
them as the option's choices. No typer import here: the lean `report` path reads
`ReportFormat` too.
"""

from __future__ import annotations

from enum import StrEnum


class TextFormat(StrEnum):
    """Text for people, or one JSON document."""

    TEXT = "text"
    JSON = "json"


class ReportFormat(StrEnum):
    """Report rows: a table for people, JSON, CSV or one JSON object per line."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    NDJSON = "ndjson"


class ApiFormat(StrEnum):
    """Matomo's own answer formats (`api` prints the answer as Matomo sends it)."""

    JSON = "json"
    CSV = "csv"
    TSV = "tsv"
    XML = "xml"


class HealthFormat(StrEnum):
    """Health for people, JSON, the Prometheus text format, or a Nagios plugin line."""

    TEXT = "text"
    JSON = "json"
    PROMETHEUS = "prometheus"
    NAGIOS = "nagios"


class AccessLogFormat(StrEnum):
    """The line formats `track access-log` reads (`auto`: detected from the first lines)."""

    AUTO = "auto"
    COMMON = "common"
    COMBINED = "combined"
    VHOST_COMBINED = "vhost_combined"
    NGINX_JSON = "nginx_json"
    W3C = "w3c"
