"""Request dependencies: the session, the settings, the PBX selected by its key, the operator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.crypto import constant_time_equal, hash_api_key
from app.db import session_scope
from app.errors import Forbidden, Unauthorized
from app.tenants import repository as tenants_repo
from app.tenants.models import Pbx

_pbx_bearer = HTTPBearer(scheme_name="PbxApiKey", description="The PBX's API key", auto_error=False)
_admin_bearer = HTTPBearer(
    scheme_name="AdminApiKey", description="The operator key (ADMIN_API_KEY)", auto_error=False
)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with session_scope(request.app.state.sessionmaker) as session:
        yield session


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# scope="function": the session commits before the response is sent, so a 2xx means it is stored.
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


MISSING_KEY = "An API key is required: Authorization: Bearer <key>."


async def pbx_for_key(session: AsyncSession, key: str | None) -> Pbx:
    """The PBX a bearer key selects (401 without one)."""
    if not key:
        raise Unauthorized(MISSING_KEY)
    pbx = await tenants_repo.pbx_by_key_hash(session, hash_api_key(key))
    if pbx is None:
        raise Unauthorized("The API key is not valid.")
    return pbx


def check_operator(settings: Settings, key: str | None) -> None:
    """Refuse unless `key` is the operator key (403 while operator routes are disabled)."""
    if settings.admin_api_key is None:
        raise Forbidden(
            "Operator routes are disabled: ADMIN_API_KEY is not set.", code="operator_api_disabled"
        )
    if key is None or not constant_time_equal(key, settings.admin_api_key.get_secret_value()):
        raise Unauthorized("The operator key is missing or not valid.")


async def current_pbx(
    session: Session,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_pbx_bearer)],
) -> Pbx:
    return await pbx_for_key(session, credentials.credentials if credentials else None)


CurrentPbx = Annotated[Pbx, Depends(current_pbx)]


async def require_operator(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)],
) -> None:
    check_operator(settings, credentials.credentials if credentials else None)


Operator = Depends(require_operator)
