"""Matomo base URLs: the one normaliser and the one loopback test.

`normalize_url` is the canonical form everywhere (settings, `config show`, the client):
`scheme://host[:port]/path/` with a trailing slash, the script name (`index.php`,
`matomo.php`, `piwik.php`) dropped; a query string, fragment or bad port is refused, never
silently dropped. Callers join endpoints to it with `endpoint`.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

SCRIPTS = ("index.php", "matomo.php", "piwik.php")


def normalize_url(value: object) -> str:
    """Matomo's base URL with a trailing slash; ValueError (saying why) when it is not one."""
    parts = urlsplit(str(value).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("is not an http(s) URL like https://analytics.example.com/")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query string or fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError("has an invalid port") from None
    path = parts.path
    for script in SCRIPTS:
        if path.endswith("/" + script):
            path = path[: -len(script)]
    if not path.endswith("/"):
        path += "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def endpoint(base_url: str, script: str) -> str:
    """`script` (e.g. `index.php`) under the normalised `base_url`."""
    return normalize_url(base_url) + script


def is_loopback(host: str) -> bool:
    """Whether `host` (a name, an IP, or a bracketed IPv6) is this machine: `localhost`,
    `*.localhost` (RFC 6761), 127.0.0.0/8 or ::1."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    import ipaddress  # only on this path: keep startup lean

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
