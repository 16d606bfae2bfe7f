"""Access-log line formats: the parsers, and auto-detection from a file's first lines.

Each format turns one line (text) into a `LogRecord`, or None when the line is not in that
format; W3C's `#` directive lines give `HEADER`. Times stay text until a line has passed the
filters (`LineFormat.timestamp`), as Matomo's importer does: most skipped lines never pay for it.

Formats: `common` and `combined` (Apache and Nginx defaults; `combined` = Matomo's
`ncsa_extended`), `vhost_combined` (Apache's, host[:port] first = Matomo's `common_complete`),
`nginx_json` (one JSON object a line, Matomo's field names or Nginx variable names), `w3c`
(IIS and other W3C extended logs: the `#Fields:` directive says which fields a line has), and
`regex` (`--log-format-regex` with named groups).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

from matokit.accesslog.times import any_time, clf_time, strptime_time
from matokit.errors import UsageError


class LogRecord:
    """One parsed log line: what the filters and the hit need, as text (times stay text)."""

    __slots__ = (
        "gen_ms",
        "host",
        "ip",
        "length",
        "method",
        "path",
        "query",
        "referrer",
        "stamp",
        "status",
        "user_agent",
        "userid",
        "zone",
    )

    def __init__(
        self,
        ip: str,
        userid: str | None,
        stamp: str,
        method: str,
        path: str | None,
        query: str,
        status: str,
        length: str,
        referrer: str,
        user_agent: str,
        host: str | None = None,
        gen_ms: float | None = None,
        zone: str | None = None,
    ) -> None:
        self.ip = ip
        self.userid = userid  # None for "-"
        self.stamp = stamp  # the time as logged (see LineFormat.timestamp)
        self.method = method
        self.path = path  # without the query string; None: the request line is not a request
        self.query = query  # without "?"; "" when none
        self.status = status
        self.length = length
        self.referrer = referrer  # "" for "-"
        self.user_agent = user_agent
        self.host = host  # lower case, no port; None when the format has none
        self.gen_ms = gen_ms  # the server's time to answer, in milliseconds
        self.zone = zone  # a separate time zone field (regex formats)

    def __repr__(self) -> str:
        return f"LogRecord({self.ip!r}, {self.stamp!r}, {self.path!r}, {self.status!r})"


HEADER: Final = LogRecord("", None, "", "", None, "", "", "", "", "")  # W3C directive lines


class LineFormat(Protocol):
    """What every format offers the importer."""

    name: str
    has_host: bool

    def parse(self, line: str) -> LogRecord | None:
        """The record of `line`, HEADER for a directive line, None when it is not this format."""
        ...

    def timestamp(self, record: LogRecord) -> int:
        """The record's time as Unix seconds (UTC); ValueError when it is not a time."""
        ...

    def state(self) -> str:
        """What a checkpoint must keep to resume mid-file (W3C: the `#Fields:` line)."""
        ...

    def restore(self, state: str) -> None:
        """Resume with a state from `state()`."""
        ...


# --- Common Log Format and its relatives --------------------------------------------------------

# A quoted field: Apache escapes `"` and `\` with a backslash, Nginx writes `\x22`.
_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
_START = r"([\w*.:%-]+)\s+\S+\s+(\S+)\s+\[([^\]]+)\]\s+"
_END = r"\s+(\d{3})\s+(\S+)"
_CLF = _START + _QUOTED + _END
_AGENT = r"\s+" + _QUOTED + r"\s+" + _QUOTED
# The fast path: single spaces, a well-formed request line and no escapes (nearly every line),
# the request split by the regex itself; anything else goes through the general pattern above.
_FAST_START = r"([\w*.:%-]+) \S+ (\S+) \[([^\]]+)\] "
_REQUEST = r'"(\S+) ([^ ?"\\]+)(?:\?([^ "\\]*))? [^ "\\]+" (\d{3}) (\S+)'
_PLAIN_AGENT = r' "([^"\\]*)" "([^"\\]*)"'
_VHOST = r"([\w.-]+)(?::\d+)?\s+"
_FAST_VHOST = r"([\w.-]+)(?::\d+)? "
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.)")


