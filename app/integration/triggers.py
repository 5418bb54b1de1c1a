"""Queueing a run of the active sections of a connected integration: the one check every
trigger makes (Update Now, schedule, change events, resync, enable) before `request_run`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict
from app.integration import repository as repo
from app.runs.models import SyncRun
from app.runs.queue import request_run
from app.runs.scopes import RUN_SECTIONS


async def queue_active(
    session: AsyncSession,
    pbx_id: str,
    trigger: str,
    *,
    scopes: list[str] | None = None,
    sections: tuple[str, ...] = RUN_SECTIONS,
    dry_run: bool = False,
    idempotency_key: str | None = None,
    strict: bool = False,
) -> tuple[SyncRun, bool] | None:
    """Queue (or join) a run of the active sections (of `sections`; only `scopes` when given).
    Nothing to queue: None, or with `strict` the Conflict that says why."""
    integ = await repo.get(session, pbx_id, for_update=strict)
    if integ is None or integ.status != "connected":
        if not strict:
            return None
        code = (
            "integration_disabled"
            if integ is not None and integ.status == "disabled"
            else "integration_not_connected"
        )
        raise Conflict("Sync needs a connected integration.", code=code)
    active = await repo.active_scopes(session, pbx_id, sections)
    wanted = set(scopes) if scopes else active
    inactive = sorted(wanted - active)
    if inactive:
        if not strict:
            wanted &= active
        else:
            raise Conflict(
                f"Not active: {', '.join(inactive)}.", code="section_not_active", scopes=inactive
            )
    if not wanted:
        if strict:
            raise Conflict("No sync section is active.", code="nothing_to_sync")
        return None
    return await request_run(
        session, pbx_id, trigger, wanted, dry_run=dry_run, idempotency_key=idempotency_key
    )
