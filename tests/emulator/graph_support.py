"""Helpers for the Graph route tests: a fresh tenant in the emulator shared by the test run,
tokens minted for it, and a webhook receiver served over HTTPS (its own trustme CA) in a
background thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from emulator import mutations, tokens
from emulator.state import App, EmulatorState, Tenant, User
from emulator.testing import RunningEmulator


@dataclass
class World:
    """A tenant of its own in the shared emulator, an app registration, and its admin."""

    emulator: RunningEmulator
    tenant: Tenant
    app: App
    admin: User

    @property
    def state(self) -> EmulatorState:
        return self.emulator.state

    def token(
        self,
        user: User | None = None,
        scopes: tuple[str, ...] | set[str] = (),
        roles: tuple[str, ...] | set[str] | None = None,
    ) -> str:
        """App-only with the app's roles by default; delegated when `user` is given."""
        if user is None:
            granted = set(self.app.app_roles if roles is None else roles)
            return tokens.issue_access_token(
                self.state, self.tenant, self.app, None, set(), granted
            )
        return tokens.issue_access_token(
            self.state, self.tenant, self.app, user, set(scopes), set()
        )

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(
            base_url=f"{self.emulator.base_url}/v1.0",
            verify=self.emulator.ssl_context,
            headers=headers,
            timeout=30,
            **kwargs,
        )

    def get(self, url: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        with self.client(token if token is not None else self.token()) as client:
            return client.get(url, **kwargs)

    def post(self, url: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        with self.client(token if token is not None else self.token()) as client:
            return client.post(url, **kwargs)

    def user(self, upn: str | None = None, **data: Any) -> User:
        local = upn or f"user{uuid.uuid4().hex[:8]}"
        body = {
            "userPrincipalName": local if "@" in local else f"{local}@{self.tenant.domain}",
            "displayName": data.pop("displayName", local.title()),
            **data,
        }
        body.setdefault("mail", body["userPrincipalName"])
        with self.state.lock:
            return mutations.create_user(self.tenant, body)

    def group(self, name: str, members: list[str] | None = None, **data: Any) -> Any:
        with self.state.lock:
            return mutations.create_group(
                self.tenant, {"displayName": name, "members": members or [], **data}
            )


def make_world(emulator: RunningEmulator, users: int = 0, groups: int = 0, seed: int = 1) -> World:
    suffix = uuid.uuid4().hex[:8]
    with emulator.state.lock:
        tenant = mutations.create_tenant(
            emulator.state,
            display_name=f"Fabrikam {suffix}",
            domain=f"fabrikam{suffix}.onmicrosoft.com",
            users=users,
            groups=groups,
            seed=seed,
        )
        app = mutations.register_app(tenant, "PBX Microsoft 365 integration")
    admin = mutations.admin_user(tenant)
    assert admin is not None
    return World(emulator, tenant, app, admin)


def page_all(
    world: World, url: str, token: str | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """Follow @odata.nextLink to the end; return every item."""
    items: list[dict[str, Any]] = []
    with world.client(token if token is not None else world.token()) as client:
        next_url: str | None = url
        while next_url:
            response = client.get(next_url, **kwargs)
            assert response.status_code == 200, response.text
            body = response.json()
            items.extend(body["value"])
            next_url = body.get("@odata.nextLink")
    return items


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


# --- webhook receiver --------------------------------------------------------------------------


@dataclass
class Receiver:
    """An HTTPS endpoint that answers Graph's validation handshake (or fails it on purpose) and
    records the notifications it receives."""

    base_url: str = ""
    ca_path: Path = Path()
    mode: str = "echo"  # echo | wrong | json | error | slow
    delay: float = 0.0
    validations: list[tuple[str, str, str]] = field(default_factory=list)  # path, token, ctype
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # path, body

    def url(self, path: str = "/notify") -> str:
        return f"{self.base_url}{path}"

    def notifications(self, path: str = "/notify") -> list[dict[str, Any]]:
        return [item for p, body in list(self.posts) if p == path for item in body["value"]]

    def reset(self) -> None:
        self.mode = "echo"
        self.delay = 0.0
        self.validations.clear()
        self.posts.clear()

    async def handle(self, request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            self.validations.append(
                (request.url.path, token, request.headers.get("content-type", ""))
            )
            if self.mode == "slow":
                await asyncio.sleep(self.delay)
            if self.mode == "wrong":
                return PlainTextResponse(token[::-1])
            if self.mode == "json":
                return JSONResponse(token)
            if self.mode == "error":
                return PlainTextResponse("no", status_code=500)
            return PlainTextResponse(token)
        self.posts.append((request.url.path, await request.json()))
        return Response(status_code=202)


@contextmanager
def run_receiver(directory: Path) -> Iterator[Receiver]:
    """Serve a Receiver over HTTPS on a free loopback port with a trustme CA of its own."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = directory / "receiver-ca.pem"
    cert_path = directory / "receiver-cert.pem"
    key_path = directory / "receiver-key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_path))
    receiver = Receiver(ca_path=ca_path)
    app = Starlette(
        routes=[Route("/{path:path}", receiver.handle, methods=["POST"])],
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    receiver.base_url = f"https://127.0.0.1:{port}"
    config = uvicorn.Config(
        app,
        ssl_certfile=str(cert_path),
        ssl_keyfile=str(key_path),
        log_level="warning",
        lifespan="off",
        loop="asyncio",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="receiver", daemon=True
    )
    thread.start()
    wait_for(lambda: server.started, timeout=10)
    try:
        yield receiver
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
