"""The request/response plumbing of the Graph routes: one dispatcher serves both HTTP requests and
the sub-requests of `$batch`, so every sub-request goes through exactly the same handlers.

Errors use Graph's shape (https://learn.microsoft.com/en-us/graph/errors): handlers raise
`GraphError` and the dispatcher renders it with `emulator.errors.graph_error`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from emulator.errors import graph_error
from emulator.state import EmulatorState, Tenant, User
from emulator.tokens import Caller, GraphAuthError, verify_graph_token

# Graph's own content type for OData JSON bodies (seen in every Graph response and in the
# batch example of https://learn.microsoft.com/en-us/graph/json-batching).
ODATA_JSON = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
    "charset=utf-8"
)
GRAPH_PREFIX = "/v1.0"


class GraphError(Exception):
    """An error answer in Graph's shape: `{"error": {"code", "message", "innerError"}}`."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def bad_request(message: str, code: str = "Request_BadRequest") -> GraphError:
    return GraphError(400, code, message)


def not_found(object_id: str) -> GraphError:
    # The directory's wording for a missing object, e.g. GET /users/{unknown id}.
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property objects "
        "are not present.",
    )


def access_denied() -> GraphError:
    # Exchange (mailbox) routes deny with this code and message.
    return GraphError(
        403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
    )


@dataclass
class GraphResponse:
    status: int = 200
    body: Any = None  # a JSON value, or str for text/plain, or None for no content
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str | None = None

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode()

    def content_type(self) -> str | None:
        if self.body is None:
            return None
        if self.media_type:
            return self.media_type
        return "text/plain" if isinstance(self.body, str) else ODATA_JSON


@dataclass
class GraphRequest:
    """One Graph call: from the network or from a `$batch` body."""

    state: EmulatorState
    options: Any
    method: str
    path: str  # below /v1.0, e.g. "/users/abc/memberOf"
    raw_query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    base: str  # e.g. "https://127.0.0.1:8443/v1.0", for @odata.context and next links
    in_batch: bool = False
    params: dict[str, str] = field(default_factory=dict)
    _query: dict[str, str] | None = None
    _caller: Caller | None = None

    @property
    def query(self) -> dict[str, str]:
        """Query options with lower-cased names (Graph matches `$Select` like `$select`)."""
        if self._query is None:
            self._query = {
                k.lower(): v for k, v in parse_qsl(self.raw_query, keep_blank_values=True)
            }
        return self._query

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def eventual(self) -> bool:
        return (self.header("consistencylevel") or "").strip().lower() == "eventual"

    def caller(self) -> Caller:
        if self._caller is None:
            self._caller = verify_graph_token(self.state, self.header("authorization"))
        return self._caller

    @property
    def tenant(self) -> Tenant:
        return self.caller().tenant

    def json(self) -> Any:
        if not self.body:
            raise bad_request("Empty Payload. JSON content expected.", "BadRequest")
        try:
            return json.loads(self.body)
        except ValueError:
            raise bad_request("Unable to read JSON request payload.", "BadRequest") from None

    def url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        """An absolute URL of this Graph endpoint (next links, delta links)."""
        url = f"{self.base}{path}"
        if query:
            url += "?" + encode_query(query)
        return url

    def context(self, fragment: str) -> str:
        return f"{self.base}/$metadata#{fragment}"

    def me(self) -> User:
        """The signed-in user of a delegated token (`/me`)."""
        caller = self.caller()
        if caller.user is None:
            raise bad_request("/me request is only valid with delegated authentication flow.")
        return caller.user


def encode_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    # Keep OData punctuation readable, as Graph's own next links do.
    return "&".join(f"{quote(k, safe='$')}={quote(v, safe=_SAFE)}" for k, v in pairs)


def encode_query(query: Mapping[str, str]) -> str:
    return encode_pairs(query.items())


_SAFE = "$,()':"


Handler = Callable[[GraphRequest], Awaitable[GraphResponse]]


@dataclass
class _Route:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: Handler
    literals: int


