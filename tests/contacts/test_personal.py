"""Personal Outlook contacts → the extension's Linkus contacts, end to end against the emulator."""

from __future__ import annotations

from app.db import session_scope
from app.directory.models import Contact
from tests.cloud import Cloud
from tests.conftest import Api
from tests.contacts.helpers import (
    add_contact,
    codes,
    contacts_rules,
    graph_requests,
    personal,
    setup,
    share,
)


async def test_shared_folders_sync_and_unshared_ones_are_warnings(
    sync_api: Api, cloud: Cloud
) -> None:
    s, ids = await setup(sync_api, cloud)
    ann, bob = ids["ann"], ids["bob"]
    add_contact(
        s,
        ann,
        "Pavel",
        "Bansky",
        companyName="Fabrikam",
        emailAddresses=[{"address": "pavel@fabrikam.com", "name": "Pavel"}],
        businessPhones=["+1 (732) 555-0102"],
        mobilePhone="+1 425 555 0199",
        homePhones=["020 7946 0000"],
    )
    add_contact(s, ann, None, "Only", mobilePhone="555 0101")
    share(s, ann)
    add_contact(s, bob, "Hidden", "Contact")  # bob never shares
    body = await contacts_rules(s, personal={"enabled": True, "range": {"mode": "all"}})
    assert body["state"] == "active"
    run = (await s.run_worker())[-1]
    assert run["status"] == "succeeded", (run["failures"], run["contacts"], run["error"])
    assert run["contacts"]["created"] == 2 + 0, run["contacts"]
    warned = codes(run)
    assert {bob, ids["cat"]} <= warned["contacts_not_shared"]
    assert ann not in warned["contacts_not_shared"]
    got = await personal(s, ann)
    assert set(got) == {"Bansky", "Only"}
    pavel = got["Bansky"]
    assert pavel == {
        **pavel,
        "first_name": "Pavel",
        "company": "Fabrikam",
        "email": "pavel@fabrikam.com",
        "business_phone": "+1 (732) 555-0102",
        "mobile_phone": "+1 425 555 0199",
        "home_phone": "020 7946 0000",
        "managed_by": "entra",
    }
    assert await personal(s, bob) == {}
    # Numbers are kept as given and stored normalised for lookup.
    async with session_scope(sync_api.app.state.runtime.sessionmaker) as session:
        row = await session.get(Contact, pavel["id"])
        assert row is not None
        assert (row.business_key, row.mobile_key, row.home_key) == (
            "+17325550102",
            "+14255550199",
            "02079460000",
        )
    # Outlook was read with $select and through $batch.
    paths = [r for r in graph_requests(s) if "contacts" in r["path"]]
    assert paths and all("$select" in r["query"] or "select" in r["query"] for r in paths)


async def test_validation_failures_are_listed_with_names_and_skipped(
    sync_api: Api, cloud: Cloud
) -> None:
    s, ids = await setup(sync_api, cloud, users=("ann",))
    ann = ids["ann"]
    good = add_contact(s, ann, "Good", "Person")
    nameless = add_contact(s, ann, None, None, displayName="Reception Desk")
    phoneless = add_contact(s, ann, "No", "Phone", businessPhones=[])
    share(s, ann)
    await contacts_rules(s, personal={"enabled": True})
    run = (await s.run_worker())[-1]
    assert run["status"] == "partial"
    assert run["contacts"]["created"] == 1 and run["contacts"]["failed"] == 2
    failures = {f["source_id"]: f for f in run["failures"] if f["scope"] == "contacts"}
    assert failures[nameless["id"]]["code"] == "contact_missing_name"
    assert failures[nameless["id"]]["display_name"] == "Reception Desk"
    assert failures[phoneless["id"]]["code"] == "contact_missing_phone"
    assert failures[phoneless["id"]]["display_name"] == "No Phone"
    assert good["id"] not in failures
    assert set(await personal(s, ann)) == {"Person"}
    # Fixed in Outlook: the next (incremental) run adds it and the failure is gone.
    s.control("PATCH", f"/contacts/{phoneless['id']}", json={"mobilePhone": "+44 20 7946 0001"})
    s.control("DELETE", f"/contacts/{nameless['id']}")
    run = await s.sync(scopes=["contacts"])
    assert run["status"] == "succeeded", run["failures"]
    assert run["contacts"]["created"] == 1
    got = await personal(s, ann)
    assert got["Phone"]["mobile_phone"] == "+44 20 7946 0001"


