"""Connecting a PBX to Entra through the real MSAL and httpx paths, against the emulator."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import text

from app.db import create_engine
from tests.cloud import Cloud, configure, connect
from tests.conftest import Api

BAD_GUID = "not-a-guid"


async def test_not_configured_shows_redirect_uris(cloud_api: Api) -> None:
    _, h = await cloud_api.new_pbx()
    body = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert body["status"] == "not_configured"
    assert body["redirect_uri"] == "http://127.0.0.1:8000/integration/callback"
    assert body["sso_redirect_uri"] == "http://127.0.0.1:8000/sso/callback"
    assert body["client_id"] is None and body["client_secret_hint"] is None
    assert body["schedule"] == {"frequency": "daily", "days": [], "time": "00:30"}
    assert body["user_sync"]["state"] == "off" and body["deletion_guard"]["max_deletions"] == 500
    assert body["warnings"] == [] and body["last_sync_run"] is None


@pytest.mark.parametrize(
    "body, field",
    [
        (
            {
                "client_id": BAD_GUID,
                "tenant_id": "00000000-0000-0000-0000-000000000000",
                "client_secret": "x",
            },
            "client_id",
        ),
        (
            {
                "client_id": "00000000-0000-0000-0000-000000000000",
                "tenant_id": BAD_GUID,
                "client_secret": "x",
            },
            "tenant_id",
        ),
        (
            {
                "client_id": "00000000-0000-0000-0000-000000000000",
                "tenant_id": "00000000-0000-0000-0000-000000000000",
                "client_secret": "",
            },
            "client_secret",
        ),
        (
            {
                "client_id": "00000000-0000-0000-0000-000000000000",
                "tenant_id": "00000000-0000-0000-0000-000000000000",
                "client_secret": "x",
                "return_url": "javascript:alert(1)",
            },
            "return_url",
        ),
    ],
)
async def test_put_validates_fields(cloud_api: Api, body: dict[str, Any], field: str) -> None:
    _, h = await cloud_api.new_pbx()
    resp = await cloud_api.client.put("/api/v1/integration", json=body, headers=h)
    assert resp.status_code == 422
    assert any(field in e["loc"] for e in resp.json()["errors"])


async def test_wrong_secret_is_rejected_with_the_aadsts_code(cloud_api: Api, cloud: Cloud) -> None:
    tenant = cloud.tenant()
    _, h = await cloud_api.new_pbx()
    resp = await cloud_api.client.put(
        "/api/v1/integration",
        json={
            "client_id": tenant.client_id,
            "tenant_id": tenant.tenant_id,
            "client_secret": "wrong~secret",
        },
        headers=h,
    )
    assert resp.status_code == 422
    problem = resp.json()
    assert problem["code"] == "client_secret_rejected" and problem["aadsts"] == "AADSTS7000215"
    assert "AADSTS7000215" in problem["detail"]
    after = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert after["status"] == "not_configured" and after["client_id"] is None


async def test_authorization_url_asks_for_consent_with_pkce_and_readonly_scopes(
    cloud_api: Api, cloud: Cloud
) -> None:
    tenant = cloud.tenant()
    _, h = await cloud_api.new_pbx()
    resp = await configure(cloud_api, tenant, h)
    assert resp.status_code == 200 and resp.json()["status"] == "awaiting_consent"
    url = urlparse(resp.json()["authorization_url"])
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert url.path == f"/{tenant.tenant_id}/oauth2/v2.0/authorize"
    assert q["prompt"] == "consent" and q["code_challenge_method"] == "S256" and q["code_challenge"]
    assert q["redirect_uri"] == "http://127.0.0.1:8000/integration/callback"
    scopes = set(q["scope"].split())
    assert {
        "User.Read.All",
        "Group.Read.All",
        "Directory.Read.All",
        "Contacts.Read",
        "Contacts.Read.Shared",
        "MailboxSettings.Read",
        "Presence.Read.All",
        "offline_access",
        "openid",
        "profile",
    } <= scopes
    assert not any("ReadWrite" in s for s in scopes)
    view = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert (
        view["client_id"] == tenant.client_id
        and view["client_secret_hint"] == "…" + tenant.client_secret[-4:]
    )
    assert "client_secret" not in view


async def test_connect_end_to_end(cloud_api: Api, cloud: Cloud) -> None:
    tenant = cloud.tenant(users=30, groups=5)
    summary = cloud.control.get(f"/tenants/{tenant.tenant_id}").json()
    _, h = await cloud_api.new_pbx()
    body = await connect(cloud_api, cloud, tenant, h)
    assert body["authorized_account"] == tenant.admin_upn
    assert body["connected_at"] and body["last_error"] is None
    ds = body["directory_summary"]
    assert ds["organization"] == summary["display_name"]
    assert ds["users"] == summary["users"] and ds["groups"] == summary["groups"]


async def test_state_is_single_use_and_bound(cloud_api: Api, cloud: Cloud) -> None:
    tenant = cloud.tenant()
    _, h = await cloud_api.new_pbx()
    put = await configure(cloud_api, tenant, h)
    params = cloud.follow_authorize(put.json()["authorization_url"])
    forged = await cloud_api.client.post(
        "/integration/callback", data={**params, "state": "forged"}
    )
    assert forged.status_code == 400 and "not valid" in forged.text
    assert (await cloud_api.client.get("/api/v1/integration", headers=h)).json()[
        "status"
    ] == "awaiting_consent"
    ok = await cloud_api.client.post("/integration/callback", data=params)
    assert ok.status_code == 200 and "Data initialization succeeded" in ok.text
    replay = await cloud_api.client.post("/integration/callback", data=params)
    assert replay.status_code == 400
    none = await cloud_api.client.get("/integration/callback")
    assert none.status_code == 400


async def test_consent_declined_keeps_awaiting_consent_with_last_error(
    cloud_api: Api, cloud: Cloud
) -> None:
    tenant = cloud.tenant()
    _, h = await cloud_api.new_pbx()
    put = await configure(cloud_api, tenant, h)
    state = parse_qs(urlparse(put.json()["authorization_url"]).query)["state"][0]
    resp = await cloud_api.client.get(
        "/integration/callback",
        params={
            "error": "access_denied",
            "error_description": "AADSTS65004: User declined to consent.",
            "state": state,
        },
    )
    assert resp.status_code == 400 and "AADSTS65004" in resp.text
    body = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert body["status"] == "awaiting_consent"
    assert body["last_error"]["code"] == "consent_declined"
    # A new consent URL can be asked for.
    again = await cloud_api.client.post("/api/v1/integration/reauthorize", headers=h)
    assert again.status_code == 200 and again.json()["authorization_url"].startswith(cloud.base_url)


async def test_return_url_redirects_after_consent(cloud_api: Api, cloud: Cloud) -> None:
    tenant = cloud.tenant()
    _, h = await cloud_api.new_pbx()
    put = await cloud_api.client.put(
        "/api/v1/integration",
        json={
            "client_id": tenant.client_id,
            "tenant_id": tenant.tenant_id,
            "client_secret": tenant.client_secret,
            "return_url": "https://pbx.example.com/portal/integrations?tab=m365",
        },
        headers=h,
    )
    params = cloud.follow_authorize(put.json()["authorization_url"])
    resp = await cloud_api.client.post("/integration/callback", data=params)
    assert resp.status_code == 302
    assert (
        resp.headers["location"]
        == "https://pbx.example.com/portal/integrations?tab=m365&integration=connected"
    )


async def test_tenant_cannot_change_and_connected_cannot_be_reconfigured(
    cloud_api: Api, cloud: Cloud
) -> None:
    tenant = cloud.tenant()
    other = cloud.tenant()
    _, h = await cloud_api.new_pbx()
    body = {
        "client_id": tenant.client_id,
        "tenant_id": tenant.tenant_id,
        "client_secret": tenant.client_secret,
    }
    assert (
        await cloud_api.client.put("/api/v1/integration", json=body, headers=h)
    ).status_code == 200
    moved = await configure(cloud_api, other, h)
    assert moved.status_code == 409 and moved.json()["code"] == "tenant_change_requires_disconnect"
    await connect(cloud_api, cloud, tenant, h)
    again = await cloud_api.client.put("/api/v1/integration", json=body, headers=h)
    assert again.status_code == 409 and again.json()["code"] == "integration_already_connected"
    assert (
        await cloud_api.client.post("/api/v1/integration/reauthorize", headers=h)
    ).status_code == 409


async def test_no_secret_or_token_in_clear_in_database_responses_or_logs(
    cloud_api: Api, cloud: Cloud, database_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    tenant = cloud.tenant()
    pbx, h = await cloud_api.new_pbx()
    body = await connect(cloud_api, cloud, tenant, h)
    assert tenant.client_secret not in str(body)
    # The refresh token MSAL holds, read back through the service's own decryption.
    from app.integration import repository

    runtime = cloud_api.app.state.runtime
    async with runtime.sessionmaker() as session:
        row = await repository.token_cache(session, pbx["id"])
        assert row is not None
        cache = runtime.box.decrypt(row.cache_enc, associated=f"token_cache:{pbx['id']}")
    import json

    refresh_tokens = [rt["secret"] for rt in json.loads(cache)["RefreshToken"].values()]
    assert refresh_tokens
    engine = create_engine(database_url)
    dump = []
    async with engine.connect() as conn:
        for table in ("integrations", "token_caches", "oauth_states", "api_keys", "pbxes"):
            rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
            dump.append(repr(rows))
    await engine.dispose()
    everything = "\n".join(dump)
    out, err = capfd.readouterr()
    for secret in [tenant.client_secret, *refresh_tokens, pbx["api_key"]]:
        assert secret not in everything
        assert secret not in out and secret not in err


async def test_secret_expiry_is_read_and_warned_30_days_ahead(cloud_api: Api, cloud: Cloud) -> None:
    tenant = cloud.tenant()
    _, h = await cloud_api.new_pbx()
    body = await connect(cloud_api, cloud, tenant, h)
    assert body["client_secret_expires_at"] is not None
    assert not [w for w in body["warnings"] if w["code"] == "client_secret_expiring"]
    short = cloud.add_secret(tenant, expires_in_days=10)
    updated = await cloud_api.client.post(
        "/api/v1/integration/client-secret", json={"client_secret": short["value"]}, headers=h
    )
    assert updated.status_code == 200
    view = updated.json()
    assert view["client_secret_expires_at"].startswith(short["end_date_time"][:16])
    [warning] = [w for w in view["warnings"] if w["code"] == "client_secret_expiring"]
    assert "in 9 days" in warning["message"] or "in 10 days" in warning["message"]
