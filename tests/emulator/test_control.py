"""The control API: tenants, apps, directory writes (each in the change log), settings."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from emulator.testing import RunningEmulator
from tests.emulator.support import SeededTenant, register_app, seed_tenant

# The request body of https://learn.microsoft.com/en-us/graph/api/user-post-users (example 1).
ADELE = {
    "accountEnabled": True,
    "displayName": "Adele Vance",
    "mailNickname": "AdeleV",
    "userPrincipalName": "AdeleV@contoso.com",
    "passwordProfile": {"forceChangePasswordNextSignIn": True, "password": "xWwvJ]6NMw+bWH-d"},
}


def changes(control: httpx.Client, tenant_id: str, since: int) -> list[dict[str, Any]]:
    body = control.get(f"/tenants/{tenant_id}/changes", params={"since": since}).json()
    value: list[dict[str, Any]] = body["value"]
    return value


def seq(control: httpx.Client, tenant_id: str) -> int:
    value: int = control.get(f"/tenants/{tenant_id}").json()["seq"]
    return value


def test_tenant_lifecycle_with_explicit_users(control: httpx.Client) -> None:
    summary = seed_tenant(control, users=[ADELE], domain="contoso.com")
    tid = summary["id"]

    assert summary["users"] == 2  # Adele and the admin
    assert summary["admin"]["upn"] == "admin@contoso.com"
    assert tid in [t["id"] for t in control.get("/tenants").json()["value"]]
    adele = control.get(f"/tenants/{tid}/users/AdeleV@contoso.com").json()
    assert adele["displayName"] == "Adele Vance" and adele["accountEnabled"] is True
    assert control.post("/tenants", json={"id": tid}).status_code == 409

    assert control.delete(f"/tenants/{tid}").status_code == 204
    missing = control.get(f"/tenants/{tid}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "Request_ResourceNotFound"


def test_generated_tenant_counts(control: httpx.Client) -> None:
    summary = seed_tenant(control, users=300, groups=12, seed=9)
    assert summary["users"] > 300 and summary["groups"] == 12


def test_user_lifecycle_is_recorded_in_the_change_log(
    control: httpx.Client, tenant: SeededTenant
) -> None:
    tid = tenant.tenant_id
    start = seq(control, tid)
    created = control.post(
        f"/tenants/{tid}/users", json={**ADELE, "userPrincipalName": f"AdeleV@{tenant.domain}"}
    )
    assert created.status_code == 201
    uid = created.json()["id"]
    patched = control.patch(
        f"/tenants/{tid}/users/{uid}",
        json={
            "jobTitle": "Retail Manager",
            "businessPhones": ["+1 425 555 0109 x4711"],
            "onPremisesExtensionAttributes": {"extensionAttribute1": "4711"},
        },
    ).json()
    assert patched["jobTitle"] == "Retail Manager"
    assert patched["onPremisesExtensionAttributes"]["extensionAttribute1"] == "4711"
    assert control.post(f"/tenants/{tid}/users/{uid}/disable").json()["accountEnabled"] is False
    assert control.post(f"/tenants/{tid}/users/{uid}/enable").json()["accountEnabled"] is True
    deleted = control.post(f"/tenants/{tid}/users/{uid}/soft-delete").json()
    assert deleted["deletedDateTime"] is not None
    assert control.post(f"/tenants/{tid}/users/{uid}/restore").json()["deletedDateTime"] is None
    control.post(f"/tenants/{tid}/users/{uid}/soft-delete")
    assert control.delete(f"/tenants/{tid}/users/{uid}").status_code == 204
    assert control.get(f"/tenants/{tid}/users/{uid}").status_code == 404

    log = [(e["kind"], e["change_type"], e["removed_reason"]) for e in changes(control, tid, start)]
    assert log == [
        ("user", "created", None),
        ("user", "updated", None),
        ("user", "updated", None),
        ("user", "updated", None),
        ("user", "deleted", "changed"),
        ("user", "updated", None),
        ("user", "deleted", "changed"),
        ("user", "deleted", "deleted"),
    ]


def test_user_payload_errors(control: httpx.Client, tenant: SeededTenant) -> None:
    tid = tenant.tenant_id
    taken = control.post(f"/tenants/{tid}/users", json={"userPrincipalName": tenant.admin_upn})
    assert taken.status_code == 400
    assert "already exists" in taken.json()["error"]["message"]
    unknown = control.post(
        f"/tenants/{tid}/users", json={"userPrincipalName": f"x@{tenant.domain}", "shoeSize": 9}
    )
    assert unknown.status_code == 400
    assert control.post(f"/tenants/{tid}/users", content=b"{nope").status_code == 400


def test_groups_and_memberships(control: httpx.Client, tenant: SeededTenant) -> None:
    tid = tenant.tenant_id
    start = seq(control, tid)
    # The request body of https://learn.microsoft.com/en-us/graph/api/group-post-groups
    # (example 2, with members bound by reference).
    group = control.post(
        f"/tenants/{tid}/groups",
        json={
            "description": "Group with designated owner and members",
            "displayName": "Operations group",
            "groupTypes": [],
            "mailEnabled": False,
            "mailNickname": "operations2019",
            "securityEnabled": True,
            "members@odata.bind": [
                f"https://graph.microsoft.com/v1.0/users/{tenant.admin_id}",
            ],
        },
    )
    assert group.status_code == 201
    gid = group.json()["id"]
    inner = control.post(f"/tenants/{tid}/groups", json={"displayName": "Inner"}).json()["id"]
    # https://learn.microsoft.com/en-us/graph/api/group-post-members request body.
    added = control.post(
        f"/tenants/{tid}/groups/{gid}/members",
        json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{inner}"},
    )
    assert sorted(added.json()["members"]) == sorted([tenant.admin_id, inner])
    again = control.post(f"/tenants/{tid}/groups/{gid}/members", json={"id": inner})
    assert again.status_code == 400
    assert "already exist" in again.json()["error"]["message"]
    cycle = control.post(f"/tenants/{tid}/groups/{inner}/members", json={"id": gid})
    assert cycle.status_code == 400
    assert control.delete(f"/tenants/{tid}/groups/{gid}/members/{inner}").status_code == 204

    m365 = control.post(
        f"/tenants/{tid}/groups",
        json={"displayName": "Library Assist", "groupTypes": ["Unified"], "mailEnabled": True},
    ).json()["id"]
    assert control.delete(f"/tenants/{tid}/groups/{m365}").status_code == 204
    assert control.get(f"/tenants/{tid}/groups/{m365}").json()["deletedDateTime"] is not None
    assert control.delete(f"/tenants/{tid}/groups/{gid}").status_code == 204
    assert control.get(f"/tenants/{tid}/groups/{gid}").status_code == 404

    log = [
        (e["kind"], e["change_type"], e["member_id"], e["added"], e["removed_reason"])
        for e in changes(control, tid, start)
    ]
    assert log == [
        ("group", "created", None, None, None),
        ("membership", "updated", tenant.admin_id, True, None),
        ("group", "created", None, None, None),
        ("membership", "updated", inner, True, None),
        ("membership", "updated", inner, False, None),
        ("group", "created", None, None, None),
        ("group", "deleted", None, None, "changed"),  # Microsoft 365 groups are restorable
        ("group", "deleted", None, None, "deleted"),  # security groups are gone at once
    ]


def test_contacts_mailboxes_and_presence(control: httpx.Client, tenant: SeededTenant) -> None:
    tid = tenant.tenant_id
    mailbox = control.post(
        f"/tenants/{tid}/users",
        json={
            "userPrincipalName": f"sales@{tenant.domain}",
            "displayName": "Sales",
            "mail": f"sales@{tenant.domain}",
            "accountEnabled": False,
            "userPurpose": "shared",
        },
    ).json()
    start = seq(control, tid)
    # https://learn.microsoft.com/en-us/graph/api/user-post-contacts request body.
    contact = control.post(
        f"/tenants/{tid}/users/{mailbox['id']}/contacts",
        json={
            "givenName": "Pavel",
            "surname": "Bansky",
            "emailAddresses": [{"address": "pavelb@fabrikam.onmicrosoft.com", "name": "Pavel"}],
            "businessPhones": ["+1 732 555 0102"],
        },
    )
    assert contact.status_code == 201
    folder_id = contact.json()["parentFolderId"]
    cid = contact.json()["id"]
    control.patch(f"/tenants/{tid}/contacts/{cid}", json={"mobilePhone": "+1 732 555 0199"})
    assert control.delete(f"/tenants/{tid}/contacts/{cid}").status_code == 204

    members = control.post(
        f"/tenants/{tid}/users/{mailbox['id']}/mailbox-members", json={"user_id": tenant.admin_id}
    ).json()["mailboxMembers"]
    assert members == [tenant.admin_id]
    shared = control.post(
        f"/tenants/{tid}/contact-folders/{folder_id}/share", json={"user_id": tenant.admin_id}
    ).json()
    assert shared["sharedWith"] == [tenant.admin_id]
    presence = control.put(
        f"/tenants/{tid}/users/{tenant.admin_id}/presence",
        json={"availability": "Busy", "activity": "InACall"},
    )
    assert presence.json() == {"availability": "Busy", "activity": "InACall"}
    bad = control.put(
        f"/tenants/{tid}/users/{tenant.admin_id}/presence", json={"availability": "Sleepy"}
    )
    assert bad.status_code == 400

    log = [
        (e["kind"], e["change_type"], e["owner_id"], e["folder_id"])
        for e in changes(control, tid, start)
    ]
    assert log == [
        ("contact", "created", mailbox["id"], folder_id),
        ("contact", "updated", mailbox["id"], folder_id),
        ("contact", "deleted", mailbox["id"], folder_id),
        ("presence", "updated", None, None),
    ]


def test_expire_delta_tokens(control: httpx.Client, tenant: SeededTenant) -> None:
    tid = tenant.tenant_id
    control.patch(f"/tenants/{tid}/users/{tenant.admin_id}", json={"jobTitle": "CEO"})
    current = seq(control, tid)
    answer = control.post(f"/tenants/{tid}/expire-delta-tokens").json()
    assert answer["min_valid_delta_seq"] == current + 1


def test_apps_show_the_secret_once(control: httpx.Client, tenant: SeededTenant) -> None:
    tid = tenant.tenant_id
    app = register_app(
        control,
        tid,
        app_id="11111111-2222-3333-4444-555555555555",
        redirect_uris=["https://pbx.example.com/cb"],
        app_roles=["User.Read.All"],
        secret={"value": "my-secret-value", "expires_in_days": 1},
    )
    assert app["secret"]["value"] == "my-secret-value" and app["secret"]["hint"] == "my-"
    fetched = control.get(f"/tenants/{tid}/apps/{app['app_id']}").json()
    assert "value" not in fetched["secrets"][0]
    assert fetched["app_roles"] == ["User.Read.All"]
    assert control.get(f"/tenants/{tid}/apps").json()["value"][-1]["app_id"] == app["app_id"]
    assert control.delete(f"/tenants/{tid}/apps/{app['app_id']}").status_code == 204


def test_settings_need_a_known_user(control: httpx.Client, tenant: SeededTenant) -> None:
    path = f"/tenants/{tenant.tenant_id}/settings"
    assert control.put(path, json={"auto_consent_user": "nobody@nowhere"}).status_code == 400
    updated = control.put(
        path, json={"auto_consent_user": tenant.admin_upn, "access_token_lifetime": 120}
    ).json()
    assert updated["auto_consent_user"] == tenant.admin_upn
    assert updated["access_token_lifetime"] == 120
    assert control.put(path, json={"auto_consent_user": None}).json()["auto_consent_user"] is None


@pytest.mark.parametrize("path", ["/tenants/nope", "/tenants/nope/users", "/faults/nope"])
def test_unknown_objects_are_404(control: httpx.Client, path: str) -> None:
    response = control.get(path) if "faults" not in path else control.delete(path)
    assert response.status_code == 404


def test_control_api_is_not_in_the_request_log(
    emulator: RunningEmulator, control: httpx.Client
) -> None:
    control.get("/tenants")
    assert not any(
        e["path"].startswith("/_emulator") for e in control.get("/requests").json()["value"]
    )


def test_graph_settings_and_subscription_hooks_through_the_control_api(
    control: httpx.Client, tenant: SeededTenant
) -> None:
    rate = control.put(
        f"/tenants/{tenant.tenant_id}/graph-settings", json={"delta_replay_rate": 0.5}
    )
    assert rate.status_code == 200 and rate.json()["delta_replay_rate"] == 0.5
    bad = control.put(f"/tenants/{tenant.tenant_id}/graph-settings", json={"delta_replay_rate": 2})
    assert bad.status_code == 400
    reset = control.put(
        f"/tenants/{tenant.tenant_id}/graph-settings", json={"force_delta_resync": True}
    )
    assert reset.json()["reset_generation"] >= 1
    listed = control.get("/subscriptions", params={"tenant_id": tenant.tenant_id})
    assert listed.status_code == 200 and listed.json()["value"] == []
    missing = control.post("/subscriptions/nope/lifecycle", json={"event": "missed"})
    assert missing.status_code == 404
    wrong = control.post("/subscriptions/nope/lifecycle", json={"event": "other"})
    assert wrong.status_code == 400
    assert control.post("/subscriptions/nope/expire").status_code == 404
    tuned = control.put("/notifications/settings", json={"batch_window": 0.05})
    assert tuned.status_code == 200 and tuned.json()["batch_window"] == 0.05
    assert control.put("/notifications/settings", json={"nonsense": 1}).status_code == 400
    assert isinstance(control.get("/notifications/deliveries").json()["value"], list)


def test_contacts_load_fills_shared_folders_and_mailboxes(
    control: httpx.Client, tenant: SeededTenant
) -> None:
    tid = tenant.tenant_id
    before = seq(control, tid)
    users = control.get(f"/tenants/{tid}/users", params={"top": 100}).json()["value"]
    owners = [u["id"] for u in users if u["accountEnabled"] and not u["isAdmin"]][:3]
    body = {
        "owners": owners,
        "per_owner": 7,
        "share_with": tenant.admin_id,
        "mailboxes": 2,
        "per_mailbox": 11,
        "member": tenant.admin_id,
    }
    loaded = control.post(f"/tenants/{tid}/contacts-load", json=body).json()
    assert loaded["owners"] == 3 and len(loaded["mailboxes"]) == 2
    for owner in owners:
        folders = control.get(f"/tenants/{tid}/users/{owner}/contact-folders").json()["value"]
        default = next(f for f in folders if f["isDefault"])
        assert tenant.admin_id in default["sharedWith"] and default["contacts"] >= 7
    for mailbox in loaded["mailboxes"]:
        user = control.get(f"/tenants/{tid}/users/{mailbox}").json()
        assert user["userPurpose"] == "shared" and user["accountEnabled"] is False
        assert tenant.admin_id in user["mailboxMembers"]
        folders = control.get(f"/tenants/{tid}/users/{mailbox}/contact-folders").json()["value"]
        assert [f["contacts"] for f in folders] == [11]
    assert seq(control, tid) == before  # loaded data exists "from the start"
