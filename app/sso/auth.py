"""The request dependency of the Linkus self-service routes: the user of an SSO access token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth import Session, SettingsDep
from app.errors import Unauthorized
from app.sso import service as sso_service
from app.sso.service import LinkusUser

_linkus_bearer = HTTPBearer(
    scheme_name="LinkusAccessToken",
    description="The access token of POST /sso/token (a PBX API key is refused)",
    auto_error=False,
)


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
