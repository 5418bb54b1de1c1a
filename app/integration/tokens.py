"""Access tokens for the authorization account: from the encrypted cache, one refresh at a time."""

from __future__ import annotations

import time

from app.db import session_scope, utcnow
from app.errors import Conflict
from app.graph.auth import AppCredentials, TokenError
from app.graph.client import GraphClient, RetryPolicy, TokenSource
from app.integration import repository as repo
from app.integration.models import Integration
from app.runtime import Runtime

# A cached access token is reused this long; Entra issues them for 60 to 90 minutes.
TOKEN_REUSE_SECONDS = 300


def credentials(runtime: Runtime, integ: Integration) -> AppCredentials:
    if not (integ.client_id and integ.tenant_id and integ.client_secret_enc):
        raise Conflict("The integration is not configured.", code="integration_not_configured")
    secret = runtime.box.decrypt(
        integ.client_secret_enc, associated=f"client_secret:{integ.pbx_id}"
    )
    return AppCredentials(integ.tenant_id, integ.client_id, secret)


def record_error(integ: Integration, error: TokenError) -> None:
    integ.status = "error"
    integ.last_error = {"code": error.code, "message": error.message, "at": utcnow().isoformat()}


async def access_token(runtime: Runtime, pbx_id: str, *, force: bool = False) -> str:
    """A delegated Graph token for the PBX; a refresh that fails for good sets status `error`."""
    async with runtime.token_locks[pbx_id]:
        cached = runtime.tokens.get(pbx_id)
        if cached and not force and time.monotonic() - cached[1] < TOKEN_REUSE_SECONDS:
            return cached[0]
        try:
            token = await _refresh(runtime, pbx_id, force)
        except TokenError as exc:
            runtime.tokens.pop(pbx_id, None)
            if exc.permanent or exc.error == "no_account":
                async with session_scope(runtime.sessionmaker) as session:
                    integ = await repo.get(session, pbx_id, for_update=True)
                    if integ is not None and integ.status == "connected":
                        record_error(integ, exc)
            raise
        runtime.tokens[pbx_id] = (token, time.monotonic())
        return token


async def _refresh(runtime: Runtime, pbx_id: str, force: bool) -> str:
    async with session_scope(runtime.sessionmaker) as session:
        integ = await repo.get(session, pbx_id)
        cache_row = await repo.token_cache(session, pbx_id)
        if integ is None or cache_row is None or not integ.home_account_id:
            raise Conflict("The integration is not connected.", code="integration_not_connected")
        creds = credentials(runtime, integ)
        blob = runtime.box.decrypt(cache_row.cache_enc, associated=f"token_cache:{pbx_id}")
        token, changed = await runtime.msal.silent_token(
            creds, blob, integ.home_account_id, force=force
        )
        if changed is not None:
            encrypted = runtime.box.encrypt(changed, associated=f"token_cache:{pbx_id}")
            await repo.save_token_cache(session, pbx_id, encrypted)
        return token


def graph_for(runtime: Runtime, pbx_id: str) -> GraphClient:
    async def source(force: bool) -> str:
        return await access_token(runtime, pbx_id, force=force)

    token: TokenSource = source
    return GraphClient(
        runtime.settings.graph_base_url,
        token,
        http=runtime.graph_http,
        clock=runtime.clock,
        retry=RetryPolicy(base_backoff=runtime.settings.graph_backoff_seconds),
    )
