"""Shared mailboxes → company phonebooks: specific and all modes, members and non-members,
renames and name clashes, read-only phonebooks, visibility."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import unquote

from tests.cloud import Cloud
from tests.conftest import Api
from tests.contacts.helpers import (
    add_contact,
    book_contacts,
    codes,
    contacts_rules,
    get,
    graph_requests,
    phonebooks,
    setup,
    share,
    shared_mailbox,
)

SHARED_OFF = {"enabled": False}


async def test_specific_mailboxes_member_and_not(sync_api: Api, cloud: Cloud) -> None:
    s, _ = await setup(sync_api, cloud, users=("ann",))
    sales = shared_mailbox(s, "Sales Desk")
    add_contact(s, sales, "Supplier", "One")
    add_contact(s, sales, None, None, displayName="No Name At All")
    closed = shared_mailbox(s, "Closed Desk", member=False)
    add_contact(s, closed, "Secret", "Contact")
    body = await contacts_rules(
        s,
        shared={
            "enabled": True,
            "mode": "specific",
            "mailboxes": [
                {"mailbox_id": sales, "phonebook_name": "Sales Contacts"},
                {"mailbox_id": closed},
            ],
        },
    )
    assert body["state"] == "active"
    run = (await s.run_worker())[-1]
    assert run["status"] == "partial"
    failures = {f["source_id"]: f["code"] for f in run["failures"] if f["scope"] == "contacts"}
    assert failures[closed] == "mailbox_access_denied"
    assert list(failures.values()).count("contact_missing_name") == 1
    assert run["contacts"]["failed"] == 1  # contacts only
    books = await phonebooks(s)
    assert set(books) == {"Sales Contacts"}
    book = books["Sales Contacts"]
    assert book["managed_by"] == "entra" and book["mailbox_id"] == sales
    assert book["visible_to"] == {"all": False, "extension_ids": [], "extension_group_ids": []}
    got = await book_contacts(s, book["id"])
    assert set(got) == {"One"} and got["One"]["managed_by"] == "entra"
    # Read-only on the PBX.
    h = s.h
    resp = await s.api.client.delete(f"/api/v1/phonebooks/{book['id']}", headers=h)
    assert resp.status_code == 409 and resp.json()["code"] == "managed_by_entra"
    resp = await s.api.client.delete(
        f"/api/v1/phonebooks/{book['id']}/contacts/{got['One']['id']}", headers=h
    )
    assert resp.status_code == 409 and resp.json()["code"] == "managed_by_entra"
    resp = await s.api.client.post(
        f"/api/v1/phonebooks/{book['id']}/contacts",
        json={"first_name": "X", "mobile_phone": "+1 425 555 0100"},
        headers=h,
    )
    assert resp.status_code == 409 and resp.json()["code"] == "managed_by_entra"
    # Granted membership: the next run syncs it under the mailbox's display name.
    s.control("POST", f"/users/{closed}/mailbox-members", json={"user_id": s.tenant.admin_id})
    run = await s.sync(scopes=["contacts"])
    assert "mailbox_access_denied" not in {f["code"] for f in run["failures"]}
    books = await phonebooks(s)
    assert set(books) == {"Sales Contacts", "Closed Desk"}
    assert set(await book_contacts(s, books["Closed Desk"]["id"])) == {"Contact"}


async def test_all_mode_warns_for_an_inaccessible_mailbox(sync_api: Api, cloud: Cloud) -> None:
    s, _ = await setup(sync_api, cloud, users=("ann",))
    open_ = shared_mailbox(s, "Front Office")
    add_contact(s, open_, "Walk", "In")
    closed = shared_mailbox(s, "Back Office", member=False)
    add_contact(s, closed, "Hidden", "Person")
    # A disabled ex-employee with a mailbox: Graph won't tell the authorization account
    # whether it is shared, so it is tried and reported like an inaccessible mailbox.
    former = s.control(
        "POST",
        "/users",
        json={
            "userPrincipalName": f"former@{s.tenant.domain}",
            "displayName": "Former Staff",
            "mail": f"former@{s.tenant.domain}",
            "accountEnabled": False,
        },
    )
    await contacts_rules(s, shared={"enabled": True, "mode": "all"})
    run = (await s.run_worker())[-1]
    assert run["status"] == "succeeded", run["failures"]
    assert codes(run)["mailbox_access_denied"] == {closed, former["id"]}
    books = await phonebooks(s)
    assert set(books) == {"Front Office"}
    assert set(await book_contacts(s, books["Front Office"]["id"])) == {"In"}


async def test_all_mode_falls_back_when_mailbox_settings_are_refused(
    sync_api: Api, cloud: Cloud
) -> None:
    s, _ = await setup(sync_api, cloud, users=("ann",))
    desk = shared_mailbox(s, "Help Desk")
    add_contact(s, desk, "Helpful", "Helper")
    closed = shared_mailbox(s, "Board Room Mailbox", member=False)
    add_contact(s, closed, "Board", "Member")
    s.control("PUT", "/graph-settings", json={"mailbox_settings_for_members": False})
    s.cloud.clear_requests()
    await contacts_rules(s, shared={"enabled": True, "mode": "all"})
    run = (await s.run_worker())[-1]
    assert run["status"] == "succeeded", run["failures"]
    refused = [
        r
        for r in s.cloud.requests("userPurpose")
        if r.get("tenant_id") == s.tid and r["status"] == 403
    ]
    assert refused  # Graph refused the settings read, the candidates were tried instead
    assert set(await phonebooks(s)) == {"Help Desk"}
    assert codes(run)["mailbox_access_denied"] == {closed}


async def test_renames_and_name_clashes(sync_api: Api, cloud: Cloud) -> None:
    s, _ = await setup(sync_api, cloud, users=("ann",))
    desk = shared_mailbox(s, "Sales Desk")
    add_contact(s, desk, "A", "Contact")
    resp = await s.api.client.post("/api/v1/phonebooks", json={"name": "Partners"}, headers=s.h)
    assert resp.status_code == 201
    mailboxes = [{"mailbox_id": desk, "phonebook_name": "Partners"}]
    await contacts_rules(s, shared={"enabled": True, "mode": "specific", "mailboxes": mailboxes})
    run = (await s.run_worker())[-1]
    assert codes(run)["phonebook_name_taken"] == {desk}
    books = await phonebooks(s)
    assert books["Partners (2)"]["mailbox_id"] == desk
    assert books["Partners"]["managed_by"] == "pbx"
    book_id = books["Partners (2)"]["id"]
    contact_id = (await book_contacts(s, book_id))["Contact"]["id"]
    mailboxes = [{"mailbox_id": desk, "phonebook_name": "Sales Contacts"}]
    await contacts_rules(s, shared={"enabled": True, "mode": "specific", "mailboxes": mailboxes})
    run = await s.sync(scopes=["contacts"])
    assert "phonebook_name_taken" not in codes(run)
    books = await phonebooks(s)
    assert books["Sales Contacts"]["id"] == book_id  # renamed, not re-created
    assert (await book_contacts(s, book_id))["Contact"]["id"] == contact_id
    section = await get(s, "/api/v1/integration/contacts-sync")
    assert section["shared"]["mailboxes"][0]["display_name"] == "Sales Desk"
    assert section["shared"]["mailboxes"][0]["missing"] is False


async def test_a_vanished_chosen_mailbox_is_missing_on_get(sync_api: Api, cloud: Cloud) -> None:
    s, _ = await setup(sync_api, cloud, users=("ann",))
    desk = shared_mailbox(s, "Temp Desk")
    add_contact(s, desk, "Temp", "Contact")
    mailboxes = [{"mailbox_id": desk}]
    await contacts_rules(s, shared={"enabled": True, "mode": "specific", "mailboxes": mailboxes})
    await s.run_worker()
    assert set(await phonebooks(s)) == {"Temp Desk"}
    s.control("DELETE", f"/users/{desk}")
    section = await get(s, "/api/v1/integration/contacts-sync")
    assert section["shared"]["mailboxes"] == [
        {"mailbox_id": desk, "phonebook_name": None, "display_name": None, "missing": True}
    ]
    run = await s.sync(scopes=["contacts"])
    assert codes(run)["mailbox_not_found"] == {desk}
    assert await phonebooks(s) == {}


async def test_visibility_of_synced_phonebooks(sync_api: Api, cloud: Cloud) -> None:
    s, ids = await setup(sync_api, cloud, users=("ann", "bob", "cat"))
    desk = shared_mailbox(s, "Sales Desk")
    add_contact(s, desk, "A", "Contact")
    await contacts_rules(
        s, shared={"enabled": True, "mode": "specific", "mailboxes": [{"mailbox_id": desk}]}
    )
    await s.run_worker()
    book = (await phonebooks(s))["Sales Desk"]
    exts = await s.synced()
    ann, bob, cat = (exts[ids[n]]["id"] for n in ("ann", "bob", "cat"))

    async def sees(ext_id: str) -> set[str]:
        body = await get(s, f"/api/v1/extensions/{ext_id}/visible-phonebooks")
        assert body["next_cursor"] is None
        return {b["name"] for b in body["items"]}

    assert await sees(ann) == set() and await sees(bob) == set()
    group = await s.api.client.post(
        "/api/v1/extension-groups", json={"name": "Team", "member_ids": [bob]}, headers=s.h
    )
    assert group.status_code == 201, group.text
    resp = await s.api.client.put(
        f"/api/v1/phonebooks/{book['id']}/visibility",
        json={"all": False, "extension_ids": [ann], "extension_group_ids": [group.json()["id"]]},
        headers=s.h,
    )
    assert resp.status_code == 200, resp.text
    assert await sees(ann) == {"Sales Desk"}
    assert await sees(bob) == {"Sales Desk"}
    assert await sees(cat) == set()
    # A later sync keeps the permission.
    add_contact(s, desk, "B", "Second")
    await s.sync(scopes=["contacts"])
    assert await sees(ann) == {"Sales Desk"} and await sees(cat) == set()


async def test_mailbox_lookups_ride_in_the_folder_reads_batch(sync_api: Api, cloud: Cloud) -> None:
    s, ids = await setup(sync_api, cloud, users=("ann", "bob"))
    add_contact(s, ids["ann"], "Friend", "One")
    share(s, ids["ann"])  # bob never shares: his folder is tried each run
    desk = shared_mailbox(s, "Sales Desk")
    add_contact(s, desk, "Supplier", "One")
    closed = shared_mailbox(s, "Closed Desk", member=False)
    temp = shared_mailbox(s, "Temp Desk")
    chosen = (desk, closed, temp)
    await contacts_rules(
        s,
        personal={"enabled": True},
        shared={
            "enabled": True,
            "mode": "specific",
            "mailboxes": [{"mailbox_id": m} for m in chosen],
        },
    )
    await s.run_worker()
    assert set(await phonebooks(s)) == {"Sales Desk", "Temp Desk"}

    async def quiet_run() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        s.cloud.clear_requests()
        run = await s.sync(scopes=["contacts"])
        graph = graph_requests(s)
        assert all(r.get("batch") or r["path"].endswith("/$batch") for r in graph)
        posts = [r for r in graph if not r.get("batch")]
        return run, posts, [r for r in graph if r.get("batch")]

    run, posts, inside = await quiet_run()
    assert run["contacts"] == {**run["contacts"], "created": 0, "updated": 0, "deleted": 0}
    # The chosen mailboxes are looked up together: `/users?$filter=id in (...)`, 15 ids a request.
    lookups = [r for r in inside if r["path"] == "/v1.0/users"]
    assert len(lookups) == 1 and all(m in unquote(lookups[0]["query"]) for m in chosen)
    assert "id in (" in unquote(lookups[0]["query"])
    tried = {r["path"].split("/")[3] for r in inside if "/contact" in r["path"]}
    assert {ids["ann"], ids["bob"], *chosen} <= tried
    # One `$batch` post: the lookup and every folder's read, 20 sub-requests a post at most.
    assert len(inside) == len(tried) + 1 <= 20
    assert len(posts) == math.ceil(len(tried) / 20) == 1
    failures = {f["source_id"]: f["code"] for f in run["failures"] if f["scope"] == "contacts"}
    assert failures[closed] == "mailbox_access_denied"

    # A chosen mailbox gone: still one post, its read ignored, reported as before.
    s.control("DELETE", f"/users/{temp}")
    run, posts, inside = await quiet_run()
    assert len(posts) == 1
    assert codes(run)["mailbox_not_found"] == {temp}
    assert set(await phonebooks(s)) == {"Sales Desk"}
    section = await get(s, "/api/v1/integration/contacts-sync")
    assert {m["mailbox_id"]: m["missing"] for m in section["shared"]["mailboxes"]} == {
        desk: False,
        closed: False,
        temp: True,
    }


async def test_a_chosen_id_graph_refuses_is_looked_up_alone(sync_api: Api, cloud: Cloud) -> None:
    """Graph refuses a whole `id in (...)` filter when one id is not a GUID: the group is then
    looked up one mailbox at a time, and only the malformed one is reported missing."""
    s, _ = await setup(sync_api, cloud, users=("ann",))
    desk = shared_mailbox(s, "Sales Desk")
    add_contact(s, desk, "Supplier", "One")
    await contacts_rules(
        s,
        personal={"enabled": False},
        shared={
            "enabled": True,
            "mode": "specific",
            "mailboxes": [{"mailbox_id": desk}, {"mailbox_id": "not-a-mailbox"}],
        },
    )
    s.cloud.clear_requests()
    run = (await s.run_worker())[-1]
    assert set(await phonebooks(s)) == {"Sales Desk"}
    assert codes(run)["mailbox_not_found"] == {"not-a-mailbox"}
    lookups = [
        r
        for r in graph_requests(s)
        if r["path"].startswith("/v1.0/users/") or r["path"] == "/v1.0/users"
    ]
    assert [(r["path"], r["status"]) for r in lookups if r["path"] == "/v1.0/users"] == [
        ("/v1.0/users", 400)
    ]
    assert {
        r["path"].removeprefix("/v1.0/users/") for r in lookups if r["path"].count("/") == 3
    } == {
        desk,
        "not-a-mailbox",
    }
