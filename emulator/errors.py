"""Error bodies in the two shapes Microsoft uses: Graph's and the identity platform's (AADSTS).

Graph: https://learn.microsoft.com/en-us/graph/errors ("Error resource type": an `error` object with
`code`, `message` and `innerError` holding `date`, `request-id` and `client-request-id`).

Identity platform: https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes
("Handling error codes in your application": `error`, `error_description` starting with
`AADSTS<code>:` and ending with the trace id, correlation id and timestamp, `error_codes`,
`timestamp`, `trace_id`, `correlation_id`, `error_uri`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from starlette.responses import JSONResponse


def graph_error(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    client_request_id: str | None = None,
) -> JSONResponse:
    """A Graph error response: `{"error": {"code", "message", "innerError"}}`."""
    request_id = str(uuid.uuid4())
    client_request_id = client_request_id or request_id
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }
    all_headers = {"request-id": request_id, "client-request-id": client_request_id}
    all_headers.update(headers or {})
    return JSONResponse(body, status_code=status, headers=all_headers)


def aadsts_error(
    status: int,
    error: str,
    code: int,
    description: str,
    correlation_id: str | None = None,
) -> JSONResponse:
    """An identity-platform error: `error`, `error_description` ("AADSTS<code>: ..."), etc."""
    return JSONResponse(
        aadsts_body(error, code, description, correlation_id),
        status_code=status,
        # Token responses are never cached (RFC 6749 section 5.1 and 5.2).
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def aadsts_body(
    error: str, code: int, description: str, correlation_id: str | None = None
) -> dict[str, object]:
    now = datetime.now(UTC)
    timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    trace_id = str(uuid.uuid4())
    correlation_id = correlation_id or str(uuid.uuid4())
    return {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {description}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
