"""Data is text, never markup or terminal commands: what human output does to foreign values.

Page titles, URLs and event names come from any visitor of a tracked site; values from files,
flags and the environment are no more trusted. Human output (tables, charts, text, stderr
lines) shows their control characters escaped, so an ESC, OSC or BEL sequence in a title is
seen, not obeyed; machine output (json, ndjson, csv) keeps the data intact. CSV can
optionally be protected against spreadsheet formulas.

Standard library only (the lean cache-hit path and the log formatter import it); the CLI
and logs.py apply it, core modules return data as it is.
"""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 controls and DEL, plus the bidi embedding, override and isolate controls (they
# reorder what follows them, e.g. to disguise a file name); RTL letters themselves are data.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# What a spreadsheet may read as the start of a formula (OWASP's CSV injection list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(value: Any, *, keep_newlines: bool = False) -> str:
    """`value` as text for people: every control character shown escaped (`\\x1b`, `\\n`).

    `keep_newlines` keeps line breaks (and tabs) of multi-line messages.
    """
    text = "" if value is None else str(value)
    if keep_newlines:
        return "\n".join(_CONTROL.sub(_escape_but_tab, part) for part in text.split("\n"))
    return _CONTROL.sub(_escape, text)


def _escape_but_tab(match: re.Match[str]) -> str:
    return "\t" if match.group() == "\t" else _escape(match)


def csv_safe(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ tab or CR gets a `'`.

    Numbers stay numbers (a negative number is data, not a formula).
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
