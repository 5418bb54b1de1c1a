"""Deletions by the extension rules: the contacts range, pause, disable and disconnect with both
choices, the deletion guard, and dry runs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cloud import Cloud, connect
from tests.conftest import Api
from tests.contacts.helpers import (
    add_contact,
    book_contacts,
    codes,
    contacts_rules,
    get,
    personal,
    phonebooks,
    setup,
    share,
    shared_mailbox,
)
from tests.sync.helpers import Scenario
from tests.sync.test_user_rules import new_user


async def both(api: Api, cloud: Cloud) -> tuple[Scenario, dict[str, str], str]:
    """Ann's personal contacts and one shared mailbox's phonebook, synced."""
    s, ids = await setup(api, cloud, users=("ann", "bob"))
    for i in range(3):
        add_contact(s, ids["ann"], f"Friend{i}", f"Of{i}")
    share(s, ids["ann"])
    desk = shared_mailbox(s, "Sales Desk")
    add_contact(s, desk, "Supplier", "Desk")
    await contacts_rules(
        s,
        personal={"enabled": True},
        shared={"enabled": True, "mode": "specific", "mailboxes": [{"mailbox_id": desk}]},
    )
    run = (await s.run_worker())[-1]
    assert run["status"] == "succeeded" and run["contacts"]["created"] == 4
    return s, ids, desk


async def post(s: Scenario, path: str, body: dict[str, Any] | None = None) -> Any:
    resp = await s.api.client.post(path, json=body, headers=s.h)
    assert resp.status_code in (200, 202), resp.text
    return resp.json()


def managed(items: dict[str, dict[str, Any]]) -> set[str]:
    return {c["managed_by"] for c in items.values()}


async def test_group_range_is_transitive_and_never_widened(sync_api: Api, cloud: Cloud) -> None:
    s, ids = await setup(sync_api, cloud, users=("ann", "bob"))
    ann, bob = ids["ann"], ids["bob"]
    dan = new_user(s, "dan", accountEnabled=False)  # disabled: never an extension
    add_contact(s, dan, "Dan", "Contact")
    share(s, dan)
    for uid in (ann, bob):
        add_contact(s, uid, "Of", f"Owner{uid[:4]}")
        share(s, uid)
    inner = s.control("POST", "/groups", json={"displayName": "Inner", "securityEnabled": True})
    outer = s.control("POST", "/groups", json={"displayName": "Outer", "securityEnabled": True})
    s.control("POST", f"/groups/{inner['id']}/members", json={"ids": [ann, dan]})
    s.control("POST", f"/groups/{outer['id']}/members", json={"ids": [inner["id"]]})
    await contacts_rules(s, personal={"enabled": True, "range": {"mode": "all"}})
    await s.run_worker()
    assert len(await personal(s, bob)) == 1
    await contacts_rules(
        s, personal={"enabled": True, "range": {"mode": "groups", "group_ids": [outer["id"]]}}
    )
    run = await s.sync(scopes=["contacts"])
    assert codes(run)["contacts_range_beyond_user_sync"] == {outer["id"]}
    # The section says so too, before any run.
    section = await get(s, "/api/v1/integration/contacts-sync")
    assert [(w["code"], w["source_id"]) for w in section["warnings"]] == [
        ("contacts_range_beyond_user_sync", outer["id"])
    ]
    assert len(await personal(s, ann)) == 1  # through the nested group
    assert await personal(s, bob) == {}  # left the range: deleted
    assert run["contacts"]["deleted"] == 1
    assert dan not in await s.synced()  # not widened


@pytest.mark.parametrize("delete", [True, False])
async def test_pause_deletes_or_freezes_then_resume(
    sync_api: Api, cloud: Cloud, delete: bool
) -> None:
    s, ids, _ = await both(sync_api, cloud)
    body = await post(s, "/api/v1/integration/contacts-sync/pause", {"delete_contacts": delete})
    assert body["state"] == "paused"
    await s.run_worker()
    if delete:
        assert await personal(s, ids["ann"]) == {} and await phonebooks(s) == {}
        # Manual phonebooks are not the sync's to delete.
    else:
        assert managed(await personal(s, ids["ann"])) == {"entra_frozen"}
        book = (await phonebooks(s))["Sales Desk"]
        assert book["managed_by"] == "entra_frozen"
        resp = await s.api.client.delete(f"/api/v1/phonebooks/{book['id']}", headers=s.h)
        assert resp.status_code == 409 and resp.json()["code"] == "managed_by_entra"
    await post(s, "/api/v1/integration/contacts-sync/resume")
    run = (await s.run_worker())[-1]
    assert run["trigger"] == "resync" and run["status"] == "succeeded"
    assert managed(await personal(s, ids["ann"])) == {"entra"}
    assert (await phonebooks(s))["Sales Desk"]["managed_by"] == "entra"
    assert run["contacts"]["created"] == (4 if delete else 0)


@pytest.mark.parametrize("delete", [True, False])
async def test_disable_and_disconnect(sync_api: Api, cloud: Cloud, delete: bool) -> None:
    s, ids, _ = await both(sync_api, cloud)
    manual = await s.api.client.post("/api/v1/phonebooks", json={"name": "Manual"}, headers=s.h)
    assert manual.status_code == 201
    choice = {"delete_extensions": False, "delete_extension_groups": False}
    await post(s, "/api/v1/integration/disable", {**choice, "delete_phonebooks": delete})
    await s.run_worker()
    books = await phonebooks(s)
    assert books["Manual"]["managed_by"] == "pbx"
    if delete:
        assert set(books) == {"Manual"} and await personal(s, ids["ann"]) == {}
    else:
        assert books["Sales Desk"]["managed_by"] == "entra_frozen"
        assert managed(await personal(s, ids["ann"])) == {"entra_frozen"}
        book_id = books["Sales Desk"]["id"]
        kept = await book_contacts(s, book_id)
        for path in (
            f"/api/v1/phonebooks/{book_id}",
            f"/api/v1/phonebooks/{book_id}/contacts/{kept['Desk']['id']}",
        ):
            resp = await s.api.client.delete(path, headers=s.h)
            assert resp.status_code == 409 and resp.json()["code"] == "managed_by_entra"
    await post(s, "/api/v1/integration/disconnect", {**choice, "delete_phonebooks": False})
    await s.run_worker()
    books = await phonebooks(s)
    if not delete:
        # Retained ones are handed to the PBX.
        assert books["Sales Desk"]["managed_by"] == "pbx"
        assert managed(await personal(s, ids["ann"])) == {"pbx"}
        contacts = await book_contacts(s, books["Sales Desk"]["id"])
        assert managed(contacts) == {"pbx"}
    else:
        assert set(books) == {"Manual"}


async def test_disconnect_deleting_phonebooks(sync_api: Api, cloud: Cloud) -> None:
    s, ids, _ = await both(sync_api, cloud)
    choice = {"delete_extensions": False, "delete_extension_groups": False}
    await post(s, "/api/v1/integration/disconnect", {**choice, "delete_phonebooks": True})
    await s.run_worker()
    assert await phonebooks(s) == {}
    assert await personal(s, ids["ann"]) == {}


async def test_the_guard_holds_contact_deletions_and_approve_applies(
    sync_api: Api, cloud: Cloud
) -> None:
    s, ids, desk = await both(sync_api, cloud)
    await s.put_rules("deletion-guard", {"enabled": True, "max_deletions": 2})
    ann = ids["ann"]
    for c in s.control("GET", f"/users/{ann}/contact-folders")["value"]:
        for contact in s.control("GET", f"/contact-folders/{c['id']}/contacts")["value"]:
            s.control("DELETE", f"/contacts/{contact['id']}")
    added = add_contact(s, desk, "New", "Arrival")
    run = await s.sync(scopes=["contacts"])
    assert run["status"] == "held"
    assert run["held"]["contacts"] == 3
    assert run["contacts"]["deleted"] == 0 and run["contacts"]["created"] == 1
    assert len(await personal(s, ann)) == 3  # deletions wait
    assert "Arrival" in await book_contacts(s, (await phonebooks(s))["Sales Desk"]["id"])
    assert added
    resp = await s.api.client.post(f"/api/v1/sync-runs/{run['id']}/approve", headers=s.h)
    assert resp.status_code in (200, 202), resp.text
    await s.run_worker()
    assert await personal(s, ann) == {}
    done = await s.run(run["id"])
    assert done["held"]["decision"] == "approved"


async def test_dry_run_lists_contact_changes_and_writes_nothing(
    sync_api: Api, cloud: Cloud
) -> None:
    s, ids, desk = await both(sync_api, cloud)
    add_contact(s, ids["ann"], "Dry", "Run")
    fixed = add_contact(s, desk, "Desk", "Newcomer")
    resp = await s.api.client.post(
        "/api/v1/integration/sync", json={"scopes": ["contacts"], "dry_run": True}, headers=s.h
    )
    assert resp.status_code == 202, resp.text
    run = (await s.run_worker())[-1]
    assert run["dry_run"] is True and run["status"] == "succeeded"
    plan = run["plan"]["contacts"]
    assert {c["last_name"] for c in plan["creates"]} == {"Run", "Newcomer"}
    assert {c["entra_id"] for c in plan["creates"]} >= {fixed["id"]}
    assert plan["deletes"] == [] and plan["updates"] == []
    assert "Run" not in await personal(s, ids["ann"])


async def test_a_later_connection_takes_back_retained_phonebooks_and_contacts(
    sync_api: Api, cloud: Cloud
) -> None:
    s, ids, desk = await both(sync_api, cloud)
    ann = ids["ann"]
    before_book = (await phonebooks(s))["Sales Desk"]
    before_contacts = await book_contacts(s, before_book["id"])
    before_personal = await personal(s, ann)
    choice = {"delete_extensions": False, "delete_extension_groups": False}
    await post(s, "/api/v1/integration/disconnect", {**choice, "delete_phonebooks": False})
    await s.run_worker()
    assert (await phonebooks(s))["Sales Desk"]["managed_by"] == "pbx"
    await connect(s.api, s.cloud, s.tenant, s.h)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    await contacts_rules(
        s,
        personal={"enabled": True},
        shared={"enabled": True, "mode": "specific", "mailboxes": [{"mailbox_id": desk}]},
    )
    run = (await s.run_worker())[-1]
    assert run["status"] == "succeeded", run["failures"]
    assert "phonebook_name_taken" not in codes(run)
    assert run["contacts"]["created"] == 0
    books = await phonebooks(s)
    assert set(books) == {"Sales Desk"}
    assert books["Sales Desk"]["id"] == before_book["id"]
    assert books["Sales Desk"]["managed_by"] == "entra"
    after = await book_contacts(s, before_book["id"])
    assert {k: v["id"] for k, v in after.items()} == {
        k: v["id"] for k, v in before_contacts.items()
    }
    assert managed(after) == {"entra"}
    again = await personal(s, ann)
    assert {k: v["id"] for k, v in again.items()} == {
        k: v["id"] for k, v in before_personal.items()
    }
    assert managed(again) == {"entra"}


async def test_an_approved_run_with_more_contact_deletions_is_stale(
    sync_api: Api, cloud: Cloud
) -> None:
    s, ids, _desk = await both(sync_api, cloud)
    await s.put_rules("deletion-guard", {"enabled": True, "max_deletions": 1})
    ann = ids["ann"]
    before = await personal(s, ann)
    assert len(before) >= 3
    owned = [
        c
        for folder in s.control("GET", f"/users/{ann}/contact-folders")["value"]
        for c in s.control("GET", f"/contact-folders/{folder['id']}/contacts")["value"]
    ]
    for contact in owned[:2]:
        s.control("DELETE", f"/contacts/{contact['id']}")
    held = await s.sync(scopes=["contacts"])
    assert held["status"] == "held" and held["held"]["contacts"] == 2
    s.control("DELETE", f"/contacts/{owned[2]['id']}")  # one more since
    resp = await s.api.client.post(f"/api/v1/sync-runs/{held['id']}/approve", headers=s.h)
    assert resp.status_code == 202, resp.text
    await s.run_worker()
    done = await s.run(held["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "plan_stale"
    assert await personal(s, ann) == before  # nothing deleted
