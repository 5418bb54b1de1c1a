"""Connecting a PBX to Entra and managing the connection: the integration's status machine."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.crypto import secret_hint
from app.db import utcnow
from app.errors import Conflict, ProblemError, Unprocessable
from app.graph.auth import AppCredentials, TokenError
from app.graph.errors import GraphError
from app.integration import repository as repo
from app.integration import tokens
from app.integration.models import Integration, SyncRule
from app.integration.schedule import next_fire
from app.integration.schemas import (
    SECTION_MODELS,
    AuthorizationUrl,
    CleanupChoice,
    DisableResult,
    EnableResult,
    IntegrationOut,
    IntegrationPut,
    Schedule,
)
from app.integration.triggers import queue_active
from app.runs import queue as runs
from app.runs import repository as runs_repo
from app.runs.scopes import BY_SECTION, SCOPES
from app.runtime import Runtime
from app.tenants.models import Pbx

log = logging.getLogger("pbx_entra.integration")
STATE_TTL = timedelta(minutes=10)
SECRET_EXPIRY_WARNING = timedelta(days=30)
CONFIGURABLE = ("not_configured", "awaiting_consent", "error")


def redirect_uri(runtime: Runtime) -> str:
    return f"{runtime.settings.public_base_url}/integration/callback"


def sso_redirect_uri(runtime: Runtime) -> str:
    return f"{runtime.settings.public_base_url}/sso/callback"


def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _secret_ad(pbx_id: str) -> str:
    return f"client_secret:{pbx_id}"


def _cache_ad(pbx_id: str) -> str:
    return f"token_cache:{pbx_id}"


def _flow_ad(state_hash: str) -> str:
    return f"auth_flow:{state_hash}"


def refuse_if_disabled(integ: Integration | None) -> None:
    if integ is not None and integ.status == "disabled":
        raise Conflict(
            "The integration is disabled: its configuration is read-only until it is enabled.",
            code="integration_disabled",
        )


def _rejected(exc: TokenError) -> Unprocessable:
    return Unprocessable(
        f"Microsoft Entra ID refused the client secret ({exc.code}): {exc.message}",
        code="client_secret_rejected",
        aadsts=exc.code,
    )


# Views ----------------------------------------------------------------------------------------


def section_view(section: str, rule: SyncRule | None) -> dict[str, Any]:
    model: type[BaseModel] = SECTION_MODELS[section]
    config = model.model_validate(rule.config).model_dump() if rule else model().model_dump()
    if section not in ("deletion_guard",):
        config["state"] = rule.state if rule else "off"
    return config


def warnings(integ: Integration, now: datetime | None = None) -> list[dict[str, str]]:
    now = now or utcnow()
    items = [w for w in (integ.warnings or []) if w.get("code") != "client_secret_expiring"]
    expires = integ.client_secret_expires_at
    if (
        expires is not None
        and integ.status != "not_configured"
        and expires - now <= SECRET_EXPIRY_WARNING
    ):
        days = max(0, (expires - now).days)
        items.append(
            {
                "code": "client_secret_expiring",
                "message": f"The client secret expires on {expires.date().isoformat()} (in {days} days): "
                "create a new one in Entra and update it here.",
            }
        )
    return items


async def view(session: AsyncSession, runtime: Runtime, pbx: Pbx) -> IntegrationOut:
    integ = await repo.get(session, pbx.id)
    rules = await repo.rules(session, pbx.id)
    last = await runs_repo.latest(session, pbx.id)
    status = integ.status if integ else "not_configured"
    return IntegrationOut(
        status=status,
        redirect_uri=redirect_uri(runtime),
        sso_redirect_uri=sso_redirect_uri(runtime),
        client_id=integ.client_id if integ else None,
        tenant_id=integ.tenant_id if integ else None,
        client_secret_hint=integ.client_secret_hint if integ else None,
        client_secret_expires_at=integ.client_secret_expires_at if integ else None,
        authorized_account=integ.authorized_account if integ else None,
        connected_at=integ.connected_at if integ else None,
        last_error=integ.last_error if integ else None,
        schedule=Schedule(
            frequency=integ.schedule_frequency,
            days=integ.schedule_days,
            time=integ.schedule_time,
        )
        if integ
        else Schedule(),
        directory_summary=integ.directory_summary if integ else None,
        warnings=warnings(integ) if integ else [],
        held_run_id=integ.held_run_id if integ else None,
        last_sync_run=(
            {
                "id": last.id,
                "status": last.status,
                "trigger": last.trigger,
                "queued_at": last.queued_at.isoformat(),
                "finished_at": last.finished_at.isoformat() if last.finished_at else None,
            }
            if last
            else None
        ),
        next_scheduled_sync_at=(
            next_fire(
                integ.schedule_frequency,
                integ.schedule_days,
                integ.schedule_time,
                pbx.timezone,
                utcnow(),
            )
            if integ is not None and integ.status == "connected"
            else None
        ),
        **{s: section_view(s, rules.get(s)) for s in SECTION_MODELS},
    )


# Connect -------------------------------------------------------------------------------------


async def _authorization_url(
    session: AsyncSession, runtime: Runtime, integ: Integration, creds: AppCredentials
) -> str:
    state = secrets.token_urlsafe(32)
    state_hash = _state_hash(state)
    try:
        flow = await runtime.msal.begin_consent(creds, redirect_uri(runtime), state)
    except TokenError as exc:
        raise ProblemError(
            f"The identity platform could not be reached for tenant {creds.tenant_id}: {exc.message}",
            status=502,
            code="login_unavailable",
        ) from None
    await repo.add_state(
        session,
        state_hash=state_hash,
        pbx_id=integ.pbx_id,
        purpose="consent",
        flow_enc=runtime.box.encrypt(json.dumps(flow), associated=_flow_ad(state_hash)),
        return_url=integ.return_url,
        expires_at=runtime.clock.now() + STATE_TTL,
    )
    return str(flow["auth_uri"])


async def configure(
    session: AsyncSession, runtime: Runtime, pbx: Pbx, body: IntegrationPut
) -> AuthorizationUrl:
    integ = await repo.get_or_create(session, pbx.id)
    if integ.status == "connected":
        raise Conflict(
            "The integration is connected; disconnect it before connecting another app or tenant.",
            code="integration_already_connected",
        )
    refuse_if_disabled(integ)
    if (
        integ.status != "not_configured"
        and integ.tenant_id
        and integ.tenant_id.lower() != body.tenant_id.lower()
    ):
        raise Conflict(
            "The tenant can't change on a configured integration: disconnect first.",
            code="tenant_change_requires_disconnect",
        )
    creds = AppCredentials(body.tenant_id.lower(), body.client_id.lower(), body.client_secret)
    try:
        await runtime.msal.prove_secret(creds)
    except TokenError as exc:
        if exc.error == "login_unreachable":
            raise ProblemError(exc.message, status=502, code="login_unavailable") from None
        raise _rejected(exc) from None
    integ.client_id = creds.client_id
    integ.tenant_id = creds.tenant_id
    integ.client_secret_enc = runtime.box.encrypt(body.client_secret, associated=_secret_ad(pbx.id))
    integ.client_secret_hint = secret_hint(body.client_secret)
    integ.return_url = body.return_url
    if integ.status == "not_configured":
        integ.status = "awaiting_consent"
    url = await _authorization_url(session, runtime, integ, creds)
    await session.flush()
    return AuthorizationUrl(status=integ.status, authorization_url=url)


async def reauthorize(session: AsyncSession, runtime: Runtime, pbx: Pbx) -> AuthorizationUrl:
    integ = await repo.get(session, pbx.id, for_update=True)
    if integ is None or integ.status not in ("awaiting_consent", "error"):
        raise Conflict(
            "A new consent is only asked for while awaiting consent or in error.",
            code="reauthorize_not_needed",
        )
    url = await _authorization_url(session, runtime, integ, tokens.credentials(runtime, integ))
    return AuthorizationUrl(status=integ.status, authorization_url=url)


class CallbackOutcome(BaseModel):
    ok: bool
    status_code: int
    title: str
    message: str
    redirect: str | None = None


def _with_query(url: str, **params: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


async def callback(
    session: AsyncSession, runtime: Runtime, params: dict[str, str]
) -> CallbackOutcome:
    """The consent redirect: redeem the code, check the tenant, store the tokens, initialise."""
    state = params.get("state", "")
    row = await repo.take_state(session, _state_hash(state)) if state else None
    now = runtime.clock.now()
    if row is None or row.purpose != "consent" or row.used_at is not None or row.expires_at < now:
        return CallbackOutcome(
            ok=False,
            status_code=400,
            title="This sign-in link is not valid",
            message="The sign-in request is unknown, expired or already used. Start again from the PBX.",
        )
    row.used_at = now
    integ = await repo.get(session, row.pbx_id, for_update=True)
    if integ is None or integ.status not in ("awaiting_consent", "error"):
        return CallbackOutcome(
            ok=False,
            status_code=409,
            title="Nothing to connect",
            message="The integration is not awaiting consent.",
        )

    def fail(code: str, message: str, status_code: int = 400) -> CallbackOutcome:
        integ.last_error = {"code": code, "message": message, "at": utcnow().isoformat()}
        redirect = (
            _with_query(row.return_url, integration="error", code=code) if row.return_url else None
        )
        return CallbackOutcome(
            ok=False,
            status_code=status_code,
            title="The connection was not made",
            message=message,
            redirect=redirect,
        )

    if "error" in params:
        description = (
            params.get("error_description", "").splitlines()[0]
            if params.get("error_description")
            else ""
        )
        code = "consent_declined" if params["error"] == "access_denied" else params["error"]
        return fail(code, description or "The administrator did not grant consent.")
    flow = json.loads(runtime.box.decrypt(row.flow_enc, associated=_flow_ad(row.state_hash)))
    creds = tokens.credentials(runtime, integ)
    try:
        result, cache_blob = await runtime.msal.redeem(creds, flow, params)
    except TokenError as exc:
        return fail(exc.code, exc.message)
    claims = result.get("id_token_claims") or {}
    if str(claims.get("tid", "")).lower() != (integ.tenant_id or "").lower():
        return fail(
            "wrong_tenant",
            f"The account signed in to tenant {claims.get('tid')}, not the configured tenant {integ.tenant_id}.",
        )
    account = str(claims.get("preferred_username") or claims.get("upn") or "")
    oid = str(claims.get("oid") or "")
    kept = [w for w in (integ.warnings or []) if w.get("code") != "authorization_account_changed"]
    if integ.authorized_account_oid and integ.authorized_account_oid != oid:
        kept.append(
            {
                "code": "authorization_account_changed",
                "message": f"The integration is now authorized by {account} (before: {integ.authorized_account}); "
                "contacts shared with the previous account are no longer readable.",
            }
        )
    integ.warnings = kept
    integ.authorized_account = account
    integ.authorized_account_oid = oid
    home_oid, home_tid = oid, str(claims.get("tid"))
    integ.home_account_id = f"{home_oid}.{home_tid}"
    await repo.save_token_cache(
        session, integ.pbx_id, runtime.box.encrypt(cache_blob, associated=_cache_ad(integ.pbx_id))
    )
    integ.status = "connected"
    integ.connected_at = utcnow()
    integ.last_error = None
    runtime.tokens[integ.pbx_id] = (str(result["access_token"]), time.monotonic())
    await session.flush()
    await _initialize(session, runtime, integ)
    redirect = _with_query(row.return_url, integration="connected") if row.return_url else None
    return CallbackOutcome(
        ok=True,
        status_code=200,
        title="Data initialization succeeded",
        message="Data initialization succeeded. You can configure synchronization rules and enjoy advanced features now.",
        redirect=redirect,
    )


async def _initialize(session: AsyncSession, runtime: Runtime, integ: Integration) -> None:
    """Data initialization: the organization's name and how many users and groups it has."""
    graph = tokens.graph_for(runtime, integ.pbx_id)
    eventual = {"ConsistencyLevel": "eventual"}
    try:
        org = await graph.get("organization", {"$select": "id,displayName"})
        users = await graph.get(
            "users", {"$count": "true", "$top": "1", "$select": "id"}, headers=eventual
        )
        groups = await graph.get(
            "groups", {"$count": "true", "$top": "1", "$select": "id"}, headers=eventual
        )
    except (GraphError, TokenError) as exc:
        log.warning("data initialization failed: %s", exc)
        integ.warnings = [
            *(integ.warnings or []),
            {"code": "data_initialization_failed", "message": str(exc)},
        ]
        return
    orgs = org.get("value") or [{}]
    integ.directory_summary = {
        "organization": orgs[0].get("displayName"),
        "users": users.get("@odata.count"),
        "groups": groups.get("@odata.count"),
        "read_at": utcnow().isoformat(),
    }
    integ.warnings = [
        w for w in integ.warnings or [] if w.get("code") != "data_initialization_failed"
    ]
    await _read_secret_expiry(runtime, integ, graph)


