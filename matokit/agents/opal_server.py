"""`matokit tools serve`: the agent tools as an Optimizely Opal tools service.

Built on the official Opal tools SDK (`opal_tools_sdk.ToolsService` on FastAPI): `/discovery`
lists every tool with its parameters (each with its JSON Schema, enums included) and hints,
and `POST /tools/<name>` runs one (`{"parameters": {...}}` in, `{exit_code, data, stderr}`
out). Served by uvicorn on a socket bound here, so that port 0 works and the real address
can be announced.

Authentication is ours, not the SDK's static-token mode: `BearerAuth` guards every path,
`/discovery` included (the SDK leaves it open), compares bytes in constant time (the SDK's
str comparison raises on a non-ASCII header) and never logs what it was given.
"""

from __future__ import annotations

import hmac
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from matokit.agents.runner import CommandRunner
from matokit.agents.tools import ToolSpec
from matokit.errors import UsageError

if TYPE_CHECKING:
    from fastapi import FastAPI

_log = logging.getLogger("matokit.agents.opal")

INSTRUCTIONS = (
    "MatoKit operates the organisation's Matomo web analytics: reports, raw Reporting API "
    "reads, health checks and the local retry journal. Results are {exit_code, data, stderr}; "
    "data is the command's JSON output. The Matomo token is configured by the operator."
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BearerAuth:
    """ASGI middleware: every HTTP request needs `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode("ascii")

    def allows(self, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        """Whether exactly one Authorization header holds the token (constant time)."""
        given = [value for name, value in headers if name.lower() == b"authorization"]
        if len(given) != 1:
            return False
        scheme, _, credentials = given[0].strip().partition(b" ")
        ok = hmac.compare_digest(credentials.strip(), self._token)
        return ok and scheme.lower() == b"bearer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allows(scope.get("headers") or []):
            await self.app(scope, receive, send)
            return
        _log.warning(
            "refused a request without a valid bearer-token",
            extra={"path": scope.get("path", ""), "client": (scope.get("client") or ("?",))[0]},
        )
        body = b'{"detail":"a valid bearer-token is required"}'
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="matokit"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def opal_hints(spec: ToolSpec) -> list[str]:
    """The SDK's tool hints (write, idempotent, open_world) from the spec's."""
    hints = spec.hints
    named = (("write", not hints.read_only), ("idempotent", hints.idempotent))
    return [name for name, on in (*named, ("open_world", hints.open_world)) if on]


def build_app(
    specs: Sequence[ToolSpec], runner: CommandRunner, *, bearer_token: str | None
) -> FastAPI:
    """The FastAPI application: /discovery and one POST endpoint per tool."""
    from fastapi import FastAPI
    from opal_tools_sdk import ToolsService
    from opal_tools_sdk.models import Parameter, ParameterType

    app = FastAPI(title="MatoKit tools", docs_url=None, redoc_url=None, openapi_url=None)
    service = ToolsService(app, instructions=INSTRUCTIONS)
    for spec in specs:
        parameters = [
            Parameter(
                name=p.key,
                param_type=ParameterType("array" if p.multiple else p.type),
                description=p.help,
                required=p.required,
                schema=p.schema(),
            )
            for p in spec.params
        ]
        service.register_tool(
            name=spec.name,
            description=spec.description,
            handler=_handler(spec, runner),
            parameters=parameters,
            endpoint=f"/tools/{spec.name}",
            hints=opal_hints(spec),
        )
    # The SDK adds a route listing every route, for debugging: not for a production service.
    routes = app.router.routes
    routes[:] = [r for r in routes if getattr(r, "path", "") != "/debug-routes"]
    if bearer_token is not None:
        app.add_middleware(BearerAuth, token=bearer_token)
    return app


def _handler(spec: ToolSpec, runner: CommandRunner) -> Callable[..., Awaitable[dict[str, Any]]]:
    from fastapi import HTTPException

    # The SDK builds the first parameter from its annotation: a plain dict of the JSON
    # arguments, checked by the spec (an unknown or ill-typed argument is a 400).
    async def handler(parameters: dict[str, Any]) -> dict[str, Any]:
        try:
            result = await runner.run(spec, parameters)
        except UsageError as exc:
            detail = exc.message + (f" {exc.hint}" if exc.hint else "")
            raise HTTPException(status_code=400, detail=detail) from None
        return result.as_dict()

    handler.__name__ = spec.name
    return handler


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port); UsageError when it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
            hint="Is another service running there? Pick another port with --listen.",
        ) from None
    return sock


def serve(app: FastAPI, sock: socket.socket, *, announce: Callable[[str], None]) -> None:
    """Serve `app` on the bound `sock` until SIGTERM or SIGINT (uvicorn handles both)."""
    import uvicorn

    _route_server_logs()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    config = uvicorn.Config(
        app, log_config=None, lifespan="off", server_header=False, date_header=False
    )
    server = uvicorn.Server(config)
    announce(f"matokit: tools service listening on http://{shown}:{port}/ (discovery: /discovery)")
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the handler
    # it found: a no-op here, so that a clean stop exits 0 as `health serve` does.
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in signals}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    announce("matokit: tools service stopped")


def _route_server_logs() -> None:
    """uvicorn's and the SDK's log records go where MatoKit's go (stderr, its format), at its
    level; none of them ever holds a header value."""
    ours = logging.getLogger("matokit")
    # The SDK logs every tool's whole result at INFO: only its warnings and errors are kept.
    floors = {"uvicorn": logging.INFO, "opal_tools_sdk": logging.WARNING}
    for name, floor in floors.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = list(ours.handlers)
        logger.filters[:] = [_drop_color_message]
        logger.setLevel(max(ours.getEffectiveLevel(), floor))
        logger.propagate = False
    for child in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(child).filters[:] = [_drop_color_message]


def _drop_color_message(record: logging.LogRecord) -> bool:
    """uvicorn adds a terminal-coloured copy of each message; MatoKit's formats show extras."""
    record.__dict__.pop("color_message", None)
    return True