def unescape(text: str) -> str:
    """A logged field as the client sent it: `\\"`, `\\\\` and `\\xHH` (bytes, UTF-8) undone."""
    if "\\" not in text:
        return text
    raw = bytearray()
    position = 0
    for match in _ESCAPE.finditer(text):
        raw += text[position : match.start()].encode("utf-8")
        code = match.group(1)
        raw += bytes((int(code[1:], 16),)) if len(code) == 3 else code.encode("utf-8")
        position = match.end()
    raw += text[position:].encode("utf-8")
    return raw.decode("utf-8", "replace")


def split_request(request: str) -> tuple[str, str | None, str]:
    """`GET /a?b HTTP/1.1` -> ("GET", "/a", "b"); the path is None when it is no request."""
    parts = request.split(" ")
    if len(parts) < 3 or not parts[1]:
        return (parts[0] if parts else ""), None, ""
    target = parts[1] if len(parts) == 3 else " ".join(parts[1:-1])
    path, _, query = target.partition("?")
    return parts[0], path, query


class ClfFormat:
    """`common`, `combined` and `vhost_combined`: a fast regex for well-formed lines, a general
    one for the rest (escaped quotes, odd request lines)."""

    def __init__(self, name: str, *, host: bool, agent: bool, agent_optional: bool = False):
        self.name = name
        self.has_host = host
        self._agent = agent
        prefix, fast_prefix = (_VHOST, _FAST_VHOST) if host else ("", "")
        agent_fast = _PLAIN_AGENT if agent else ""
        agent_slow = _AGENT if agent else ""
        if agent_optional:
            agent_fast, agent_slow = f"(?:{agent_fast})?", f"(?:{agent_slow})?"
        self._fast = re.compile(fast_prefix + _FAST_START + _REQUEST + agent_fast).match
        self._slow = re.compile(prefix + _CLF + agent_slow).match

    def parse(self, line: str) -> LogRecord | None:
        """The record of `line`, or None when it is not in this format."""
        match = self._fast(line)
        if match is None:
            return self._parse_slow(line)
        groups = match.groups()
        host: str | None = None
        if self.has_host:
            host = groups[0].lower().strip(".")
            groups = groups[1:]
        if self._agent:
            ip, user, stamp, method, path, query, status, length, ref, agent = groups
            if ref is None:
                ref = agent = ""
            elif ref == "-":
                ref = ""
        else:
            ip, user, stamp, method, path, query, status, length = groups
            ref = agent = ""
        return LogRecord(
            ip,
            None if user == "-" else user,
            stamp,
            method,
            path,
            query or "",
            status,
            length,
            ref,
            agent,
            host,
        )

    def _parse_slow(self, line: str) -> LogRecord | None:
        match = self._slow(line)
        if match is None:
            return None
        groups = match.groups()
        host: str | None = None
        if self.has_host:
            host = groups[0].lower().strip(".")
            groups = groups[1:]
        ip, user, stamp, request, status, length = groups[:6]
        referrer = user_agent = ""
        if self._agent and groups[6] is not None:
            referrer, user_agent = unescape(groups[6]), unescape(groups[7])
            if referrer == "-":
                referrer = ""
        method, path, query = split_request(unescape(request))
        return LogRecord(
            ip,
            None if user == "-" else user,
            stamp,
            method,
            path,
            query,
            status,
            length,
            referrer,
            user_agent,
            host,
        )

    def timestamp(self, record: LogRecord) -> int:
        """`[10/Oct/2000:13:55:36 -0700]` as Unix seconds."""
        return clf_time(record.stamp)

    def state(self) -> str:
        """Nothing to keep: every line stands alone."""
        return ""

    def restore(self, state: str) -> None:
        """Nothing to restore."""


def common() -> ClfFormat:
    """`%h %l %u %t "%r" %>s %b`"""
    return ClfFormat("common", host=False, agent=False)


