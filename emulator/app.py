"""The emulator's ASGI application: identity platform, Graph v1.0 and the control API in one app."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn import Config
from uvicorn.protocols.http.h11_impl import H11Protocol

from emulator import faults
from emulator.identity import resolve_tenant
from emulator.state import EmulatorState
from emulator.tls import TlsFiles

CONTROL_PREFIX = "/_emulator"
GRAPH_PREFIX = "/v1.0"


@dataclass
class EmulatorOptions:
    # Where clients reach the emulator, e.g. "https://127.0.0.1:8443" (the token issuer's base).
    base_url: str | None = None
    # Graph accepts only HTTPS notification URLs; a local demo may relax that.
    allow_http_notifications: bool = False
    request_log_size: int = 10_000
    # A CA bundle trusted when delivering notifications (receivers serving a test certificate).
    notification_ca: str | None = None


def log_request(state: EmulatorState, entry: dict[str, Any]) -> dict[str, Any]:
    """Append an entry to the request log with the next sequence number (shared by sub-requests)."""
    with state.lock:
        seq = int(state.extra.get("request_seq", 0)) + 1
        state.extra["request_seq"] = seq
        entry["seq"] = seq
        request_log(state).append(entry)
    return entry


def request_log(state: EmulatorState) -> deque[dict[str, Any]]:
    log: deque[dict[str, Any]] | None = state.extra.get("request_log")
    if log is None:
        log = state.extra["request_log"] = deque(maxlen=10_000)
    return log


def _tenant_from_path(path: str, state: EmulatorState) -> str | None:
    """The tenant of an identity-platform path, given by id or by domain."""
    first = path.lstrip("/").split("/", 1)[0]
    if first in state.tenants:
        return first
    tenant = resolve_tenant(state, first) if "." in first else None
    return tenant.id if tenant else None


def _tenant_from_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The `tid` claim of the bearer token, read without checking it (for logs and faults)."""
    for name, value in headers:
        if name == b"authorization":
            parts = value.split(b".")
            if len(parts) != 3:
                return None
            try:
                payload = base64.urlsafe_b64decode(parts[1] + b"=" * (-len(parts[1]) % 4))
                tid = json.loads(payload).get("tid")
            except (ValueError, AttributeError):
                return None
            return tid if isinstance(tid, str) else None
    return None


class EmulatorMiddleware:
    """Logs each request (method, path, query, status, tenant) and applies the injected faults.

    Control API requests are neither logged nor subject to faults.
    """

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(GRAPH_PREFIX):
            tenant_id = _tenant_from_token(scope["headers"])
        else:
            tenant_id = _tenant_from_path(path, self.state)
        started = time.perf_counter()
        entry: dict[str, Any] = {
            "seq": None,
            "timestamp": datetime.now(UTC).isoformat(),
            "method": method,
            "path": path,
            "query": scope.get("query_string", b"").decode("latin-1"),
            "status": None,
            "tenant_id": tenant_id,
            "duration_ms": None,
            "faults": [],
        }
        log_request(self.state, entry)

        decision = faults.decide(self.state, tenant_id, method, path, query=entry["query"])
        entry["faults"] = decision.fault_ids
        if decision.latency_ms:
            await asyncio.sleep(decision.latency_ms / 1000)
        try:
            if decision.drop is not None:
                entry["status"] = 0  # no response
                await _drop_connection(scope, receive, send, decision.drop)
                return
            if decision.response is not None:
                entry["status"] = decision.response.status_code
                await decision.response(scope, receive, send)
                return

            units = (
                str(faults.resource_units(method, path, entry["query"])).encode()
                if path.startswith(GRAPH_PREFIX)
                else None
            )

            async def logging_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    entry["status"] = message["status"]
                    if units is not None:
                        # Graph reports each request's cost (throttling, "Regular responses").
                        message["headers"] = [
                            *message.get("headers", []),
                            (b"x-ms-resource-unit", units),
                        ]
                await send(message)

            await self.app(scope, receive, logging_send)
        finally:
            entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)


async def _drop_connection(scope: Scope, receive: Receive, send: Send, mode: str) -> None:
    """Close the connection without a response: the client sees the server disconnect."""
    transport = (scope.get("state") or {}).get(TRANSPORT_KEY)
    if transport is None:
        # Not served by our protocol class: promise a body, then break off mid-way.
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000"), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{", "more_body": True})
        raise ConnectionAbortedError("dropped by an injected fault")
    if mode == "reset":
        transport.abort()
    else:
        transport.close()
    # Wait until the server notices the connection is gone, so it does not answer with a 500.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2):
            while (await receive())["type"] != "http.disconnect":
                pass


TRANSPORT_KEY = "emulator.transport"


class EmulatorHttpProtocol(H11Protocol):
    """uvicorn's h11 protocol, handing each request its connection's transport (in the ASGI
    scope's `state`) so that a fault can drop the connection without answering."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app_state = {**self.app_state, TRANSPORT_KEY: transport}

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            # An idle keep-alive connection: closing TLS politely waits for the client's
            # close_notify, which an idle client never sends, and stalls the server's stop.
            self.transport.abort()
        else:
            super().shutdown()


def uvicorn_config(app: ASGIApp, tls: TlsFiles, host: str, port: int, **kwargs: Any) -> Config:
    """The uvicorn configuration the emulator is served with (HTTPS only)."""
    return Config(
        app,
        host=host,
        port=port,
        http=EmulatorHttpProtocol,
        ws="none",
        lifespan="on",
        ssl_certfile=str(tls.cert_path),
        ssl_keyfile=str(tls.key_path),
        timeout_graceful_shutdown=2,
        # Idle keep-alive connections stay open like Microsoft's front doors keep them, so a client
        # that pauses between calls never sends a request on a connection being closed under it.
        timeout_keep_alive=120,
        **kwargs,
    )


def _graph_module() -> Any:
    from emulator import graph

    return graph


def create_app(state: EmulatorState, options: EmulatorOptions | None = None) -> Starlette:
    """Build the emulator app over `state`."""
    from emulator.control import control_routes
    from emulator.identity import identity_routes

    options = options or EmulatorOptions()
    if options.base_url:
        state.base_url = options.base_url.rstrip("/")
    state.extra["options"] = options
    state.extra["request_log"] = deque(request_log(state), maxlen=max(1, options.request_log_size))
    graph = _graph_module()
    graph_lifespan = getattr(graph, "lifespan", None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if graph_lifespan is None:
            yield
        else:
            async with graph_lifespan(app):
                yield

    app = Starlette(
        routes=[
            Mount(CONTROL_PREFIX, routes=control_routes()),
            Mount(GRAPH_PREFIX, routes=list(graph.graph_routes)),
            *identity_routes(),
        ],
        lifespan=lifespan,
    )
    app.state.emulator = state
    app.state.options = options
    app.add_middleware(EmulatorMiddleware, state=state)
    return app
