"""Sync-run use cases: Update Now, reading runs, cancel, approve and reject held deletions."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.errors import Conflict, NotFound
from app.integration import repository as integ_repo
from app.integration.triggers import queue_active
from app.pagination import PageParams, next_cursor, paginate
from app.runs import queue as runs
from app.runs import repository as runs_repo
from app.runs.models import SyncChange, SyncRun
from app.sync.schemas import RunOut, SyncRequest
from app.tenants.models import Pbx

EMPTY = {"users": None, "groups": None, "contacts": None, "graph": None}


def run_out(run: SyncRun) -> RunOut:
    counts: dict[str, Any] = {**EMPTY, **(run.counts or {})}
    return RunOut(
        id=run.id,
        trigger=run.trigger,
        retry_of=run.retry_of,
        status=run.status,
        dry_run=run.dry_run,
        scopes=list(run.scopes),
        progress=run.progress or {},
        users=counts["users"],
        groups=counts["groups"],
        contacts=counts["contacts"],
        graph=counts["graph"],
        failures=run.failures or [],
        warnings=run.warnings or [],
        held=run.held,
        plan=({k: v for k, v in (run.plan or {}).items() if k != "cleanup"} or None)
        if run.dry_run
        else None,
        error=run.error,
        queued_at=run.queued_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        graph_requests=run.graph_requests,
    )


async def get_run(
    session: AsyncSession, pbx: Pbx, run_id: str, *, for_update: bool = False
) -> SyncRun:
    run = await runs_repo.get(session, run_id, for_update=for_update)
    if run is None or run.pbx_id != pbx.id:
        raise NotFound(f"No sync run {run_id}.")
    return run


async def request_sync(
    session: AsyncSession, pbx: Pbx, body: SyncRequest, trigger: str = "manual"
) -> tuple[SyncRun, bool]:
    queued = await queue_active(
        session,
        pbx.id,
        trigger,
        scopes=list(body.scopes) if body.scopes else None,
        dry_run=body.dry_run,
        strict=True,
    )
    assert queued is not None  # strict: refused with a Conflict instead
    return queued


async def list_runs(
    session: AsyncSession, pbx: Pbx, params: PageParams
) -> tuple[list[RunOut], str | None]:
    stmt = paginate(
        runs_repo.runs_query(pbx.id), SyncRun.queued_at, SyncRun.id, params, descending=True
    )
    rows, cursor = next_cursor(list((await session.execute(stmt)).scalars()), params, "queued_at")
    return [run_out(r) for r in rows], cursor


async def list_changes(
    session: AsyncSession, pbx: Pbx, run_id: str, params: PageParams
) -> tuple[list[SyncChange], str | None]:
    await get_run(session, pbx, run_id)
    stmt = paginate(runs_repo.changes_query(run_id), SyncChange.id, SyncChange.id, params)
    return next_cursor(list((await session.execute(stmt)).scalars()), params, "id")


async def cancel(session: AsyncSession, pbx: Pbx, run_id: str) -> RunOut:
    run = await get_run(session, pbx, run_id, for_update=True)
    if run.status != "queued":
        raise Conflict(
            f"Only a queued run can be cancelled; this one is {run.status}.",
            code="run_not_cancellable",
        )
    run.status = "cancelled"
    run.finished_at = utcnow()
    return run_out(run)


async def reject(session: AsyncSession, pbx: Pbx, run_id: str) -> RunOut:
    run = await get_run(session, pbx, run_id, for_update=True)
    if run.status != "held":
        raise Conflict("Only a held run's deletions can be rejected.", code="run_not_held")
    run.status = "partial" if run.failures else "succeeded"
    run.held = {**(run.held or {}), "decision": "rejected", "decided_at": utcnow().isoformat()}
    integ = await integ_repo.get(session, pbx.id, for_update=True)
    if integ is not None and integ.held_run_id == run.id:
        integ.held_run_id = None
    return run_out(run)


async def approve(session: AsyncSession, pbx: Pbx, run_id: str) -> RunOut:
    """The held run goes back in the queue: a worker plans again against the directory as it
    is then and deletes what was held (`plan_stale`, deleting nothing, when that grew)."""
    run = await get_run(session, pbx, run_id, for_update=True)
    if run.status != "held":
        raise Conflict("Only a held run can be approved.", code="run_not_held")
    integ = await integ_repo.get(session, pbx.id, for_update=True)
    if integ is None or integ.status != "connected":
        raise Conflict(
            "Held deletions are applied by a run: the integration must be connected.",
            code="integration_disabled"
            if integ is not None and integ.status == "disabled"
            else "integration_not_connected",
        )
    run.held = {**(run.held or {}), "decision": "approved", "decided_at": utcnow().isoformat()}
    await runs.requeue_approved(session, run)
    if integ.held_run_id == run.id:
        integ.held_run_id = None
    return run_out(run)