class CombinedFormat(ClfFormat):
    """`combined`, with a parse specialised for it (the format of most logs)."""

    def __init__(self) -> None:
        super().__init__("combined", host=False, agent=True)

    def parse(self, line: str) -> LogRecord | None:
        """The record of `line`, or None when it is not in this format."""
        match = self._fast(line)
        if match is None:
            return self._parse_slow(line)
        ip, user, stamp, method, path, query, status, length, ref, agent = match.groups()
        return LogRecord(
            ip,
            None if user == "-" else user,
            stamp,
            method,
            path,
            query or "",
            status,
            length,
            "" if ref == "-" else ref,
            agent,
        )


def combined() -> ClfFormat:
    """`%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"` (extra fields may follow)."""
    return CombinedFormat()


def vhost_combined() -> ClfFormat:
    """`%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"` (the port is optional)."""
    return ClfFormat("vhost_combined", host=True, agent=True, agent_optional=True)


# --- Nginx JSON ----------------------------------------------------------------------------------

# Field name -> the names Nginx configurations use for it (Matomo's own names first).
JSON_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "ip": ("ip", "remote_addr", "client_ip", "clientip"),
    "date": ("date", "time_iso8601", "time_local", "time", "timestamp", "@timestamp", "msec"),
    "path": ("path", "request_uri", "uri"),
    "request": ("request",),
    "query": ("query_string", "args"),
    "status": ("status",),
    "length": ("length", "bytes_sent", "body_bytes_sent", "size"),
    "referrer": ("referrer", "referer", "http_referer", "http_referrer"),
    "user_agent": ("user_agent", "http_user_agent", "agent"),
    "host": ("host", "http_host", "server_name", "vhost"),
    "userid": ("userid", "remote_user", "user"),
    "method": ("method", "request_method"),
    # Seconds, whatever Matomo's name says (its sample configuration logs $request_time).
    "seconds": ("generation_time_milli", "request_time"),
}


