"""A self-signed certificate for a TLS redis-server in tests (made with the openssl command)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.redisserver import RedisServer

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="needs the openssl command"
)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) files for CN=127.0.0.1, valid one day."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def tls_server(directory: Path) -> tuple[RedisServer, int]:
    """A started redis-server with its plain port and a TLS port whose certificate no client
    trusts; returns it and the TLS port."""
    cert, key = self_signed(directory / "tls")
    tls_port = RedisServer(directory / "port-probe").port
    server = RedisServer(
        directory / "server",
        **{
            "tls-port": str(tls_port),
            "tls-cert-file": str(cert),
            "tls-key-file": str(key),
            "tls-ca-cert-file": str(cert),
            "tls-auth-clients": "no",
        },
    ).start()
    return server, tls_port
