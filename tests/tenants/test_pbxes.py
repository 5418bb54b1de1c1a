"""Operator routes, PBX keys and the PBX_API_KEY bootstrap."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.crypto import hash_api_key
from app.db import create_engine, sessionmaker
from app.tenants.models import ApiKey
from tests.conftest import Api


async def test_create_pbx_shows_key_once_and_stores_only_its_hash(
    api: Api, database_url: str
) -> None:
    resp = await api.client.post(
        "/api/v1/pbxes",
        json={"name": "acme", "timezone": "Europe/Berlin", "max_extensions": 50},
        headers=api.operator,
    )
    assert resp.status_code == 201
    body = resp.json()
    assert body["name"] == "acme" and body["timezone"] == "Europe/Berlin"
    assert body["max_extensions"] == 50 and body["max_extension_groups"] == 63
    key = body["api_key"]
    assert key.startswith("pbx_") and len(key) > 40

    listed = await api.client.get("/api/v1/pbxes", headers=api.operator)
    assert [p["name"] for p in listed.json()["items"]] == ["acme"]
    assert "api_key" not in listed.json()["items"][0]

    engine = create_engine(database_url)
    async with sessionmaker(engine)() as session:
        rows = (await session.execute(select(ApiKey))).scalars().all()
    await engine.dispose()
    assert [r.key_hash for r in rows] == [hash_api_key(key)]
    assert all(key not in (r.key_hash + r.prefix) or r.prefix == key[:8] for r in rows)

    own = await api.client.get("/api/v1/pbx", headers={"Authorization": f"Bearer {key}"})
    assert own.status_code == 200 and own.json()["id"] == body["id"]


async def test_pbx_validation_and_name_clash(api: Api) -> None:
    bad_tz = await api.client.post(
        "/api/v1/pbxes", json={"name": "x", "timezone": "Mars/Base"}, headers=api.operator
    )
    assert bad_tz.status_code == 422
    assert bad_tz.headers["content-type"] == "application/problem+json"
    assert bad_tz.json()["code"] == "validation_error"
    assert any("timezone" in e["loc"] for e in bad_tz.json()["errors"])

    await api.new_pbx("dup")
    clash = await api.client.post("/api/v1/pbxes", json={"name": "dup"}, headers=api.operator)
    assert clash.status_code == 409 and clash.json()["code"] == "pbx_name_taken"


async def test_operator_key_required(api: Api) -> None:
    none = await api.client.get("/api/v1/pbxes")
    assert none.status_code == 401 and none.json()["code"] == "unauthorized"
    wrong = await api.client.get("/api/v1/pbxes", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    # A PBX key is not an operator key.
    _, headers = await api.new_pbx()
    assert (await api.client.get("/api/v1/pbxes", headers=headers)).status_code == 401


async def test_operator_routes_off_without_admin_key(app_factory: Any, api: Api) -> None:
    other = await app_factory(admin_api_key=None)
    resp = await other.client.get("/api/v1/pbxes", headers=api.operator)
    assert resp.status_code == 403 and resp.json()["code"] == "operator_api_disabled"


async def test_pbx_key_required_and_checked(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer pbx_wrong"}, {"Authorization": "Basic abc"}):
        resp = await api.client.get("/api/v1/pbx", headers=headers)
        assert resp.status_code == 401, headers
        assert resp.json()["code"] == "unauthorized"
        assert resp.headers["www-authenticate"] == "Bearer"


async def test_rotate_key_old_one_stops_working(api: Api) -> None:
    pbx, old = await api.new_pbx()
    resp = await api.client.post(f"/api/v1/pbxes/{pbx['id']}/api-keys", headers=api.operator)
    assert resp.status_code == 201
    new = {"Authorization": f"Bearer {resp.json()['api_key']}"}
    assert (await api.client.get("/api/v1/pbx", headers=old)).status_code == 401
    assert (await api.client.get("/api/v1/pbx", headers=new)).json()["id"] == pbx["id"]
    missing = await api.client.post("/api/v1/pbxes/nope/api-keys", headers=api.operator)
    assert missing.status_code == 404


async def test_update_and_get_pbx(api: Api) -> None:
    pbx, _ = await api.new_pbx()
    resp = await api.client.patch(
        f"/api/v1/pbxes/{pbx['id']}",
        json={"max_extensions": 2, "timezone": "America/New_York"},
        headers=api.operator,
    )
    assert resp.status_code == 200 and resp.json()["max_extensions"] == 2
    got = await api.client.get(f"/api/v1/pbxes/{pbx['id']}", headers=api.operator)
    assert got.json()["timezone"] == "America/New_York"
    bad = await api.client.patch(
        f"/api/v1/pbxes/{pbx['id']}", json={"timezone": "Nowhere"}, headers=api.operator
    )
    assert bad.status_code == 422
    assert (await api.client.get("/api/v1/pbxes/nope", headers=api.operator)).status_code == 404


async def test_delete_pbx_removes_everything_it_owns(api: Api) -> None:
    pbx, headers = await api.new_pbx()
    ext = await api.client.post(
        "/api/v1/extensions", json={"number": "100", "first_name": "A"}, headers=headers
    )
    assert ext.status_code == 201
    group = await api.client.post(
        "/api/v1/extension-groups",
        json={"name": "g", "member_ids": [ext.json()["id"]]},
        headers=headers,
    )
    assert group.status_code == 201
    resp = await api.client.delete(f"/api/v1/pbxes/{pbx['id']}", headers=api.operator)
    assert resp.status_code == 204
    assert (await api.client.get("/api/v1/pbx", headers=headers)).status_code == 401
    again = await api.client.delete(f"/api/v1/pbxes/{pbx['id']}", headers=api.operator)
    assert again.status_code == 404
    # A new PBX with the same name starts empty.
    _, headers2 = await api.new_pbx(pbx["name"])
    assert (await api.client.get("/api/v1/extensions", headers=headers2)).json()["items"] == []


async def test_list_pbxes_paginates(api: Api) -> None:
    for i in range(5):
        await api.new_pbx(f"p{i}")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await api.client.get("/api/v1/pbxes", params=params, headers=api.operator)).json()
        seen += [p["name"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"p{i}" for i in range(5)]
    bad = await api.client.get("/api/v1/pbxes", params={"cursor": "!!"}, headers=api.operator)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"
    too_big = await api.client.get("/api/v1/pbxes", params={"limit": 1001}, headers=api.operator)
    assert too_big.status_code == 422


async def test_pbx_api_key_bootstraps_default_pbx_once(app_factory: Any, api: Api) -> None:
    key = "pbx_bootstrap_key_abcdefghijklmnopqrstuvwxyz"
    first = await app_factory(pbx_api_key=key)
    resp = await first.client.get("/api/v1/pbx", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200 and resp.json()["name"] == "default"
    # A second start (or a replica) does not create another.
    await app_factory(pbx_api_key=key)
    listed = await api.client.get("/api/v1/pbxes", headers=api.operator)
    assert [p["name"] for p in listed.json()["items"]] == ["default"]