def _pick(obj: Mapping[str, Any], field: str) -> Any:
    for name in JSON_FIELDS[field]:
        value = obj.get(name)
        if value is not None:
            return value
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _latin1_fix(value: str) -> str:
    """Undo `\\xHH` -> `\\u00HH` on a field holding UTF-8 bytes (what Nginx writes)."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


class NginxJsonFormat:
    """One JSON object a line (`log_format ... escape=json`, or Nginx's default escaping)."""

    name = "nginx_json"
    has_host = True

    def parse(self, line: str) -> LogRecord | None:
        """The record of `line`, or None when it is no JSON object with a time and a path."""
        escaped = "\\x" in line
        if escaped:  # escape=default writes \xHH, which JSON does not allow
            line = line.replace("\\x", "\\u00")
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        fix: Callable[[str], str] = _latin1_fix if escaped else str
        date = _pick(obj, "date")
        path = _pick(obj, "path")
        method = _text(_pick(obj, "method"))
        query = _text(_pick(obj, "query"))
        if path is None:
            request = _pick(obj, "request")
            if request is None or date is None:
                return None
            method, target, query = split_request(fix(_text(request)))
        else:
            target, _, inline = fix(_text(path)).partition("?")
            query = query or inline
        status = _text(_pick(obj, "status"))
        if date is None or not status:
            return None
        host = _pick(obj, "host")
        userid = _text(_pick(obj, "userid"))
        seconds = _pick(obj, "seconds")
        referrer = fix(_text(_pick(obj, "referrer")))
        return LogRecord(
            _text(_pick(obj, "ip")),
            None if userid in ("", "-") else fix(userid),
            _text(date),
            method,
            target,
            "" if query == "-" else fix(query),
            status,
            _text(_pick(obj, "length")),
            "" if referrer == "-" else referrer,
            fix(_text(_pick(obj, "user_agent"))),
            None if host is None else _text(host).lower().split(":")[0].strip("."),
            _milliseconds(seconds, 1000.0),
        )

    def timestamp(self, record: LogRecord) -> int:
        """ISO 8601 (`$time_iso8601`), CLF (`$time_local`) or Unix seconds (`$msec`)."""
        return any_time(record.stamp)

    def state(self) -> str:
        """Nothing to keep: every line stands alone."""
        return ""

    def restore(self, state: str) -> None:
        """Nothing to restore."""


def _milliseconds(value: Any, factor: float) -> float | None:
    if value is None or value == "-":
        return None
    try:
        return float(value) * factor
    except (TypeError, ValueError):
        return None


# --- W3C extended (IIS) -------------------------------------------------------------------------

W3C_FIELDS: Final = {
    "date": "date",
    "time": "time",
    "c-ip": "ip",
    "cs-username": "userid",
    "cs-method": "method",
    "cs-uri-stem": "path",
    "cs-uri-query": "query",
    "sc-status": "status",
    "sc-bytes": "length",
    "cs(User-Agent)": "user_agent",
    "cs(Referer)": "referrer",
    "cs-host": "host",
    "time-taken": "taken",
}
_W3C_REQUIRED: Final = ("date", "time", "ip", "path", "status")
_W3C_TOKEN = re.compile(r'"[^"]*"|\S+')


class W3cFormat:
    """W3C extended logs (IIS): fields as the latest `#Fields:` directive lists them, UTC."""

    name = "w3c"
    has_host = True

    def __init__(self, fields_line: str | None = None) -> None:
        self._fields = ""
        self._index: dict[str, int] = {}
        self._count = 0
        self._milliseconds = False
        if fields_line is not None:
            self._directive(fields_line)

    @property
    def ready(self) -> bool:
        """Whether a usable `#Fields:` directive was seen."""
        return bool(self._index)

    def _directive(self, line: str) -> None:
        if not line.startswith("#Fields:"):
            if "internet information services" in line.lower():
                self._milliseconds = True
            return
        names = line[len("#Fields:") :].split()
        index = {W3C_FIELDS[n]: i for i, n in enumerate(names) if n in W3C_FIELDS}
        if all(field in index for field in _W3C_REQUIRED):
            self._fields, self._index, self._count = line, index, len(names)
            # IIS logs time-taken in milliseconds; it alone writes sc-win32-status.
            self._milliseconds = self._milliseconds or "sc-win32-status" in names
        else:
            self._fields, self._index, self._count = "", {}, 0

    def parse(self, line: str) -> LogRecord | None:
        """The record of `line`; HEADER for a directive; None before a usable `#Fields:`."""
        if line.startswith("#"):
            self._directive(line.rstrip())
            return HEADER
        index = self._index
        if not index:
            return None
        tokens = line.split() if '"' not in line else _W3C_TOKEN.findall(line)
        if len(tokens) != self._count:
            return None

        def get(field: str) -> str:
            at = index.get(field)
            if at is None:
                return ""
            value = tokens[at]
            if value.startswith('"') and value.endswith('"') and len(value) > 1:
                value = value[1:-1]
            return "" if value == "-" else value

        host = get("host")
        userid = get("userid")
        taken = get("taken")
        return LogRecord(
            get("ip"),
            userid or None,
            get("date") + " " + get("time"),
            get("method"),
            get("path") or None,
            get("query"),
            get("status"),
            get("length"),
            get("referrer"),
            get("user_agent").replace("+", " "),  # IIS writes spaces as "+"
            host.lower().split(":")[0] if host else None,
            _milliseconds(taken or None, 1.0 if self._milliseconds else 1000.0),
        )

    def timestamp(self, record: LogRecord) -> int:
        """`2024-05-01 10:00:00[.123]` in UTC (W3C logs are in GMT)."""
        return any_time(record.stamp.split(".")[0], "+0000")

    def state(self) -> str:
        """The `#Fields:` directive in force (and whether times taken are milliseconds)."""
        return json.dumps({"fields": self._fields, "ms": self._milliseconds})

    def restore(self, state: str) -> None:
        """Resume with the directive in force at the checkpoint."""
        try:
            saved = json.loads(state)
        except ValueError:
            return
        if isinstance(saved, dict) and saved.get("fields"):
            self._directive(str(saved["fields"]))
            self._milliseconds = bool(saved.get("ms")) or self._milliseconds


# --- --log-format-regex --------------------------------------------------------------------------

REGEX_GROUPS: Final = (
    "ip",
    "date",
    "path",
    "status",
    "length",
    "referrer",
    "user_agent",
    "host",
    "userid",
    "method",
    "query_string",
    "timezone",
    "generation_time_milli",
    "generation_time_secs",
)
_REGEX_REQUIRED: Final = ("ip", "date", "path", "status")


class RegexFormat:
    """`--log-format-regex`: named groups (ip, date, path, status required), times read by
    `--log-date-format` (strptime) or else as CLF, ISO 8601 or Unix seconds."""

    name = "regex"

    def __init__(self, pattern: str, date_format: str | None = None) -> None:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise UsageError(
                f"--log-format-regex is not a valid regular expression: {exc}",
                hint="use Python syntax with named groups, e.g. (?P<ip>\\S+)",
            ) from None
        groups = set(compiled.groupindex)
        missing = [g for g in _REGEX_REQUIRED if g not in groups]
        if missing:
            raise UsageError(
                f"--log-format-regex lacks the named group(s) {', '.join(missing)}",
                hint="name groups (?P<ip>...), (?P<date>...), (?P<path>...), (?P<status>...); "
                "optional: " + ", ".join(REGEX_GROUPS[4:]),
            )
        self._match = compiled.match
        self._date_format = date_format
        self.has_host = "host" in groups

    def parse(self, line: str) -> LogRecord | None:
        """The record of `line`, or None when the regex does not match it."""
        match = self._match(line)
        if match is None:
            return None
        found = match.groupdict()

        def get(name: str) -> str:
            value = found.get(name)
            return "" if value is None or value == "-" else unescape(value)

        target = get("path")
        path, _, query = target.partition("?")
        query = get("query_string") or query
        host = get("host")
        userid = get("userid")
        gen = _milliseconds(found.get("generation_time_milli"), 1.0)
        if gen is None:
            gen = _milliseconds(found.get("generation_time_secs"), 1000.0)
        return LogRecord(
            get("ip"),
            userid or None,
            found.get("date") or "",
            get("method"),
            path or None,
            query,
            get("status"),
            get("length"),
            get("referrer"),
            get("user_agent"),
            host.lower().split(":")[0].strip(".") if self.has_host else None,
            gen,
            found.get("timezone"),
        )

    def timestamp(self, record: LogRecord) -> int:
        """The `date` group (with `timezone`, when the regex has one)."""
        if self._date_format is not None:
            return strptime_time(record.stamp, self._date_format, record.zone)
        return any_time(record.stamp, record.zone)

    def state(self) -> str:
        """Nothing to keep: every line stands alone."""
        return ""

    def restore(self, state: str) -> None:
        """Nothing to restore."""


# --- choosing a format ---------------------------------------------------------------------------

NAMES: Final = ("auto", "common", "combined", "vhost_combined", "nginx_json", "w3c")
DETECT_LINES: Final = 50


def by_name(name: str) -> LineFormat:
    """A fresh parser for a format name (not `auto`)."""
    makers: dict[str, Callable[[], LineFormat]] = {
        "common": common,
        "combined": combined,
        "vhost_combined": vhost_combined,
        "nginx_json": NginxJsonFormat,
        "w3c": W3cFormat,
    }
    return makers[name]()


def detect(lines: Iterable[str]) -> LineFormat | None:
    """The format of a log from its first lines, or None when none fits.

    A `#Fields:` directive means W3C; a first line that is a JSON object with a time and a path
    means Nginx JSON; else the CLF format matching most of the first DETECT_LINES lines wins,
    the one with more fields on a tie (a combined line also matches common).
    """
    sample = [line for line in lines if line.strip()][:DETECT_LINES]
    if not sample:
        return None
    w3c = W3cFormat()
    if sample[0].startswith("#"):
        for line in sample:
            if line.startswith("#"):
                w3c.parse(line)
        return w3c if w3c.ready else None
    if sample[0].lstrip().startswith("{"):
        found = NginxJsonFormat()
        return found if found.parse(sample[0]) is not None else None
    best: LineFormat | None = None
    best_count = 0
    for candidate in (vhost_combined(), combined(), common()):  # richest first: wins ties
        count = sum(1 for line in sample if candidate.parse(line) is not None)
        if count > best_count:
            best, best_count = candidate, count
    return best