class Router:
    """Method + path templates (`/users/{id}/memberOf`) to handlers. Literal path segments match
    case-insensitively, like Graph's; the most literal template wins (`/users/delta` before
    `/users/{id}`)."""

    def __init__(self) -> None:
        self.routes: list[_Route] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        pattern = ""
        literals = 0
        for segment in template.strip("/").split("/"):
            if segment.startswith("{") and segment.endswith("}"):
                pattern += f"/(?P<{segment[1:-1]}>[^/]+)"
            else:
                pattern += "/" + re.escape(segment)
                literals += 1
        regex = re.compile(f"^{pattern}$", re.IGNORECASE)
        self.routes.append(_Route(method.upper(), template, regex, handler, literals))
        self.routes.sort(key=lambda r: -r.literals)

    def route(self, method: str, *templates: str) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            for template in templates:
                self.add(method, template, handler)
            return handler

        return decorate

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        allowed = False
        for item in self.routes:
            match = item.regex.match(path)
            if match is None:
                continue
            if item.method != method.upper():
                allowed = True
                continue
            return item.handler, {k: unquote(v) for k, v in match.groupdict().items()}
        if allowed:
            # As in the batch example of https://learn.microsoft.com/en-us/graph/json-batching.
            raise GraphError(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request target.",
            )
        segment = next((s for s in path.strip("/").split("/") if s), "")
        raise bad_request(f"Resource not found for the segment '{segment}'.", "BadRequest")


router = Router()

_KEY_SEGMENT = re.compile(r"\('([^']*)'\)")


def normalize_path(path: str) -> str:
    """`/users('id')` → `/users/id`, `/users/delta()` → `/users/delta`, fully qualified function
    names (`microsoft.graph.delta`, https://learn.microsoft.com/en-us/graph/delta-query-overview:
    "`/delta` is a shortcut for the fully qualified name `/microsoft.graph.delta`") → short ones."""
    # Alternate keys: /applications(appId='…') (application-get.md).
    path = re.sub(r"/applications\(appId='([^']*)'\)", r"/applications/byAppId/\1", path)
    path = _KEY_SEGMENT.sub(lambda m: "/" + m.group(1), path)
    path = path.replace("()", "")
    path = re.sub(
        r"/microsoft\.graph\.(delta|getPresencesByUserId|reauthorize)\b", r"/\1", path, flags=re.I
    )
    path = "/" + path.strip("/")
    return path


async def dispatch(request: GraphRequest) -> GraphResponse:
    """Run one Graph request through the routes; errors become Graph error responses."""
    try:
        handler, params = router.resolve(request.method, normalize_path(request.path))
        request.params = params
        return await handler(request)
    except GraphAuthError as exc:
        return _error(exc.status, exc.code, exc.message, _auth_headers(exc), request)
    except GraphError as exc:
        return _error(exc.status, exc.code, exc.message, exc.headers, request)


def _auth_headers(exc: GraphAuthError) -> dict[str, str]:
    response = exc.response()
    return {k: v for k, v in response.headers.items() if k.lower() == "www-authenticate"}


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str], request: GraphRequest
) -> GraphResponse:
    response = graph_error(status, code, message, headers, request.header("client-request-id"))
    return from_starlette(response)


def from_starlette(response: Response) -> GraphResponse:
    """A Starlette response (faults, errors) as a GraphResponse (for `$batch` bodies)."""
    raw = bytes(response.body) if response.body else b""
    media = response.headers.get("content-type", "")
    body: Any = None
    if raw:
        body = json.loads(raw) if "json" in media else raw.decode()
    headers = {
        k: v
        for k, v in response.headers.items()
        if k.lower() not in ("content-length", "content-type")
    }
    return GraphResponse(response.status_code, body, headers, media or None)


def to_starlette(result: GraphResponse, request: GraphRequest) -> Response:
    headers = dict(result.headers)
    request_id = headers.setdefault("request-id", str(uuid.uuid4()))
    headers.setdefault("client-request-id", request.header("client-request-id") or request_id)
    if isinstance(result.body, (dict, list)):
        headers.setdefault("OData-Version", "4.0")
    return Response(
        content=result.encoded(),
        status_code=result.status,
        headers=headers,
        media_type=result.content_type(),
    )


def graph_request_from(request: Request, body: bytes) -> GraphRequest:
    app_state = request.app.state
    state: EmulatorState = app_state.emulator
    options = getattr(app_state, "options", None)
    path = request.path_params.get("path", "")
    host = request.headers.get("host") or request.url.netloc
    return GraphRequest(
        state=state,
        options=options,
        method=request.method,
        path="/" + path,
        raw_query=request.url.query,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        base=f"{request.url.scheme}://{host}{GRAPH_PREFIX}",
    )


async def endpoint(request: Request) -> Response:
    try:
        body = await request.body()
    except ClientDisconnect:
        # The caller went away before its body arrived (it gave up, or its process stopped):
        # there is nobody to answer, and nothing happened.
        return Response(status_code=499)
    graph_request = graph_request_from(request, body)
    result = await dispatch(graph_request)
    return to_starlette(result, graph_request)


METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]


def starlette_routes() -> list[Route]:
    return [
        Route("/", endpoint, methods=METHODS),
        Route("/{path:path}", endpoint, methods=METHODS),
    ]
