"""Tampered ID tokens on demand: what relying parties' validation is tested against."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import jwt

from emulator.testing import RunningEmulator
from tests.emulator.support import SSO_REDIRECT_URI, SeededTenant


def _id_token(emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant) -> str:
    """A sign-in of the admin (automatic mode), the code redeemed by hand: the raw ID token."""
    control.put(
        f"/tenants/{tenant.tenant_id}/settings", json={"auto_consent_user": tenant.admin_upn}
    ).raise_for_status()
    with emulator.client() as client:
        answer = client.get(
            f"/{tenant.tenant_id}/oauth2/v2.0/authorize",
            params={
                "client_id": tenant.client_id,
                "response_type": "code",
                "redirect_uri": SSO_REDIRECT_URI,
                "scope": "openid profile email",
                "nonce": "n-0S6_WzA2Mj",
            },
        )
        assert answer.status_code == 302, answer.text
        code = parse_qs(urlparse(answer.headers["location"]).query)["code"][0]
        tokens = client.post(
            f"/{tenant.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "authorization_code",
                "client_id": tenant.client_id,
                "client_secret": tenant.client_secret,
                "code": code,
                "redirect_uri": SSO_REDIRECT_URI,
            },
        )
    assert tokens.status_code == 200, tokens.text
    token: str = tokens.json()["id_token"]
    return token


def _jwks(emulator: RunningEmulator, tenant: SeededTenant) -> dict[str, Any]:
    with emulator.client() as client:
        keys: dict[str, Any] = client.get(f"/{tenant.tenant_id}/discovery/v2.0/keys").json()
    return keys


def _verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    claims: dict[str, Any] = jwt.decode(
        token, jwt.PyJWK(key).key, algorithms=["RS256"], options={"verify_aud": False}
    )
    return claims


def test_claims_are_replaced_and_dropped_for_the_next_tokens_only(
    emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant
) -> None:
    path = f"/tenants/{tenant.tenant_id}/id-token-tampering"
    made = control.post(
        path, json={"claims": {"aud": "someone-else"}, "drop": ["nonce"], "count": 2}
    )
    assert made.status_code == 201 and made.json()["count"] == 2
    jwks = _jwks(emulator, tenant)
    for _ in range(2):
        claims = _verify(_id_token(emulator, control, tenant), jwks)
        assert claims["aud"] == "someone-else" and "nonce" not in claims
        assert claims["oid"] == tenant.admin_id
    assert control.get(path).json()["value"] == []
    honest = _verify(_id_token(emulator, control, tenant), jwks)
    assert honest["aud"] == tenant.client_id and honest["nonce"] == "n-0S6_WzA2Mj"


def test_foreign_signatures_fail_against_the_jwks(
    emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant
) -> None:
    path = f"/tenants/{tenant.tenant_id}/id-token-tampering"
    jwks = _jwks(emulator, tenant)
    published = {k["kid"] for k in jwks["keys"]}
    control.post(path, json={"signing": "unknown_key"}).raise_for_status()
    unknown = _id_token(emulator, control, tenant)
    assert jwt.get_unverified_header(unknown)["kid"] not in published
    control.post(path, json={"signing": "forged_kid"}).raise_for_status()
    forged = _id_token(emulator, control, tenant)
    assert jwt.get_unverified_header(forged)["kid"] in published
    try:
        _verify(forged, jwks)
    except jwt.InvalidSignatureError:
        pass
    else:
        raise AssertionError("a forged signature verified")


def test_bad_tampering_requests_are_400(control: httpx.Client, tenant: SeededTenant) -> None:
    path = f"/tenants/{tenant.tenant_id}/id-token-tampering"
    assert control.post(path, json={"signing": "nope"}).status_code == 400
    assert control.post(path, json={"claims": []}).status_code == 400
    assert control.post(path, json={"count": 0}).status_code == 400
    control.post(path, json={"claims": {"tid": "x"}}).raise_for_status()
    assert control.delete(path).status_code == 204
    assert control.get(path).json()["value"] == []
