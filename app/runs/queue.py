"""The run queue: every trigger calls `request_run`; triggers fold into the waiting run, at most
one run runs and one waits per PBX, and the worker is woken once the request's session commits.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import ring_after_commit, utcnow
from app.runs import repository as repo
from app.runs.models import SyncRun
from app.runs.scopes import ordered

log = logging.getLogger("pbx_entra.runs")
CHANGE_LOG_DAYS = 90
RUNS = "runs"  # the doorbell of the run loop
FINISHED = ("succeeded", "partial", "failed", "held", "cancelled", "interrupted")


async def request_run(
    session: AsyncSession,
    pbx_id: str,
    trigger: str,
    scopes: list[str] | set[str],
    *,
    dry_run: bool = False,
    plan: dict[str, Any] | None = None,
    retry_of: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[SyncRun, bool]:
    """Queue a run, or fold the request into the run already waiting for the PBX (dry runs and
    cleanups never fold). Returns (run, created); the worker wakes after the commit."""
    wanted = set(scopes)
    folds = not dry_run and trigger != "cleanup"
    for _ in range(3):
        if folds:
            waiting = await repo.queued_run(session, pbx_id)
            if waiting is not None:
                _fold(waiting, wanted, trigger)
                await session.flush()
                return waiting, False
        run = SyncRun(
            pbx_id=pbx_id,
            trigger=trigger,
            status="queued",
            dry_run=dry_run,
            scopes=ordered(wanted),
            plan=plan,
            retry_of=retry_of,
            idempotency_key=idempotency_key,
            progress={"phase": "queued", "done": 0, "total": None},
            counts={},
            failures=[],
            warnings=[],
            queued_at=utcnow(),
        )
        try:
            async with session.begin_nested():
                session.add(run)
                await session.flush()
        except IntegrityError:
            # Another request (or replica) queued one at the same moment: fold into it.
            if idempotency_key is not None:
                existing = await repo.by_idempotency_key(session, idempotency_key)
                if existing is not None:
                    return existing, False
            continue
        ring_after_commit(session, RUNS)
        return run, True
    raise RuntimeError("could not queue a sync run")


def _fold(into: SyncRun, scopes: set[str], trigger: str) -> None:
    into.scopes = ordered(set(into.scopes) | scopes)
    if trigger == "resync":
        # A resync (full listing) is stronger than what was waiting.
        into.trigger = "resync"
    elif into.trigger == "on_demand" and trigger != "on_demand":
        # A whole sync is stronger than one user's; it still covers that user.
        into.trigger = trigger


async def requeue_approved(session: AsyncSession, run: SyncRun) -> None:
    """An approved held run goes back in the queue; a run already waiting folds into it."""
    waiting = await repo.queued_run(session, run.pbx_id)
    if waiting is not None and waiting.id != run.id:
        run.plan = {
            **(run.plan or {}),
            "folded": {"scopes": list(waiting.scopes), "trigger": waiting.trigger},
        }
        waiting.status = "cancelled"
        waiting.finished_at = utcnow()
        waiting.error = {
            "code": "folded",
            "message": f"Folded into the approved run {run.id}.",
            "run_id": run.id,
        }
        await session.flush()
    run.status = "queued"
    run.queued_at = utcnow()
    run.finished_at = None
    run.started_at = None
    await session.flush()
    ring_after_commit(session, RUNS)


async def cancel_waiting(session: AsyncSession, pbx_id: str, *, include_held: bool = False) -> int:
    """Cancel the PBX's queued (and held) runs, cleanups excepted."""
    statuses = ("queued", "held") if include_held else ("queued",)
    return await repo.cancel_runs(session, pbx_id, statuses)


async def drop_scope(session: AsyncSession, pbx_id: str, scope: str) -> None:
    """A paused section leaves the waiting run; a run left with no scope is cancelled."""
    waiting = await repo.queued_run(session, pbx_id)
    if waiting is None or scope not in waiting.scopes:
        return
    rest = [s for s in waiting.scopes if s != scope]
    if rest:
        waiting.scopes = rest
    else:
        waiting.status = "cancelled"
        waiting.finished_at = utcnow()


async def reap(session: AsyncSession) -> list[tuple[str, str]]:
    """Runs whose lease ran out lost their worker: mark them interrupted and queue a retry.
    Returns (interrupted run, retry) pairs."""
    pairs = []
    for run in await repo.expired_runs(session):
        run.status = "interrupted"
        run.finished_at = utcnow()
        run.error = {
            "code": "worker_lost",
            "message": f"The worker {run.locked_by} stopped renewing its lease.",
        }
        run.locked_by = None
        run.locked_until = None
        await session.flush()
        retry, _ = await request_run(
            session,
            run.pbx_id,
            run.trigger,
            run.scopes,
            dry_run=run.dry_run,
            plan=run.plan if run.trigger in ("cleanup", "on_demand") else None,
        )
        if retry.retry_of is None:
            retry.retry_of = run.id
        log.warning("run %s interrupted; retried as %s", run.id, retry.id)
        pairs.append((run.id, retry.id))
    return pairs


async def purge(session: AsyncSession) -> int:
    """The change log is kept 90 days."""
    removed = await repo.purge_changes(session, utcnow() - timedelta(days=CHANGE_LOG_DAYS))
    if removed:
        log.info("purged %d change-log rows older than %d days", removed, CHANGE_LOG_DAYS)
    return removed
