"""The run queue: triggers fold into the waiting run; at most one runs and one waits per PBX."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import rowcount, utcnow
from app.sync.models import SyncRun

ALL_SCOPES = ("users", "groups", "contacts")
FINISHED = ("succeeded", "partial", "failed", "held", "cancelled", "interrupted")


def _ordered(scopes: set[str]) -> list[str]:
    return [s for s in ALL_SCOPES if s in scopes]


async def queued_run(session: AsyncSession, pbx_id: str) -> SyncRun | None:
    stmt = (
        select(SyncRun)
        .where(
            SyncRun.pbx_id == pbx_id,
            SyncRun.status == "queued",
            SyncRun.dry_run.is_(False),
            SyncRun.trigger != "cleanup",
        )
        .with_for_update()
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def enqueue(
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
    """Queue a run, or fold the trigger into the one already waiting. Returns (run, created)."""
    wanted = set(scopes)
    folds = not dry_run and trigger != "cleanup"
    for _ in range(3):
        if folds:
            waiting = await queued_run(session, pbx_id)
            if waiting is not None:
                waiting.scopes = _ordered(set(waiting.scopes) | wanted)
                if trigger == "resync":
                    # A resync (full listing) is stronger than what was waiting.
                    waiting.trigger = "resync"
                elif waiting.trigger == "on_demand" and trigger != "on_demand":
                    # A whole sync is stronger than one user's; it still covers that user.
                    waiting.trigger = trigger
                await session.flush()
                return waiting, False
        run = SyncRun(
            pbx_id=pbx_id,
            trigger=trigger,
            status="queued",
            dry_run=dry_run,
            scopes=_ordered(wanted),
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
                existing = (
                    await session.execute(
                        select(SyncRun).where(SyncRun.idempotency_key == idempotency_key)
                    )
                ).scalar_one_or_none()
                if existing is not None:
                    return existing, False
            continue
        return run, True
    raise RuntimeError("could not queue a sync run")


async def cancel_waiting(session: AsyncSession, pbx_id: str, *, include_held: bool = False) -> int:
    statuses = ("queued", "held") if include_held else ("queued",)
    result = await session.execute(
        update(SyncRun)
        .where(SyncRun.pbx_id == pbx_id, SyncRun.status.in_(statuses), SyncRun.trigger != "cleanup")
        .values(status="cancelled", finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


async def latest(session: AsyncSession, pbx_id: str) -> SyncRun | None:
    stmt = (
        select(SyncRun)
        .where(SyncRun.pbx_id == pbx_id, SyncRun.dry_run.is_(False))
        .order_by(SyncRun.queued_at.desc(), SyncRun.id.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()