async def _read_secret_expiry(runtime: Runtime, integ: Integration, graph: Any) -> None:
    """The client secret's endDateTime, where the signed-in account may read the application."""
    try:
        app = await graph.get(
            f"applications(appId='{integ.client_id}')", {"$select": "passwordCredentials"}
        )
    except GraphError as exc:
        log.info("client secret expiry not readable: %s", exc.code)
        return
    secret = runtime.box.decrypt(integ.client_secret_enc or "", associated=_secret_ad(integ.pbx_id))
    matching = [
        c
        for c in app.get("passwordCredentials", [])
        if c.get("hint") and secret.startswith(str(c["hint"]))
    ]
    ends = sorted(
        datetime.fromisoformat(str(c["endDateTime"]).replace("Z", "+00:00")).astimezone(UTC)
        for c in matching
        if c.get("endDateTime")
    )
    integ.client_secret_expires_at = ends[-1] if ends else None


async def update_secret(
    session: AsyncSession, runtime: Runtime, pbx: Pbx, secret: str
) -> IntegrationOut:
    integ = await repo.get(session, pbx.id, for_update=True)
    if integ is None or integ.status == "not_configured":
        raise Conflict("The integration is not configured.", code="integration_not_configured")
    refuse_if_disabled(integ)
    old = tokens.credentials(runtime, integ)
    creds = AppCredentials(old.tenant_id, old.client_id, secret)
    try:
        await runtime.msal.prove_secret(creds)
    except TokenError as exc:
        raise _rejected(exc) from None
    runtime.msal.forget(old)
    integ.client_secret_enc = runtime.box.encrypt(secret, associated=_secret_ad(pbx.id))
    integ.client_secret_hint = secret_hint(secret)
    integ.client_secret_expires_at = None
    cache_row = await repo.token_cache(session, pbx.id)
    if integ.home_account_id and cache_row is not None:
        # `error` becomes `connected` only when the account's token can be refreshed again.
        blob = runtime.box.decrypt(cache_row.cache_enc, associated=_cache_ad(pbx.id))
        async with runtime.token_locks[pbx.id]:
            try:
                token, changed = await runtime.msal.silent_token(
                    creds, blob, integ.home_account_id, force=True
                )
            except TokenError as exc:
                runtime.tokens.pop(pbx.id, None)
                if integ.status == "error" or exc.permanent:
                    tokens.record_error(integ, exc)
            else:
                if changed is not None:
                    encrypted = runtime.box.encrypt(changed, associated=_cache_ad(pbx.id))
                    await repo.save_token_cache(session, pbx.id, encrypted)
                runtime.tokens[pbx.id] = (token, time.monotonic())
                if integ.status == "error":
                    integ.status = "connected"
                    integ.last_error = None
        if integ.status == "connected":
            await _read_secret_expiry(runtime, integ, tokens.graph_for(runtime, pbx.id))
    await session.flush()
    return await view(session, runtime, pbx)


