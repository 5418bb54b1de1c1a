"""What every request must pass before a route sees it: bounded bodies, credentials checked
before a body is read, and no NUL characters anywhere in the input.

A pure ASGI layer, so it acts on the byte stream: a body is counted while it arrives (413 once it
passes the route kind's limit, before it is parsed), and a PBX or operator route answers 401 to a
request with a body but without a valid key before a byte of that body is read."""

from __future__ import annotations

import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import MISSING_KEY, check_operator, pbx_for_key
from app.db import session_scope
from app.errors import ProblemError, Unauthorized, problem
from app.route_kinds import body_limit, route_kind
from app.sso.service import current_user as sso_user

MISSING_TOKEN = "A Linkus access token is required: Authorization: Bearer <token>."

# A JSON string escape `\u0000`: an odd run of backslashes before `u0000`.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _bearer(scope: Scope) -> str | None:
    value = _header(scope, b"authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    return _header(scope, b"transfer-encoding") is not None or (
        length is not None and length.strip() not in ("", "0")
    )


def _nul_error(where: str) -> ProblemError:
    return ProblemError(
        "The request does not match the expected shape; see errors.",
        status=422,
        code="validation_error",
        title="Invalid request",
        errors=[{"loc": [where], "msg": "NUL characters are not allowed"}],
    )


def _body_has_nul(body: bytes, content_type: str) -> bool:
    if b"\x00" in body:
        return True
    if "json" in content_type:
        return _JSON_NUL.search(body) is not None
    if "x-www-form-urlencoded" in content_type:
        return b"%00" in body
    return False


class TooLarge(Exception):
    pass


class RequestGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self._guard(scope, receive, send)
        except ProblemError as exc:
            response = problem(exc.status, exc.code, exc.title, exc.detail, **exc.extra)
            await response(scope, receive, send)

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        if "\x00" in scope["path"]:
            raise ProblemError("No such resource.", status=404, code="not_found", title="Not found")
        if b"%00" in scope.get("query_string", b""):
            raise _nul_error("query")
        if not _has_body(scope):
            await self.app(scope, receive, send)
            return
        kind = route_kind(scope["path"])
        await self._authenticate(scope, kind)
        limit = body_limit(kind)
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            raise _too_large(limit)
        body = await _read(receive, limit)
        if kind != "webhook" and _body_has_nul(body, (_header(scope, b"content-type") or "")):
            raise _nul_error("body")
        await self.app(scope, _replay(body, receive), send)

    async def _authenticate(self, scope: Scope, kind: str) -> None:
        if kind not in ("operator", "pbx", "sso"):
            return
        state: Any = scope["app"].state
        key = _bearer(scope)
        if kind == "operator":
            check_operator(state.settings, key)
            return
        if not key:
            raise Unauthorized(MISSING_TOKEN if kind == "sso" else MISSING_KEY)
        async with session_scope(state.sessionmaker) as session:
            if kind == "sso":
                await sso_user(session, state.settings, key)
            else:
                await pbx_for_key(session, key)


def _too_large(limit: int) -> ProblemError:
    return ProblemError(
        f"The request body is larger than {limit} bytes.",
        status=413,
        code="payload_too_large",
        title="Payload too large",
        limit=limit,
    )


async def _read(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
