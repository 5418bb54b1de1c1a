"""Extension groups (limit, names, members, locks), phonebooks, contacts and visibility."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.directory.helpers import ExtensionGroup, Phonebook, set_managed
from tests.directory.test_extensions import make_ext


async def make_group(
    api: Api, h: dict[str, str], name: str, members: list[str] | None = None
) -> dict[str, Any]:
    resp = await api.client.post(
        "/api/v1/extension-groups", json={"name": name, "member_ids": members or []}, headers=h
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


async def test_group_crud_and_members(api: Api) -> None:
    _, h = await api.new_pbx()
    a = await make_ext(api, h, "100")
    b = await make_ext(api, h, "101")
    g = await make_group(api, h, "Sales", [b["id"], a["id"], a["id"]])
    assert g["member_ids"] == sorted([a["id"], b["id"]]) and g["managed_by"] == "pbx"
    assert g["entra_group_id"] is None
    renamed = await api.client.patch(
        f"/api/v1/extension-groups/{g['id']}",
        json={"name": "Sales EU", "member_ids": [a["id"]]},
        headers=h,
    )
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Sales EU" and renamed.json()["member_ids"] == [a["id"]]
    got = await api.client.get(f"/api/v1/extension-groups/{g['id']}", headers=h)
    assert got.json()["member_ids"] == [a["id"]]
    # Deleting an extension drops it from its groups.
    await api.client.delete(f"/api/v1/extensions/{a['id']}", headers=h)
    assert (await api.client.get(f"/api/v1/extension-groups/{g['id']}", headers=h)).json()[
        "member_ids"
    ] == []
    assert (
        await api.client.delete(f"/api/v1/extension-groups/{g['id']}", headers=h)
    ).status_code == 204
    assert (
        await api.client.get(f"/api/v1/extension-groups/{g['id']}", headers=h)
    ).status_code == 404


async def test_group_rules(api: Api) -> None:
    _, h = await api.new_pbx(max_extension_groups=2)
    _, other = await api.new_pbx()
    foreign = await make_ext(api, other, "100")
    unknown = await api.client.post(
        "/api/v1/extension-groups", json={"name": "x", "member_ids": [foreign["id"]]}, headers=h
    )
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_extension"
    assert unknown.json()["ids"] == [foreign["id"]]
    g1 = await make_group(api, h, "One")
    clash = await api.client.post("/api/v1/extension-groups", json={"name": "One"}, headers=h)
    assert clash.status_code == 409 and clash.json()["code"] == "group_name_taken"
    g2 = await make_group(api, h, "Two")
    full = await api.client.post("/api/v1/extension-groups", json={"name": "Three"}, headers=h)
    assert full.status_code == 409 and full.json()["code"] == "group_limit_reached"
    rename = await api.client.patch(
        f"/api/v1/extension-groups/{g2['id']}", json={"name": "One"}, headers=h
    )
    assert rename.status_code == 409 and rename.json()["code"] == "group_name_taken"
    empty = await api.client.post("/api/v1/extension-groups", json={"name": ""}, headers=h)
    assert empty.status_code == 422
    listed = (
        await api.client.get("/api/v1/extension-groups", params={"limit": 1}, headers=h)
    ).json()
    assert [g["name"] for g in listed["items"]] == ["One"] and listed["next_cursor"]
    rest = await api.client.get(
        "/api/v1/extension-groups", params={"cursor": listed["next_cursor"]}, headers=h
    )
    assert [g["id"] for g in rest.json()["items"]] == [g2["id"]] and g1["id"] != g2["id"]


@pytest.mark.parametrize("managed_by", ["entra", "entra_frozen"])
async def test_synced_group_locks(api: Api, database_url: str, managed_by: str) -> None:
    _, h = await api.new_pbx()
    a = await make_ext(api, h, "100")
    b = await make_ext(api, h, "101")
    g = await make_group(api, h, "Synced", [a["id"]])
    await set_managed(database_url, ExtensionGroup, g["id"], managed_by, "entra-group-1")
    url = f"/api/v1/extension-groups/{g['id']}"
    name = await api.client.patch(url, json={"name": "Other"}, headers=h)
    assert name.status_code == 409 and name.json()["locked_fields"] == ["name"]
    members = await api.client.patch(url, json={"member_ids": [a["id"], b["id"]]}, headers=h)
    assert members.status_code == 409 and members.json()["locked_fields"] == ["member_ids"]
    same = await api.client.patch(url, json={"name": "Synced", "member_ids": [a["id"]]}, headers=h)
    assert same.status_code == 200 and same.json()["entra_group_id"] == "entra-group-1"
    delete = await api.client.delete(url, headers=h)
    assert delete.status_code == 409 and delete.json()["code"] == "managed_by_entra"


async def test_phonebooks_contacts_and_visibility(api: Api, database_url: str) -> None:
    _, h = await api.new_pbx()
    a = await make_ext(api, h, "100")
    b = await make_ext(api, h, "101")
    c = await make_ext(api, h, "102")
    group = await make_group(api, h, "Team", [b["id"]])
    book = (
        await api.client.post("/api/v1/phonebooks", json={"name": "Suppliers"}, headers=h)
    ).json()
    assert book["managed_by"] == "pbx" and book["mailbox_id"] is None
    assert book["visible_to"] == {"all": False, "extension_ids": [], "extension_group_ids": []}
    clash = await api.client.post("/api/v1/phonebooks", json={"name": "Suppliers"}, headers=h)
    assert clash.status_code == 409 and clash.json()["code"] == "phonebook_name_taken"

    contact = await api.client.post(
        f"/api/v1/phonebooks/{book['id']}/contacts",
        json={"first_name": "Ann", "company": "Acme", "business_phone": "+1 206 555 0100"},
        headers=h,
    )
    assert contact.status_code == 201 and contact.json()["managed_by"] == "pbx"
    incomplete = await api.client.post(
        f"/api/v1/phonebooks/{book['id']}/contacts", json={"first_name": "NoPhone"}, headers=h
    )
    assert incomplete.status_code == 422
    listed = (await api.client.get(f"/api/v1/phonebooks/{book['id']}/contacts", headers=h)).json()
    assert [x["first_name"] for x in listed["items"]] == ["Ann"]

    # By default a phonebook is visible to nobody.
    assert (
        await api.client.get(f"/api/v1/extensions/{a['id']}/visible-phonebooks", headers=h)
    ).json() == {"items": [], "next_cursor": None}
    vis = await api.client.put(
        f"/api/v1/phonebooks/{book['id']}/visibility",
        json={"all": False, "extension_ids": [a["id"]], "extension_group_ids": [group["id"]]},
        headers=h,
    )
    assert vis.status_code == 200
    assert vis.json()["visible_to"] == {
        "all": False,
        "extension_ids": [a["id"]],
        "extension_group_ids": [group["id"]],
    }
    for ext, visible in ((a, True), (b, True), (c, False)):
        seen = (
            await api.client.get(f"/api/v1/extensions/{ext['id']}/visible-phonebooks", headers=h)
        ).json()["items"]
        assert [x["id"] for x in seen] == ([book["id"]] if visible else []), ext["number"]
    await api.client.put(
        f"/api/v1/phonebooks/{book['id']}/visibility", json={"all": True}, headers=h
    )
    seen_c = (
        await api.client.get(f"/api/v1/extensions/{c['id']}/visible-phonebooks", headers=h)
    ).json()["items"]
    assert [x["id"] for x in seen_c] == [book["id"]]
    unknown = await api.client.put(
        f"/api/v1/phonebooks/{book['id']}/visibility", json={"extension_ids": ["nope"]}, headers=h
    )
    assert unknown.status_code == 422 and unknown.json()["ids"] == ["nope"]

    # Synced phonebooks are read-only, but their visibility can be set.
    await set_managed(database_url, Phonebook, book["id"], "entra", "mailbox-1")
    locked_add = await api.client.post(
        f"/api/v1/phonebooks/{book['id']}/contacts",
        json={"first_name": "B", "mobile_phone": "1"},
        headers=h,
    )
    assert locked_add.status_code == 409 and locked_add.json()["code"] == "managed_by_entra"
    locked_delete = await api.client.delete(f"/api/v1/phonebooks/{book['id']}", headers=h)
    assert locked_delete.status_code == 409
    vis2 = await api.client.put(
        f"/api/v1/phonebooks/{book['id']}/visibility", json={"all": False}, headers=h
    )
    assert vis2.status_code == 200 and vis2.json()["mailbox_id"] == "mailbox-1"

    await set_managed(database_url, Phonebook, book["id"], "pbx", None)
    cid = contact.json()["id"]
    assert (
        await api.client.delete(f"/api/v1/phonebooks/{book['id']}/contacts/{cid}", headers=h)
    ).status_code == 204
    assert (
        await api.client.delete(f"/api/v1/phonebooks/{book['id']}/contacts/{cid}", headers=h)
    ).status_code == 404
    assert (
        await api.client.delete(f"/api/v1/phonebooks/{book['id']}", headers=h)
    ).status_code == 204
    assert (await api.client.get("/api/v1/phonebooks", headers=h)).json()["items"] == []


async def test_personal_contacts_listing_is_per_extension(api: Api) -> None:
    _, h = await api.new_pbx()
    a = await make_ext(api, h, "100")
    page = (await api.client.get(f"/api/v1/extensions/{a['id']}/contacts", headers=h)).json()
    assert page == {"items": [], "next_cursor": None}
