"""Request dependencies: the session, the settings, the PBX selected by its key, the operator, and
the Linkus user of an SSO access token."""

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
from app.sso import service as sso_service
from app.sso.service import LinkusUser
from app.tenants import repository as tenants_repo
from app.tenants.models import Pbx

_pbx_bearer = HTTPBearer(scheme_name="PbxApiKey", description="The PBX's API key", auto_error=False)
_linkus_bearer = HTTPBearer(
    scheme_name="LinkusAccessToken",
    description="The access token of POST /sso/token (a PBX API key is refused)",
    auto_error=False,
)
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


async def current_pbx(
    session: Session,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_pbx_bearer)],
) -> Pbx:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("An API key is required: Authorization: Bearer <key>.")
    pbx = await tenants_repo.pbx_by_key_hash(session, hash_api_key(credentials.credentials))
    if pbx is None:
        raise Unauthorized("The API key is not valid.")
    return pbx


CurrentPbx = Annotated[Pbx, Depends(current_pbx)]


async def require_operator(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)],
) -> None:
    if settings.admin_api_key is None:
        raise Forbidden(
            "Operator routes are disabled: ADMIN_API_KEY is not set.", code="operator_api_disabled"
        )
    if credentials is None or not constant_time_equal(
        credentials.credentials, settings.admin_api_key.get_secret_value()
    ):
        raise Unauthorized("The operator key is missing or not valid.")


Operator = Depends(require_operator)


async def current_linkus_user(
    session: Session,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_linkus_bearer)],
) -> LinkusUser:
    """The extension an SSO access token names, checked against its current state."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized("A Linkus access token is required: Authorization: Bearer <token>.")
    return await sso_service.current_user(session, settings, credentials.credentials)


CurrentLinkusUser = Annotated[LinkusUser, Depends(current_linkus_user)]
