"""Cursors are signed and typed per route: forged or foreign ones are 400 `invalid_cursor` on every
list route, genuine ones page through."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from app.db import create_engine, session_scope, sessionmaker
from app.runs.models import SyncChange, SyncRun
from tests.conftest import Api


def _b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Shapes the old unsigned cursors decoded into; each reached the query.
FORGED = [
    _b64(None),
    _b64(1),
    _b64([1, 2]),
    _b64([None, "x"]),
    _b64([{"dt": "2026-01-01T00:00:00"}, "x"]),  # a naive timestamp
    _b64([{"dt": "yesterday"}, "x"]),
    _b64(["1000", 7]),
    _b64([7, "x"]),
    _b64([[1], {"a": 1}]),
    _b64({"k": "v"}),
    _b64(b"\xff\xfe"),
    "not base64 at all!",
    "",
    "a.b",
    _b64(["/api/v1/extensions", "1000", "x"]) + "." + _b64(b"0" * 16),  # a made-up signature
]


async def _run_with_changes(database_url: str, pbx_id: str, changes: int) -> str:
    engine = create_engine(database_url)
    try:
        async with session_scope(sessionmaker(engine)) as session:
            run = SyncRun(pbx_id=pbx_id, trigger="manual", status="succeeded", scopes=["users"])
            session.add(run)
            await session.flush()
            for n in range(changes):
                session.add(
                    SyncChange(
                        run_id=run.id,
                        pbx_id=pbx_id,
                        action="create",
                        object_type="extension",
                        object_id=f"obj-{n}",
                        fields={},
                    )
                )
            return str(run.id)
    finally:
        await engine.dispose()


async def _list_routes(api: Api, database_url: str) -> tuple[dict[str, str], list[str]]:
    pbx, h = await api.new_pbx()
    for n in range(3):
        resp = await api.client.post(
            "/api/v1/extensions", json={"number": str(100 + n), "first_name": "A"}, headers=h
        )
        ext = resp.json()["id"]
        await api.client.post("/api/v1/extension-groups", json={"name": f"g{n}"}, headers=h)
        resp = await api.client.post("/api/v1/phonebooks", json={"name": f"b{n}"}, headers=h)
        book = resp.json()["id"]
    for n in range(3):
        await api.client.post(
            f"/api/v1/phonebooks/{book}/contacts",
            json={"first_name": f"c{n}", "mobile_phone": "1"},
            headers=h,
        )
    run = await _run_with_changes(database_url, pbx["id"], 3)
    for _ in range(2):
        await _run_with_changes(database_url, pbx["id"], 0)
    return h, [
        "/api/v1/extensions",
        "/api/v1/extension-groups",
        "/api/v1/phonebooks",
        f"/api/v1/phonebooks/{book}/contacts",
        f"/api/v1/extensions/{ext}/contacts",
        "/api/v1/sync-runs",
        f"/api/v1/sync-runs/{run}/changes",
    ]


async def test_forged_cursors_are_400_on_every_list_route(api: Api, database_url: str) -> None:
    h, routes = await _list_routes(api, database_url)
    routes_and_keys = [(r, h) for r in routes] + [("/api/v1/pbxes", api.operator)]
    for route, headers in routes_and_keys:
        for cursor in FORGED:
            resp = await api.client.get(route, params={"cursor": cursor}, headers=headers)
            if cursor == "":
                assert resp.status_code == 200, (route, resp.text)  # no cursor: the first page
                continue
            assert resp.status_code == 400, (route, cursor, resp.text)
            assert resp.json()["code"] == "invalid_cursor"


async def test_genuine_cursors_page_through_and_stay_on_their_route(
    api: Api, database_url: str
) -> None:
    h, routes = await _list_routes(api, database_url)
    cursors: dict[str, str] = {}
    for route in routes:
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            resp = await api.client.get(route, params=params, headers=h)
            assert resp.status_code == 200, (route, resp.text)
            page = resp.json()
            seen += [str(i["id"]) for i in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            cursors.setdefault(route, cursor)
        expected = 0 if route.startswith("/api/v1/extensions/") else 3  # no personal contacts
        assert len(seen) == len(set(seen)) == expected, (route, seen)
    # A cursor works on the route that issued it only.
    first, second = routes[0], routes[1]
    resp = await api.client.get(second, params={"cursor": cursors[first]}, headers=h)
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_cursor"
    # And only under the SECRET_KEY that signed it.
    tampered = cursors[first][:-2] + ("AA" if not cursors[first].endswith("AA") else "BB")
    resp = await api.client.get(first, params={"cursor": tampered}, headers=h)
    assert resp.status_code == 400


@pytest.mark.parametrize("length", [1001, 5000])
async def test_overlong_cursor_is_422(api: Api, length: int) -> None:
    _, h = await api.new_pbx()
    resp = await api.client.get("/api/v1/extensions", params={"cursor": "a" * length}, headers=h)
    assert resp.status_code == 422
