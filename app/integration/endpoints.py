"""The integration API (Integrations > Collaboration > Microsoft 365) and the consent callback."""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict

from app.auth import CurrentPbx, Session
from app.db import after_commit
from app.errors import Conflict, problem, problem_responses
from app.graph.auth import TokenError
from app.graph.client import GraphClient
from app.graph.errors import GraphError
from app.integration import pickers, rules, service, tokens
from app.integration import repository as repo
from app.integration.schemas import (
    SECTION_MODELS,
    AuthorizationUrl,
    CleanupChoice,
    ClientSecretIn,
    DirectoryGroupsPage,
    DisableResult,
    EnableResult,
    IntegrationOut,
    IntegrationPut,
    Schedule,
    SharedMailboxPage,
)
from app.runtime import Runtime

router = APIRouter(prefix="/api/v1/integration", tags=["integration"])


def install_integration_errors(app: FastAPI) -> None:
    """Token and Graph failures met while serving a request become problem documents."""

    @app.exception_handler(TokenError)
    async def _token(_: Request, exc: TokenError) -> JSONResponse:
        return problem(
            409,
            "integration_error",
            "Microsoft Entra ID refused the integration's credentials",
            f"{exc.code}: {exc.message}",
            aadsts=exc.code,
        )

    @app.exception_handler(GraphError)
    async def _graph(_: Request, exc: GraphError) -> JSONResponse:
        return problem(
            502, "graph_error", "Microsoft Graph error", f"{exc.status} {exc.code}: {exc.message}"
        )


callback_router = APIRouter(tags=["integration"])


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


@router.get("", response_model=IntegrationOut)
async def get_integration(pbx: CurrentPbx, session: Session, runtime: RuntimeDep) -> IntegrationOut:
    return await service.view(session, runtime, pbx)


@router.put("", response_model=AuthorizationUrl)
async def put_integration(
    pbx: CurrentPbx, session: Session, runtime: RuntimeDep, body: IntegrationPut
) -> AuthorizationUrl:
    """Save the app registration, prove the secret, and get the admin consent URL."""
    return await service.configure(session, runtime, pbx, body)


@router.put("/schedule", response_model=IntegrationOut)
async def put_schedule(
    pbx: CurrentPbx, session: Session, runtime: RuntimeDep, body: Schedule
) -> IntegrationOut:
    """Daily (default 00:30) or weekly on chosen days, at HH:MM in the PBX's timezone."""
    return await service.set_schedule(session, runtime, pbx, body)


@router.post("/reauthorize", response_model=AuthorizationUrl)
async def reauthorize(pbx: CurrentPbx, session: Session, runtime: RuntimeDep) -> AuthorizationUrl:
    return await service.reauthorize(session, runtime, pbx)


@router.post("/client-secret", response_model=IntegrationOut)
async def client_secret(
    pbx: CurrentPbx, session: Session, runtime: RuntimeDep, body: ClientSecretIn
) -> IntegrationOut:
    return await service.update_secret(session, runtime, pbx, body.client_secret)


def _accepted_if_queued(response: Response, run_id: str | None) -> None:
    """202 when the change left a run to do (cleanup or resync), else 200."""
    response.status_code = status.HTTP_202_ACCEPTED if run_id else status.HTTP_200_OK


@router.post(
    "/disable",
    response_model=DisableResult,
    responses={
        202: {"model": DisableResult, "description": "Disabled; deletions run in a cleanup run"}
    },
)
async def disable(
    pbx: CurrentPbx,
    session: Session,
    runtime: RuntimeDep,
    response: Response,
    body: CleanupChoice | None = None,
) -> DisableResult:
    result = await service.disable(session, runtime, pbx, body or CleanupChoice())
    _accepted_if_queued(response, result.cleanup_run_id)
    return result


@router.post(
    "/enable",
    response_model=EnableResult,
    responses={202: {"model": EnableResult, "description": "Enabled; a resync run is queued"}},
)
async def enable(
    pbx: CurrentPbx, session: Session, runtime: RuntimeDep, response: Response
) -> EnableResult:
    result = await service.enable(session, runtime, pbx)
    _accepted_if_queued(response, result.resync_run_id)
    return result


@router.post(
    "/disconnect",
    response_model=DisableResult,
    responses={
        202: {"model": DisableResult, "description": "Disconnected; deletions run in a cleanup run"}
    },
)
async def disconnect(
    pbx: CurrentPbx,
    session: Session,
    runtime: RuntimeDep,
    response: Response,
    body: CleanupChoice | None = None,
) -> DisableResult:
    result = await service.disconnect(session, runtime, pbx, body or CleanupChoice())
    _accepted_if_queued(response, result.cleanup_run_id)
    return result


async def _connected_graph(session: Session, runtime: Runtime, pbx_id: str) -> GraphClient:
    integ = await repo.get(session, pbx_id)
    if integ is None or integ.status != "connected":
        raise Conflict("The integration is not connected.", code="integration_not_connected")
    return tokens.graph_for(runtime, pbx_id)


@router.get(
    "/directory/groups", response_model=DirectoryGroupsPage, responses=problem_responses(409, 502)
)
async def directory_groups(
    pbx: CurrentPbx,
    session: Session,
    runtime: RuntimeDep,
    search: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=999)] = 200,
    cursor: str | None = None,
) -> DirectoryGroupsPage:
    graph = await _connected_graph(session, runtime, pbx.id)
    return await pickers.groups(graph, search, limit, cursor)


