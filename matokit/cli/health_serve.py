"""The `health serve` exporter: a small ThreadingHTTPServer over a CachedHealth.

Endpoints: `/metrics` (Prometheus text, or OpenMetrics when the scraper's Accept header asks for
it), `/healthz` (JSON; 200 when OK or WARNING, 503 when CRITICAL or UNKNOWN) and
`/tools/get-health-status` (GET or POST, the same as /healthz: the path monitors of MatoKit's
earlier HTTP service poll). Every scrape within `--interval` reuses one health run; concurrent
scrapes wait for the same run. SIGTERM and SIGINT stop it cleanly.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from matokit.errors import UsageError
from matokit.health import CachedHealth, Status
from matokit.urls import is_loopback

_log = logging.getLogger("matokit.health.serve")
_MAX_BODY = 65536
HEALTH_PATHS = ("/healthz", "/tools/get-health-status")


def parse_listen(text: str, *, allow_remote: bool) -> tuple[str, int]:
    """(host, port) from `HOST:PORT` or `[IPv6]:PORT`; a non-loopback host needs allow_remote."""
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise UsageError(
            f"--listen {text!r} is not HOST:PORT.", hint="e.g. --listen 127.0.0.1:9464"
        )
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise UsageError(f"--listen {text!r}: the port must be 0-65535.", hint="e.g. :9464")
    if not allow_remote and not is_loopback(host):
        raise UsageError(
            f"--listen {host}: refusing a non-loopback address; the endpoints have no "
            "authentication and each scrape makes MatoKit call Matomo.",
            hint="Listen on 127.0.0.1 behind a reverse proxy, or pass --allow-remote.",
        )
    return host, port


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    cache: CachedHealth


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "matokit-health"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_POST(self) -> None:
        self._discard_body()
        if self._path() not in HEALTH_PATHS:
            self._send(405 if self._path() == "/metrics" else 404, *_error("not found"))
            return
        self._answer(head=False)

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > 0:
            self.rfile.read(min(length, _MAX_BODY))
        if length > _MAX_BODY:
            self.close_connection = True

    def _answer(self, *, head: bool) -> None:
        from matokit.cli.health_render import prometheus_exposition, render_json

        path = self._path()
        if path == "/":
            index = "MatoKit health exporter: /metrics /healthz /tools/get-health-status\n"
            self._send(200, index.encode(), "text/plain; charset=utf-8", head=head)
            return
        if path != "/metrics" and path not in HEALTH_PATHS:
            self._send(404, *_error("not found"), head=head)
            return
        try:
            report = self.server.cache.get()
        except Exception as exc:  # a bug must not kill the exporter
            _log.exception("health run failed")
            self._send(500, *_error(f"health run failed: {exc.__class__.__name__}"), head=head)
            return
        if path == "/metrics":
            body, content_type = prometheus_exposition(report, self.headers.get("Accept"))
            self._send(200, body, content_type, head=head)
            return
        status = 200 if report.status in (Status.OK, Status.WARNING) else 503
        body = render_json(report).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", head=head)

    def _send(self, status: int, body: bytes, content_type: str, *, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        _log.info("%s %s", self.address_string(), format % args)


def _error(message: str) -> tuple[bytes, str]:
    return json.dumps({"error": message}).encode(), "application/json; charset=utf-8"


def make_server(host: str, port: int, cache: CachedHealth) -> _Server:
    """A bound (not yet serving) exporter; `server.server_address` holds the real port."""
    cls = _Server6 if ":" in host else _Server
    try:
        server = cls((host, port), _Handler)
    except OSError as exc:
        raise UsageError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
            hint="Is another exporter running there? Pick another port with --listen.",
        ) from None
    server.cache = cache
    return server


def serve_forever(
    host: str, port: int, cache: CachedHealth, *, announce: Callable[[str], None]
) -> int:
    """Serve until SIGTERM or SIGINT; return the exit code (0 on a clean shutdown)."""
    server = make_server(host, port, cache)
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
    )
    try:
        thread.start()
        bound_host, bound_port = (str(part) for part in server.server_address[:2])
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        announce(
            f"matokit: health exporter listening on http://{shown}:{bound_port}/metrics "
            "(also /healthz, /tools/get-health-status)"
        )
        while not stop.wait(0.5):
            pass
        announce("matokit: health exporter stopping")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
