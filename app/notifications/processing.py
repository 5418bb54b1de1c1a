"""From accepted notifications to runs: count per PBX, then queue a `changes` run at once after
CHANGE_BATCH_SIZE events, or CHANGE_DELAY_SECONDS after the first. Lifecycle events are acted on.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select

from app.db import session_scope, utcnow
from app.integration import repository as integ_repo
from app.integration.models import Integration
from app.notifications import repository as repo
from app.notifications import subscriptions
from app.runtime import Runtime
from app.sync import runs

log = logging.getLogger("pbx_entra.notifications")


async def process(runtime: Runtime) -> list[str]:
    """One pass; returns the ids of the runs it queued."""
    lifecycle: list[tuple[str, str, str]] = []
    async with session_scope(runtime.sessionmaker) as session:
        events = await repo.claim_events(session)
        counts: dict[str, int] = defaultdict(int)
        first: dict[str, datetime] = {}
        for e in events:
            if e.lifecycle_event:
                lifecycle.append((e.pbx_id, e.subscription_id, e.lifecycle_event))
                continue
            counts[e.pbx_id] += 1
            first.setdefault(e.pbx_id, e.received_at)
        for pbx_id, n in counts.items():
            await repo.add_pending(session, pbx_id, n, first[pbx_id])
        await repo.mark_processed(session, [e.id for e in events], utcnow())
    for pbx_id, subscription_id, event in lifecycle:
        await _lifecycle(runtime, pbx_id, subscription_id, event)
    return await _queue_due(runtime)


async def _lifecycle(runtime: Runtime, pbx_id: str, subscription_id: str, event: str) -> None:
    log.info("lifecycle event %s for subscription %s", event, subscription_id)
    if event == "reauthorizationRequired":
        await subscriptions.reauthorize(runtime, pbx_id, subscription_id)
    elif event == "subscriptionRemoved":
        await subscriptions.forget(runtime, subscription_id)
        await subscriptions.ensure(runtime, pbx_id)
        await subscriptions.queue_resync(runtime, pbx_id)
    elif event == "missed":
        await subscriptions.queue_resync(runtime, pbx_id)


async def _queue_due(runtime: Runtime) -> list[str]:
    settings = runtime.settings
    now = runtime.clock.now()
    queued = []
    async with session_scope(runtime.sessionmaker) as session:
        for row in await repo.pending(session):
            due = row.count >= settings.change_batch_size or (
                row.first_at is not None
                and row.first_at + timedelta(seconds=settings.change_delay_seconds) <= now
            )
            if not due:
                continue
            integ = (
                await session.execute(select(Integration).where(Integration.pbx_id == row.pbx_id))
            ).scalar_one_or_none()
            if integ is None or integ.status != "connected":
                continue
            scopes = await integ_repo.active_scopes(
                session, row.pbx_id, integ_repo.DIRECTORY_SECTIONS
            )
            if scopes:
                run, _ = await runs.enqueue(session, row.pbx_id, "changes", scopes)
                queued.append(run.id)
    return queued
