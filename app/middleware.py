"""Request id, access log, HTTP metrics and the request guard, as one plain ASGI middleware."""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.guard import RequestGuard
from app.logs import request_id_var

log = logging.getLogger("pbx_entra.access")
_SAFE_ID = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = RequestGuard(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = (
            incoming if 0 < len(incoming) <= 64 and set(incoming) <= _SAFE_ID else uuid.uuid4().hex
        )
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"].append((b"x-request-id", rid.encode()))
                # No response is to be read as anything but its declared type.
                message["headers"].append((b"x-content-type-options", b"nosniff"))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            metrics.http_requests.labels(method, template, str(status)).inc()
            metrics.http_latency.labels(method, template).observe(elapsed)
            # The path only: query strings can carry OAuth codes and states.
            log.info(
                "%s %s %s",
                method,
                scope["path"],
                status,
                extra={
                    "fields": {"status": status, "route": template, "ms": round(elapsed * 1000, 1)}
                },
            )
            request_id_var.reset(token)
