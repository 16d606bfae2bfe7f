"""A tiny Redis client on the standard library, for the lean cache-hit path of `matokit report`.

redis-py costs 200-300 ms to import (it pulls in asyncio), three times `matokit --version`;
a cache hit must not pay that. This client speaks just enough RESP2 for a few commands (AUTH,
SELECT, GET, HINCRBY) over one TCP, TLS or Unix socket, and nothing else: anything it does not
understand in the URL (TLS options, unknown parameters) is `LeanUnsupported`, and the caller
then leaves the work to the normal path and redis-py. It never raises anything else than
`OSError` (network), `LeanUnsupported` and `RespError` (a Redis error reply).
"""

from __future__ import annotations

import _socket
from typing import TYPE_CHECKING, Final
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

if TYPE_CHECKING:
    from typing import Protocol

    class Connection(Protocol):
        """What the client needs of a socket (a plain `_socket.socket` or a TLS one)."""

        def sendall(self, data: bytes, /) -> None: ...

        def recv(self, size: int, /) -> bytes: ...

        def settimeout(self, value: float | None, /) -> None: ...

        def close(self) -> None: ...


class LeanUnsupported(Exception):
    """The URL asks for something this client does not do (the normal path will)."""


class RespError(Exception):
    """Redis answered with an error reply (`-ERR ...`, `-WRONGPASS ...`, `-MOVED ...`)."""


class Endpoint:
    """Where and how to connect, parsed from a `redis://`, `rediss://` or `unix://` URL.

    A plain class rather than a dataclass: building a dataclass costs more at import than
    this whole module on the lean path.
    """

    __slots__ = ("ca_file", "db", "host", "password", "path", "port", "scheme", "username")

    def __init__(
        self,
        scheme: str,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        path: str = "",
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,  # redis-py's ssl_ca_certs (None: the system's CAs)
    ) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path
        self.db = db
        self.username = username
        self.password = password
        self.ca_file = ca_file

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Endpoint) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.__slots__ if name != "password"
        )
        return f"Endpoint({shown})"  # never the password


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


def _open(endpoint: Endpoint) -> Connection:
    """A connected socket. Plain TCP and Unix sockets come from `_socket` directly: the
    `socket` module's enums and `selectors` (and the IDNA codec a str host name pulls in)
    would cost more than the whole cache lookup."""
    if endpoint.scheme == "unix":
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(endpoint.path)
        except OSError:
            sock.close()
            raise
        return sock
    try:
        host = endpoint.host.encode("ascii")  # bytes: no IDNA codec import
    except UnicodeEncodeError as exc:
        raise LeanUnsupported("a non-ASCII host name") from exc
    if endpoint.scheme == "rediss":
        return _open_tls(endpoint, host)
    return _tcp(host, endpoint.port)


def _tcp(host: bytes, port: int) -> _socket.socket:
    failure: OSError = OSError(f"cannot resolve {host!r}")
    for family, kind, proto, _, address in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        return sock
    raise failure


def _open_tls(endpoint: Endpoint, host: bytes) -> Connection:
    import socket  # only for TLS (ssl wraps socket.socket); loading OpenSSL costs more anyway
    import ssl

    plain = _tcp(host, endpoint.port)
    sock = socket.socket(fileno=plain.detach())
    # Like redis-py's defaults: the certificate and the host name are verified.
    context = ssl.create_default_context(cafile=endpoint.ca_file)
    try:
        return context.wrap_socket(sock, server_hostname=endpoint.host)
    except OSError:
        sock.close()
        raise


class LeanRedis:
    """One connection; `call()` sends a command and returns its reply."""

    def __init__(self, sock: Connection) -> None:
        self._sock = sock
        self._buffer = b""

    @classmethod
    def connect(cls, endpoint: Endpoint) -> LeanRedis:
        """Connect, authenticate and select the database."""
        sock = _open(endpoint)
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

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        self._buffer += chunk

    def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            self._fill()
        line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size + 2:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size + 2 :]
        return data

    def _read(self) -> Reply:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest.decode("utf-8", errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._exactly(size)
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise RespError(f"unexpected reply {line[:20]!r}")

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    def __enter__(self) -> LeanRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
