"""The identity platform: MSAL's three grants end to end over HTTPS, and the documented failures."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import jwt
import msal
import pytest
import requests

from emulator import tokens
from emulator.testing import RunningEmulator
from tests.emulator.support import (
    GRAPH_DEFAULT,
    REDIRECT_URI,
    SeededTenant,
    app_token,
    make_tenant,
)

USER_READ_ALL = "https://graph.microsoft.com/User.Read.All"
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")
DESCRIPTION = re.compile(
    r"^AADSTS(\d+): .+\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: [0-9a-f-]{36}\r\n"
    r"Timestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$",
    re.S,
)


def confidential_app(
    tenant: SeededTenant, http_client: requests.Session, secret: str | None = None
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        tenant.client_id,
        client_credential=secret or tenant.client_secret,
        authority=tenant.authority,
        instance_discovery=False,
        http_client=http_client,
    )


def follow_authorize(emulator: RunningEmulator, auth_uri: str) -> dict[str, str]:
    """GET the authorize URL (automatic mode) and return the redirect's query parameters."""
    with emulator.client() as client:
        response = client.get(auth_uri)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}


def auto_consent(control: httpx.Client, tenant: SeededTenant, upn: str | None = None) -> None:
    response = control.put(
        f"/tenants/{tenant.tenant_id}/settings",
        json={"auto_consent_user": upn or tenant.admin_upn},
    )
    response.raise_for_status()


def signed_in(
    emulator: RunningEmulator,
    control: httpx.Client,
    tenant: SeededTenant,
    http_client: requests.Session,
    scopes: list[str] | None = None,
) -> tuple[msal.ConfidentialClientApplication, dict[str, Any]]:
    """The admin consented through the automatic mode; MSAL holds the tokens."""
    auto_consent(control, tenant)
    app = confidential_app(tenant, http_client)
    flow = app.initiate_auth_code_flow(scopes or [USER_READ_ALL], redirect_uri=REDIRECT_URI)
    result = app.acquire_token_by_auth_code_flow(flow, follow_authorize(emulator, flow["auth_uri"]))
    assert "access_token" in result, result
    return app, result


def assert_aadsts(result: dict[str, Any], error: str, code: int) -> None:
    assert result.get("error") == error, result
    assert result["error_codes"] == [code]
    match = DESCRIPTION.match(result["error_description"])
    assert match is not None, result["error_description"]
    assert match.group(1) == str(code)


# --- discovery --------------------------------------------------------------------------------


def test_openid_configuration_names_the_tenant_endpoints(
    emulator: RunningEmulator, tenant: SeededTenant
) -> None:
    with emulator.client() as client:
        config = client.get(f"/{tenant.tenant_id}/v2.0/.well-known/openid-configuration").json()
        by_domain = client.get(f"/{tenant.domain}/v2.0/.well-known/openid-configuration").json()
    base = f"{emulator.base_url}/{tenant.tenant_id}"
    assert config["issuer"] == f"{base}/v2.0"
    assert config["authorization_endpoint"] == f"{base}/oauth2/v2.0/authorize"
    assert config["token_endpoint"] == f"{base}/oauth2/v2.0/token"
    assert config["jwks_uri"] == f"{base}/discovery/v2.0/keys"
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    assert by_domain["issuer"] == config["issuer"]  # a tenant is also found by its domain


def test_unknown_tenant_is_aadsts90002(emulator: RunningEmulator) -> None:
    with emulator.client() as client:
        response = client.get(
            "/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration"
        )
        token = client.post(
            "/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token",
            data={"grant_type": "client_credentials"},
        )
    assert response.status_code == 400
    assert_aadsts(response.json(), "invalid_tenant", 90002)
    assert token.status_code == 400
    assert_aadsts(token.json(), "invalid_request", 90002)


# --- client credentials -----------------------------------------------------------------------


def test_msal_client_credentials_gets_an_app_token_with_the_app_roles(
    emulator: RunningEmulator, tenant: SeededTenant, msal_http_client: requests.Session
) -> None:
    result = confidential_app(tenant, msal_http_client).acquire_token_for_client([GRAPH_DEFAULT])

    assert result["token_type"] == "Bearer"
    caller = tokens.verify_graph_token(emulator.state, f"Bearer {result['access_token']}")
    assert caller.user is None
    assert caller.tenant.id == tenant.tenant_id
    assert caller.app.app_id == tenant.client_id
    assert "User.Read.All" in caller.roles and "Group.Read.All" in caller.roles
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["iss"] == f"https://sts.windows.net/{tenant.tenant_id}/"
    assert claims["idtyp"] == "app" and "scp" not in claims


