"""Which Reporting API methods change Matomo, by Matomo's own naming, kept as data.

Matomo names its API methods by verb: `get*`, `is*`, `has*` ... read; `add*`, `update*`,
`delete*`, `set*` ... change something. A method counts as read-only only when it is listed
as a read, or its name starts with a read verb and no write rule matches; any other name (a
verb nobody classified yet) counts as a write, so a method Matomo adds tomorrow is refused
until someone looks at it. Names are compared without surrounding whitespace and without
regard to case, because PHP resolves method names case-insensitively.

`API.getBulkRequest` runs the methods named in its `urls[]`: it is read-only only when every
one of them is, at any depth of nesting and URL encoding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_plus

from matokit.errors import WriteRefusedError

# A Reporting API method name: `Module.action`. Matomo plugin (module) names and PHP method
# names are ASCII identifiers (`_` included) starting with a letter.
METHOD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*")


def is_method_name(text: str) -> bool:
    """Whether `text` is exactly a `Module.action` Reporting API method name."""
    return METHOD_NAME.fullmatch(text) is not None


# --- the rules (data) -----------------------------------------------------------------------

# A method whose name starts with one of these verbs changes Matomo. Checked before the read
# verbs, so `cancelX` is a write although it starts with `can`.
WRITE_PREFIXES: tuple[str, ...] = (
    "add", "update", "delete", "set", "create", "remove", "invalidate", "regenerate",
    "anonymize", "save", "change", "send", "resend", "archive", "run", "reset", "copy",
    "activate", "deactivate", "install", "uninstall", "enable", "disable", "publish",
    "import", "generate", "edit", "rename", "invite", "configure", "execute", "trigger",
    "validate", "start", "pause", "resume", "complete", "skip", "mark", "cancel", "clear",
    "purge", "flush", "init", "schedule", "unblock", "block", "revoke", "restore", "toggle",
    "approve", "decline", "accept", "reject", "move", "duplicate", "upload", "apply",
    "dismiss", "subscribe", "unsubscribe", "newsletter", "sync", "process", "build", "track",
)  # fmt: skip

# A method whose name starts with one of these verbs only reads (unless a write rule matches).
READ_PREFIXES: tuple[str, ...] = ("get", "is", "has", "can", "are", "uses", "find", "export")

# Whole methods that change Matomo although their name would pass as a read.
WRITE_METHODS: frozenset[str] = frozenset(
    {
        # Returns the report but also stores it on the server when outputType asks for that.
        "ScheduledReports.generateReport",
    }
)

# Whole methods that only read although their verb is not a read verb.
READ_METHODS: frozenset[str] = frozenset(
    {
        "UsersManager.userExists",
        "UsersManager.userEmailExists",
        "JsTrackerInstallCheck.wasJsTrackerInstallTestSuccessful",
        "CustomReports.previewReport",
    }
)

BULK_METHOD = "API.getBulkRequest"
# `method=` at the start, after `&` or `?`, or inside a value (`urls[0]=method=...` of a
# nested bulk request once decoded); PHP ignores whitespace around names and `[...]` after it.
_METHOD_PARAM = re.compile(r"(?:^|[&?=])\s*method\s*(?:\[[^\]]*\])?\s*=([^&?]*)", re.IGNORECASE)
_MAX_DECODINGS = 8  # urls[] entries are URL-encoded once or twice in practice

_WRITE_METHODS = {m.lower() for m in WRITE_METHODS}
_READ_METHODS = {m.lower() for m in READ_METHODS}


# --- verdicts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Whether `method` changes Matomo, and why (for the refusal message)."""

    method: str
    writes: bool
    reason: str


