"""Concurrent requests from real clients against a real server (uvicorn on a loopback port), on
both databases: seats hold, unique names stay unique, and a reference deleted meanwhile is a
problem document, never a 500."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.db import create_engine, session_scope, sessionmaker
from app.directory.models import Extension, ExtensionGroup, ExtensionGroupMember, Phonebook
from app.main import create_app
from tests.conftest import ADMIN_KEY, ServedApp, clean_database, free_port, make_settings

CONCURRENCY = 20


class Server:
    def __init__(self, base_url: str, database_url: str) -> None:
        self.base_url = base_url
        self.database_url = database_url
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=60,
            limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=0),
        )

    async def new_pbx(self, **fields: Any) -> dict[str, str]:
        resp = await self.client.post(
            "/api/v1/pbxes",
            json={"name": f"race-{uuid.uuid4().hex[:8]}", **fields},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert resp.status_code == 201, resp.text
        return {"Authorization": f"Bearer {resp.json()['api_key']}"}

    async def together(self, calls: list[Any]) -> list[httpx.Response]:
        """Fire the requests at once (each on its own connection)."""
        start = asyncio.Event()

        async def one(call: Any) -> httpx.Response:
            await start.wait()
            response: httpx.Response = await call()
            return response

        tasks = [asyncio.create_task(one(c)) for c in calls]
        await asyncio.sleep(0)
        start.set()
        return list(await asyncio.gather(*tasks))

    async def count(self, model: Any, **where: Any) -> int:
        engine = create_engine(self.database_url)
        try:
            async with session_scope(sessionmaker(engine)) as session:
                stmt = select(func.count()).select_from(model)
                for column, value in where.items():
                    stmt = stmt.where(getattr(model, column) == value)
                return int((await session.execute(stmt)).scalar_one())
        finally:
            await engine.dispose()


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[Server]:
    await clean_database(database_url)
    app = create_app(make_settings(database_url, worker_enabled=False))
    with ServedApp(app, free_port()) as served:
        s = Server(served.base_url, database_url)
        try:
            yield s
        finally:
            await s.client.aclose()


def _codes(responses: list[httpx.Response]) -> Counter[tuple[int, str]]:
    return Counter(
        (r.status_code, r.json().get("code", "") if r.status_code >= 400 else "") for r in responses
    )


async def _pbx_id(server: Server, headers: dict[str, str]) -> str:
    resp = await server.client.get("/api/v1/pbx", headers=headers)
    return str(resp.json()["id"])


async def test_extension_seats_hold_under_concurrent_creates(server: Server) -> None:
    headers = await server.new_pbx(max_extensions=5)
    responses = await server.together(
        [
            lambda n=n: server.client.post(
                "/api/v1/extensions",
                json={"number": str(100 + n), "first_name": f"Racer {n}"},
                headers=headers,
            )
            for n in range(CONCURRENCY)
        ]
    )
    codes = _codes(responses)
    assert codes == {(201, ""): 5, (409, "capacity_exceeded"): CONCURRENCY - 5}, codes
    assert await server.count(Extension, pbx_id=await _pbx_id(server, headers)) == 5


async def test_group_seats_hold_under_concurrent_creates(server: Server) -> None:
    headers = await server.new_pbx(max_extension_groups=3)
    responses = await server.together(
        [
            lambda n=n: server.client.post(
                "/api/v1/extension-groups", json={"name": f"group {n}"}, headers=headers
            )
            for n in range(CONCURRENCY)
        ]
    )
    codes = _codes(responses)
    assert codes == {(201, ""): 3, (409, "group_limit_reached"): CONCURRENCY - 3}, codes
    assert await server.count(ExtensionGroup, pbx_id=await _pbx_id(server, headers)) == 3


async def test_one_phonebook_name_under_concurrent_creates(server: Server) -> None:
    headers = await server.new_pbx()
    responses = await server.together(
        [
            lambda: server.client.post(
                "/api/v1/phonebooks", json={"name": "Suppliers"}, headers=headers
            )
            for _ in range(CONCURRENCY)
        ]
    )
    codes = _codes(responses)
    assert codes == {(201, ""): 1, (409, "phonebook_name_taken"): CONCURRENCY - 1}, codes
    assert await server.count(Phonebook, pbx_id=await _pbx_id(server, headers)) == 1


async def test_one_extension_number_under_concurrent_creates(server: Server) -> None:
    headers = await server.new_pbx()
    responses = await server.together(
        [
            lambda n=n: server.client.post(
                "/api/v1/extensions",
                json={"number": "200", "first_name": f"Racer {n}"},
                headers=headers,
            )
            for n in range(CONCURRENCY)
        ]
    )
    codes = _codes(responses)
    assert codes == {(201, ""): 1, (409, "extension_number_taken"): CONCURRENCY - 1}, codes


async def test_deleting_an_extension_while_groups_refer_to_it(server: Server) -> None:
    headers = await server.new_pbx(max_extension_groups=100)
    for round_ in range(3):
        resp = await server.client.post(
            "/api/v1/extensions",
            json={"number": str(300 + round_), "first_name": "Target"},
            headers=headers,
        )
        assert resp.status_code == 201, resp.text
        ext_id = resp.json()["id"]
        creates = [
            lambda n=n, r=round_, e=ext_id: server.client.post(
                "/api/v1/extension-groups",
                json={"name": f"r{r} g{n}", "member_ids": [e]},
                headers=headers,
            )
            for n in range(CONCURRENCY - 1)
        ]
        delete = [lambda e=ext_id: server.client.delete(f"/api/v1/extensions/{e}", headers=headers)]
        responses = await server.together(creates[:10] + delete + creates[10:])
        codes = _codes(responses)
        assert codes[(204, "")] == 1, codes
        # Each create saw the extension (201, then left the group with it) or didn't (422).
        assert set(codes) <= {
            (201, ""),
            (204, ""),
            (422, "unknown_extension"),
            (422, "reference_gone"),
        }, codes
        assert await server.count(Extension, id=ext_id) == 0
        assert await server.count(ExtensionGroupMember, extension_id=ext_id) == 0
