"""A PBX key never reaches another PBX's objects: every object route answers 404."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

ROUTES = [
    ("GET", "/api/v1/extensions/{ext}", None),
    ("PATCH", "/api/v1/extensions/{ext}", {"job_title": "x"}),
    ("DELETE", "/api/v1/extensions/{ext}", None),
    ("GET", "/api/v1/extensions/{ext}/presence", None),
    ("PUT", "/api/v1/extensions/{ext}/presence", {"status": "away"}),
    ("GET", "/api/v1/extensions/{ext}/teams-presence", None),
    ("PUT", "/api/v1/extensions/{ext}/teams-presence", {"enabled": True}),
    ("GET", "/api/v1/extensions/{ext}/contacts", None),
    ("GET", "/api/v1/extensions/{ext}/visible-phonebooks", None),
    ("GET", "/api/v1/extension-groups/{group}", None),
    ("PATCH", "/api/v1/extension-groups/{group}", {"name": "y"}),
    ("DELETE", "/api/v1/extension-groups/{group}", None),
    ("PUT", "/api/v1/phonebooks/{book}/visibility", {"all": True}),
    ("GET", "/api/v1/phonebooks/{book}/contacts", None),
    ("POST", "/api/v1/phonebooks/{book}/contacts", {"first_name": "a", "mobile_phone": "1"}),
    ("DELETE", "/api/v1/phonebooks/{book}/contacts/{contact}", None),
    ("DELETE", "/api/v1/phonebooks/{book}", None),
]


@pytest.mark.parametrize("method, template, body", ROUTES, ids=[f"{m} {t}" for m, t, _ in ROUTES])
async def test_foreign_objects_are_not_found(
    api: Api, method: str, template: str, body: Any
) -> None:
    _, owner = await api.new_pbx()
    _, intruder = await api.new_pbx()
    ext = (
        await api.client.post(
            "/api/v1/extensions", json={"number": "1", "first_name": "a"}, headers=owner
        )
    ).json()
    group = (
        await api.client.post("/api/v1/extension-groups", json={"name": "g"}, headers=owner)
    ).json()
    book = (await api.client.post("/api/v1/phonebooks", json={"name": "b"}, headers=owner)).json()
    contact = (
        await api.client.post(
            f"/api/v1/phonebooks/{book['id']}/contacts",
            json={"first_name": "c", "mobile_phone": "1"},
            headers=owner,
        )
    ).json()
    url = template.format(ext=ext["id"], group=group["id"], book=book["id"], contact=contact["id"])
    resp = await api.client.request(method, url, json=body, headers=intruder)
    assert resp.status_code == 404, resp.text
    assert resp.json()["code"] == "not_found"
    # The owner still sees everything, unchanged.
    assert (await api.client.get(f"/api/v1/extensions/{ext['id']}", headers=owner)).json()[
        "job_title"
    ] is None
    assert (
        await api.client.get(f"/api/v1/extension-groups/{group['id']}", headers=owner)
    ).status_code == 200
    contacts = await api.client.get(f"/api/v1/phonebooks/{book['id']}/contacts", headers=owner)
    assert [c["id"] for c in contacts.json()["items"]] == [contact["id"]]


@pytest.mark.parametrize(
    "path", ["/api/v1/extensions", "/api/v1/extension-groups", "/api/v1/phonebooks"]
)
async def test_lists_hold_only_own_objects(api: Api, path: str) -> None:
    _, owner = await api.new_pbx()
    _, other = await api.new_pbx()
    await api.client.post(
        "/api/v1/extensions", json={"number": "1", "first_name": "a"}, headers=owner
    )
    await api.client.post("/api/v1/extension-groups", json={"name": "g"}, headers=owner)
    await api.client.post("/api/v1/phonebooks", json={"name": "b"}, headers=owner)
    assert len((await api.client.get(path, headers=owner)).json()["items"]) == 1
    assert (await api.client.get(path, headers=other)).json()["items"] == []


async def test_group_members_and_visibility_cannot_reference_foreign_objects(api: Api) -> None:
    _, owner = await api.new_pbx()
    _, other = await api.new_pbx()
    foreign_group = (
        await api.client.post("/api/v1/extension-groups", json={"name": "g"}, headers=other)
    ).json()
    book = (await api.client.post("/api/v1/phonebooks", json={"name": "b"}, headers=owner)).json()
    resp = await api.client.put(
        f"/api/v1/phonebooks/{book['id']}/visibility",
        json={"extension_group_ids": [foreign_group["id"]]},
        headers=owner,
    )
    assert resp.status_code == 422 and resp.json()["ids"] == [foreign_group["id"]]


@pytest.mark.parametrize(
    "method, suffix",
    [
        ("GET", ""),
        ("GET", "/changes"),
        ("GET", "/events"),
        ("POST", "/cancel"),
        ("POST", "/approve"),
        ("POST", "/reject"),
    ],
)
async def test_sync_runs_of_another_pbx_are_not_found(
    api: Api, database_url: str, method: str, suffix: str
) -> None:
    from app.db import create_engine, sessionmaker
    from app.runs.models import SyncRun

    owner, _ = await api.new_pbx()
    _, intruder = await api.new_pbx()
    engine = create_engine(database_url)
    async with sessionmaker(engine)() as session:
        run = SyncRun(
            pbx_id=owner["id"],
            trigger="manual",
            status="queued",
            scopes=["users"],
            progress={},
            counts={},
            failures=[],
            warnings=[],
        )
        session.add(run)
        await session.commit()
        run_id = run.id
    await engine.dispose()
    resp = await api.client.request(method, f"/api/v1/sync-runs/{run_id}{suffix}", headers=intruder)
    assert resp.status_code == 404 and resp.json()["code"] == "not_found"
    listed = await api.client.get("/api/v1/sync-runs", headers=intruder)
    assert listed.json()["items"] == []
