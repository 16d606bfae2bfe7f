"""FakeMatomo: a Matomo-compatible HTTP server on 127.0.0.1 for tests and benchmarks."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from tests.fakematomo import api, dimensions, tracking
from tests.fakematomo.access import Access, Site
from tests.fakematomo.capacity import Capacity, Stopped
from tests.fakematomo.capacity_view import CapacityView
from tests.fakematomo.faults import Effects, Fault
from tests.fakematomo.replies import (
    MAINTENANCE_HTML,
    TRACKER_TEXT,
    Reply,
    garbled,
    guess_type,
    json_reply,
    proxy_page,
    reason,
    text_reply,
)
from tests.fakematomo.state import (
    MAX_ACTIONS_PER_VISIT,
    RequestRecord,
    ServerState,
    default_clock,
)
from tests.fakematomo.visits import VisitCache

MAX_BODY = 20 * 1024 * 1024
# Bodies up to this size are read and discarded before a 413, so the client sees the answer.
_DRAIN_LIMIT = 64 * 1024 * 1024
_TRACKER_PATHS = ("matomo.php", "piwik.php")
# Not Matomo: the capacity counters as JSON, for benchmarks that run the server in a process.
COUNTERS_PATH = "/_fakematomo/counters"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], fake: FakeMatomo) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client vanishing mid-request is normal here; only report it when asked to.
        if self.fake.verbose:
            traceback.print_exc(file=sys.stderr)


class _Drop(Exception):
    """Close the connection without answering."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Apache"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            sys.stderr.write("fakematomo: " + (format % args) + "\n")

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    # --- plumbing -----------------------------------------------------------------------------

    def _handle(self) -> None:
        fake = self.server.fake
        try:
            reply = self._process(fake)
        except (_Drop, Stopped):
            self.close_connection = True
            return
        except Exception as exc:  # a bug in the fake must never take the server down
            if fake.verbose:
                traceback.print_exc(file=sys.stderr)
            reply = text_reply(500, f"fakematomo internal error: {type(exc).__name__}: {exc}\n")
            reply.close = True
        try:
            self._send(reply)
        except OSError:
            self.close_connection = True

    def _send(self, reply: Reply) -> None:
        lines = [
            f"HTTP/1.1 {reply.status} {reason(reply.status)}",
            "Date: " + formatdate(usegmt=True),
            "Server: Apache",
        ]
        if reply.content_type:
            lines.append("Content-Type: " + reply.content_type)
        lines += [f"{k}: {v}" for k, v in reply.headers.items()]
        body = reply.body
        if reply.status != 204:
            lines.append(f"Content-Length: {len(body)}")
        else:
            body = b""
        if reply.close or self.close_connection:
            self.close_connection = True
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + (b"" if self.command == "HEAD" else body))

    def _read_body(self) -> bytes | Reply:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
        except ValueError:
            return Reply(400, b"Bad Content-Length\n", "text/plain", close=True)
        if length > self._body_limit():
            if length <= _DRAIN_LIMIT:
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            return self._too_large()
        return self.rfile.read(length) if length > 0 else b""

    def _body_limit(self) -> int:
        limit = self.server.fake.state.capacity.max_body_bytes
        return MAX_BODY if limit is None else min(limit, MAX_BODY)

    def _too_large(self) -> Reply:
        """413 before anything reaches Matomo: nginx's page under max_body_bytes."""
        capacity = self.server.fake.state.capacity
        capacity.count_too_large()
        if capacity.max_body_bytes is None or capacity.max_body_bytes >= MAX_BODY:
            return Reply(413, b"Request Entity Too Large\n", "text/plain", close=True)
        page = proxy_page(413, "Request Entity Too Large").encode()
        return Reply(413, page, "text/html; charset=utf-8", close=True)

    def _read_chunked(self) -> bytes | Reply:
        parts: list[bytes] = []
        total = 0
        limit = self._body_limit()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                return Reply(400, b"Bad chunk\n", "text/plain", close=True)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > limit:
                return self._too_large()
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _process(self, fake: FakeMatomo) -> Reply:
        path, _, query = self.path.partition("?")
        query = query.partition("#")[0]
        if path == COUNTERS_PATH and self.command == "GET":
            return json_reply(200, fake.state.capacity.counters())
        body = self._read_body()
        ip = self.client_address[0]
        headers = dict(self.headers.items())
        record = RequestRecord(
            self.command, path, query, headers, body if isinstance(body, bytes) else b"", ip
        )
        fake.state.log_request(record)
        if isinstance(body, Reply):
            return body
        if self.command not in ("GET", "POST", "HEAD", "OPTIONS"):
            return Reply(405, b"Method Not Allowed\n", "text/plain", {"Allow": "GET, POST"})
        if path.endswith(_TRACKER_PATHS):
            endpoint = "tracking"
        elif path.endswith(("/", "index.php")):
            endpoint = "api"
        else:
            return Reply(404, proxy_page(404).encode(), "text/html; charset=utf-8")
        query_pairs = parse_qsl(query, keep_blank_values=True)
        query_params = dict(query_pairs)
        ctype = self.headers.get("Content-Type", "")
        form_pairs = tracking.form_pairs(body, ctype) if self.command == "POST" else []
        form = dict(form_pairs)
        params = {**form, **query_params}  # Matomo reads $_GET + $_POST: the query wins
        method = params.get("method") if endpoint == "api" else None
        effects = fake.state.faults.take(endpoint, method)
        early = self._apply_effects(fake, effects, endpoint)
        if early is not None:
            return early
        with fake.state.capacity.worker():
            if endpoint == "tracking":
                reply = self._tracking(fake, body, query_params, params, effects)
            else:
                pairs = query_pairs + form_pairs
                reply = self._api(fake, query_params, form, params, pairs, ip, effects)
        # Everything below happens after the hits were stored.
        if effects.stall_after > 0 and fake._stopping.wait(effects.stall_after):
            raise _Drop()
        if effects.garble_after:
            reply = garbled(reply)
        if effects.drop_after:
            raise _Drop()
        return reply

    def _apply_effects(self, fake: FakeMatomo, effects: Effects, endpoint: str) -> Reply | None:
        if effects.empty:
            return None
        stopping = fake._stopping
        if effects.latency > 0 and stopping.wait(effects.latency):
            raise _Drop()
        if effects.hang:
            stopping.wait()
            raise _Drop()
        if effects.drop_before:
            raise _Drop()
        if effects.maintenance and endpoint != "tracking":
            return Reply(503, MAINTENANCE_HTML.encode(), "text/html; charset=utf-8")
        fault = effects.answer
        if fault is not None:
            status = fault.status or 200
            raw = fault.body if fault.body is not None else proxy_page(status)
            data = raw.encode("utf-8") if isinstance(raw, str) else raw
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return Reply(status, data, fault.content_type or guess_type(data), headers)
        return None

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip() or None
        return None

    def _tracking(
        self,
        fake: FakeMatomo,
        body: bytes,
        query_params: dict[str, str],
        params: dict[str, str],
        effects: Effects,
    ) -> Reply:
        if self.command == "OPTIONS":
            return Reply(204, headers={"Access-Control-Allow-Origin": "*"})
        ctx = tracking.TrackContext(
            fake.state,
            self.client_address[0],
            self.headers.get("User-Agent", ""),
            None,
            False,
            fake.state.clock(),
        )
        if self.command == "POST" and b'"requests"' in body:
            with fake.state.capacity.bulk():
                return tracking.handle_bulk(body, query_params, self._bearer(), ctx, effects)
        if not params:
            # Answers 200 even with the database down: not a health signal.
            return Reply(200, TRACKER_TEXT.encode(), "text/html; charset=utf-8")
        if "token_auth" in params:
            ctx.token = params["token_auth"]
            ctx.token_in_url = "token_auth" in query_params
        else:
            ctx.token = self._bearer()
        return tracking.handle_single(dict(params), ctx, effects, self.command)

    def _api(
        self,
        fake: FakeMatomo,
        query_params: dict[str, str],
        form: dict[str, str],
        params: dict[str, str],
        pairs: list[tuple[str, str]],
        ip: str,
        effects: Effects,
    ) -> Reply:
        if self.command == "OPTIONS":
            return Reply(204)
        if "token_auth" in query_params:
            token, in_url = query_params["token_auth"], True
        elif "token_auth" in form:
            token, in_url = form["token_auth"], False
        else:
            token, in_url = self._bearer(), False
        req = api.ApiRequest(params, pairs, token, in_url, ip)
        return api.handle(fake.state, fake.visit_cache, req, effects.database_down)


