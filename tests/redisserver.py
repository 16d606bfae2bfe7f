"""A real `redis-server` for the tests: started on a free loopback port in a temp directory.

Debian's `redis-server` package provides it (`.ci/run` installs it when missing). The server
runs with `appendonly yes` and `appendfsync always`, so a write it acknowledged survives
`kill -9` and a restart (`RedisServer.kill()` then `start()` on the same port and directory).
Never a mock: the journal contract, the fault tests and the fleet e2e tests run against it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def available() -> bool:
    return Path(REDIS_SERVER).exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process; `url` for clients, `kill()`/`start()` to crash and restart it."""

    def __init__(self, directory: Path, *, port: int | None = None, **config: str) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.config = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "dir": str(self.dir),
            "appendonly": "yes",
            "appendfsync": "always",
            "save": "",
            "daemonize": "no",
            "logfile": str(self.dir / "redis.log"),
            "protected-mode": "yes",
            **config,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [REDIS_SERVER]
        for name, value in self.config.items():
            args += [f"--{name}", value]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"redis-server exited {self.proc.returncode}: {err}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                password = self.config.get("requirepass")
                if password:
                    sock.sendall(f"AUTH {password}\r\n".encode())
                    sock.recv(64)
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """kill -9: what a crash or an OOM killer does."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def flush(self) -> None:
        """Empty every database (between tests sharing the server)."""
        import redis

        client = redis.Redis.from_url(self.url, password=self.config.get("requirepass"))
        try:
            client.flushall()
            client.config_set("maxmemory", "0")
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("appendonly", "yes")
            client.config_set("appendfsync", "always")
        finally:
            client.close()


def require_redis_server() -> None:
    """Skip (fail under CI) when redis-server is not installed."""
    if available():
        return
    message = "redis-server is not installed (Debian package redis-server; .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole run (tests empty it with the `redis_url` fixture)."""
    require_redis_server()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server_session: RedisServer) -> Iterator[str]:
    """The shared server's URL, emptied for this test (and its clients forgotten)."""
    from matokit.redisstore.connection import forget_clients

    redis_server_session.flush()
    forget_clients()
    yield redis_server_session.url
    forget_clients()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to kill, restart or misconfigure."""
    require_redis_server()
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