def test_wrong_secret_is_aadsts7000215_in_the_documented_shape(
    emulator: RunningEmulator, tenant: SeededTenant, msal_http_client: requests.Session
) -> None:
    app = confidential_app(tenant, msal_http_client, secret="not-the-secret")
    result = app.acquire_token_for_client([GRAPH_DEFAULT])

    assert_aadsts(result, "invalid_client", 7000215)
    assert "Invalid client secret provided" in result["error_description"]
    with emulator.client() as client:
        raw = client.post(
            f"/{tenant.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": tenant.client_id,
                "client_secret": "wrong",
                "scope": GRAPH_DEFAULT,
            },
            headers={"client-request-id": "11111111-2222-3333-4444-555555555555"},
        )
    assert raw.status_code == 401
    body = raw.json()
    assert set(body) == {
        "error",
        "error_description",
        "error_codes",
        "timestamp",
        "trace_id",
        "correlation_id",
        "error_uri",
    }
    assert body["correlation_id"] == "11111111-2222-3333-4444-555555555555"
    assert body["error_uri"] == "https://login.microsoftonline.com/error?code=7000215"


def test_expired_secret_is_aadsts7000222(
    control: httpx.Client, tenant: SeededTenant, msal_http_client: requests.Session
) -> None:
    control.post(
        f"/tenants/{tenant.tenant_id}/apps/{tenant.client_id}/secrets/{tenant.secret_key_id}/expire"
    ).raise_for_status()

    result = confidential_app(tenant, msal_http_client).acquire_token_for_client([GRAPH_DEFAULT])

    assert_aadsts(result, "invalid_client", 7000222)


def test_a_second_secret_keeps_working_when_the_first_expires(
    control: httpx.Client, tenant: SeededTenant, msal_http_client: requests.Session
) -> None:
    base = f"/tenants/{tenant.tenant_id}/apps/{tenant.client_id}/secrets"
    new = control.post(base, json={"expires_in_days": 30}).json()
    control.post(f"{base}/{tenant.secret_key_id}/expire").raise_for_status()

    old = confidential_app(tenant, msal_http_client).acquire_token_for_client([GRAPH_DEFAULT])
    fresh = confidential_app(tenant, msal_http_client, new["value"]).acquire_token_for_client(
        [GRAPH_DEFAULT]
    )

    assert old["error_codes"] == [7000222]
    assert "access_token" in fresh
    assert len(new["value"]) == 40 and new["value"][3:5] == "8Q"


def test_unknown_app_is_aadsts700016(
    tenant: SeededTenant, msal_http_client: requests.Session
) -> None:
    tenant.client_id = "99999999-9999-9999-9999-999999999999"
    result = confidential_app(tenant, msal_http_client).acquire_token_for_client([GRAPH_DEFAULT])
    assert_aadsts(result, "unauthorized_client", 700016)


def test_client_credentials_needs_a_default_scope(
    tenant: SeededTenant, msal_http_client: requests.Session
) -> None:
    result = confidential_app(tenant, msal_http_client).acquire_token_for_client([USER_READ_ALL])
    assert_aadsts(result, "invalid_scope", 1002012)


def test_client_secret_basic_is_accepted(emulator: RunningEmulator, tenant: SeededTenant) -> None:
    with emulator.client() as client:
        response = client.post(
            f"/{tenant.tenant_id}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "scope": GRAPH_DEFAULT},
            auth=(tenant.client_id, tenant.client_secret),
        )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


# --- authorization code -----------------------------------------------------------------------


def test_msal_auth_code_flow_in_automatic_mode(
    emulator: RunningEmulator,
    control: httpx.Client,
    tenant: SeededTenant,
    msal_http_client: requests.Session,
) -> None:
    _, result = signed_in(emulator, control, tenant, msal_http_client)

    claims = result["id_token_claims"]  # MSAL checked iss, aud, exp and the nonce
    assert claims["iss"] == f"{tenant.authority}/v2.0"
    assert claims["aud"] == tenant.client_id
    assert claims["tid"] == tenant.tenant_id
    assert claims["oid"] == tenant.admin_id
    assert claims["preferred_username"] == tenant.admin_upn
    assert claims["name"] == "MOD Administrator"
    assert claims["ver"] == "2.0"
    assert claims["nbf"] <= time.time() < claims["exp"]
    caller = tokens.verify_graph_token(emulator.state, f"Bearer {result['access_token']}")
    assert caller.user is not None and caller.user.id == tenant.admin_id
    assert "User.Read.All" in caller.scopes and not caller.roles
    assert USER_READ_ALL in result["scope"].split()
    assert "refresh_token" in result


