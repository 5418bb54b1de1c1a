"""Sync runs: Update Now, the run history, progress events, cancel, approve and reject."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sse_starlette.sse import EventSourceResponse

from app.auth import CurrentPbx, Session
from app.db import session_scope
from app.directory import service as directory_service
from app.directory.schemas import ExtensionOut
from app.errors import Conflict, problem_responses
from app.integration.endpoints import RuntimeDep
from app.integration.tokens import graph_for
from app.pagination import Page, PageParams, page_params
from app.runs import outbox as mail
from app.sync import explain, explain_groups, provision, service
from app.sync.schemas import (
    ChangeOut,
    GroupExplainOut,
    ProvisionRequest,
    RunOut,
    SyncRequest,
    UserExplainOut,
)

router = APIRouter(prefix="/api/v1", tags=["sync"])
Paging = Annotated[PageParams, Depends(page_params)]
FINAL = {"succeeded", "partial", "failed", "held", "cancelled", "interrupted"}


@router.post(
    "/integration/sync",
    response_model=RunOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {
            "model": RunOut,
            "description": "The run already queued, which now covers these scopes",
        }
    },
)
async def update_now(
    pbx: CurrentPbx,
    session: Session,
    response: Response,
    body: SyncRequest | None = None,
) -> RunOut:
    """Update Now: queue a manual run, or join the one already waiting."""
    run, created = await service.request_sync(session, pbx, body or SyncRequest())
    response.status_code = status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
    return service.run_out(run)


@router.get(
    "/integration/user-sync/explain",
    response_model=UserExplainOut,
    responses=problem_responses(404, 409, 502),
)
async def explain_user(
    pbx: CurrentPbx,
    session: Session,
    runtime: RuntimeDep,
    user: Annotated[str, Query(min_length=1, max_length=400, description="Entra id, UPN or mail")],
) -> UserExplainOut:
    """What a sync would do to this one user now, and why, step by step (writes nothing)."""
    graph = graph_for(runtime, pbx.id)
    return await explain.explain_user(session, graph, pbx.id, pbx.max_extensions, user)


@router.post(
    "/integration/user-sync/provision",
    response_model=RunOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": RunOut, "description": "The run already waiting, which now covers the user"},
        **problem_responses(404, 502),
    },
)
async def provision_user(
    pbx: CurrentPbx,
    session: Session,
    runtime: RuntimeDep,
    response: Response,
    body: ProvisionRequest,
) -> RunOut:
    """Apply this one user's plan now, as an on-demand run (the deletion guard does not apply)."""
    graph = graph_for(runtime, pbx.id)
    run, created = await provision.request_provision(session, graph, pbx, body.user)
    response.status_code = status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
    return service.run_out(run)


@router.get(
    "/integration/group-sync/explain",
    response_model=GroupExplainOut,
    responses=problem_responses(404, 409, 502),
)
async def explain_group(
    pbx: CurrentPbx,
    session: Session,
    runtime: RuntimeDep,
    group: Annotated[
        str, Query(min_length=1, max_length=400, description="Entra id or displayName")
    ],
) -> GroupExplainOut:
    """What a sync would do to this one group now, and why (writes nothing)."""
    graph = graph_for(runtime, pbx.id)
    return await explain_groups.explain_group(session, graph, pbx, group)


@router.get("/sync-runs", response_model=Page[RunOut])
async def list_runs(pbx: CurrentPbx, session: Session, params: Paging) -> Page[RunOut]:
    items, cursor = await service.list_runs(session, pbx, params)
    return Page[RunOut](items=items, next_cursor=cursor)


@router.get("/sync-runs/{run_id}", response_model=RunOut)
async def get_run(pbx: CurrentPbx, session: Session, run_id: str) -> RunOut:
    return service.run_out(await service.get_run(session, pbx, run_id))


@router.get("/sync-runs/{run_id}/changes", response_model=Page[ChangeOut])
async def run_changes(
    pbx: CurrentPbx, session: Session, run_id: str, params: Paging
) -> Page[ChangeOut]:
    rows, cursor = await service.list_changes(session, pbx, run_id, params)
    return Page[ChangeOut](items=[ChangeOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.post("/sync-runs/{run_id}/cancel", response_model=RunOut)
async def cancel_run(pbx: CurrentPbx, session: Session, run_id: str) -> RunOut:
    return await service.cancel(session, pbx, run_id)


@router.post("/sync-runs/{run_id}/approve", response_model=RunOut, status_code=202)
async def approve_run(pbx: CurrentPbx, session: Session, run_id: str) -> RunOut:
    """Put the held run back in the queue: a worker deletes what was held after planning again
    (the run ends `failed` with `plan_stale`, deleting nothing, when the deletions grew)."""
    return await service.approve(session, pbx, run_id)


@router.post("/sync-runs/{run_id}/reject", response_model=RunOut)
async def reject_run(pbx: CurrentPbx, session: Session, run_id: str) -> RunOut:
    return await service.reject(session, pbx, run_id)


@router.get("/sync-runs/{run_id}/events", response_class=EventSourceResponse)
async def run_events(
    request: Request, pbx: CurrentPbx, session: Session, run_id: str
) -> EventSourceResponse:
    """Server-Sent Events: `progress` while the run goes on, then one `done` with the report."""
    await service.get_run(session, pbx, run_id)
    maker = request.app.state.sessionmaker

    async def events() -> AsyncIterator[dict[str, str]]:
        last = None
        while True:
            async with session_scope(maker) as s:
                out = service.run_out(await service.get_run(s, pbx, run_id))
            if out.status in FINAL:
                yield {"event": "done", "data": out.model_dump_json()}
                return
            snapshot = json.dumps({"status": out.status, "progress": out.progress})
            if snapshot != last:
                last = snapshot
                yield {"event": "progress", "data": snapshot}
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.5)

    return EventSourceResponse(events())


@router.post("/extensions/{ext_id}/welcome-email", response_model=ExtensionOut)
async def send_welcome_email(
    pbx: CurrentPbx, session: Session, runtime: RuntimeDep, ext_id: str
) -> ExtensionOut:
    """Send (again) the Linkus welcome email of one extension."""
    ext = await directory_service.get_extension(session, pbx, ext_id)
    if not ext.email:
        raise Conflict("The extension has no email address.", code="no_email_address")
    if runtime.settings.smtp_url is None:
        raise Conflict("No mail server is configured (SMTP_URL).", code="mail_not_configured")
    await mail.queue_welcome(session, ext)
    # The outbox loop sends it once this request's session has committed.
    return await directory_service.extension_view(session, ext)
