"""Access tokens follow the extension's current state; Linkus self-service reaches only the caller."""

from __future__ import annotations

import time
from typing import Any

from app.db import session_scope
from app.directory.models import Contact
from app.sso import access
from tests.cloud import Cloud
from tests.conftest import SECRET_KEY, Api
from tests.sso.helpers import bearer, sso_scenario

ME = "/api/v1/me"


async def _can_use(api: Api, token: str) -> bool:
    info = await api.client.get("/sso/userinfo", headers=bearer(token))
    me = await api.client.get(f"{ME}/presence", headers=bearer(token))
    assert info.status_code == me.status_code, (info.text, me.text)
    assert info.status_code in (200, 401), info.text
    if info.status_code == 401:
        assert info.json()["code"] == "unauthorized" and me.json()["code"] == "unauthorized"
    return info.status_code == 200


async def test_disabling_sso_or_the_integration_refuses_tokens_at_once(
    sync_api: Api, cloud: Cloud
) -> None:
    sso = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    token, _ = await sso.access_token(upn)
    assert await _can_use(sync_api, token)
    await sso.enable(enabled=False)
    assert not await _can_use(sync_api, token)
    await sso.enable()
    # Back on: the session that began before stays ended; a new sign-in works.
    assert not await _can_use(sync_api, token)
    token, _ = await sso.access_token(upn)
    assert await _can_use(sync_api, token)
    resp = await sync_api.client.post("/api/v1/integration/disable", json={}, headers=sso.s.h)
    assert resp.status_code == 200
    assert not await _can_use(sync_api, token)


async def test_a_code_is_refused_when_sso_went_off_before_the_exchange(
    sync_api: Api, cloud: Cloud
) -> None:
    sso = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    landing = await sso.sign_in(upn)
    await sso.enable(enabled=False)
    resp = await sso.token(landing.params["sso_code"])
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_code"
    assert "single sign-on is off" in resp.json()["detail"]


async def test_deleted_or_released_extensions_lose_their_tokens(
    sync_api: Api, cloud: Cloud
) -> None:
    sso = await sso_scenario(sync_api, cloud)
    deleted_ext, deleted_upn = await sso.synced_user(0)
    released_ext, released_upn = await sso.synced_user(1)
    kept_ext, kept_upn = await sso.synced_user(2)
    deleted_token, _ = await sso.access_token(deleted_upn)
    released_token, _ = await sso.access_token(released_upn)
    kept_token, _ = await sso.access_token(kept_upn)
    pending_code = (await sso.sign_in(deleted_upn)).params["sso_code"]
    # Deleted in Entra: its extension is deleted by the sync.
    sso.s.control("DELETE", f"/users/{deleted_ext['entra_user_id']}")
    await sso.s.sync()
    gone = await sync_api.client.get(f"/api/v1/extensions/{deleted_ext['id']}", headers=sso.s.h)
    assert gone.status_code == 404
    assert not await _can_use(sync_api, deleted_token)
    assert (await sso.token(pending_code)).status_code == 400
    # Out of range with automatic deletion off: released to the PBX.
    rules = await sso.s.put_rules(
        "user-sync",
        {
            "enabled": True,
            "auto_delete_out_of_range": False,
            "range": {"mode": "groups", "group_ids": [await _group_of(sso, kept_ext)]},
        },
    )
    assert rules["state"] == "active"
    await sso.s.sync()
    released = await sync_api.client.get(
        f"/api/v1/extensions/{released_ext['id']}", headers=sso.s.h
    )
    assert released.json()["managed_by"] == "pbx", released.json()
    assert released.json()["former_entra_id"] == released_ext["entra_user_id"]
    assert not await _can_use(sync_api, released_token)
    assert await _can_use(sync_api, kept_token)


async def _group_of(sso: Any, ext: dict[str, Any]) -> str:
    """A group holding only this extension's user."""
    group = sso.s.control(
        "POST", "/groups", json={"displayName": "Only one", "securityEnabled": True}
    )
    sso.s.control("POST", f"/groups/{group['id']}/members", json={"ids": [ext["entra_user_id"]]})
    return str(group["id"])


async def test_disconnect_and_pbx_deletion_refuse_tokens(sync_api: Api, cloud: Cloud) -> None:
    sso = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    token, _ = await sso.access_token(upn)
    resp = await sync_api.client.post("/api/v1/integration/disconnect", json={}, headers=sso.s.h)
    assert resp.status_code == 200
    assert not await _can_use(sync_api, token)
    other = await sso_scenario(sync_api, cloud)
    _, upn2 = await other.synced_user()
    token2, _ = await other.access_token(upn2)
    assert await _can_use(sync_api, token2)
    deleted = await sync_api.client.delete(
        f"/api/v1/pbxes/{other.pbx_id}", headers=sync_api.operator
    )
    assert deleted.status_code == 204
    assert not await _can_use(sync_api, token2)