async def set_schedule(
    session: AsyncSession, runtime: Runtime, pbx: Pbx, body: Schedule
) -> IntegrationOut:
    integ = await repo.get(session, pbx.id, for_update=True)
    if integ is None or integ.status == "not_configured":
        raise Conflict("The integration is not configured.", code="integration_not_configured")
    refuse_if_disabled(integ)
    integ.schedule_frequency = body.frequency
    integ.schedule_days = list(body.days)
    integ.schedule_time = body.time
    # Every replica's timers notice the new version within seconds.
    integ.schedule_version += 1
    await session.flush()
    return await view(session, runtime, pbx)


# Disable, enable, disconnect ---------------------------------------------------------------


async def _cleanup(session: AsyncSession, pbx_id: str, choice: CleanupChoice) -> str | None:
    chosen = [s for s in SCOPES if getattr(choice, s.delete_flag)]
    if not chosen:
        return None
    run, _ = await runs.request_run(
        session,
        pbx_id,
        "cleanup",
        [s.scope for s in chosen],
        plan={"cleanup": [s.kind for s in chosen]},
    )
    return run.id


async def _stopping(runtime: Runtime, pbx_id: str) -> None:
    for hook in runtime.integration_stopping:
        await hook(runtime, pbx_id)


async def disable(
    session: AsyncSession, runtime: Runtime, pbx: Pbx, choice: CleanupChoice
) -> DisableResult:
    current = await repo.get(session, pbx.id)
    if current is None or current.status not in ("connected", "error"):
        raise Conflict(
            "Only a connected integration can be disabled.", code="integration_not_connected"
        )
    # Graph first, before the row is locked: a token refresh may need to update that row.
    await _stopping(runtime, pbx.id)
    integ = await repo.get(session, pbx.id, for_update=True)
    assert integ is not None
    integ.status = "disabled"
    await runs.cancel_waiting(session, pbx.id)
    for scope in SCOPES:
        # Kept objects freeze; those to delete freeze too until the cleanup run removes them.
        await repo.set_managed_by(session, pbx.id, scope.kind, ("entra",), "entra_frozen")
    run_id = await _cleanup(session, pbx.id, choice)
    await session.flush()
    return DisableResult(status="disabled", cleanup_run_id=run_id)