async def test_incremental_runs_write_only_what_changed(sync_api: Api, cloud: Cloud) -> None:
    s, ids = await setup(sync_api, cloud, users=("ann", "bob"))
    ann, bob = ids["ann"], ids["bob"]
    kept = add_contact(s, ann, "Kept", "Same")
    renamed = add_contact(s, ann, "Old", "Name")
    gone = add_contact(s, ann, "Gone", "Soon")
    moving = add_contact(s, ann, "Moving", "Away")
    add_contact(s, bob, "Bob", "Friend")
    share(s, ann)
    share(s, bob)
    await contacts_rules(s, personal={"enabled": True})
    first = (await s.run_worker())[-1]
    assert first["contacts"]["created"] == 5
    before = await personal(s, ann)
    private = s.control("POST", f"/users/{ann}/contact-folders", json={"displayName": "Private"})
    s.control("PATCH", f"/contacts/{renamed['id']}", json={"givenName": "New", "surname": "Title"})
    s.control("DELETE", f"/contacts/{gone['id']}")
    s.control("POST", f"/contacts/{moving['id']}/move", json={"folder_id": private["id"]})
    added = add_contact(s, ann, "Fresh", "Face")
    s.cloud.clear_requests()
    run = await s.sync(scopes=["contacts"])
    assert run["status"] == "succeeded"
    assert run["contacts"] == {**run["contacts"], "created": 1, "updated": 1, "deleted": 2}
    graph = [r for r in graph_requests(s) if "contact" in r["path"]]
    assert any("/contacts/delta" in r["path"] and "deltatoken" in r["query"] for r in graph)
    assert not any(r["path"].endswith(f"/users/{ann}/contacts") for r in graph)
    got = await personal(s, ann)
    assert set(got) == {"Same", "Title", "Face"}
    assert got["Same"]["id"] == before["Same"]["id"]  # untouched row
    assert got["Title"]["id"] == before["Name"]["id"]  # updated in place
    assert got["Title"]["first_name"] == "New"
    changes = (await s.api.client.get(f"/api/v1/sync-runs/{run['id']}/changes", headers=s.h)).json()
    by_entra = {c["entra_id"]: c["action"] for c in changes["items"]}
    assert by_entra == {
        renamed["id"]: "update",
        gone["id"]: "delete",
        moving["id"]: "delete",
        added["id"]: "create",
    }
    assert kept["id"] not in by_entra
    assert set(await personal(s, bob)) == {"Friend"}


async def test_refused_delta_falls_back_to_listing_compared_by_change_key(
    sync_api: Api, cloud: Cloud
) -> None:
    s, ids = await setup(sync_api, cloud, users=("ann", "bob"))
    ann = ids["ann"]
    for i in range(3):
        add_contact(s, ann, f"Person{i}", f"Last{i}")
    changed = add_contact(s, ann, "Will", "Change")
    share(s, ann)
    s.control("PUT", "/graph-settings", json={"shared_contacts_delta": False})
    await contacts_rules(s, personal={"enabled": True})
    first = (await s.run_worker())[-1]
    assert first["status"] == "succeeded" and first["contacts"]["created"] == 4
    s.control("PATCH", f"/contacts/{changed['id']}", json={"mobilePhone": "+1 206 555 0142"})
    s.cloud.clear_requests()
    run = await s.sync(scopes=["contacts"])
    assert run["contacts"] == {**run["contacts"], "updated": 1, "unchanged": 3, "created": 0}
    graph = graph_requests(s)
    listed = [r for r in graph if r["path"].endswith(f"/users/{ann}/contacts")]
    assert listed and all("$top=999" in r["query"] for r in listed)
    # The refused delta is remembered: an incremental run lists without asking again.
    assert not any("/delta" in r["path"] for r in graph if ann in r["path"])
    assert all(r.get("batch") for r in listed)
    assert (await personal(s, ann))["Change"]["mobile_phone"] == "+1 206 555 0142"


async def test_an_expired_delta_starts_over(sync_api: Api, cloud: Cloud) -> None:
    s, ids = await setup(sync_api, cloud, users=("ann",))
    ann = ids["ann"]
    add_contact(s, ann, "First", "One")
    share(s, ann)
    await contacts_rules(s, personal={"enabled": True})
    await s.run_worker()
    gone = add_contact(s, ann, "Second", "Two")
    s.control("DELETE", f"/contacts/{gone['id']}")
    add_contact(s, ann, "Third", "Three")
    s.control("POST", "/expire-delta-tokens")
    run = await s.sync(scopes=["contacts"])
    assert run["status"] == "succeeded"
    assert run["contacts"] == {**run["contacts"], "created": 1, "unchanged": 1, "deleted": 0}
    assert set(await personal(s, ann)) == {"One", "Three"}
