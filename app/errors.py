"""Problem documents (RFC 9457) for every error the API returns."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.db_errors import conflict_of
from app.route_kinds import route_kind

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("pbx_entra.errors")


class ProblemError(Exception):
    """A business error: rendered as a problem document with a stable `code`."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if title is not None:
            self.title = title
        self.extra = extra


class NotFound(ProblemError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(ProblemError):
    status = 409
    code = "conflict"
    title = "Conflict"


class Unauthorized(ProblemError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(ProblemError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class Unprocessable(ProblemError):
    status = 422
    code = "unprocessable"
    title = "Unprocessable content"


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"https://pbx-entra.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers or None)


_HTTP_CODES = {
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    401: ("unauthorized", "Unauthorized"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


def _method_table(app: Any) -> list[tuple[re.Pattern[str], set[str]]]:
    table: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "_methods", None)
    if table is None:
        table = []
        for template, operations in app.openapi().get("paths", {}).items():
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            table.append((re.compile(f"^{pattern}$"), {m.upper() for m in operations}))
        app.state._methods = table
    return table


def allowed_methods(request: Request) -> list[str]:
    """Every method the API answers on this path (a path has one route per method)."""
    methods: set[str] = set()
    for pattern, found in _method_table(request.app):
        if pattern.match(request.url.path):
            methods |= found
    return sorted(methods)


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "Stable, snake_case"},
        "errors": {
            "type": "array",
            "description": "422 validation_error: what failed, where",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}
_DESCRIPTIONS = {
    400: "Bad request (e.g. invalid_cursor)",
    401: "Missing or wrong credential (unauthorized)",
    403: "Operator routes disabled (operator_api_disabled)",
    404: "No such object for this PBX (not_found)",
    409: "Conflicts with the current state (see code)",
    413: "Request body over the limit (payload_too_large)",
    422: "Invalid input (validation_error and others, see code)",
    502: "Microsoft Graph failed (graph_error)",
    503: "Service unavailable",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for problem documents (the `Problem` schema is added to the
    document's components by `document`)."""
    return {
        status: {
            "description": _DESCRIPTIONS.get(status, "Problem"),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def document(app: FastAPI) -> None:
    """Add to each operation of the OpenAPI document the problem documents it can answer, derived
    from what it takes (a credential, path ids, a cursor, a body) and the request guard's rules."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = dict(
                PROBLEM_SCHEMA
            )
            for path, operations in schema.get("paths", {}).items():
                for method, operation in operations.items():
                    _add_problems(path, method.upper(), operation)
            # FastAPI's own 422 shape is answered nowhere: problem documents replace it.
            if "HTTPValidationError" not in json.dumps(schema["paths"]):
                for name in ("HTTPValidationError", "ValidationError"):
                    schema["components"]["schemas"].pop(name, None)
        return app.openapi_schema or {}

    setattr(app, "openapi", openapi)  # noqa: B010 (the docs routes call app.openapi())


def _add_problems(path: str, method: str, operation: dict[str, Any]) -> None:
    kind = route_kind(path)
    params = operation.get("parameters", [])
    query = {p["name"] for p in params if p.get("in") == "query"}
    has_path = any(p.get("in") == "path" for p in params)
    statuses: set[int] = set()
    if kind in ("pbx", "operator", "sso"):
        statuses.add(401)
    if kind == "operator":
        statuses.add(403)
    if has_path:
        statuses.add(404)
    if "cursor" in query or kind == "webhook":
        statuses.add(400)
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        statuses |= {413, 422}
        if kind in ("pbx", "operator"):
            statuses.add(409)
    if query or has_path:
        statuses.add(422)
    responses = operation.setdefault("responses", {})
    for status, entry in problem_responses(*sorted(statuses)).items():
        responses[str(status)] = entry  # replaces FastAPI's HTTPValidationError shape


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem(exc.status, exc.code, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))}
            for err in exc.errors()
        ]
        return problem(
            422,
            "validation_error",
            "Invalid request",
            "The request does not match the expected shape; see errors.",
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # Bytes that are not even text: invalid like any other malformed body.
            return problem(
                422,
                "validation_error",
                "Invalid request",
                "The request does not match the expected shape; see errors.",
                errors=[{"loc": ["body"], "msg": "The body could not be parsed"}],
            )
        code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem(exc.status_code, code, title, detail, headers=headers)

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        # A concurrent request won the race a check could not see: a unique value taken (409)
        # or a referenced row deleted meanwhile (422).
        found = conflict_of(exc)
        return problem(found.status, found.code, found.title, found.detail)

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        log.warning("the database refused a value: %s", type(exc.orig).__name__)
        return problem(
            422, "invalid_value", "Invalid value", "A value does not fit what the service stores."
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal_error", "Internal error", "An unexpected error occurred.")
