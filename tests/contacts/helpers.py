"""Scenario helpers for the contacts sync: Outlook folders, sharing and mailboxes seeded through
the emulator's control API, the PBX read back through the public API."""

from __future__ import annotations

from typing import Any

from tests.cloud import Cloud
from tests.conftest import Api
from tests.sync.helpers import Scenario, scenario
from tests.sync.test_user_rules import new_user

PHONE = {"businessPhones": ["+1 425 555 0100"]}


async def setup(
    api: Api, cloud: Cloud, users: tuple[str, ...] = ("ann", "bob", "cat")
) -> tuple[Scenario, dict[str, str]]:
    """A tenant with a few users, all synced to extensions (by name → Entra id)."""
    s = await scenario(api, cloud, users=0, groups=0, seed=1)
    # The generator gives the admin a few contacts of its own: start from none.
    for folder in s.control("GET", f"/users/{s.tenant.admin_id}/contact-folders")["value"]:
        for c in s.control("GET", f"/contact-folders/{folder['id']}/contacts")["value"]:
            s.control("DELETE", f"/contacts/{c['id']}")
    ids = {n: new_user(s, n) for n in users}
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    return s, ids


def folder_of(s: Scenario, user_id: str) -> str:
    """The default Contacts folder of a mailbox (made on first use)."""
    folders = s.control("GET", f"/users/{user_id}/contact-folders")["value"]
    default = [f for f in folders if f.get("isDefault")]
    if default:
        return str(default[0]["id"])
    made = add_contact(s, user_id, "Seed", "Contact")
    s.control("DELETE", f"/contacts/{made['id']}")
    return str(made["parentFolderId"])


def add_contact(
    s: Scenario, owner_id: str, first: str | None, last: str | None, **extra: Any
) -> Any:
    body: dict[str, Any] = {
        "givenName": first,
        "surname": last,
        "displayName": " ".join(p for p in (first, last) if p) or extra.pop("displayName", None),
        **(PHONE if not any(k.endswith("hones") or k == "mobilePhone" for k in extra) else {}),
        **extra,
    }
    return s.control("POST", f"/users/{owner_id}/contacts", json=body)


def share(s: Scenario, user_id: str, shared: bool = True) -> None:
    s.control(
        "POST",
        f"/contact-folders/{folder_of(s, user_id)}/share",
        json={"user_id": s.tenant.admin_id, "shared": shared},
    )


def shared_mailbox(s: Scenario, name: str, member: bool = True) -> str:
    local = name.lower().replace(" ", "")
    created = s.control(
        "POST",
        "/users",
        json={
            "userPrincipalName": f"{local}@{s.tenant.domain}",
            "displayName": name,
            "mail": f"{local}@{s.tenant.domain}",
            "accountEnabled": False,
            "userPurpose": "shared",
        },
    )
    mid = str(created["id"])
    if member:
        s.control("POST", f"/users/{mid}/mailbox-members", json={"user_id": s.tenant.admin_id})
    return mid


async def get(s: Scenario, path: str, **params: Any) -> Any:
    resp = await s.api.client.get(path, params=params or None, headers=s.h)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def all_items(s: Scenario, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await get(s, path, limit=500, **({"cursor": cursor} if cursor else {}))
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


async def personal(s: Scenario, user_id: str) -> dict[str, dict[str, Any]]:
    """The extension's Linkus contacts by last name."""
    ext = next(
        e for e in await s.extensions() if user_id in (e["entra_user_id"], e["former_entra_id"])
    )
    return {
        c["last_name"]: c for c in await all_items(s, f"/api/v1/extensions/{ext['id']}/contacts")
    }


async def phonebooks(s: Scenario) -> dict[str, dict[str, Any]]:
    return {b["name"]: b for b in await all_items(s, "/api/v1/phonebooks")}


async def book_contacts(s: Scenario, book_id: str) -> dict[str, dict[str, Any]]:
    return {c["last_name"]: c for c in await all_items(s, f"/api/v1/phonebooks/{book_id}/contacts")}


async def contacts_rules(s: Scenario, expect: int = 200, **body: Any) -> dict[str, Any]:
    return await s.put_rules("contacts-sync", {"enabled": True, **body}, expect=expect)


def codes(run: dict[str, Any], kind: str = "warnings") -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for item in run[kind]:
        if item["scope"] == "contacts":
            found.setdefault(item["code"], set()).add(item["source_id"])
    return found


def graph_requests(s: Scenario) -> list[dict[str, Any]]:
    """This tenant's Graph requests in the emulator's log."""
    return [r for r in s.cloud.requests("/v1.0/") if r.get("tenant_id") == s.tid]
