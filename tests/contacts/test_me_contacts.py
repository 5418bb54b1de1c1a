"""Linkus self-service with synced contacts: /api/v1/me/contacts answers the caller's synced
Outlook contacts, the same rows as the extension's contacts."""

from __future__ import annotations

from tests.cloud import Cloud
from tests.conftest import Api
from tests.contacts.helpers import add_contact, all_items, contacts_rules, personal, setup, share
from tests.sso.helpers import SsoScenario, bearer


async def test_me_contacts_lists_the_callers_synced_contacts(sync_api: Api, cloud: Cloud) -> None:
    s, ids = await setup(sync_api, cloud, users=("ann", "bob"))
    ann, bob = ids["ann"], ids["bob"]
    add_contact(s, ann, "Pavel", "Bansky")
    add_contact(s, bob, "Other", "Person")
    share(s, ann)
    share(s, bob)
    await contacts_rules(s, personal={"enabled": True, "range": {"mode": "all"}})
    run = (await s.run_worker())[-1]
    assert run["status"] == "succeeded", run["failures"]
    assert run["contacts"]["created"] == 2
    sso = SsoScenario(s)
    await sso.enable()
    token, body = await sso.access_token(s.users()[ann].user_principal_name)
    me = await sync_api.client.get("/api/v1/me/contacts", headers=bearer(token))
    assert me.status_code == 200, me.text
    items = me.json()["items"]
    assert [(c["first_name"], c["last_name"], c["managed_by"]) for c in items] == [
        ("Pavel", "Bansky", "entra")
    ]
    ext_id = body["extension"]["id"] if isinstance(body["extension"], dict) else body["extension"]
    assert items == await all_items(s, f"/api/v1/extensions/{ext_id}/contacts")
    assert set(await personal(s, ann)) == {"Bansky"}
