"""Linkus sign-in with a Microsoft account, end to end against the emulated identity platform."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from sqlalchemy import select

from app.db import session_scope
from app.integration.models import OAuthState
from app.sso.models import SsoCode
from tests.cloud import Cloud
from tests.conftest import Api
from tests.sso.helpers import RETURN_URL, bearer, sso_scenario


async def _rows(api: Api, model: Any) -> list[Any]:
    async with session_scope(api.app.state.sessionmaker) as session:
        return list((await session.execute(select(model))).scalars())


async def test_sign_in_gives_a_one_time_code_then_an_access_token(
    sync_api: Api, cloud: Cloud
) -> None:
    sso = await sso_scenario(sync_api, cloud)
    ext, upn = await sso.synced_user()
    start = await sso.login(client="desktop")
    assert start.status_code == 302
    authorize = urlsplit(start.headers["location"])
    query = {k: v[0] for k, v in parse_qs(authorize.query).items()}
    assert f"{authorize.scheme}://{authorize.netloc}" == cloud.base_url
    assert authorize.path == f"/{sso.s.tid}/oauth2/v2.0/authorize"
    assert query["scope"] == "openid profile email"
    assert query["client_id"] == sso.s.tenant.client_id
    assert query["redirect_uri"] == "http://127.0.0.1:8000/sso/callback"
    assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43 and len(query["nonce"]) >= 32
    states = await _rows(sync_api, OAuthState)
    sso_states = [r for r in states if r.purpose == "sso"]
    assert len(sso_states) == 1 and sso_states[0].return_url == RETURN_URL
    assert sso_states[0].state_hash == hashlib.sha256(query["state"].encode()).hexdigest()
    assert sso_states[0].used_at is None

    cloud.clear_requests()
    landing = await sso.callback(sso.authorize(start.headers["location"], upn))
    assert landing.status == 302 and landing.location.startswith(RETURN_URL + "?sso_code=")
    code = landing.params["sso_code"]
    assert "sso_error" not in landing.params
    # The code was redeemed at the tenant's token endpoint (PKCE checked there), and the keys read.
    redeemed = cloud.requests(f"/{sso.s.tid}/oauth2/v2.0/token")
    assert [r["status"] for r in redeemed] == [200]
    used = [r for r in await _rows(sync_api, OAuthState) if r.purpose == "sso"]
    assert used[0].used_at is not None
    codes = await _rows(sync_api, SsoCode)
    assert len(codes) == 1 and codes[0].extension_id == ext["id"] and codes[0].client == "desktop"
    assert codes[0].code_hash == hashlib.sha256(code.encode()).hexdigest()

    resp = await sso.token(code, pbx_id=sso.pbx_id)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["extension"]["id"] == ext["id"] and body["extension"]["number"] == ext["number"]
    assert body["pbx_id"] == sso.pbx_id
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == ext["id"] and claims["pbx"] == sso.pbx_id
    assert claims["ext"] == ext["number"] and claims["exp"] - claims["iat"] == 3600
    assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"

    me = await sync_api.client.get("/sso/userinfo", headers=bearer(body["access_token"]))
    assert me.status_code == 200 and me.json()["id"] == ext["id"]
    assert me.json()["entra_user_id"] == ext["entra_user_id"]


async def test_a_code_works_once_and_a_state_once(sync_api: Api, cloud: Cloud) -> None:
    sso = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    start = await sso.login()
    params = sso.authorize(start.headers["location"], upn)
    landing = await sso.callback(params)
    code = landing.params["sso_code"]
    assert (await sso.token(code)).status_code == 200
    replay = await sso.token(code)
    assert replay.status_code == 400 and replay.json()["code"] == "invalid_code"
    # The same callback again: the state is spent, nothing is redeemed, no new code.
    cloud.clear_requests()
    again = await sso.callback(params)
    assert again.status == 400 and "already used" in again.text
    assert cloud.requests("/oauth2/v2.0/token") == []
    assert len(await _rows(sync_api, SsoCode)) == 1


async def test_foreign_and_made_up_codes_are_refused(sync_api: Api, cloud: Cloud) -> None:
    sso = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    other, _ = await sync_api.new_pbx()
    landing = await sso.sign_in(upn)
    # A code presented for another PBX: refused, and it stays the rightful client's.
    foreign = await sso.token(landing.params["sso_code"], pbx_id=other["id"])
    assert foreign.status_code == 400 and foreign.json()["code"] == "invalid_code"
    assert (await sso.token(landing.params["sso_code"], pbx_id=sso.pbx_id)).status_code == 200
    # A Microsoft authorization code or any string the service did not issue.
    start = await sso.login()
    ms_code = sso.authorize(start.headers["location"], upn)["code"]
    for made_up in (ms_code, "x", base64.urlsafe_b64encode(b"0" * 32).decode()):
        resp = await sso.token(made_up)
        assert resp.status_code == 400 and resp.json()["code"] == "invalid_code", made_up
    assert (await sync_api.client.post("/sso/token", json={})).status_code == 422


def _later(monkeypatch: Any, seconds: float) -> None:
    """The service's clock moved on by `seconds`."""
    from datetime import timedelta

    from app.db import utcnow
    from app.sso import service

    monkeypatch.setattr(service, "utcnow", lambda: utcnow() + timedelta(seconds=seconds))


async def test_an_expired_code_is_refused(sync_api: Api, cloud: Cloud, monkeypatch: Any) -> None:
    sso = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    landing = await sso.sign_in(upn)
    _later(monkeypatch, 61)
    resp = await sso.token(landing.params["sso_code"])
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_code"


async def test_an_expired_sign_in_request_is_refused(
    sync_api: Api, cloud: Cloud, monkeypatch: Any
) -> None:
    sso = await sso_scenario(sync_api, cloud)
    _, upn = await sso.synced_user()
    start = await sso.login()
    params = sso.authorize(start.headers["location"], upn)
    _later(monkeypatch, 601)
    cloud.clear_requests()
    landing = await sso.callback(params)
    assert landing.status == 400 and "expired" in landing.text
    assert cloud.requests("/oauth2/v2.0/token") == []
    assert await _rows(sync_api, SsoCode) == []