def classify(method: str) -> Verdict:
    """The verdict for one `Module.method` name, by the rules above (no bulk expansion)."""
    name = method.strip()
    key = name.lower()
    _, _, verb = key.rpartition(".")
    if key in _WRITE_METHODS:
        return Verdict(name, True, "it is listed as a method that changes Matomo")
    if key in _READ_METHODS:
        return Verdict(name, False, "it is listed as read-only")
    if key == BULK_METHOD.lower():
        return Verdict(name, False, "it only runs the methods in its urls[]")
    for prefix in WRITE_PREFIXES:
        if verb.startswith(prefix):
            return Verdict(name, True, f"its name starts with {prefix!r}")
    for prefix in READ_PREFIXES:
        if verb.startswith(prefix):
            return Verdict(name, False, f"its name starts with {prefix!r}")
    return Verdict(name, True, "its name does not start with a read verb (get, is, has, ...)")


def writes_in(method: str, params: Mapping[str, object] | None = None) -> list[Verdict]:
    """Every method this call would run that changes Matomo (empty: the call only reads).

    For `API.getBulkRequest` that is every write method named in its `urls[]` parameters; for
    a method given `apiModule` and `apiAction`, the method they name.
    """
    verdict = classify(method)
    if verdict.writes:
        return [verdict]
    found = _report_writes(params or {})
    if verdict.method.lower() == BULK_METHOD.lower():
        for key, value in (params or {}).items():
            if _base(key) == "urls":
                for text in _values(value):
                    found += _bulk_writes(text)
    return found


def _report_writes(params: Mapping[str, object]) -> list[Verdict]:
    """`apiModule`+`apiAction` (API.getProcessedReport, getRowEvolution, ImageGraph.get, ...).

    Matomo only runs reports its metadata lists there; refusing a write named that way anyway
    costs nothing and does not depend on that check.
    """
    named = {_base(k): v for k, v in params.items()}
    module, action = named.get("apimodule"), named.get("apiaction")
    if module is None or action is None:
        return []
    verdict = classify(f"{str(module).strip()}.{str(action).strip()}")
    return [verdict] if verdict.writes else []


def require_read_only(
    method: str, params: Mapping[str, object] | None = None, *, allowed: Iterable[str] = ()
) -> None:
    """Raise WriteRefusedError when the call would run a method that changes Matomo.

    Methods named in `allowed` (`Module.method`, compared like Matomo does: trimmed, without
    regard to case) may change Matomo: a command that needs exactly those writes lets them
    through and nothing else.
    """
    permitted = {name.strip().lower() for name in allowed}
    found = [v for v in writes_in(method, params) if v.method.lower() not in permitted]
    if not found:
        return
    first = found[0]
    name = method.strip()
    via = ""
    if first.method != name:
        bulk = name.lower() == BULK_METHOD.lower()
        via = f" (in {name}'s urls[])" if bulk else f" (named by {name}'s apiModule/apiAction)"
    raise WriteRefusedError(
        f"{first.method}{via} changes Matomo ({first.reason}); refused without --allow-write.",
        hint=f"If you mean to change Matomo, rerun `matokit api {name} ...` with "
        "--allow-write (`matokit report` only reads).",
    )


# --- API.getBulkRequest ---------------------------------------------------------------------


def _bulk_writes(url: str) -> list[Verdict]:
    """Write methods named by `method=` anywhere in one urls[] entry, at every decoding.

    Matomo decodes an entry more than once (the form, `urldecode`, the query string parser),
    so a method hidden under several encodings must still be seen.
    """
    found: list[Verdict] = []
    texts = [url]
    while len(texts) <= _MAX_DECODINGS:
        for match in _METHOD_PARAM.finditer(texts[-1]):
            verdict = classify(match[1])
            found += [verdict] if verdict.writes else []
        decoded = unquote_plus(texts[-1])
        if decoded == texts[-1]:
            return found
        texts.append(decoded)
    return [*found, Verdict(BULK_METHOD, True, "an entry of its urls[] is encoded too deeply")]


def _base(key: str) -> str:
    """A parameter's name as PHP sees it: `urls[0]` -> `urls`, trimmed, lower case."""
    return key.split("[", 1)[0].strip().lower()


def _values(value: object) -> Iterable[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]
