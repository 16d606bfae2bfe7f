"""Connecting to the profile's Redis, and every Redis failure as a StorageError (exit 74).

`RedisTarget.from_settings` gathers the URL, the password (URL, MATOKIT_REDIS_PASSWORD or
`redis_password_file`) and the namespace; `client()` gives one `redis.Redis` per target and
process; `redis_errors()` turns redis-py's exceptions into a `StorageError` whose message names
the server (its password masked) and what to do: Redis down, a wrong password, a TLS failure, a
read-only replica, out of memory, a key of the wrong type under the prefix.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from matokit.errors import StorageError
from matokit.redact import display_url, redact
from matokit.redisstore.keys import Keys

if TYPE_CHECKING:
    import redis

    from matokit.config import Settings

SOCKET_TIMEOUT: Final = 10.0
CONNECT_TIMEOUT: Final = 5.0

_clients: dict[tuple[str, str | None], Any] = {}
_clients_lock = threading.Lock()


@dataclass(frozen=True)
class RedisTarget:
    """Where a profile's shared state lives on Redis."""

    url: str
    namespace: str
    password: str | None = field(default=None, repr=False)
    min_replicas: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisTarget | None:
        """The profile's target, or None when `redis_url` is not set (SQLite and files)."""
        if not settings.redis_url:
            return None
        return cls(
            url=settings.redis_url,
            namespace=settings.redis_namespace,
            password=settings.redis_password(),
            min_replicas=settings.redis_min_replicas,
        )

    @property
    def keys(self) -> Keys:
        """The profile's key names."""
        return Keys(self.namespace)

    @property
    def display(self) -> str:
        """The URL as shown to people: without its password."""
        return display_url(self.url) or redact(self.url)

    def client(self) -> redis.Redis:
        """This process's client for the target (created on first use; connects lazily)."""
        key = (self.url, self.password)
        with _clients_lock:
            found = _clients.get(key)
            if found is None:
                import redis

                found = redis.Redis.from_url(
                    self.url,
                    password=self.password or None,
                    socket_timeout=SOCKET_TIMEOUT,
                    socket_connect_timeout=CONNECT_TIMEOUT,
                    health_check_interval=30,
                )
                _clients[key] = found
            return found


def forget_clients() -> None:
    """Close and drop every client of this process (tests; after a fork)."""
    with _clients_lock:
        for client in _clients.values():
            with contextlib.suppress(Exception):
                client.close()
        _clients.clear()


@contextlib.contextmanager
def redis_errors(target: RedisTarget, doing: str) -> Iterator[None]:
    """Run Redis commands; a redis-py failure leaves as a StorageError (exit 74) saying what
    `doing` needed, what went wrong and how to fix it."""
    import redis.exceptions as rex

    try:
        yield
    except rex.RedisError as exc:
        raise redis_storage_error(target, doing, exc) from None


def redis_storage_error(target: RedisTarget, doing: str, exc: BaseException) -> StorageError:
    """The StorageError for a redis-py exception `exc` raised while `doing`."""
    import redis.exceptions as rex

    where = target.display
    text = redact(str(exc)) or type(exc).__name__
    if isinstance(exc, rex.AuthenticationError | rex.AuthorizationError) or (
        isinstance(exc, rex.ResponseError) and text.startswith(("WRONGPASS", "NOAUTH"))
    ):
        problem, hint = (
            "Redis refused the credentials",
            "Check the password (in redis_url, MATOKIT_REDIS_PASSWORD or redis_password_file) "
            "and the user's ACL.",
        )
    elif isinstance(exc, rex.ReadOnlyError) or text.startswith("READONLY"):
        problem, hint = (
            "the server is a read-only replica",
            "Point redis_url at the primary (or at a Sentinel/cluster endpoint that follows it).",
        )
    elif isinstance(exc, rex.OutOfMemoryError) or text.startswith("OOM"):
        # redis-py strips the "OOM" code from its OutOfMemoryError's message.
        problem, hint = (
            "Redis is out of memory and refuses writes",
            "Raise maxmemory on the server, or deliver the backlog (`matokit queue flush`).",
        )
    elif text.startswith("WRONGTYPE"):
        problem, hint = (
            "a key under the profile's prefix holds another kind of value",
            "Another program uses the same keys: set a distinct redis_prefix for MatoKit.",
        )
    elif "ssl" in text.lower() or "certificate" in text.lower():
        problem, hint = (
            "the TLS handshake failed",
            "Check the rediss:// URL, the server's certificate and ca_bundle.",
        )
    elif isinstance(exc, rex.TimeoutError):
        problem, hint = (
            "Redis did not answer in time",
            "Check that the server is up and not overloaded.",
        )
    elif isinstance(exc, rex.ConnectionError):
        problem, hint = (
            "Redis is unreachable",
            "Start the server, or fix redis_url (MATOKIT_REDIS_URL).",
        )
    else:
        problem, hint = "Redis failed", "See the message; `matokit --debug` shows more."
    return StorageError(
        f"cannot {doing} on Redis at {where}: {problem} ({text})", path=where, hint=hint
    )
