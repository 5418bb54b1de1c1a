"""Every way a Linkus sign-in is refused: the return URL, the PBX's state, the user, forged tokens."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import httpx
import pytest

from tests.cloud import Cloud
from tests.conftest import Api
from tests.sso.helpers import RETURN_URL, SsoScenario, sso_scenario


async def test_return_urls_outside_the_allowed_ones_are_refused(
    sync_api: Api, cloud: Cloud
) -> None:
    sso = await sso_scenario(sync_api, cloud)
    await sso.enable([RETURN_URL, "linkus://sso", "http://127.0.0.1:5173/app"])
    for evil in (
        "https://pbx.example.com.evil.net/linkus/",
        "https://user@evil.net/linkus/",
        "https://pbx.example.com@evil.net/linkus/",
        "https://pbx.example.com:8443/linkus/",
        "http://pbx.example.com/linkus/",
        "https://pbx.example.com/other/",
        "https://pbx.example.com/linkusx/",
        "https://pbx.example.com/linkus/../admin/",
        "https://pbx.example.com/linkus/%2e%2e/admin/",
        "https://pbx.example.com\\@evil.net/linkus/",
        "//evil.net/linkus/",
        "/linkus/",
        "javascript:alert(1)//pbx.example.com/linkus/",
        "linkus://evil",
        "linkusx://sso",
        "http://127.0.0.1:5174/app",
        "http://127.0.0.1:5173/application",
    ):
        resp = await sso.login(return_url=evil)
        assert resp.status_code == 400, evil
        assert resp.json()["code"] == "return_url_not_allowed", evil
        assert "location" not in resp.headers
    for good in (
        RETURN_URL,
        "https://PBX.example.com:443/linkus/web/?lang=en#/login",
        "linkus://sso/callback",
        "http://127.0.0.1:5173/app/",
    ):
        resp = await sso.login(return_url=good)
        assert resp.status_code == 302, (good, resp.text)
    unknown = await sso.login(pbx_id="00000000-0000-0000-0000-000000000000")
    assert unknown.status_code == 404
    bad_client = await sso.login(client="tablet")
    assert bad_client.status_code == 422


async def test_the_code_goes_into_the_query_before_a_fragment(sync_api: Api, cloud: Cloud) -> None:
    sso = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    landing = await sso.sign_in(upn, return_url=f"{RETURN_URL}?lang=en#/login")
    assert re.fullmatch(
        re.escape(RETURN_URL) + r"\?lang=en&sso_code=[A-Za-z0-9_-]{43}#/login", landing.location
    ), landing.location


async def test_sso_off_refuses_new_sign_ins_also_those_under_way(
    sync_api: Api, cloud: Cloud
) -> None:
    sso = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    under_way = await sso.login()
    await sso.enable(enabled=False)
    off = await sso.login()
    assert (
        off.status_code == 302 and off.headers["location"] == f"{RETURN_URL}?sso_error=sso_disabled"
    )
    cloud.clear_requests()
    landing = await sso.callback(sso.authorize(under_way.headers["location"], upn))
    assert landing.params == {"sso_error": "sso_disabled"}
    assert cloud.requests("/oauth2/v2.0/token") == []


async def test_a_disabled_integration_refuses_sign_ins(sync_api: Api, cloud: Cloud) -> None:
    sso = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    under_way = await sso.login()
    resp = await sync_api.client.post("/api/v1/integration/disable", json={}, headers=sso.s.h)
    assert resp.status_code == 200, resp.text
    refused = await sso.login()
    assert refused.headers["location"] == f"{RETURN_URL}?sso_error=integration_disabled"
    landing = await sso.callback(sso.authorize(under_way.headers["location"], upn))
    assert landing.params == {"sso_error": "integration_disabled"}
    await sync_api.client.post("/api/v1/integration/enable", headers=sso.s.h)
    again = await sso.sign_in(upn)
    assert "sso_code" in again.params


async def test_a_user_without_an_extension_is_not_signed_in(sync_api: Api, cloud: Cloud) -> None:
    sso = await sso_scenario(sync_api, cloud)
    upn = f"newcomer@{sso.s.tenant.domain}"
    sso.s.control(
        "POST",
        "/users",
        json={"displayName": "New Comer", "userPrincipalName": upn, "accountEnabled": True},
    )
    landing = await sso.sign_in(upn)
    assert landing.params == {"sso_error": "user_not_synced"}
    # A manual extension with the same email is no Entra user's extension either.
    assert (
        await sync_api.client.post(
            "/api/v1/extensions",
            json={"number": "7777", "first_name": "New", "email": upn},
            headers=sso.s.h,
        )
    ).status_code == 201
    assert (await sso.sign_in(upn)).params == {"sso_error": "user_not_synced"}


async def test_a_cancelled_sign_in_comes_back_as_access_denied(sync_api: Api, cloud: Cloud) -> None:
    sso = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    cloud.auto_consent(sso.s.tenant, None)
    start = await sso.login()
    ssl = cloud.emulator.ssl_context
    async with httpx.AsyncClient(base_url=cloud.base_url, verify=ssl) as browser:
        page = await browser.get(start.headers["location"])
        ctx = re.search(r"name='ctx' value='([^']+)'", page.text)
        assert ctx, page.text[:300]
        form = {"ctx": ctx.group(1), "loginfmt": upn, "passwd": "Passw0rd!"}
        consent = await browser.post(f"/{sso.s.tid}/login", data=form)
        assert "Permissions requested" in consent.text, consent.text[:300]
        ctx2 = re.search(r"name='ctx' value='([^']+)'", consent.text)
        assert ctx2
        back = await browser.post(
            f"/{sso.s.tid}/Consent/Set", data={"ctx": ctx2.group(1), "action": "cancel"}
        )
    assert back.status_code == 302
    params = dict(httpx.URL(back.headers["location"]).params)
    assert params["error"] == "access_denied"
    landing = await sso.callback(params)
    assert landing.params == {"sso_error": "access_denied"}


async def test_a_paused_user_sync_does_not_lock_people_out(sync_api: Api, cloud: Cloud) -> None:
    sso = await sso_scenario(sync_api, cloud)
    ext, upn = await sso.synced_user()
    resp = await sync_api.client.post(
        "/api/v1/integration/user-sync/pause", json={"delete_extensions": False}, headers=sso.s.h
    )
    assert resp.status_code == 200, resp.text
    frozen = await sync_api.client.get(f"/api/v1/extensions/{ext['id']}", headers=sso.s.h)
    assert frozen.json()["managed_by"] == "entra_frozen"
    landing = await sso.sign_in(upn)
    token = await sso.token(landing.params["sso_code"])
    assert token.status_code == 200 and token.json()["extension"]["id"] == ext["id"]


def _forgeries(tid: str, base: str) -> list[tuple[str, dict[str, Any], str]]:
    now = int(time.time())
    other = "11111111-2222-3333-4444-555555555555"
    return [
        (
            "unknown key",
            {"signing": "unknown_key"},
            "signed with a key the tenant does not publish",
        ),
        ("forged signature", {"signing": "forged_kid"}, "bad signature"),
        (
            "wrong aud",
            {"claims": {"aud": "22222222-0000-0000-0000-000000000000"}},
            "wrong audience",
        ),
        ("wrong iss", {"claims": {"iss": f"{base}/{other}/v2.0"}}, "wrong issuer"),
        ("v1 iss", {"claims": {"iss": f"https://sts.windows.net/{tid}/"}}, "wrong issuer"),
        ("wrong tid", {"claims": {"tid": other}}, "issued for another tenant"),
        ("stale nonce", {"claims": {"nonce": "a-nonce-of-an-earlier-sign-in"}}, "nonce does not"),
        ("no nonce", {"drop": ["nonce"]}, "missing claim nonce"),
        (
            "expired",
            {"claims": {"exp": now - 300, "iat": now - 3900, "nbf": now - 3900}},
            "expired",
        ),
        ("not yet valid", {"claims": {"nbf": now + 600, "iat": now + 600}}, "not valid yet"),
    ]


async def test_forged_id_tokens_are_refused(
    sync_api: Api, cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    sso = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    for name, tamper, reason in _forgeries(sso.s.tid, cloud.base_url):
        sso.tamper(**tamper)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pbx_entra.sso"):
            landing = await sso.sign_in(upn)
        assert landing.params == {"sso_error": "invalid_token"}, name
        refusals = [r.getMessage() for r in caplog.records if r.name == "pbx_entra.sso"]
        assert len(refusals) == 1 and reason in refusals[0], (name, refusals)
        assert "eyJ" not in refusals[0]
        assert sso.s.control("GET", "/id-token-tampering")["value"] == [], name
    # An honest token still signs in afterwards.
    assert "sso_code" in (await sso.sign_in(upn)).params


async def test_rotated_keys_are_fetched_once_more(sync_api: Api, cloud: Cloud) -> None:
    sso: SsoScenario = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    cloud.clear_requests()
    assert "sso_code" in (await sso.sign_in(upn)).params
    assert "sso_code" in (await sso.sign_in(upn)).params
    keys = f"/{sso.s.tid}/discovery/v2.0/keys"
    assert len(cloud.requests(keys)) == 1
    sso.s.control("POST", "/rotate-keys", json={"keep_previous": False})
    assert "sso_code" in (await sso.sign_in(upn)).params
    assert "sso_code" in (await sso.sign_in(upn)).params
    assert len(cloud.requests(keys)) == 2


async def test_an_unregistered_sso_redirect_uri_stops_at_microsoft(
    sync_api: Api, cloud: Cloud
) -> None:
    sso = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    tenant = sso.s.tenant
    cloud.control.patch(
        f"/tenants/{tenant.tenant_id}/apps/{tenant.client_id}",
        json={"redirect_uris": ["http://127.0.0.1:8000/integration/callback"]},
    ).raise_for_status()
    cloud.auto_consent(tenant, upn)
    start = await sso.login()
    page = httpx.get(start.headers["location"], verify=cloud.emulator.ssl_context)
    assert page.status_code == 400 and "AADSTS50011" in page.text
    assert "location" not in page.headers


async def test_an_unreachable_or_failing_identity_platform_is_reported(
    sync_api: Api, cloud: Cloud
) -> None:
    sso = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    tid = sso.s.tid
    try:
        cases = [
            ({"action": "drop", "path": f"/{tid}/oauth2/v2.0/token"}, "login_unavailable"),
            (
                {"action": "error", "status": 503, "path": f"/{tid}/oauth2/v2.0/token"},
                "invalid_token",
            ),
            (
                {"action": "error", "status": 500, "path": f"/{tid}/discovery/v2.0/keys"},
                "login_unavailable",
            ),
        ]
        for fault, code in cases:
            start = await sso.login()
            params = sso.authorize(start.headers["location"], upn)
            if "keys" in fault["path"]:
                sso.s.control("POST", "/rotate-keys", json={"keep_previous": False})
            made = cloud.control.post("/faults", json={"tenant_id": tid, "count": 1, **fault})
            assert made.status_code == 201, made.text
            landing = await sso.callback(params)
            assert landing.params == {"sso_error": code}, (fault, landing)
            cloud.control.delete("/faults")
    finally:
        cloud.control.delete("/faults")
    assert "sso_code" in (await sso.sign_in(upn)).params
