"""Single sign-on of Linkus clients (no API key) and Linkus self-service with its access token."""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from app.auth import Session, SettingsDep
from app.directory import service as directory
from app.directory.schemas import (
    ContactOut,
    ExtensionOut,
    PhonebookOut,
    PresenceOut,
    PresenceUpdate,
    TeamsPresence,
)
from app.pagination import Page, PageParams, page_params
from app.runtime import Runtime
from app.sso import service
from app.sso.auth import CurrentLinkusUser
from app.sso.idtoken import SigningKeys
from app.sso.schemas import ClientKind, TokenOut, TokenRequest

router = APIRouter(prefix="/sso", tags=["sso"])
me_router = APIRouter(prefix="/api/v1/me", tags=["linkus self-service"])
Paging = Annotated[PageParams, Depends(page_params)]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_signing_keys(request: Request) -> SigningKeys:
    """The process's cache of tenant signing keys (made on first use)."""
    keys: SigningKeys | None = getattr(request.app.state, "sso_signing_keys", None)
    if keys is None:
        keys = SigningKeys(get_runtime(request).graph_http)
        request.app.state.sso_signing_keys = keys
    return keys


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
KeysDep = Annotated[SigningKeys, Depends(get_signing_keys)]

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign-in failed</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;color:#222}}
h1{{font-size:1.4rem;color:#b3261e}}</style></head>
<body><h1>Sign-in failed</h1><p id="message">{message}</p></body></html>"""


@router.get(
    "/{pbx_id}/login",
    status_code=302,
    response_class=RedirectResponse,
    responses={
        302: {"description": "To the Microsoft sign-in, or back to return_url with sso_error"},
        400: {"description": "return_url_not_allowed"},
        404: {"description": "No such PBX"},
    },
)
async def login(
    pbx_id: str,
    session: Session,
    runtime: RuntimeDep,
    client: Annotated[ClientKind, Query(description="The Linkus client signing in")],
    return_url: Annotated[str, Query(max_length=2000, description="Where the code goes")],
) -> Response:
    """Start a Linkus sign-in with a Microsoft account."""
    target = await service.begin_login(session, runtime, pbx_id, client, return_url)
    return RedirectResponse(target, status_code=302, headers=NO_STORE)


@router.get(
    "/callback",
    response_class=RedirectResponse,
    responses={
        302: {"description": "Back to return_url with sso_code, or with sso_error"},
        400: {"description": "Unknown, used or expired sign-in request (an HTML page)"},
    },
)
async def callback(
    request: Request, session: Session, runtime: RuntimeDep, keys: KeysDep
) -> Response:
    """The SSO Redirect URI: Microsoft sends the browser here with `code` and `state`."""
    params = {k: v for k, v in request.query_params.items()}
    result = await service.finish_login(session, runtime, keys, params)
    if result.redirect is not None:
        return RedirectResponse(result.redirect, status_code=302, headers=NO_STORE)
    page = PAGE.format(message=html.escape(result.message))
    return HTMLResponse(page, status_code=result.status_code, headers=NO_STORE)


@router.post("/token", response_model=TokenOut, responses={400: {"description": "invalid_code"}})
async def token(
    session: Session, settings: SettingsDep, body: TokenRequest, response: Response
) -> TokenOut:
    """Exchange a one-time `sso_code` (once, within 60 s) for a one-hour access token."""
    done = await service.exchange(session, settings, body.code, body.pbx_id)
    response.headers.update(NO_STORE)
    return TokenOut(
        access_token=done.access_token,
        expires_in=done.expires_in,
        pbx_id=done.pbx.id,
        extension=await directory.extension_view(session, done.extension),
    )


@router.get("/userinfo", response_model=ExtensionOut)
async def userinfo(user: CurrentLinkusUser, session: Session) -> ExtensionOut:
    """The signed-in extension."""
    return await directory.extension_view(session, user.extension)


# Linkus self-service: the caller's own extension only, through the directory's use cases.


@me_router.get("/presence", response_model=PresenceOut)
async def get_presence(user: CurrentLinkusUser, session: Session) -> PresenceOut:
    return (await directory.extension_view(session, user.extension)).presence


@me_router.put("/presence", response_model=PresenceOut)
async def put_presence(
    user: CurrentLinkusUser, session: Session, body: PresenceUpdate
) -> PresenceOut:
    return await directory.set_presence(session, user.pbx, user.extension.id, body)


@me_router.get("/teams-presence", response_model=TeamsPresence)
async def get_teams_presence(user: CurrentLinkusUser, session: Session) -> TeamsPresence:
    return await directory.get_teams_presence(session, user.pbx, user.extension.id)


@me_router.put("/teams-presence", response_model=TeamsPresence)
async def put_teams_presence(
    user: CurrentLinkusUser, session: Session, body: TeamsPresence
) -> TeamsPresence:
    return await directory.put_teams_presence(session, user.pbx, user.extension.id, body)


@me_router.get("/contacts", response_model=Page[ContactOut])
async def contacts(user: CurrentLinkusUser, session: Session, params: Paging) -> Page[ContactOut]:
    """The caller's personal (Outlook) contacts."""
    rows, cursor = await directory.list_contacts(session, params, extension_id=user.extension.id)
    return Page[ContactOut](items=[ContactOut.model_validate(r) for r in rows], next_cursor=cursor)


@me_router.get("/visible-phonebooks", response_model=Page[PhonebookOut])
async def visible_phonebooks(
    user: CurrentLinkusUser, session: Session, params: Paging
) -> Page[PhonebookOut]:
    """The company phonebooks the caller may see (Contact Visibility Permission)."""
    books, cursor = await directory.visible_phonebooks(session, user.pbx, user.extension.id, params)
    return Page[PhonebookOut](items=books, next_cursor=cursor)