def test_form_post_response_mode_posts_the_code_back(
    emulator: RunningEmulator,
    control: httpx.Client,
    tenant: SeededTenant,
    msal_http_client: requests.Session,
) -> None:
    auto_consent(control, tenant)
    app = confidential_app(tenant, msal_http_client)
    flow = app.initiate_auth_code_flow(
        [USER_READ_ALL], redirect_uri=REDIRECT_URI, response_mode="form_post"
    )
    with emulator.client() as browser:
        page = browser.get(flow["auth_uri"])

    assert page.status_code == 200
    assert f"<form method='POST' action='{REDIRECT_URI}'>" in page.text
    fields = _form_fields(page.text)
    assert fields["state"] == flow["state"]
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, fields)


def test_id_token_signature_checks_out_against_the_jwks(
    emulator: RunningEmulator,
    control: httpx.Client,
    tenant: SeededTenant,
    msal_http_client: requests.Session,
) -> None:
    _, result = signed_in(emulator, control, tenant, msal_http_client)
    with emulator.client() as client:
        jwks = client.get(f"/{tenant.tenant_id}/discovery/v2.0/keys").json()
    kid = jwt.get_unverified_header(result["id_token"])["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)

    claims = jwt.decode(
        result["id_token"],
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience=tenant.client_id,
        issuer=f"{tenant.authority}/v2.0",
    )
    assert claims["oid"] == tenant.admin_id


def _authorize(
    emulator: RunningEmulator, tenant: SeededTenant, client: httpx.Client, **params: str
) -> httpx.Response:
    query = {
        "client_id": tenant.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": f"openid profile offline_access {USER_READ_ALL}",
        "state": "xyz",
        **params,
    }
    return client.get(f"/{tenant.tenant_id}/oauth2/v2.0/authorize", params=query)


def _form_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r"<input type='hidden' name='(\w+)' value='([^']*)'>", page))


def test_html_sign_in_and_consent_then_msal_redeems_the_code(
    emulator: RunningEmulator, tenant: SeededTenant, msal_http_client: requests.Session
) -> None:
    app = confidential_app(tenant, msal_http_client)
    flow = app.initiate_auth_code_flow([USER_READ_ALL], redirect_uri=REDIRECT_URI)
    with emulator.client() as browser:
        sign_in = browser.get(flow["auth_uri"])
        assert sign_in.status_code == 200 and "name='loginfmt'" in sign_in.text
        ctx = _form_fields(sign_in.text)["ctx"]
        wrong = browser.post(
            f"/{tenant.tenant_id}/login",
            data={"ctx": ctx, "loginfmt": tenant.admin_upn, "passwd": "nope"},
        )
        assert "Your account or password is incorrect" in wrong.text
        consent = browser.post(
            f"/{tenant.tenant_id}/login",
            data={"ctx": ctx, "loginfmt": tenant.admin_upn, "passwd": tenant.admin_password},
        )
        assert "Read all users&#x27; full profiles" in consent.text
        assert "Consent on behalf of your organization" in consent.text
        accepted = browser.post(
            f"/{tenant.tenant_id}/Consent/Set",
            data={
                "ctx": _form_fields(consent.text)["ctx"],
                "action": "accept",
                "consent_on_behalf": "true",
            },
        )
        assert accepted.status_code == 302
        params = {
            k: v[0] for k, v in parse_qs(urlparse(accepted.headers["location"]).query).items()
        }

        # Signed in and consented: the next request goes straight back with a code (SSO).
        again = _authorize(emulator, tenant, browser)
        assert again.status_code == 302 and "code=" in again.headers["location"]

    result = app.acquire_token_by_auth_code_flow(flow, params)
    assert "access_token" in result, result
    assert result["id_token_claims"]["oid"] == tenant.admin_id
    consented = emulator.state.tenants[tenant.tenant_id].apps[tenant.client_id].consented_scopes
    assert "User.Read.All" in consented  # admin consent for the organization