class FakeMatomo(CapacityView):
    """A Matomo 5.11 look-alike: reporting API, tracking API, faults, and a request log.

    >>> with FakeMatomo() as srv:
    ...     requests.post(srv.url + "matomo.php", data={"idsite": "1", "rec": "1"})

    Capacity (all off by default, see capacity.py and CapacityView): `workers` PHP workers,
    `hit_cost` seconds per tracked hit, a lock per visit with `deadlock_on_contention`, and a
    proxy's 413 above `max_body_bytes`.
    """

    def __init__(
        self,
        tokens: Mapping[str, Access | Mapping[str, Any]] | None = None,
        sites: Mapping[int, Site | Mapping[str, Any]] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] | None = None,
        bulk_requests_require_authentication: bool = False,
        record_requests: bool = True,
        verbose: bool = False,
        visitor_log_maximum_actions_per_visit: int = MAX_ACTIONS_PER_VISIT,
        visible_after: float = 0.0,
        workers: int | None = None,
        hit_cost: float = 0.0,
        deadlock_on_contention: bool = False,
        max_body_bytes: int | None = None,
    ) -> None:
        self._stopping = threading.Event()
        capacity = Capacity(
            self._stopping,
            workers=workers,
            hit_cost=hit_cost,
            deadlock_on_contention=deadlock_on_contention,
            max_body_bytes=max_body_bytes,
        )
        self.state = ServerState(tokens, sites, clock or default_clock, capacity)
        self.state.bulk_requests_require_authentication = bulk_requests_require_authentication
        self.state.max_actions_per_visit = visitor_log_maximum_actions_per_visit
        self.state.visible_after = visible_after
        self.state.record_requests = record_requests
        self.visit_cache = VisitCache(self.state)
        self.verbose = verbose
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeMatomo:
        with self._lifecycle:
            if self._server is None:
                self._stopping.clear()
                self._server = _Server(self._address, self)
                self._thread = threading.Thread(
                    target=self._server.serve_forever,
                    kwargs={"poll_interval": 0.01},  # stop() waits at most this long
                    name=f"fakematomo-{self.port}",
                    daemon=True,
                )
                self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake hung and delayed requests, close open connections. Idempotent."""
        with self._lifecycle:
            server, thread = self._server, self._thread
            if server is None:
                return
            self._stopping.set()
            self.state.capacity.wake()
            server.shutdown()
            server.server_close()
            with server.connections_lock:
                conns = list(server.connections)
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            if thread is not None:
                thread.join(timeout=5)
            self._server = None
            self._thread = None

    def __enter__(self) -> FakeMatomo:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeMatomo is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL with a trailing slash: url + "matomo.php", url + "index.php"."""
        return f"http://{self._address[0]}:{self.port}/"

    # --- what tests look at -------------------------------------------------------------------

    @property
    def hits(self) -> list[dict[str, Any]]:
        """Stored hits: their parameters (str -> str, token removed) plus "_stored_at"."""
        with self.state.lock:
            return list(self.state.hits)

    def stored_keys(self, dimension_id: int, *, idsite: int | None = None) -> Counter[str]:
        """How many stored actions carry each value of custom dimension `dimension_id`.

        Counts what Matomo keeps (and a Live lookup can find): values of a dimension that was
        configured and active on the hit's site when the hit was tracked, on hits that record
        an action (a goal or ecommerce request records none). Visible or not yet.
        """
        with self.state.lock:
            pairs = list(zip(self.state.hits, self.state.meta, strict=True))
        return Counter(
            meta.action_dims[dimension_id]
            for params, meta in pairs
            if dimension_id in meta.action_dims
            and (idsite is None or params.get("idsite") == str(idsite))
        )

    def duplicate_keys(self, dimension_id: int, *, idsite: int | None = None) -> dict[str, int]:
        """The values of stored_keys() stored more than once, with their counts."""
        return {k: n for k, n in self.stored_keys(dimension_id, idsite=idsite).items() if n > 1}

    @property
    def requests(self) -> list[RequestRecord]:
        with self.state.lock:
            return list(self.state.requests)

    @property
    def failed_logins(self) -> dict[str, int]:
        """Invalid-token authentications per client IP within the last 60 minutes."""
        return self.state.failed_logins()

    @property
    def tracking_failures(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(row) for row in self.state.tracking_failures]

    @property
    def faults(self) -> list[Fault]:
        """Faults still active (expired ones drop out)."""
        return self.state.faults.active()

    @property
    def tokens(self) -> dict[str, Access]:
        return self.state.tokens

    @property
    def sites(self) -> dict[int, Site]:
        return self.state.sites

    # --- knobs --------------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        return self.state.faults.add(fault)

    def clear_faults(self) -> None:
        self.state.faults.clear()

    def reset(self) -> None:
        """Forget hits, the request log, faults, failed logins, tracking failures and the
        capacity counters (not the capacity settings)."""
        self.state.reset()

    def unblock_ips(self) -> None:
        """What `./console login:unblock-blocked-ips` does."""
        with self.state.lock:
            self.state.failed.clear()

    def load_hits(self, path: str | Path, *, idsite: int = 1) -> int:
        """Track the hits of a JSON Lines file of tracking parameters (tests/fixtures/), now.

        Each line is one hit's parameters (url, action_name, e_c, ...); idsite and rec=1 are
        added when missing. They go through the tracker's rules; returns how many were stored.
        """
        ctx = tracking.TrackContext(
            self.state, "127.0.0.1", "fixture", None, False, self.state.clock()
        )
        batch = []
        for text in Path(path).read_text(encoding="utf-8").splitlines():
            if not text.strip():
                continue
            params = {"idsite": str(idsite), "rec": "1"}
            params.update({k: str(v) for k, v in json.loads(text).items()})
            outcome, meta = tracking.evaluate(params, ctx)
            if outcome == tracking.STORED and meta is not None:
                batch.append((params, meta))
        self.state.store(batch)
        return len(batch)

    def add_tracking_failure(
        self, idsite: int, idfailure: int = 1, request_url: str = "?idsite=1&rec=1"
    ) -> dict[str, Any]:
        """Inject a row for CoreAdminHome.getTrackingFailures (1: no such site, 2: no auth)."""
        return self.state.add_tracking_failure(idsite, idfailure, request_url)

    def add_custom_dimension(
        self,
        idsite: int,
        name: str,
        scope: str = "action",
        active: bool = True,
        *,
        case_sensitive: bool = True,
        extractions: list[dict[str, str]] | None = None,
    ) -> int:
        """Configure a custom dimension (what configureNewCustomDimension does); its id
        (numbered per site, as in Matomo)."""
        return dimensions.add(
            self.state,
            idsite,
            name,
            scope,
            active,
            case_sensitive=case_sensitive,
            extractions=extractions,
        )

    def configure_custom_dimension(
        self,
        idsite: int,
        dimension_id: int,
        *,
        name: str | None = None,
        active: bool | None = None,
    ) -> None:
        """Rename, deactivate or re-activate a dimension (configureExistingCustomDimension)."""
        dimensions.configure(self.state, idsite, dimension_id, name=name, active=active)

    @property
    def custom_dimensions(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [dict(d) for d in self.state.custom_dimensions]

    def deactivate_plugin(self, name: str) -> None:
        """Every API method of the plugin answers "The plugin NAME is not enabled..."; for
        CustomDimensions the tracker also ignores dimension values, for Live every method."""
        self.state.deactivated_plugins.add(name)

    def activate_plugin(self, name: str) -> None:
        self.state.deactivated_plugins.discard(name)

    def disable_visits_log(self, idsite: int | None = None) -> None:
        """Live's privacy setting "disable visits log": for one site, or globally (None).

        Live.getLastVisitsDetails then answers "Visits log is deactivated in website settings.
        ..." (or "... deactivated globally. ..."); reports and tracking are unaffected.
        """
        if idsite is None:
            self.state.visits_log_disabled_globally = True
        else:
            self.state.visits_log_disabled.add(idsite)

    def enable_visits_log(self, idsite: int | None = None) -> None:
        """Undo disable_visits_log (None: the global switch)."""
        if idsite is None:
            self.state.visits_log_disabled_globally = False
        else:
            self.state.visits_log_disabled.discard(idsite)

    @property
    def visitor_log_maximum_actions_per_visit(self) -> int:
        """Live shows at most this many actions of a visit (Matomo's default: 500)."""
        return self.state.max_actions_per_visit

    @visitor_log_maximum_actions_per_visit.setter
    def visitor_log_maximum_actions_per_visit(self, value: int) -> None:
        self.state.max_actions_per_visit = value

    @property
    def visible_after(self) -> float:
        """Seconds after storing before a hit shows in Live and reports (0: at once).

        Emulates a request still being processed, or the QueuedTracking plugin's queue.
        """
        return self.state.visible_after

    @visible_after.setter
    def visible_after(self, value: float) -> None:
        self.state.visible_after = value

    @property
    def bulk_requests_require_authentication(self) -> bool:
        return self.state.bulk_requests_require_authentication

    @bulk_requests_require_authentication.setter
    def bulk_requests_require_authentication(self, value: bool) -> None:
        self.state.bulk_requests_require_authentication = value

    @property
    def queued_tracking(self) -> bool:
        """QueuedTracking active: bulks get a GIF, not counts, unless queuedtracking=0."""
        return self.state.queued_tracking

    @queued_tracking.setter
    def queued_tracking(self, value: bool) -> None:
        self.state.queued_tracking = value
