"""Extensions: creation rules, uniqueness, capacity, the managed_by locks, presence."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Api
from tests.directory.helpers import Extension, set_managed


async def make_ext(api: Api, headers: dict[str, str], number: str, **fields: Any) -> dict[str, Any]:
    body = {"number": number, "first_name": fields.pop("first_name", f"User{number}"), **fields}
    resp = await api.client.post("/api/v1/extensions", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    return resp.json()


async def test_create_and_read_extension(api: Api) -> None:
    _, h = await api.new_pbx()
    ext = await make_ext(
        api,
        h,
        "1001",
        last_name="Doe",
        email="Jane.Doe@Contoso.com",
        mobile="+1 425 555 0100",
        job_title="CFO",
    )
    assert ext["number"] == "1001" and ext["email"] == "Jane.Doe@Contoso.com"
    assert (
        ext["managed_by"] == "pbx"
        and ext["entra_user_id"] is None
        and ext["former_entra_id"] is None
    )
    assert ext["presence"] == {
        "status": "available",
        "source": "manual",
        "teams_availability": None,
        "teams_activity": None,
        "updated_at": None,
    }
    assert ext["welcome_email"] is None
    got = await api.client.get(f"/api/v1/extensions/{ext['id']}", headers=h)
    assert got.json() == ext


@pytest.mark.parametrize(
    "body, field",
    [
        ({"number": "12a", "first_name": "x"}, "number"),
        ({"number": "1234567890123", "first_name": "x"}, "number"),
        ({"number": "100"}, "body"),
        ({"number": "100", "first_name": "x", "email": "not-an-email"}, "email"),
        ({"number": "100", "first_name": "x", "voicemail": 1}, "voicemail"),
        ({"first_name": "x"}, "number"),
    ],
)
async def test_create_extension_rejects_bad_input(
    api: Api, body: dict[str, Any], field: str
) -> None:
    _, h = await api.new_pbx()
    resp = await api.client.post("/api/v1/extensions", json=body, headers=h)
    assert resp.status_code == 422
    problem = resp.json()
    assert problem["code"] == "validation_error" and problem["status"] == 422
    assert any(field in e["loc"] for e in problem["errors"]), problem


async def test_malformed_json_is_a_problem_not_a_500(api: Api) -> None:
    _, h = await api.new_pbx()
    resp = await api.client.post(
        "/api/v1/extensions",
        content=b"{not json",
        headers={**h, "content-type": "application/json"},
    )
    assert resp.status_code == 422 and resp.json()["code"] == "validation_error"


async def test_number_and_email_unique_per_pbx_case_insensitive(api: Api) -> None:
    _, h = await api.new_pbx()
    _, other = await api.new_pbx()
    await make_ext(api, h, "100", email="a@x.com")
    taken = await api.client.post(
        "/api/v1/extensions", json={"number": "100", "first_name": "b"}, headers=h
    )
    assert taken.status_code == 409 and taken.json()["code"] == "extension_number_taken"
    dup = await api.client.post(
        "/api/v1/extensions",
        json={"number": "101", "first_name": "b", "email": "A@X.COM"},
        headers=h,
    )
    assert dup.status_code == 409 and dup.json()["code"] == "email_taken"
    # Another PBX has its own numbering plan and addresses.
    await make_ext(api, other, "100", email="a@x.com")


async def test_concurrent_creates_of_one_number_give_one_201_and_409s(api: Api) -> None:
    _, h = await api.new_pbx()
    results = await asyncio.gather(
        *[
            api.client.post(
                "/api/v1/extensions", json={"number": "300", "first_name": f"n{i}"}, headers=h
            )
            for i in range(4)
        ]
    )
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 1 and set(codes) <= {201, 409}
    assert all(
        r.json()["code"] == "extension_number_taken" for r in results if r.status_code == 409
    )


async def test_capacity_limit(api: Api) -> None:
    _, h = await api.new_pbx(max_extensions=2)
    await make_ext(api, h, "1")
    await make_ext(api, h, "2")
    full = await api.client.post(
        "/api/v1/extensions", json={"number": "3", "first_name": "c"}, headers=h
    )
    assert full.status_code == 409 and full.json()["code"] == "capacity_exceeded"


async def test_update_extension_rules(api: Api) -> None:
    _, h = await api.new_pbx()
    a = await make_ext(api, h, "100", email="a@x.com")
    b = await make_ext(api, h, "101")
    ok = await api.client.patch(
        f"/api/v1/extensions/{b['id']}", json={"job_title": "Ops", "number": "102"}, headers=h
    )
    assert (
        ok.status_code == 200 and ok.json()["job_title"] == "Ops" and ok.json()["number"] == "102"
    )
    clash = await api.client.patch(
        f"/api/v1/extensions/{b['id']}", json={"number": "100"}, headers=h
    )
    assert clash.json()["code"] == "extension_number_taken"
    mail = await api.client.patch(
        f"/api/v1/extensions/{b['id']}", json={"email": "A@x.com"}, headers=h
    )
    assert mail.status_code == 409 and mail.json()["code"] == "email_taken"
    own = await api.client.patch(
        f"/api/v1/extensions/{a['id']}", json={"email": "A@X.com"}, headers=h
    )
    assert own.status_code == 200 and own.json()["email"] == "A@X.com"
    nameless = await api.client.patch(
        f"/api/v1/extensions/{b['id']}", json={"first_name": None, "last_name": None}, headers=h
    )
    assert nameless.status_code == 422 and nameless.json()["code"] == "missing_required_field"


@pytest.mark.parametrize("managed_by", ["entra", "entra_frozen"])
async def test_synced_extension_locks(api: Api, database_url: str, managed_by: str) -> None:
    _, h = await api.new_pbx()
    ext = await make_ext(api, h, "200", last_name="Lock", email="lock@x.com")
    await set_managed(database_url, Extension, ext["id"], managed_by, "entra-user-1")

    for field, value in [
        ("first_name", "New"),
        ("last_name", "N"),
        ("email", "n@x.com"),
        ("mobile", "1"),
        ("job_title", "t"),
    ]:
        resp = await api.client.patch(
            f"/api/v1/extensions/{ext['id']}", json={field: value}, headers=h
        )
        assert resp.status_code == 409, field
        problem = resp.json()
        assert problem["code"] == "managed_by_entra" and problem["locked_fields"] == [field]
        assert problem["managed_by"] == managed_by

    both = await api.client.patch(
        f"/api/v1/extensions/{ext['id']}", json={"first_name": "X", "job_title": "Y"}, headers=h
    )
    assert both.json()["locked_fields"] == ["first_name", "job_title"]
    # Sending the current value is not a change; PBX-owned fields stay editable, unless frozen
    # (sync paused or integration disabled), when nothing changes.
    same = await api.client.patch(
        f"/api/v1/extensions/{ext['id']}", json={"last_name": "Lock", "number": "201"}, headers=h
    )
    if managed_by == "entra":
        assert same.status_code == 200 and same.json()["number"] == "201"
        assert same.json()["entra_user_id"] == "entra-user-1"
    else:
        assert same.status_code == 409 and same.json()["locked_fields"] == ["number"]
        unchanged = await api.client.patch(
            f"/api/v1/extensions/{ext['id']}", json={"last_name": "Lock"}, headers=h
        )
        assert unchanged.status_code == 200 and unchanged.json()["number"] == "200"
    presence = await api.client.put(
        f"/api/v1/extensions/{ext['id']}/presence", json={"status": "away"}, headers=h
    )
    assert presence.status_code == 200 and presence.json()["status"] == "away"

    delete = await api.client.delete(f"/api/v1/extensions/{ext['id']}", headers=h)
    assert delete.status_code == 409 and delete.json()["code"] == "managed_by_entra"
    assert (await api.client.get(f"/api/v1/extensions/{ext['id']}", headers=h)).status_code == 200


async def test_delete_manual_extension(api: Api) -> None:
    _, h = await api.new_pbx()
    ext = await make_ext(api, h, "100")
    assert (
        await api.client.delete(f"/api/v1/extensions/{ext['id']}", headers=h)
    ).status_code == 204
    assert (await api.client.get(f"/api/v1/extensions/{ext['id']}", headers=h)).status_code == 404
    # The number is free again.
    await make_ext(api, h, "100")


async def test_list_filter_search_and_paginate(api: Api, database_url: str) -> None:
    _, h = await api.new_pbx()
    made = [await make_ext(api, h, f"1{i:02d}", last_name=f"Person{i}") for i in range(7)]
    await set_managed(database_url, Extension, made[3]["id"], "entra", "u3")
    numbers: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await api.client.get("/api/v1/extensions", params=params, headers=h)).json()
        numbers += [e["number"] for e in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert numbers == [f"1{i:02d}" for i in range(7)]
    entra = (
        await api.client.get("/api/v1/extensions", params={"managed_by": "entra"}, headers=h)
    ).json()
    assert [e["number"] for e in entra["items"]] == ["103"]
    found = (
        await api.client.get("/api/v1/extensions", params={"search": "person5"}, headers=h)
    ).json()
    assert [e["number"] for e in found["items"]] == ["105"]
    by_number = (
        await api.client.get("/api/v1/extensions", params={"search": "10"}, headers=h)
    ).json()
    assert len(by_number["items"]) == 7
    bad = await api.client.get("/api/v1/extensions", params={"managed_by": "nobody"}, headers=h)
    assert bad.status_code == 422


async def test_presence_and_teams_presence_settings(api: Api) -> None:
    _, h = await api.new_pbx()
    ext = await make_ext(api, h, "100")
    url = f"/api/v1/extensions/{ext['id']}"
    put = await api.client.put(f"{url}/presence", json={"status": "lunch_break"}, headers=h)
    assert put.json()["status"] == "lunch_break" and put.json()["source"] == "manual"
    assert (await api.client.get(f"{url}/presence", headers=h)).json()["status"] == "lunch_break"
    assert (await api.client.get(url, headers=h)).json()["presence"]["status"] == "lunch_break"
    bad = await api.client.put(f"{url}/presence", json={"status": "sleeping"}, headers=h)
    assert bad.status_code == 422

    default = (await api.client.get(f"{url}/teams-presence", headers=h)).json()
    assert default["enabled"] is False
    assert (
        default["mapping"]["Busy"] == "do_not_disturb"
        and default["mapping"]["Offline"] == "off_work"
    )
    changed = await api.client.put(
        f"{url}/teams-presence",
        json={"enabled": True, "mapping": {"Busy": "business_trip"}},
        headers=h,
    )
    assert changed.status_code == 200
    got = (await api.client.get(f"{url}/teams-presence", headers=h)).json()
    assert got["enabled"] is True and got["mapping"]["Busy"] == "business_trip"
    assert got["mapping"]["Away"] == "away"
    unknown = await api.client.put(
        f"{url}/teams-presence", json={"enabled": True, "mapping": {"Sleeping": "away"}}, headers=h
    )
    assert unknown.status_code == 422
