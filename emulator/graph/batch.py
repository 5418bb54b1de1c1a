"""`POST /$batch`, after https://learn.microsoft.com/en-us/graph/json-batching:

- The body is `{"requests": [{"id", "method", "url", "headers"?, "body"?, "dependsOn"?}]}` with at
  most 20 requests; ids are unique (not case-sensitive); a body needs a Content-Type header.
  A malformed batch is a 400 for the whole batch; otherwise the batch is a 200 and each response
  carries its own `status`, `headers` and `body`.
- `url` is relative to the version (`/users/{id}`, or without the slash: `users?$select=id`).
- `dependsOn` orders the requests; "If an individual request fails, any request that depends on
  that request fails with status code 424 (Failed Dependency)". Without it requests run in
  parallel.
- "Requests in a batch are evaluated individually against the applicable throttling limits and if
  any request exceeds the limits, it fails with a status of 429": each request goes through
  `emulator.faults.check`.
- Headers such as `ConsistencyLevel` go in the request's own `headers` (aad-advanced-queries.md).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from emulator.graph.http import (
    GRAPH_PREFIX,
    GraphError,
    GraphRequest,
    GraphResponse,
    dispatch,
    from_starlette,
    router,
)

MAX_BATCH_REQUESTS = 20


def _invalid(detail: str) -> GraphError:
    return GraphError(400, "BadRequest", f"Invalid batch payload format. {detail}".strip())


def _relative(url: str) -> tuple[str, str]:
    """`/users?$top=1`, `users?$top=1` or an absolute Graph URL → (path, query) below /v1.0."""
    parts = urlsplit(url)
    path = parts.path
    if parts.scheme and parts.netloc:
        if not path.lower().startswith(GRAPH_PREFIX):
            raise _invalid(f"The url '{url}' is not a Graph v1.0 URL.")
        path = path[len(GRAPH_PREFIX) :]
    elif path.lower().startswith(GRAPH_PREFIX + "/"):
        path = path[len(GRAPH_PREFIX) :]
    if not path.startswith("/"):
        path = "/" + path
    return path, parts.query


def _validate(payload: Any) -> list[dict[str, Any]]:
    if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
        raise _invalid("The body needs a 'requests' array.")
    items: list[dict[str, Any]] = payload["requests"]
    if not items:
        raise _invalid("The batch holds no requests.")
    if len(items) > MAX_BATCH_REQUESTS:
        raise _invalid(
            f"The batch holds {len(items)} requests; at most {MAX_BATCH_REQUESTS} are allowed."
        )
    seen: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict):
            raise _invalid("Each request must be an object.")
        for name in ("id", "method", "url"):
            if item.get(name) in (None, ""):
                raise _invalid(f"A request lacks its '{name}'.")
        item_id = str(item["id"])
        if item_id.lower() in seen:
            raise GraphError(
                400, "BadRequest", f"Request Id {item_id} has to be unique in a batch."
            )
        seen[item_id.lower()] = item_id
        headers = item.get("headers") or {}
        if not isinstance(headers, dict):
            raise _invalid(f"The headers of request {item_id} must be an object.")
        if "body" in item and not any(k.lower() == "content-type" for k in headers):
            raise GraphError(
                400,
                "BadRequest",
                f"Content-Type header is required for request {item_id}, as it has a body.",
            )
    for item in items:
        depends = item.get("dependsOn") or []
        if not isinstance(depends, list):
            raise _invalid(f"dependsOn of request {item['id']} must be an array.")
        for dep in depends:
            if str(dep).lower() not in seen:
                raise _invalid(
                    f"Request {item['id']} depends on '{dep}', which is not in the batch."
                )
    return items


def _order(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests in an order that honours dependsOn (a cycle is a malformed batch)."""
    by_id = {str(i["id"]).lower(): i for i in items}
    done: set[str] = set()
    visiting: set[str] = set()
    ordered: list[dict[str, Any]] = []

    def visit(key: str) -> None:
        if key in done:
            return
        if key in visiting:
            raise _invalid("dependsOn forms a cycle.")
        visiting.add(key)
        for dep in by_id[key].get("dependsOn") or []:
            visit(str(dep).lower())
        visiting.discard(key)
        done.add(key)
        ordered.append(by_id[key])

    for item in items:
        visit(str(item["id"]).lower())
    return ordered


