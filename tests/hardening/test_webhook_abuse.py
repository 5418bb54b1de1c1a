"""The unauthenticated webhook under abuse: bodies it cannot use are 400 (or 202 and dropped),
never 500, and a poisoned notification loses only itself among concurrent genuine ones."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.db import create_engine, session_scope, sessionmaker, utcnow
from app.main import create_app
from app.notifications.models import GraphSubscription, NotificationEvent
from app.notifications.webhooks import client_state_hash
from tests.conftest import ADMIN_KEY, ServedApp, _truncate, free_port, make_settings

STATE = "the-shared-client-state"
MAX_ITEMS = 1000  # the documented bound (README, Security)


class Hook:
    def __init__(self, client: httpx.AsyncClient, database_url: str, sub_id: str) -> None:
        self.client = client
        self.database_url = database_url
        self.sub_id = sub_id

    def item(self, **fields: Any) -> dict[str, Any]:
        return {
            "subscriptionId": self.sub_id,
            "clientState": STATE,
            "changeType": "updated",
            "resource": "Users/abc",
            **fields,
        }

    async def post(self, body: Any) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.client.post(
            "/webhooks/graph", content=raw, headers={"content-type": "application/json"}
        )

    async def stored(self) -> list[NotificationEvent]:
        engine = create_engine(self.database_url)
        try:
            async with session_scope(sessionmaker(engine)) as session:
                return list((await session.execute(select(NotificationEvent))).scalars())
        finally:
            await engine.dispose()


@pytest.fixture
async def hook(database_url: str) -> AsyncIterator[Hook]:
    engine = create_engine(database_url)
    await _truncate(engine)
    app = create_app(make_settings(database_url, worker_enabled=False))
    with ServedApp(app, free_port()) as served:
        async with httpx.AsyncClient(
            base_url=served.base_url,
            timeout=60,
            limits=httpx.Limits(max_connections=40, max_keepalive_connections=0),
        ) as client:
            resp = await client.post(
                "/api/v1/pbxes",
                json={"name": "hooked"},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            )
            pbx_id = resp.json()["id"]
            async with session_scope(sessionmaker(engine)) as session:
                session.add(
                    GraphSubscription(
                        id="11111111-2222-3333-4444-555555555555",
                        pbx_id=pbx_id,
                        resource="users",
                        change_type="updated,deleted",
                        client_state_hash=client_state_hash(STATE),
                        expires_at=utcnow() + timedelta(days=1),
                        renewed_at=None,
                    )
                )
            await engine.dispose()
            yield Hook(client, database_url, "11111111-2222-3333-4444-555555555555")


async def test_bodies_it_cannot_use_are_400(hook: Hook) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    nested = {"value": [hook.item(resourceData=json.loads("[" * 40 + "]" * 40))]}
    for body in (
        deep,
        {"value": deep.decode()[:10]},
        json.loads(b'{"value": ' + b"[" * 500 + b"]" * 500 + b"}"),
        nested,
        b"\xff\xfe",
        [],
        None,
        "value",
        {"value": {"a": 1}},
        {"value": [hook.item() for _ in range(MAX_ITEMS + 1)]},
    ):
        resp = await hook.post(body)
        assert resp.status_code == 400, (str(body)[:80], resp.text)
        assert resp.json()["code"] == "invalid_notification"
    assert await hook.stored() == []


async def test_many_distinct_subscription_ids(hook: Hook) -> None:
    # 40,000 distinct ids: over the item bound, refused before any lookup.
    many = {"value": [{"subscriptionId": f"s-{n}", "clientState": "x"} for n in range(40_000)]}
    resp = await hook.post(many)
    assert resp.status_code == 400
    # At the bound, every id is looked up (in chunks) and the genuine item is kept.
    batch = [{"subscriptionId": f"s-{n}", "clientState": "x"} for n in range(MAX_ITEMS - 1)]
    resp = await hook.post({"value": [*batch, hook.item()]})
    assert resp.status_code == 202
    assert len(await hook.stored()) == 1


async def test_items_that_do_not_fit_are_dropped_alone(hook: Hook) -> None:
    resp = await hook.post(
        {
            "value": [
                hook.item(changeType="x" * 33),  # longer than its column
                hook.item(subscriptionId=hook.sub_id + "\x00"),
                hook.item(lifecycleEvent="e" * 49),
                hook.item(clientState=["not", "a", "string"]),
                hook.item(subscriptionId=12),
                "not an object",
                hook.item(resource="Users/kept"),
            ]
        }
    )
    assert resp.status_code == 202
    assert [e.resource for e in await hook.stored()] == ["Users/kept"]


async def test_a_poisoned_item_among_concurrent_genuine_posts(hook: Hook) -> None:
    start = asyncio.Event()

    async def send(body: dict[str, Any]) -> httpx.Response:
        await start.wait()
        return await hook.post(body)

    genuine = [{"value": [hook.item(resource=f"Users/{n}")]} for n in range(40)]
    poisoned = [{"value": [hook.item(changeType="c" * 5000)]} for _ in range(3)]
    bodies = genuine[:20] + poisoned + genuine[20:]
    tasks = [asyncio.create_task(send(b)) for b in bodies]
    await asyncio.sleep(0)
    start.set()
    statuses = Counter(r.status_code for r in await asyncio.gather(*tasks))
    assert statuses == {202: len(bodies)}, statuses
    stored = sorted(e.resource for e in await hook.stored())
    assert stored == sorted(f"Users/{n}" for n in range(40))


async def test_handshake_is_nosniff_plain_text(hook: Hook) -> None:
    resp = await hook.client.post("/webhooks/graph/lifecycle?validationToken=%3Cb%3Ehi%3C/b%3E")
    assert resp.status_code == 200 and resp.text == "<b>hi</b>"
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.headers["x-content-type-options"] == "nosniff"