@router.get(
    "/directory/shared-mailboxes",
    response_model=SharedMailboxPage,
    responses=problem_responses(409, 502),
)
async def shared_mailboxes(
    pbx: CurrentPbx,
    session: Session,
    runtime: RuntimeDep,
    search: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=999)] = 200,
    cursor: str | None = None,
) -> SharedMailboxPage:
    graph = await _connected_graph(session, runtime, pbx.id)
    return await pickers.shared_mailboxes(graph, pbx.id, search, limit, cursor)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;color:#222}}
h1{{font-size:1.4rem}} .ok{{color:#137333}} .fail{{color:#b3261e}}</style></head>
<body><h1 class="{cls}">{title}</h1><p id="message">{message}</p></body></html>"""


async def _consent_callback(session: Session, runtime: Runtime, params: dict[str, str]) -> Response:
    outcome = await service.callback(session, runtime, params)
    if outcome.redirect:
        return RedirectResponse(outcome.redirect, status_code=302)
    page = PAGE.format(
        title=html.escape(outcome.title),
        message=html.escape(outcome.message),
        cls="ok" if outcome.ok else "fail",
    )
    return HTMLResponse(page, status_code=outcome.status_code)


CALLBACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    302: {"description": "Connected: the browser goes on to the return URL"},
    400: {"description": "Unknown, expired or refused sign-in", "content": {"text/html": {}}},
    409: {"description": "The integration can't take this consent", "content": {"text/html": {}}},
}


@callback_router.post(
    "/integration/callback", response_class=HTMLResponse, responses=CALLBACK_RESPONSES
)
async def consent_callback(request: Request, session: Session, runtime: RuntimeDep) -> Response:
    """The Redirect URI: Microsoft posts the admin's browser here (form_post) after consent."""
    form = await request.form()
    params = {k: v for k, v in form.items() if isinstance(v, str)}
    return await _consent_callback(session, runtime, params)


@callback_router.get(
    "/integration/callback", response_class=HTMLResponse, responses=CALLBACK_RESPONSES
)
async def consent_callback_query(
    request: Request, session: Session, runtime: RuntimeDep
) -> Response:
    """The same Redirect URI for answers in the query string."""
    return await _consent_callback(session, runtime, dict(request.query_params))


class PauseUsers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delete_extensions: bool = False


class PauseGroups(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delete_extension_groups: bool = False


class PauseContacts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delete_contacts: bool = False


def _section_routes(section: str, path: str) -> None:
    model = SECTION_MODELS[section]

    async def get_rules(pbx: CurrentPbx, session: Session, runtime: RuntimeDep) -> dict[str, Any]:
        return await rules.get_section(session, runtime, pbx, section)

    async def put_rules(
        request: Request,
        pbx: CurrentPbx,
        session: Session,
        runtime: RuntimeDep,
        body: BaseModel,
    ) -> dict[str, Any]:
        result, run_id = await rules.put_section(session, runtime, pbx, section, body)
        if run_id:
            supervisor = getattr(request.app.state, "supervisor", None)
            if supervisor is not None:
                # A section came on: its Graph subscriptions are made without waiting.
                after_commit(session, lambda: supervisor.poke("subscriptions"))
            result["initial_run_id"] = run_id
        return result

    # The body model is chosen per section: give FastAPI the class, not a name to resolve.
    put_rules.__annotations__["body"] = model
    get_rules.__name__ = f"get_{section}"
    put_rules.__name__ = f"put_{section}"
    router.add_api_route(
        path, get_rules, methods=["GET"], summary=f"Read the {section.replace('_', ' ')} rules"
    )
    router.add_api_route(
        path, put_rules, methods=["PUT"], summary=f"Save the {section.replace('_', ' ')} rules"
    )


for _section, _path in (
    ("user_sync", "/user-sync"),
    ("group_sync", "/group-sync"),
    ("contacts_sync", "/contacts-sync"),
    ("presence_sync", "/presence-sync"),
    ("sso", "/sso"),
    ("deletion_guard", "/deletion-guard"),
):
    _section_routes(_section, _path)


@router.post("/user-sync/pause")
async def pause_users(
    pbx: CurrentPbx, session: Session, body: PauseUsers | None = None
) -> dict[str, Any]:
    return await rules.pause(session, pbx, "user_sync", (body or PauseUsers()).delete_extensions)


@router.post("/user-sync/resume")
async def resume_users(pbx: CurrentPbx, session: Session) -> dict[str, Any]:
    return await rules.resume(session, pbx, "user_sync")


@router.post("/group-sync/pause")
async def pause_groups(
    pbx: CurrentPbx, session: Session, body: PauseGroups | None = None
) -> dict[str, Any]:
    return await rules.pause(
        session, pbx, "group_sync", (body or PauseGroups()).delete_extension_groups
    )


@router.post("/group-sync/resume")
async def resume_groups(pbx: CurrentPbx, session: Session) -> dict[str, Any]:
    return await rules.resume(session, pbx, "group_sync")


@router.post("/contacts-sync/pause")
async def pause_contacts(
    pbx: CurrentPbx, session: Session, body: PauseContacts | None = None
) -> dict[str, Any]:
    return await rules.pause(
        session, pbx, "contacts_sync", (body or PauseContacts()).delete_contacts
    )


@router.post("/contacts-sync/resume")
async def resume_contacts(pbx: CurrentPbx, session: Session) -> dict[str, Any]:
    return await rules.resume(session, pbx, "contacts_sync")