def _body_bytes(item: dict[str, Any]) -> bytes:
    if "body" not in item:
        return b""
    body = item["body"]
    if isinstance(body, str):
        # A body may be base64 (url-encoded) for binary content.
        try:
            return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            return body.encode()
    return json.dumps(body).encode()


def _log(request: GraphRequest, entry: dict[str, Any]) -> None:
    from emulator.app import log_request

    log_request(request.state, entry)


async def _run_one(request: GraphRequest, item: dict[str, Any], tenant_id: str) -> GraphResponse:
    from emulator import faults

    method = str(item["method"]).upper()
    path, query = _relative(str(item["url"]))
    headers = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
    headers.pop("authorization", None)
    authorization = request.header("authorization")
    if authorization:
        headers["authorization"] = authorization
    sub = GraphRequest(
        state=request.state,
        options=request.options,
        method=method,
        path=path,
        raw_query=query,
        headers=headers,
        body=_body_bytes(item),
        base=request.base,
        in_batch=True,
    )
    started = time.perf_counter()
    entry: dict[str, Any] = {
        "seq": None,
        "timestamp": datetime.now(UTC).isoformat(),
        "method": method,
        "path": GRAPH_PREFIX + path,
        "query": query,
        "status": None,
        "tenant_id": tenant_id,
        "duration_ms": None,
        "faults": [],
        "batch": True,
        "batch_request_id": str(item["id"]),
    }
    _log(request, entry)
    fault = faults.check(request.state, tenant_id, method, GRAPH_PREFIX + path)
    if fault is not None:
        result = from_starlette(fault)
        entry["faults"] = ["batch-item"]
    else:
        result = await dispatch(sub)
    entry["status"] = result.status
    entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return result


def _header_name(name: str) -> str:
    # As in the documentation's batch responses: "Retry-After", "Content-Type", "Cache-Control".
    if name.lower() in ("client-request-id", "request-id"):
        return name.lower()
    return "-".join(part.capitalize() for part in name.split("-"))


def _entry(item: dict[str, Any], result: GraphResponse) -> dict[str, Any]:
    headers = {
        _header_name(k): v for k, v in result.headers.items() if k.lower() not in ("request-id",)
    }
    content_type = result.content_type()
    if content_type:
        headers["Content-Type"] = content_type
    entry: dict[str, Any] = {"id": str(item["id"]), "status": result.status, "headers": headers}
    if result.body is not None:
        entry["body"] = result.body
    return entry


def _failed_dependency(item: dict[str, Any], dep: str) -> GraphResponse:
    return GraphResponse(
        424,
        {
            "error": {
                "code": "FailedDependency",
                "message": f"The request depends on request '{dep}', which failed.",
            }
        },
    )


@router.route("POST", "/$batch")
async def batch(request: GraphRequest) -> GraphResponse:
    if request.in_batch:
        raise _invalid("A batch can't hold another batch.")
    caller = request.caller()
    items = _validate(request.json())
    tenant_id = caller.tenant.id
    results: dict[str, GraphResponse] = {}
    if any(item.get("dependsOn") for item in items):
        for item in _order(items):
            failed = next(
                (
                    str(dep)
                    for dep in item.get("dependsOn") or []
                    if results[str(dep).lower()].status >= 400
                ),
                None,
            )
            key = str(item["id"]).lower()
            if failed is not None:
                results[key] = _failed_dependency(item, failed)
            else:
                results[key] = await _run_one(request, item, tenant_id)
    else:
        outcomes = await asyncio.gather(*(_run_one(request, item, tenant_id) for item in items))
        results = {
            str(item["id"]).lower(): outcome for item, outcome in zip(items, outcomes, strict=True)
        }
    responses = [_entry(item, results[str(item["id"]).lower()]) for item in items]
    return GraphResponse(200, {"responses": responses}, media_type="application/json")