async def enable(session: AsyncSession, runtime: Runtime, pbx: Pbx) -> EnableResult:
    integ = await repo.get(session, pbx.id, for_update=True)
    if integ is None or integ.status != "disabled":
        raise Conflict(
            "Only a disabled integration can be enabled.", code="integration_not_disabled"
        )
    integ.status = "connected"
    for section, rule in (await repo.rules(session, pbx.id)).items():
        if section in BY_SECTION and rule.state == "active":
            await repo.set_managed_by(
                session, pbx.id, BY_SECTION[section].kind, ("entra_frozen",), "entra"
            )
            rule.needs_full_sync = True
    queued = await queue_active(session, pbx.id, "resync")
    await session.flush()
    return EnableResult(status="connected", resync_run_id=queued[0].id if queued else None)


async def disconnect(
    session: AsyncSession, runtime: Runtime, pbx: Pbx, choice: CleanupChoice
) -> DisableResult:
    current = await repo.get(session, pbx.id)
    if current is None or current.status == "not_configured":
        raise Conflict("The integration is not configured.", code="integration_not_configured")
    if current.status in ("connected", "error"):
        # Graph first, before the row is locked: a token refresh may need to update that row.
        await _stopping(runtime, pbx.id)
    integ = await repo.get(session, pbx.id, for_update=True)
    assert integ is not None
    await runs.cancel_waiting(session, pbx.id, include_held=True)
    for scope in SCOPES:
        if getattr(choice, scope.delete_flag):
            await repo.set_managed_by(session, pbx.id, scope.kind, ("entra",), "entra_frozen")
        else:
            await repo.release(session, pbx.id, scope.kind)
    if integ.client_id and integ.client_secret_enc:
        runtime.msal.forget(tokens.credentials(runtime, integ))
    runtime.tokens.pop(pbx.id, None)
    for hook in runtime.integration_forgotten:
        await hook(session, pbx.id)
    await repo.forget_integration(session, pbx.id)
    run_id = await _cleanup(session, pbx.id, choice)
    await session.flush()
    return DisableResult(status="not_configured", cleanup_run_id=run_id)
