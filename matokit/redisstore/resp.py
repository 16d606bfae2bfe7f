"""A tiny Redis client on the standard library, for the lean cache-hit path of `matokit report`.

redis-py costs 200-300 ms to import (it pulls in asyncio), three times `matokit --version`;
a cache hit must not pay that. This client speaks just enough RESP2 for a few commands (AUTH,
SELECT, GET, HINCRBY) over one TCP, TLS or Unix socket, and nothing else: anything it does not
understand in the URL (TLS options, unknown parameters) is `LeanUnsupported`, and the caller
then leaves the work to the normal path and redis-py. It never raises anything else than
`OSError` (network), `LeanUnsupported` and `RespError` (a Redis error reply).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PORT: Final = 6379
CONNECT_TIMEOUT: Final = 1.0  # a cache probe: the normal path gets the full timeouts
READ_TIMEOUT: Final = 2.0
# URL parameters that change nothing a lean probe needs (redis-py pool and timeout options).
_HARMLESS: Final = frozenset(
    {
        "db",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "health_check_interval",
        "retry_on_timeout",
        "max_connections",
        "client_name",
    }
)
# TLS options the lean client honours exactly as redis-py does (its defaults: verify the
# certificate and the host name); any other value, or any other ssl_* option, is unsupported.
_TLS_DEFAULTS: Final = {"ssl_cert_reqs": "required", "ssl_check_hostname": "true"}

Reply = bytes | int | list["Reply"] | None


class LeanUnsupported(Exception):
    """The URL asks for something this client does not do (the normal path will)."""


class RespError(Exception):
    """Redis answered with an error reply (`-ERR ...`, `-WRONGPASS ...`, `-MOVED ...`)."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect, parsed from a `redis://`, `rediss://` or `unix://` URL."""

    scheme: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    path: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None  # redis-py's ssl_ca_certs (None: the system's CAs)


def parse(url: str, password: str | None = None) -> Endpoint:
    """The endpoint of `url`; `password` is used when the URL holds none (as redis-py does)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise LeanUnsupported(f"scheme {scheme!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    for name, wanted in _TLS_DEFAULTS.items():
        if query.pop(name, wanted).lower() != wanted:
            raise LeanUnsupported(name)
    ca_file = query.pop("ssl_ca_certs", None)
    if set(query) - _HARMLESS:
        raise LeanUnsupported("URL options")
    user = unquote(parts.username) if parts.username else None
    secret = unquote(parts.password) if parts.password is not None else password
    db_text = query.get("db", "")
    if scheme == "unix":
        if not parts.path:
            raise LeanUnsupported("no socket path")
        return Endpoint(scheme, path=parts.path, db=_db(db_text), username=user, password=secret)
    path_db = parts.path.lstrip("/")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise LeanUnsupported("port") from exc
    return Endpoint(
        scheme,
        host=parts.hostname or "127.0.0.1",
        port=port,
        db=_db(db_text or path_db),
        username=user or None,
        password=secret or None,
        ca_file=ca_file or None,
    )


def _db(text: str) -> int:
    if not text:
        return 0
    try:
        return int(text)
    except ValueError as exc:
        raise LeanUnsupported("db") from exc


def encode(args: tuple[bytes | str | int | float, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class LeanRedis:
    """One connection; `call()` sends a command and returns its reply."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")

    @classmethod
    def connect(cls, endpoint: Endpoint) -> LeanRedis:
        """Connect, authenticate and select the database."""
        sock: socket.socket
        if endpoint.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(endpoint.path)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((endpoint.host, endpoint.port), CONNECT_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if endpoint.scheme == "rediss":
                import ssl  # only for TLS: loading OpenSSL costs a few ms

                # Like redis-py's defaults: the certificate and the host name are verified.
                context = ssl.create_default_context(cafile=endpoint.ca_file)
                try:
                    sock = context.wrap_socket(sock, server_hostname=endpoint.host)
                except OSError:
                    sock.close()
                    raise
        sock.settimeout(READ_TIMEOUT)
        client = cls(sock)
        try:
            if endpoint.password is not None:
                if endpoint.username:
                    client.call("AUTH", endpoint.username, endpoint.password)
                else:
                    client.call("AUTH", endpoint.password)
            if endpoint.db:
                client.call("SELECT", endpoint.db)
        except BaseException:
            client.close()
            raise
        return client

    def call(self, *args: bytes | str | int | float) -> Reply:
        """Send one command and read its reply; an error reply raises RespError."""
        self._sock.sendall(encode(args))
        return self._read()

    def _read(self) -> Reply:
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest.decode("utf-8", errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self._file.read(size + 2)
            if len(data) != size + 2:
                raise ConnectionError("Redis closed the connection")
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise RespError(f"unexpected reply {line[:20]!r}")

    def close(self) -> None:
        """Close the socket (quietly)."""
        try:
            self._file.close()
        finally:
            self._sock.close()

    def __enter__(self) -> LeanRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