def test_cancel_on_the_consent_page_is_access_denied_aadsts65004(
    emulator: RunningEmulator, tenant: SeededTenant, msal_http_client: requests.Session
) -> None:
    app = confidential_app(tenant, msal_http_client)
    flow = app.initiate_auth_code_flow([USER_READ_ALL], redirect_uri=REDIRECT_URI)
    with emulator.client() as browser:
        ctx = _form_fields(browser.get(flow["auth_uri"]).text)["ctx"]
        consent = browser.post(
            f"/{tenant.tenant_id}/login",
            data={"ctx": ctx, "loginfmt": tenant.admin_upn, "passwd": tenant.admin_password},
        )
        cancelled = browser.post(
            f"/{tenant.tenant_id}/Consent/Set",
            data={"ctx": _form_fields(consent.text)["ctx"], "action": "cancel"},
        )
    params = {k: v[0] for k, v in parse_qs(urlparse(cancelled.headers["location"]).query).items()}
    assert params["error"] == "access_denied"
    assert params["error_description"].startswith(
        "AADSTS65004: User declined to consent to access the app."
    )
    assert params["state"] == flow["state"]
    assert app.acquire_token_by_auth_code_flow(flow, params)["error"] == "access_denied"


def test_a_member_cannot_consent_to_admin_only_permissions(
    emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant
) -> None:
    control.post(
        f"/tenants/{tenant.tenant_id}/users",
        json={
            "accountEnabled": True,
            "displayName": "Adele Vance",
            "mailNickname": "AdeleV",
            "userPrincipalName": f"AdeleV@{tenant.domain}",
            "passwordProfile": {"forceChangePasswordNextSignIn": True, "password": "xWwvJ]6NMw"},
        },
    ).raise_for_status()
    with emulator.client() as browser:
        ctx = _form_fields(_authorize(emulator, tenant, browser).text)["ctx"]
        page = browser.post(
            f"/{tenant.tenant_id}/login",
            data={"ctx": ctx, "loginfmt": f"adelev@{tenant.domain}", "passwd": "xWwvJ]6NMw"},
        )
    assert "Need admin approval" in page.text
    assert "Consent on behalf" not in page.text


def test_redirect_uri_must_be_registered(emulator: RunningEmulator, tenant: SeededTenant) -> None:
    with emulator.client() as browser:
        page = _authorize(emulator, tenant, browser, redirect_uri="https://evil.example/cb")
    assert page.status_code == 400
    assert "AADSTS50011" in page.text and "location" not in page.headers


def test_prompt_none_without_a_session_is_login_required(
    emulator: RunningEmulator, tenant: SeededTenant
) -> None:
    with emulator.client() as browser:
        response = _authorize(emulator, tenant, browser, prompt="none")
    params = parse_qs(urlparse(response.headers["location"]).query)
    assert params["error"] == ["login_required"]
    assert params["error_description"][0].startswith("AADSTS50058")


def _raw_redeem(
    emulator: RunningEmulator, tenant: SeededTenant, code: str, **extra: str
) -> httpx.Response:
    with emulator.client() as client:
        return client.post(
            f"/{tenant.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "authorization_code",
                "client_id": tenant.client_id,
                "client_secret": tenant.client_secret,
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "scope": USER_READ_ALL,
                **extra,
            },
        )


def test_pkce_verifier_must_match_the_challenge(
    emulator: RunningEmulator,
    control: httpx.Client,
    tenant: SeededTenant,
    msal_http_client: requests.Session,
) -> None:
    auto_consent(control, tenant)
    app = confidential_app(tenant, msal_http_client)
    flow = app.initiate_auth_code_flow([USER_READ_ALL], redirect_uri=REDIRECT_URI)
    params = follow_authorize(emulator, flow["auth_uri"])
    flow["code_verifier"] = "x" * 43  # not the verifier behind the challenge

    result = app.acquire_token_by_auth_code_flow(flow, params)

    assert_aadsts(result, "invalid_grant", 501481)
    missing = _raw_redeem(emulator, tenant, params["code"])
    assert missing.json()["error_codes"] == [501481]


def test_a_code_is_redeemed_once(
    emulator: RunningEmulator,
    control: httpx.Client,
    tenant: SeededTenant,
    msal_http_client: requests.Session,
) -> None:
    auto_consent(control, tenant)
    app = confidential_app(tenant, msal_http_client)
    flow = app.initiate_auth_code_flow([USER_READ_ALL], redirect_uri=REDIRECT_URI)
    params = follow_authorize(emulator, flow["auth_uri"])
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, params)

    replay = _raw_redeem(emulator, tenant, params["code"], code_verifier=flow["code_verifier"])

    assert replay.status_code == 400
    assert_aadsts(replay.json(), "invalid_grant", 54005)


