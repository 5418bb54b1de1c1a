"""Single sign-on of Linkus clients with Microsoft accounts (authorization code flow with PKCE).

1. login: the return URL is checked, a single-use `state` (10 minutes) keeps the PKCE verifier,
   the nonce and the client kind, encrypted; the browser goes to the tenant's authorize endpoint.
2. callback: the code is redeemed at the tenant's token endpoint, the ID token validated, the
   extension found by `oid`; the browser goes back with a one-time `sso_code` (60 s) or
   `sso_error`. Every refusal is logged with its reason, never with a token or code.
3. exchange: the code becomes an access token (access.py), once.
4. Each request with an access token re-checks the extension, the integration and the SSO section.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app import return_urls as urls
from app.config import Settings
from app.crypto import DecryptionError
from app.db import utcnow
from app.directory.models import Extension
from app.errors import NotFound, ProblemError, Unauthorized
from app.integration import repository as integration_repo
from app.integration.tokens import credentials
from app.runtime import Runtime
from app.sso import access, idtoken
from app.sso import repository as repo
from app.sso.idtoken import InvalidIdToken, KeysUnavailable, SigningKeys
from app.sso.repository import SsoSetup
from app.tenants.models import Pbx

log = logging.getLogger("pbx_entra.sso")
STATE_TTL = timedelta(minutes=10)
CODE_TTL = timedelta(seconds=60)
SCOPES = "openid profile email"
# A sign-in needs the app registration, not the authorization account: `error` (that account's
# token can't be refreshed) does not stop users from signing in; `disabled` does.
USABLE_STATUSES = ("connected", "error")


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _flow_ad(state_hash: str) -> str:
    return f"sso_flow:{state_hash}"


def redirect_uri(settings: Settings) -> str:
    return f"{settings.public_base_url}/sso/callback"


def refusal(setup: SsoSetup) -> tuple[str, str] | None:
    """(sso_error code, reason) when nobody may sign in to this PBX now."""
    integ = setup.integration
    if integ is None or integ.status not in USABLE_STATUSES:
        status = integ.status if integ else "not_configured"
        return "integration_disabled", f"the integration is {status}"
    if setup.rule is None or setup.rule.state != "active":
        return "sso_disabled", "single sign-on is off"
    return None


def extension_refusal(setup: SsoSetup | None, ext: Extension | None, oid: str) -> str | None:
    """Why an extension may no longer use single sign-on (None: it may)."""
    if setup is None:
        return "the PBX no longer exists"
    found = refusal(setup)
    if found is not None:
        return found[1]
    if ext is None:
        return "the extension no longer exists"
    if ext.managed_by not in repo.SYNCED or ext.entra_id != oid:
        return "the extension no longer follows this Microsoft account"
    return None


def signed_out_by_save(setup: SsoSetup, issued_at_ms: int) -> bool:
    """Saving the SSO section (switching it off and on again, say) ends the sessions begun before:
    a token issued before the last save is refused even once SSO is back on."""
    saved = setup.rule.updated_at if setup.rule is not None else None
    return saved is not None and issued_at_ms < int(saved.timestamp() * 1000)


# 1. login --------------------------------------------------------------------------------


async def begin_login(
    session: AsyncSession, runtime: Runtime, pbx_id: str, client: str, return_url: str
) -> str:
    """Where to send the browser: the authorize endpoint, or back with `sso_error`."""
    setup = await repo.setup(session, pbx_id)
    if setup is None:
        raise NotFound(f"No PBX {pbx_id}.")
    if not urls.matches(return_url, setup.allowed_return_urls):
        log.warning("sso login refused for PBX %s: return_url not allowed", pbx_id)
        raise ProblemError(
            "return_url is not one of the allowed return URLs of this PBX's single sign-on.",
            status=400,
            code="return_url_not_allowed",
            title="Return URL not allowed",
        )
    refused = refusal(setup)
    if refused is not None:
        log.warning("sso login refused for PBX %s: %s (%s)", pbx_id, refused[0], refused[1])
        return urls.with_params(return_url, sso_error=refused[0])
    integ = setup.integration
    assert integ is not None and integ.tenant_id and integ.client_id
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    state_hash = _hash(state)
    flow = {"nonce": nonce, "verifier": verifier, "client": client}
    await integration_repo.add_state(
        session,
        state_hash=state_hash,
        pbx_id=pbx_id,
        purpose="sso",
        flow_enc=runtime.box.encrypt(json.dumps(flow), associated=_flow_ad(state_hash)),
        return_url=return_url,
        expires_at=utcnow() + STATE_TTL,
    )
    query = {
        "client_id": integ.client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri(runtime.settings),
        "response_mode": "query",
        "scope": SCOPES,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }
    base = runtime.settings.login_base_url
    return f"{base}/{integ.tenant_id}/oauth2/v2.0/authorize?{urlencode(query)}"


# 2. callback -----------------------------------------------------------------------------


@dataclass
class CallbackResult:
    redirect: str | None
    status_code: int = 302
    message: str = ""


class _Refused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def _redeem(runtime: Runtime, tenant_id: str, form: dict[str, str]) -> dict[str, Any]:
    url = f"{runtime.settings.login_base_url}/{tenant_id}/oauth2/v2.0/token"
    try:
        resp = await runtime.graph_http.post(url, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise _Refused(
            "login_unavailable", f"token endpoint unreachable ({type(exc).__name__})"
        ) from None
    try:
        body: dict[str, Any] = resp.json()
    except ValueError:
        body = {}
    if resp.status_code != 200 or not isinstance(body, dict):
        codes = body.get("error_codes") if isinstance(body, dict) else None
        aadsts = f" AADSTS{codes[0]}" if codes else ""
        error = body.get("error", resp.status_code) if isinstance(body, dict) else resp.status_code
        raise _Refused("invalid_token", f"code redemption refused: {error}{aadsts}")
    return body


async def _sign_in(
    session: AsyncSession,
    runtime: Runtime,
    keys: SigningKeys,
    setup: SsoSetup,
    flow: dict[str, str],
    params: dict[str, str],
) -> Extension:
    if "error" in params:
        raise _Refused("access_denied", f"the identity platform answered {params['error']}")
    refused = refusal(setup)
    if refused is not None:
        raise _Refused(*refused)
    code = params.get("code", "")
    if not code:
        raise _Refused("access_denied", "the identity platform sent no code")
    integ = setup.integration
    assert integ is not None and integ.tenant_id and integ.client_id
    creds = credentials(runtime, integ)
    body = await _redeem(
        runtime,
        integ.tenant_id,
        {
            "grant_type": "authorization_code",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "code": code,
            "redirect_uri": redirect_uri(runtime.settings),
            "code_verifier": flow["verifier"],
            "scope": SCOPES,
        },
    )
    token = body.get("id_token")
    if not isinstance(token, str):
        raise _Refused("invalid_token", "no ID token in the token response")
    try:
        claims = await idtoken.validate(
            keys,
            token,
            login_base_url=runtime.settings.login_base_url,
            tenant_id=integ.tenant_id,
            client_id=integ.client_id,
            nonce=flow["nonce"],
        )
    except InvalidIdToken as exc:
        raise _Refused("invalid_token", f"ID token refused: {exc.reason}") from None
    except KeysUnavailable as exc:
        raise _Refused("login_unavailable", f"the tenant's keys are unreadable: {exc}") from None
    ext = await repo.synced_extension_by_oid(session, setup.pbx.id, str(claims["oid"]))
    if ext is None:
        raise _Refused("user_not_synced", f"no synced extension for Entra user {claims['oid']}")
    return ext


async def finish_login(
    session: AsyncSession, runtime: Runtime, keys: SigningKeys, params: dict[str, str]
) -> CallbackResult:
    state = params.get("state", "")
    row = await integration_repo.take_state(session, _hash(state)) if state else None
    now = utcnow()
    if row is None or row.purpose != "sso" or row.used_at is not None or row.expires_at < now:
        log.warning("sso callback refused: the state is unknown, used or expired")
        return CallbackResult(
            None,
            400,
            "This sign-in request is unknown, expired or already used. Start again from Linkus.",
        )
    row.used_at = now
    return_url = row.return_url or ""
    try:
        flow = json.loads(runtime.box.decrypt(row.flow_enc, associated=_flow_ad(row.state_hash)))
    except DecryptionError:
        log.warning("sso callback refused: the sign-in request can't be decrypted")
        return CallbackResult(None, 400, "This sign-in request can't be read. Start again.")
    setup = await repo.setup(session, row.pbx_id)
    if setup is None:
        return CallbackResult(None, 400, "This PBX no longer exists.")
    try:
        ext = await _sign_in(session, runtime, keys, setup, flow, params)
    except _Refused as exc:
        log.warning("sso sign-in refused for PBX %s: %s (%s)", row.pbx_id, exc.code, exc.reason)
        return CallbackResult(urls.with_params(return_url, sso_error=exc.code))
    code = secrets.token_urlsafe(32)
    assert ext.entra_id is not None
    await repo.add_code(
        session,
        code_hash=_hash(code),
        pbx_id=row.pbx_id,
        extension_id=ext.id,
        oid=ext.entra_id,
        client=str(flow.get("client", "web")),
        expires_at=now + CODE_TTL,
        now=now,
    )
    log.info(
        "sso sign-in of extension %s on PBX %s (%s client)", ext.number, row.pbx_id, flow["client"]
    )
    return CallbackResult(urls.with_params(return_url, sso_code=code))


# 3. exchange -----------------------------------------------------------------------------


@dataclass
class Exchanged:
    access_token: str
    expires_in: int
    pbx: Pbx
    extension: Extension


def _invalid_code(detail: str) -> ProblemError:
    return ProblemError(detail, status=400, code="invalid_code", title="Invalid code")


async def exchange(
    session: AsyncSession, settings: Settings, code: str, pbx_id: str | None
) -> Exchanged:
    row = await repo.consume_code(session, _hash(code), utcnow(), pbx_id)
    if row is None:
        log.warning("sso code exchange refused: unknown, used, expired or of another PBX")
        raise _invalid_code("The code is unknown, expired, already used or of another PBX.")
    found = await repo.setup_and_extension(session, row.pbx_id, row.extension_id)
    setup, ext = found if found else (None, None)
    reason = extension_refusal(setup, ext, row.entra_oid)
    if reason is not None or setup is None or ext is None:
        log.warning("sso code exchange refused for PBX %s: %s", row.pbx_id, reason)
        raise _invalid_code(f"Single sign-on is no longer possible: {reason}.")
    token = access.issue(
        settings.effective_secret_key,
        settings.public_base_url,
        extension_id=ext.id,
        pbx_id=row.pbx_id,
        number=ext.number,
        oid=row.entra_oid,
        client=row.client,
    )
    return Exchanged(token, access.ACCESS_TOKEN_SECONDS, setup.pbx, ext)


# 4. requests with an access token ----------------------------------------------------------


@dataclass
class LinkusUser:
    """The caller of a Linkus self-service route: one extension of one PBX."""

    pbx: Pbx
    extension: Extension
    client: str


async def current_user(session: AsyncSession, settings: Settings, token: str) -> LinkusUser:
    try:
        claims = access.verify(settings.effective_secret_key, settings.public_base_url, token)
    except access.InvalidAccessToken:
        raise Unauthorized("The Linkus access token is not valid or has expired.") from None
    found = await repo.setup_and_extension(session, claims.pbx_id, claims.extension_id)
    setup, ext = found if found else (None, None)
    reason = extension_refusal(setup, ext, claims.oid)
    if reason is None and setup is not None and signed_out_by_save(setup, claims.issued_at_ms):
        reason = "the SSO settings were saved after it was issued"
    if reason is not None or setup is None or ext is None:
        log.info("sso access token refused for PBX %s: %s", claims.pbx_id, reason)
        raise Unauthorized(f"The Linkus access token no longer grants access: {reason}.")
    return LinkusUser(pbx=setup.pbx, extension=ext, client=claims.client)