async def test_forged_and_expired_access_tokens_are_refused(sync_api: Api, cloud: Cloud) -> None:
    sso = await sso_scenario(sync_api, cloud)
    ext, upn = await sso.synced_user()
    token, _ = await sso.access_token(upn)
    head, payload, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    claims = dict(
        extension_id=ext["id"],
        pbx_id=sso.pbx_id,
        number=ext["number"],
        oid=ext["entra_user_id"],
        client="web",
    )
    base = "http://127.0.0.1:8000"
    for bad in (
        f"{head}.{payload}.{flipped}",
        access.issue("another-secret-key", base, **claims),
        access.issue(SECRET_KEY, base, **claims, now=int(time.time()) - 3700),
        access.issue(SECRET_KEY, "https://elsewhere.example", **claims),
        access.issue(SECRET_KEY, base, **{**claims, "oid": "00000000-0000-0000-0000-000000000001"}),
        access.issue(SECRET_KEY, base, **{**claims, "pbx_id": "someone-else"}),
        "not-a-token",
    ):
        assert not await _can_use(sync_api, bad), bad
    assert await _can_use(sync_api, access.issue(SECRET_KEY, base, **claims))


async def test_keys_and_tokens_do_not_cross_routes(sync_api: Api, cloud: Cloud) -> None:
    sso = await sso_scenario(sync_api, cloud)
    ext, upn = await sso.synced_user()
    token, _ = await sso.access_token(upn)
    for path in (f"{ME}/presence", f"{ME}/teams-presence", f"{ME}/contacts", "/sso/userinfo"):
        resp = await sync_api.client.get(path, headers=sso.s.h)
        assert resp.status_code == 401 and resp.json()["code"] == "unauthorized", path
        assert (await sync_api.client.get(path)).status_code == 401, path
    for path in ("/api/v1/pbx", "/api/v1/extensions", f"/api/v1/extensions/{ext['id']}/presence"):
        resp = await sync_api.client.get(path, headers=bearer(token))
        assert resp.status_code == 401 and resp.json()["code"] == "unauthorized", path
    operator = await sync_api.client.get("/api/v1/pbxes", headers=bearer(token))
    assert operator.status_code == 401


async def test_self_service_reads_and_writes_the_callers_own_rows(
    sync_api: Api, cloud: Cloud
) -> None:
    sso = await sso_scenario(sync_api, cloud)
    mine, upn = await sso.synced_user(0)
    theirs, _ = await sso.synced_user(1)
    token, _ = await sso.access_token(upn)
    me = bearer(token)
    h = sso.s.h
    c = sync_api.client

    put = await c.put(f"{ME}/presence", json={"status": "lunch_break"}, headers=me)
    assert put.status_code == 200 and put.json()["status"] == "lunch_break"
    assert put.json()["source"] == "manual"
    seen = await c.get(f"/api/v1/extensions/{mine['id']}/presence", headers=h)
    assert seen.json()["status"] == "lunch_break"
    other = await c.get(f"/api/v1/extensions/{theirs['id']}/presence", headers=h)
    assert other.json()["status"] == "available"
    await c.put(f"/api/v1/extensions/{mine['id']}/presence", json={"status": "away"}, headers=h)
    assert (await c.get(f"{ME}/presence", headers=me)).json()["status"] == "away"
    assert (await c.put(f"{ME}/presence", json={"status": "asleep"}, headers=me)).status_code == 422

    teams = {"enabled": True, "mapping": {"Busy": "business_trip"}}
    put = await c.put(f"{ME}/teams-presence", json=teams, headers=me)
    assert put.status_code == 200 and put.json()["mapping"]["Busy"] == "business_trip"
    seen = await c.get(f"/api/v1/extensions/{mine['id']}/teams-presence", headers=h)
    assert seen.json()["enabled"] is True and seen.json()["mapping"]["Busy"] == "business_trip"
    assert (await c.get(f"/api/v1/extensions/{theirs['id']}/teams-presence", headers=h)).json()[
        "enabled"
    ] is False
    assert (await c.get(f"{ME}/teams-presence", headers=me)).json() == seen.json()

    async with session_scope(sync_api.app.state.sessionmaker) as session:
        for owner, name in ((mine, "Mine"), (theirs, "Theirs")):
            session.add(
                Contact(
                    pbx_id=sso.pbx_id,
                    extension_id=owner["id"],
                    first_name=name,
                    mobile_phone="+15550100",
                    managed_by="entra",
                    entra_id=f"contact-{name}",
                )
            )
    contacts = await c.get(f"{ME}/contacts", headers=me)
    assert contacts.status_code == 200
    assert [x["first_name"] for x in contacts.json()["items"]] == ["Mine"]
    assert (
        contacts.json()["items"]
        == (await c.get(f"/api/v1/extensions/{mine['id']}/contacts", headers=h)).json()["items"]
    )

    books = {}
    for name in ("Sales", "Board", "Everyone"):
        resp = await c.post("/api/v1/phonebooks", json={"name": name}, headers=h)
        books[name] = resp.json()["id"]
    await c.put(
        f"/api/v1/phonebooks/{books['Sales']}/visibility",
        json={"extension_ids": [mine["id"]]},
        headers=h,
    )
    await c.put(
        f"/api/v1/phonebooks/{books['Board']}/visibility",
        json={"extension_ids": [theirs["id"]]},
        headers=h,
    )
    await c.put(f"/api/v1/phonebooks/{books['Everyone']}/visibility", json={"all": True}, headers=h)
    visible = await c.get(f"{ME}/visible-phonebooks", headers=me)
    assert visible.status_code == 200
    assert [b["name"] for b in visible.json()["items"]] == ["Everyone", "Sales"]
    assert visible.json()["next_cursor"] is None