def test_a_code_is_bound_to_its_redirect_uri_client_and_lifetime(
    emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant
) -> None:
    auto_consent(control, tenant)
    other = make_tenant(emulator, control)  # another app, in another tenant
    with emulator.client() as browser:
        code = parse_qs(urlparse(_authorize(emulator, tenant, browser).headers["location"]).query)
    value = code["code"][0]

    wrong_uri = _raw_redeem(
        emulator, tenant, value, redirect_uri="http://127.0.0.1:8000/sso/callback"
    )
    assert wrong_uri.json()["error_codes"] == [500112]
    foreign = _raw_redeem(
        emulator, tenant, value, client_id=other.client_id, client_secret=other.client_secret
    )
    assert foreign.json()["error_codes"] == [700016]  # not an app of this tenant

    control.put(f"/tenants/{tenant.tenant_id}/settings", json={"code_lifetime": 0})
    with emulator.client() as browser:
        stale = parse_qs(urlparse(_authorize(emulator, tenant, browser).headers["location"]).query)
    expired = _raw_redeem(emulator, tenant, stale["code"][0])
    assert_aadsts(expired.json(), "invalid_grant", 70008)


# --- refresh tokens ---------------------------------------------------------------------------


def test_refresh_rotates_the_refresh_token(
    emulator: RunningEmulator,
    control: httpx.Client,
    tenant: SeededTenant,
    msal_http_client: requests.Session,
) -> None:
    app, first = signed_in(emulator, control, tenant, msal_http_client)
    account = app.get_accounts()[0]
    assert account["home_account_id"] == f"{tenant.admin_id}.{tenant.tenant_id}"

    silent = app.acquire_token_silent([USER_READ_ALL], account=account, force_refresh=True)
    assert silent is not None and "access_token" in silent, silent
    assert silent["refresh_token"] != first["refresh_token"]
    assert silent["access_token"] != first["access_token"]

    # Entra doesn't revoke a refresh token when it is used; the client discards it.
    again = app.acquire_token_by_refresh_token(first["refresh_token"], [USER_READ_ALL])
    assert "access_token" in again
    caller = tokens.verify_graph_token(emulator.state, f"Bearer {again['access_token']}")
    assert caller.scopes >= {"User.Read.All"}


def test_revoked_sessions_fail_refresh_with_aadsts50173(
    emulator: RunningEmulator,
    control: httpx.Client,
    tenant: SeededTenant,
    msal_http_client: requests.Session,
) -> None:
    app, first = signed_in(emulator, control, tenant, msal_http_client)
    control.post(f"/tenants/{tenant.tenant_id}/users/{tenant.admin_id}/revoke-sessions")

    result = app.acquire_token_by_refresh_token(first["refresh_token"], [USER_READ_ALL])

    assert_aadsts(result, "invalid_grant", 50173)


def test_disabled_user_fails_refresh_with_aadsts50057(
    emulator: RunningEmulator,
    control: httpx.Client,
    tenant: SeededTenant,
    msal_http_client: requests.Session,
) -> None:
    app, first = signed_in(emulator, control, tenant, msal_http_client)
    control.post(f"/tenants/{tenant.tenant_id}/users/{tenant.admin_id}/disable")

    result = app.acquire_token_by_refresh_token(first["refresh_token"], [USER_READ_ALL])

    assert_aadsts(result, "invalid_grant", 50057)


def test_revoked_consent_fails_refresh_with_aadsts65001(
    emulator: RunningEmulator,
    control: httpx.Client,
    tenant: SeededTenant,
    msal_http_client: requests.Session,
) -> None:
    app, first = signed_in(emulator, control, tenant, msal_http_client)
    control.post(f"/tenants/{tenant.tenant_id}/apps/{tenant.client_id}/revoke-consent")

    result = app.acquire_token_by_refresh_token(first["refresh_token"], [USER_READ_ALL])

    assert_aadsts(result, "invalid_grant", 65001)


# --- Graph token checks and key rotation ------------------------------------------------------


