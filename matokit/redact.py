"""The one redaction function: logging, errors, --debug traces and --dry-run all use it.

It removes every registered secret value wherever it appears, any `token_auth=` value
(query string, form body or JSON) and any `user:password@` in a URL, so a secret that was
never registered is hidden too. `display_url` and `display_host` are the one way a URL is
shown anywhere (messages, `config show`, health): without its user:password@.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"

_registered: set[str] = set()
_lock = threading.Lock()

# token_auth=VALUE in query strings and form bodies; "token_auth": "VALUE" in JSON;
# Authorization: Bearer VALUE in header dumps.
_PATTERNS = (
    re.compile(r"(token_auth=)[^&\s\"'#]+", re.IGNORECASE),
    re.compile(r"(token_auth%3D)[^&\s\"'#%]+", re.IGNORECASE),
    re.compile(r"(\"token_auth\"\s*:\s*\")[^\"]*", re.IGNORECASE),
    re.compile(r"('token_auth'\s*:\s*')[^']*", re.IGNORECASE),
    re.compile(r"(Bearer\s+)[^\s\"',]+", re.IGNORECASE),
    # user:password@ in a URL (basic auth in front of Matomo)
    re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s\"']+@", re.IGNORECASE),
)


def register_secret(value: str | None) -> None:
    """Remember a secret so that every later `redact` call removes it."""
    if value and len(value) >= 4:
        with _lock:
            _registered.add(value)


def register_url_credentials(url: str | None) -> None:
    """Remember the password of a `user:password@` URL as a secret (also percent-decoded)."""
    if not url or "@" not in url:
        return
    try:
        password = urlsplit(str(url).strip()).password
    except ValueError:
        return
    if password:
        register_secret(password)
        register_secret(unquote(password))


def display_url(url: str | None) -> str | None:
    """`url` without its user:password@ (basic auth in a URL must never reach an output)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def display_host(url: str) -> str:
    """`host:port` of `url`, without user:password@ (for "Cannot connect to HOST")."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return redact(url)
    return netloc.rsplit("@", 1)[-1]


def forget_secrets() -> None:
    """Forget every registered secret (tests use this between cases)."""
    with _lock:
        _registered.clear()


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return `text` with registered and given secrets and any token_auth value masked."""
    if not text:
        return text
    with _lock:
        values = set(_registered)
    values.update(s for s in secrets if s and len(s) >= 4)
    # Longest first, so a secret containing another is masked whole.
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    for pattern in _PATTERNS[:-1]:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    text = _PATTERNS[-1].sub(lambda m: m.group(1) + MASK + "@", text)
    return text
