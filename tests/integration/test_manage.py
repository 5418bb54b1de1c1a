"""Managing a connection: token errors, reauthorization, secret updates, disable/enable/disconnect."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from app.db import create_engine, sessionmaker
from app.directory.models import Extension, ExtensionGroup, Phonebook
from app.integration.tokens import access_token
from app.runs.models import SyncRun
from tests.cloud import Cloud, configure, connect
from tests.conftest import Api
from tests.directory.helpers import set_managed
from tests.directory.test_extensions import make_ext


async def _connected(
    api: Api, cloud: Cloud, **tenant_kw: Any
) -> tuple[Any, dict[str, Any], dict[str, str]]:
    tenant = cloud.tenant(**tenant_kw)
    # Short-lived access tokens, so every call below really refreshes.
    cloud.configure(tenant, access_token_lifetime=60)
    pbx, h = await api.new_pbx()
    await connect(api, cloud, tenant, h)
    return tenant, pbx, h


def _forget_tokens(api: Api) -> None:
    api.app.state.runtime.tokens.clear()


async def test_revoked_refresh_token_sets_error_then_reauthorize_reconnects(
    cloud_api: Api, cloud: Cloud
) -> None:
    tenant, _, h = await _connected(cloud_api, cloud)
    cloud.revoke_sessions(tenant, tenant.admin_id)
    _forget_tokens(cloud_api)
    resp = await cloud_api.client.get("/api/v1/integration/directory/groups", headers=h)
    assert resp.status_code == 409 and resp.json()["code"] == "integration_error"
    body = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert body["status"] == "error"
    assert body["last_error"]["code"].startswith("AADSTS") and body["last_error"]["message"]
    # Graph calls now refuse at once, and a new consent brings it back.
    again = await cloud_api.client.get("/api/v1/integration/directory/groups", headers=h)
    assert again.status_code == 409
    url = (await cloud_api.client.post("/api/v1/integration/reauthorize", headers=h)).json()[
        "authorization_url"
    ]
    params = cloud.follow_authorize(url)
    assert (await cloud_api.client.post("/integration/callback", data=params)).status_code == 200
    body = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert body["status"] == "connected" and body["last_error"] is None
    assert (
        await cloud_api.client.get("/api/v1/integration/directory/groups", headers=h)
    ).status_code == 200


async def test_expired_secret_sets_error_and_a_new_secret_reconnects(
    cloud_api: Api, cloud: Cloud
) -> None:
    tenant, _, h = await _connected(cloud_api, cloud)
    cloud.expire_secret(tenant, tenant.secret_key_id)
    _forget_tokens(cloud_api)
    assert (
        await cloud_api.client.get("/api/v1/integration/directory/groups", headers=h)
    ).status_code == 409
    body = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert body["status"] == "error" and body["last_error"]["code"] == "AADSTS7000222"

    wrong = await cloud_api.client.post(
        "/api/v1/integration/client-secret", json={"client_secret": "nope"}, headers=h
    )
    assert wrong.status_code == 422 and wrong.json()["code"] == "client_secret_rejected"
    kept = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert (
        kept["client_secret_hint"] == "…" + tenant.client_secret[-4:] and kept["status"] == "error"
    )

    new = cloud.add_secret(tenant)
    ok = await cloud_api.client.post(
        "/api/v1/integration/client-secret", json={"client_secret": new["value"]}, headers=h
    )
    assert ok.status_code == 200
    assert ok.json()["status"] == "connected" and ok.json()["last_error"] is None
    assert ok.json()["client_secret_hint"] == "…" + new["value"][-4:]
    assert (
        await cloud_api.client.get("/api/v1/integration/directory/groups", headers=h)
    ).status_code == 200


async def test_secret_update_needs_a_configured_integration(cloud_api: Api) -> None:
    _, h = await cloud_api.new_pbx()
    resp = await cloud_api.client.post(
        "/api/v1/integration/client-secret", json={"client_secret": "x"}, headers=h
    )
    assert resp.status_code == 409 and resp.json()["code"] == "integration_not_configured"


async def test_one_refresh_at_a_time_per_pbx(cloud_api: Api, cloud: Cloud) -> None:
    _, pbx, _ = await _connected(cloud_api, cloud)
    runtime = cloud_api.app.state.runtime
    _forget_tokens(cloud_api)
    cloud.clear_requests()
    tokens = await asyncio.gather(*[access_token(runtime, pbx["id"]) for _ in range(8)])
    assert len(set(tokens)) == 1
    token_calls = [r for r in cloud.requests("/oauth2/v2.0/token") if r["method"] == "POST"]
    assert len(token_calls) == 1


async def _managed(
    database_url: str, pbx_id: str
) -> dict[str, list[tuple[str, str | None, str | None]]]:
    engine = create_engine(database_url)
    out: dict[str, list[tuple[str, str | None, str | None]]] = {}
    async with sessionmaker(engine)() as session:
        for name, model in (("ext", Extension), ("group", ExtensionGroup), ("book", Phonebook)):
            rows = (await session.execute(select(model).where(model.pbx_id == pbx_id))).scalars()
            out[name] = sorted(
                ((r.managed_by, r.entra_id, r.former_entra_id) for r in rows),
                key=lambda t: tuple(x or "" for x in t),
            )
    await engine.dispose()
    return out


async def _synced_objects(api: Api, database_url: str, h: dict[str, str]) -> None:
    ext = await make_ext(api, h, "500")
    group = (
        await api.client.post("/api/v1/extension-groups", json={"name": "G"}, headers=h)
    ).json()
    book = (await api.client.post("/api/v1/phonebooks", json={"name": "B"}, headers=h)).json()
    await set_managed(database_url, Extension, ext["id"], "entra", "u-1")
    await set_managed(database_url, ExtensionGroup, group["id"], "entra", "g-1")
    await set_managed(database_url, Phonebook, book["id"], "entra", "m-1")
    await make_ext(api, h, "501")  # a manual one, untouched by all of this


async def test_disable_retaining_freezes_and_enable_unfreezes(
    cloud_api: Api, cloud: Cloud, database_url: str
) -> None:
    tenant, pbx, h = await _connected(cloud_api, cloud)
    await _synced_objects(cloud_api, database_url, h)
    resp = await cloud_api.client.post("/api/v1/integration/disable", json={}, headers=h)
    assert resp.status_code == 200 and resp.json() == {"status": "disabled", "cleanup_run_id": None}
    state = await _managed(database_url, pbx["id"])
    assert state["ext"] == [("entra_frozen", "u-1", None), ("pbx", None, None)]
    assert state["group"] == [("entra_frozen", "g-1", None)] and state["book"] == [
        ("entra_frozen", "m-1", None)
    ]

    # Everything is read-only while disabled.
    body = {
        "client_id": tenant.client_id,
        "tenant_id": tenant.tenant_id,
        "client_secret": tenant.client_secret,
    }
    for method, path, payload in [
        ("PUT", "/api/v1/integration", body),
        ("POST", "/api/v1/integration/client-secret", {"client_secret": tenant.client_secret}),
    ]:
        r = await cloud_api.client.request(method, path, json=payload, headers=h)
        assert r.status_code == 409 and r.json()["code"] == "integration_disabled", path
    assert (
        await cloud_api.client.post("/api/v1/integration/disable", json={}, headers=h)
    ).status_code == 409
    assert (await cloud_api.client.get("/api/v1/integration", headers=h)).json()[
        "status"
    ] == "disabled"

    enabled = await cloud_api.client.post("/api/v1/integration/enable", headers=h)
    assert enabled.status_code == 200 and enabled.json()["status"] == "connected"
    # No section is active yet, so nothing is unfrozen and no resync is queued.
    assert (await _managed(database_url, pbx["id"]))["ext"][0][0] == "entra_frozen"
    assert (await cloud_api.client.post("/api/v1/integration/enable", headers=h)).status_code == 409


async def test_disable_deleting_queues_a_cleanup_run(
    cloud_api: Api, cloud: Cloud, database_url: str
) -> None:
    _, _pbx, h = await _connected(cloud_api, cloud)
    await _synced_objects(cloud_api, database_url, h)
    resp = await cloud_api.client.post(
        "/api/v1/integration/disable",
        json={"delete_extensions": True, "delete_extension_groups": False},
        headers=h,
    )
    assert resp.status_code == 202 and resp.json()["cleanup_run_id"]
    engine = create_engine(database_url)
    async with sessionmaker(engine)() as session:
        run = await session.get(SyncRun, resp.json()["cleanup_run_id"])
        # The worker is woken once the request committed: it may have taken the run already.
        assert run is not None and run.trigger == "cleanup"
        assert run.status in ("queued", "running", "succeeded")
        assert run.scopes == ["users"] and run.plan == {"cleanup": ["extensions"]}
    await engine.dispose()


async def test_disconnect_releases_retained_objects_and_forgets_the_config(
    sync_api: Api, cloud: Cloud, database_url: str
) -> None:
    cloud_api = sync_api  # the worker is driven below, so the state before the cleanup is seen
    _, pbx, h = await _connected(cloud_api, cloud)
    await _synced_objects(cloud_api, database_url, h)
    resp = await cloud_api.client.post(
        "/api/v1/integration/disconnect", json={"delete_phonebooks": True}, headers=h
    )
    assert resp.status_code == 202 and resp.json()["status"] == "not_configured"
    state = await _managed(database_url, pbx["id"])
    assert state["ext"] == [("pbx", None, None), ("pbx", None, "u-1")]
    assert state["group"] == [("pbx", None, "g-1")]
    assert state["book"] == [("entra_frozen", "m-1", None)]  # until the cleanup run deletes it
    cleanup_id = resp.json()["cleanup_run_id"]
    assert await cloud_api.app.state.worker.run_once() == cleanup_id
    cleanup = (await cloud_api.client.get(f"/api/v1/sync-runs/{cleanup_id}", headers=h)).json()
    assert cleanup["trigger"] == "cleanup" and cleanup["status"] == "succeeded", cleanup
    after = await _managed(database_url, pbx["id"])
    assert after["book"] == [] and after["ext"] == state["ext"] and after["group"] == state["group"]
    body = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert (
        body["status"] == "not_configured"
        and body["client_id"] is None
        and body["authorized_account"] is None
    )
    # Released objects are fully editable again.
    ext = next(
        e
        for e in (await cloud_api.client.get("/api/v1/extensions", headers=h)).json()["items"]
        if e["former_entra_id"]
    )
    edit = await cloud_api.client.patch(
        f"/api/v1/extensions/{ext['id']}", json={"first_name": "Free"}, headers=h
    )
    assert edit.status_code == 200
    assert (
        await cloud_api.client.post("/api/v1/integration/disconnect", json={}, headers=h)
    ).status_code == 409


async def test_directory_group_picker_pages_and_types(cloud_api: Api, cloud: Cloud) -> None:
    tenant, _, h = await _connected(cloud_api, cloud, users=40, groups=12)
    all_groups = cloud.control.get(f"/tenants/{tenant.tenant_id}/groups").json()
    groups = all_groups["value"] if isinstance(all_groups, dict) else all_groups
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = (
            await cloud_api.client.get(
                "/api/v1/integration/directory/groups", params=params, headers=h
            )
        ).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(g["id"] for g in seen) == sorted(g["id"] for g in groups)
    assert {g["type"] for g in seen} <= {"security", "microsoft365", "distribution", "other"}
    by_id = {g["id"]: g for g in groups}
    for g in seen:
        source = by_id[g["id"]]
        expected = (
            "microsoft365"
            if "Unified" in source.get("groupTypes", [])
            else "security"
            if source.get("securityEnabled")
            else "distribution"
            if source.get("mailEnabled")
            else "other"
        )
        assert g["type"] == expected
    name = groups[0]["displayName"]
    found = (
        await cloud_api.client.get(
            "/api/v1/integration/directory/groups", params={"search": name}, headers=h
        )
    ).json()
    assert groups[0]["id"] in [g["id"] for g in found["items"]]
    bad = await cloud_api.client.get(
        "/api/v1/integration/directory/groups", params={"cursor": "%%%"}, headers=h
    )
    assert bad.status_code == 400


async def test_shared_mailbox_picker_uses_batch(cloud_api: Api, cloud: Cloud) -> None:
    tenant, _, h = await _connected(cloud_api, cloud, users=60, groups=4)
    state = cloud.emulator.state.tenants[tenant.tenant_id]
    shared_all = {u.id for u in state.users.values() if u.user_purpose == "shared"}
    # Delegated MailboxSettings.Read reads only mailboxes the signed-in admin is a member of.
    shared = {uid for uid in shared_all if tenant.admin_id in state.users[uid].mailbox_members}
    assert shared and shared != shared_all
    cloud.clear_requests()
    resp = await cloud_api.client.get("/api/v1/integration/directory/shared-mailboxes", headers=h)
    assert resp.status_code == 200
    assert {m["id"] for m in resp.json()["items"]} == shared
    logged = cloud.requests("/v1.0/")
    top_level = [r["path"] for r in logged if not r.get("batch")]
    inside = [r["path"] for r in logged if r.get("batch")]
    assert any(p.endswith("/$batch") for p in top_level)
    assert not any("mailboxSettings" in p for p in top_level)
    assert sum("mailboxSettings/userPurpose" in p for p in inside) >= len(shared)


async def test_pickers_need_a_connection(cloud_api: Api) -> None:
    _, h = await cloud_api.new_pbx()
    for path in (
        "/api/v1/integration/directory/groups",
        "/api/v1/integration/directory/shared-mailboxes",
    ):
        resp = await cloud_api.client.get(path, headers=h)
        assert resp.status_code == 409 and resp.json()["code"] == "integration_not_connected"


async def test_a_different_authorization_account_is_warned(cloud_api: Api, cloud: Cloud) -> None:
    tenant, _, h = await _connected(cloud_api, cloud, users=5)
    other = next(
        u
        for u in cloud.emulator.state.tenants[tenant.tenant_id].users.values()
        if u.account_enabled and u.id != tenant.admin_id and u.user_purpose == "user"
    )
    cloud.revoke_sessions(tenant, tenant.admin_id)
    _forget_tokens(cloud_api)
    await cloud_api.client.get("/api/v1/integration/directory/groups", headers=h)
    cloud.auto_consent(tenant, other.user_principal_name)
    url = (await cloud_api.client.post("/api/v1/integration/reauthorize", headers=h)).json()[
        "authorization_url"
    ]
    assert (
        await cloud_api.client.post("/integration/callback", data=cloud.follow_authorize(url))
    ).status_code == 200
    body = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert body["status"] == "connected" and body["authorized_account"] == other.user_principal_name
    [warning] = [w for w in body["warnings"] if w["code"] == "authorization_account_changed"]
    assert tenant.admin_upn in warning["message"]


async def test_secret_removed_before_the_callback_fails_cleanly(
    cloud_api: Api, cloud: Cloud
) -> None:
    tenant = cloud.tenant()
    _, h = await cloud_api.new_pbx()
    put = await configure(cloud_api, tenant, h)
    params = cloud.follow_authorize(put.json()["authorization_url"])
    cloud.expire_secret(tenant, tenant.secret_key_id)
    resp = await cloud_api.client.post("/integration/callback", data=params)
    assert (
        resp.status_code == 400 and "AADSTS7000222" in resp.text
    ) or "AADSTS7000215" in resp.text
    body = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert body["status"] == "awaiting_consent" and body["last_error"]["code"].startswith(
        "AADSTS7000"
    )
    assert body["authorized_account"] is None


async def test_a_token_for_another_tenant_is_refused(
    cloud_api: Api, cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = cloud.tenant()
    _, h = await cloud_api.new_pbx()
    put = await configure(cloud_api, tenant, h)
    params = cloud.follow_authorize(put.json()["authorization_url"])
    msal = cloud_api.app.state.runtime.msal
    real = msal.redeem

    async def other_tenant(*args: Any, **kwargs: Any) -> Any:
        # The identity platform is real; only the token's tenant is swapped, as a token issued
        # for another directory (a multi-tenant registration) would carry.
        result, cache = await real(*args, **kwargs)
        result["id_token_claims"] = {
            **result["id_token_claims"],
            "tid": "11111111-2222-3333-4444-555555555555",
        }
        return result, cache

    monkeypatch.setattr(msal, "redeem", other_tenant)
    resp = await cloud_api.client.post("/integration/callback", data=params)
    assert resp.status_code == 400 and "not the configured tenant" in resp.text
    body = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert body["status"] == "awaiting_consent" and body["last_error"]["code"] == "wrong_tenant"


async def test_enable_unfreezes_active_sections_and_queues_a_resync(
    sync_api: Api, cloud: Cloud
) -> None:
    from tests.sync.helpers import scenario

    s = await scenario(sync_api, cloud, users=4, groups=0, seed=2)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    synced_before = await s.synced()
    assert (
        await s.api.client.post("/api/v1/integration/disable", json={}, headers=s.h)
    ).status_code == 200
    assert all(
        e["managed_by"] == "entra_frozen" for e in await s.extensions() if e["entra_user_id"]
    )
    for method, path, body in [
        ("PUT", "/api/v1/integration/user-sync", {"enabled": True}),
        ("PUT", "/api/v1/integration/deletion-guard", {"enabled": True}),
        ("POST", "/api/v1/integration/user-sync/pause", {}),
        ("POST", "/api/v1/integration/sync", {}),
    ]:
        r = await s.api.client.request(method, path, json=body, headers=s.h)
        assert r.status_code == 409 and r.json()["code"] == "integration_disabled", path
    enabled = await s.api.client.post("/api/v1/integration/enable", headers=s.h)
    assert enabled.status_code == 202
    [run] = await s.run_worker()
    assert run["id"] == enabled.json()["resync_run_id"] and run["trigger"] == "resync"
    assert set(await s.synced()) == set(synced_before)


async def test_disable_with_deletion_runs_the_cleanup_and_keeps_history(
    sync_api: Api, cloud: Cloud
) -> None:
    from tests.sync.helpers import scenario

    s = await scenario(sync_api, cloud, users=4, groups=0, seed=2)
    await s.put_rules("user-sync", {"enabled": True})
    [initial] = await s.run_worker()
    manual = await make_ext(s.api, s.h, "5")
    resp = await s.api.client.post(
        "/api/v1/integration/disable", json={"delete_extensions": True}, headers=s.h
    )
    [cleanup] = await s.run_worker()
    assert (
        cleanup["id"] == resp.json()["cleanup_run_id"]
        and cleanup["users"]["deleted"] == initial["users"]["created"]
    )
    assert [e["id"] for e in await s.extensions()] == [manual["id"]]
    changes = (
        await s.api.client.get(f"/api/v1/sync-runs/{cleanup['id']}/changes", headers=s.h)
    ).json()["items"]
    assert {c["action"] for c in changes} == {"delete"} and len(changes) == cleanup["users"][
        "deleted"
    ]
    await s.api.client.post("/api/v1/integration/disconnect", json={}, headers=s.h)
    history = (await s.api.client.get("/api/v1/sync-runs", headers=s.h)).json()["items"]
    assert {r["id"] for r in history} >= {initial["id"], cleanup["id"]}


async def test_sections_not_built_yet_are_refused_not_reported_done(
    cloud_api: Api, cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.integration import rules

    _, _pbx, h = await _connected(cloud_api, cloud)
    # Every section is built; the table still refuses any section it names.
    assert frozenset() == rules.NOT_AVAILABLE
    monkeypatch.setattr(rules, "NOT_AVAILABLE", frozenset({"presence_sync"}))
    path = "presence-sync"
    resp = await cloud_api.client.put(
        f"/api/v1/integration/{path}", json={"enabled": True}, headers=h
    )
    assert resp.status_code == 422 and resp.json()["code"] == "not_available", path
    after = (await cloud_api.client.get(f"/api/v1/integration/{path}", headers=h)).json()
    assert after["state"] == "off" and after["enabled"] is False, path
    monkeypatch.undo()
    # Presence sync is built: enabling it is accepted, and it queues no run (a loop of its own).
    on = await cloud_api.client.put(
        "/api/v1/integration/presence-sync", json={"enabled": True}, headers=h
    )
    assert on.status_code == 200 and on.json()["enabled"] is True, on.text
    # Switching them off is fine (presence and SSO have no run and no pause).
    for path in ("presence-sync", "sso", "contacts-sync"):
        resp = await cloud_api.client.put(
            f"/api/v1/integration/{path}", json={"enabled": False}, headers=h
        )
        assert resp.status_code == 200 and resp.json()["state"] == "off", path
    runs = (await cloud_api.client.get("/api/v1/sync-runs", headers=h)).json()["items"]
    assert runs == []  # nothing was queued for them
    only = await cloud_api.client.post(
        "/api/v1/integration/sync", json={"scopes": ["contacts"]}, headers=h
    )
    assert only.status_code == 409 and only.json()["code"] == "section_not_active"
    # Contacts sync is built: turning it on is accepted and queues its first run.
    on = await cloud_api.client.put(
        "/api/v1/integration/contacts-sync", json={"enabled": True}, headers=h
    )
    assert on.status_code == 200 and on.json()["state"] == "active", on.text
    runs = (await cloud_api.client.get("/api/v1/sync-runs", headers=h)).json()["items"]
    assert [r["scopes"] for r in runs] == [["contacts"]]