def test_graph_tokens_fail_once_their_key_leaves_the_jwks(
    emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant
) -> None:
    token = app_token(control, tenant)
    first_kid = jwt.get_unverified_header(token)["kid"]

    rotated = control.post(f"/tenants/{tenant.tenant_id}/rotate-keys").json()
    assert rotated["kids"][1] == first_kid  # still published next to the new key
    assert tokens.verify_graph_token(emulator.state, f"Bearer {token}").app.app_id
    newer = app_token(control, tenant)
    assert jwt.get_unverified_header(newer)["kid"] == rotated["kids"][0]

    control.post(f"/tenants/{tenant.tenant_id}/rotate-keys").raise_for_status()
    with emulator.client() as client:
        kids = [
            k["kid"] for k in client.get(f"/{tenant.tenant_id}/discovery/v2.0/keys").json()["keys"]
        ]
    assert first_kid not in kids
    with pytest.raises(tokens.GraphAuthError) as failure:
        tokens.verify_graph_token(emulator.state, f"Bearer {token}")
    assert (failure.value.status, failure.value.code) == (401, "InvalidAuthenticationToken")
    assert tokens.verify_graph_token(emulator.state, f"Bearer {newer}").app.app_id


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Access token is empty."),
        ("Bearer ", "Access token is empty."),
        ("Bearer abc.def", "JWT is not well formed"),
    ],
)
def test_missing_or_malformed_tokens_are_401(
    emulator: RunningEmulator, header: str | None, message: str
) -> None:
    with pytest.raises(tokens.GraphAuthError) as failure:
        tokens.verify_graph_token(emulator.state, header)
    assert failure.value.status == 401 and message in failure.value.message
    response = failure.value.response()
    assert response.status_code == 401 and "WWW-Authenticate" in response.headers


def test_expired_and_tampered_tokens_are_401(
    emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant
) -> None:
    expired = app_token(control, tenant, expires_in=-5)
    with pytest.raises(tokens.GraphAuthError, match="token is expired"):
        tokens.verify_graph_token(emulator.state, f"Bearer {expired}")

    header, payload, signature = app_token(control, tenant).split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    with pytest.raises(tokens.GraphAuthError) as failure:
        tokens.verify_graph_token(emulator.state, f"Bearer {forged}")
    assert failure.value.code == "InvalidAuthenticationToken"


def test_require_denies_a_missing_permission_with_403(
    emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant
) -> None:
    token = app_token(control, tenant, user=tenant.admin_upn, scopes=["User.Read"])
    caller = tokens.verify_graph_token(emulator.state, f"Bearer {token}")

    tokens.require(caller, "User.Read", "User.Read.All")
    with pytest.raises(tokens.GraphAuthError) as failure:
        tokens.require(caller, "Group.Read.All")
    assert (failure.value.status, failure.value.code) == (403, "Authorization_RequestDenied")
    assert failure.value.message == "Insufficient privileges to complete the operation."

    directory = app_token(control, tenant, roles=["Directory.Read.All"])
    tokens.require(
        tokens.verify_graph_token(emulator.state, f"Bearer {directory}"), "User.Read.All"
    )


# --- a real browser ---------------------------------------------------------------------------


@pytest.mark.browser
def test_consent_in_chromium_yields_a_code_msal_redeems(
    emulator: RunningEmulator,
    tenant: SeededTenant,
    msal_http_client: requests.Session,
    ca_path: Path,
    chromium: str,
) -> None:
    from playwright import sync_api as playwright_api

    app = confidential_app(tenant, msal_http_client)
    flow = app.initiate_auth_code_flow([USER_READ_ALL], redirect_uri=REDIRECT_URI)
    redirected: list[str] = []

    def catch_redirect(route: Any) -> None:
        redirected.append(route.request.url)
        route.fulfill(body="ok")

    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_context(ignore_https_errors=True).new_page()
            # Nothing listens on the redirect URI: catch the navigation to it instead.
            page.route(f"{REDIRECT_URI}**", catch_redirect)
            page.goto(flow["auth_uri"])
            page.fill("input[name=loginfmt]", tenant.admin_upn)
            page.fill("input[name=passwd]", tenant.admin_password)
            page.click("#idSIButton9")
            page.wait_for_selector("#permissions")
            assert "Read all users' full profiles" in page.inner_text("#permissions")
            page.check("#consent_on_behalf")
            page.click("#idBtn_Accept")
            page.wait_for_url(f"{REDIRECT_URI}**")
        finally:
            browser.close()

    params = {k: v[0] for k, v in parse_qs(urlparse(redirected[-1]).query).items()}
    result = app.acquire_token_by_auth_code_flow(flow, params)
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == tenant.admin_upn
