"""Request bodies: credentials are checked before a body is read, and bodies are bounded (413
while the body streams in, before it is parsed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import Api

CHUNK = 64 * 1024
# The documented limits (README, Security).
API_BODY_LIMIT = 1024 * 1024
WEBHOOK_BODY_LIMIT = 4 * 1024 * 1024


@dataclass
class Answer:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks_read: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


async def call(
    app: Any,
    method: str,
    path: str,
    headers: dict[str, str],
    chunks: Iterator[bytes],
) -> Answer:
    """Drive the ASGI app directly, counting the body chunks it pulls."""
    answer = Answer()

    async def receive() -> dict[str, Any]:
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        answer.chunks_read += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    await app(scope, receive, send)
    return answer


def endless() -> Iterator[bytes]:
    """More than any limit (8 MiB), in chunks; a service without a limit reads it all."""
    for _ in range(8 * 1024 * 1024 // CHUNK):
        yield b"x" * CHUNK


async def test_no_body_is_read_without_a_valid_key(api: Api) -> None:
    _, h = await api.new_pbx()
    big = {"content-type": "application/json", "content-length": str(50 * 1024 * 1024)}
    for path, headers in (
        ("/api/v1/extensions", big),
        ("/api/v1/extensions", {**big, "authorization": "Bearer not-a-key"}),
        ("/api/v1/extensions", {**big, "authorization": "Basic abc"}),
        ("/api/v1/pbxes", big),
        ("/api/v1/pbxes", {**big, "authorization": h["Authorization"]}),  # a PBX key, not ops
        ("/api/v1/me/presence", big),
        ("/api/v1/me/presence", {**big, "authorization": h["Authorization"]}),  # not an SSO token
    ):
        method = "PUT" if path.startswith("/api/v1/me/") else "POST"
        answer = await call(api.app, method, path, headers, endless())
        assert answer.status == 401, (path, headers, answer.body)
        assert answer.chunks_read == 0
        assert answer.json()["code"] == "unauthorized"
        assert answer.headers["content-type"] == "application/problem+json"


async def test_a_body_over_the_limit_is_413_while_it_streams(api: Api) -> None:
    _, h = await api.new_pbx()
    for path, headers, limit in (
        ("/api/v1/extensions", {"authorization": h["Authorization"]}, API_BODY_LIMIT),
        ("/api/v1/pbxes", api.operator, API_BODY_LIMIT),
        ("/webhooks/graph", {}, WEBHOOK_BODY_LIMIT),
        ("/integration/callback", {}, API_BODY_LIMIT),
    ):
        streamed = {
            **{k.lower(): v for k, v in headers.items()},
            "content-type": "application/json",
            "transfer-encoding": "chunked",
        }
        answer = await call(api.app, "POST", path, streamed, endless())
        assert answer.status == 413, (path, answer.body)
        assert answer.chunks_read == limit // CHUNK + 1  # stopped as soon as it passed
        problem = answer.json()
        assert problem["code"] == "payload_too_large" and problem["limit"] == limit
        # Announced too large: refused before a byte is read.
        announced = {**streamed, "content-length": str(limit + 1)}
        del announced["transfer-encoding"]
        answer = await call(api.app, "POST", path, announced, endless())
        assert answer.status == 413 and answer.chunks_read == 0


async def test_bodies_within_the_limit_are_served(api: Api) -> None:
    _, h = await api.new_pbx()
    resp = await api.client.post(
        "/api/v1/extensions", json={"number": "100", "first_name": "A" * 100}, headers=h
    )
    assert resp.status_code == 201, resp.text
    # A webhook batch of 2 MB (over the API's limit, within the webhook's) is read.
    items = [
        {"subscriptionId": f"s{n}", "clientState": "x", "resource": "r" * 2000} for n in range(1000)
    ]
    raw = json.dumps({"value": items}).encode()
    assert API_BODY_LIMIT < len(raw) < WEBHOOK_BODY_LIMIT
    resp = await api.client.post(
        "/webhooks/graph", content=raw, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 202
    # The API's limit is the API's: the same size to a PBX route is refused.
    resp = await api.client.post(
        "/api/v1/phonebooks", content=raw, headers={**h, "content-type": "application/json"}
    )
    assert resp.status_code == 413
