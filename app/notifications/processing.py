"""From accepted notifications to runs: count per PBX, then queue a `changes` run at once after
CHANGE_BATCH_SIZE events, or CHANGE_DELAY_SECONDS after the first. Lifecycle events are acted on.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from app import metrics
from app.db import session_scope, utcnow
from app.integration.triggers import queue_active
from app.notifications import relevance, subscriptions
from app.notifications import repository as repo
from app.notifications.models import NotificationEvent
from app.runs.scopes import DIRECTORY_SECTIONS
from app.runtime import Runtime

log = logging.getLogger("pbx_entra.notifications")


async def process(runtime: Runtime) -> list[str]:
    """One pass; returns the ids of the runs it queued."""
    lifecycle: list[tuple[str, str, str]] = []
    async with session_scope(runtime.sessionmaker) as session:
        events = await repo.claim_events(session)
        counts: dict[str, int] = defaultdict(int)
        first: dict[str, datetime] = {}
        changes: dict[str, list[NotificationEvent]] = defaultdict(list)
        for e in events:
            if e.lifecycle_event:
                lifecycle.append((e.pbx_id, e.subscription_id, e.lifecycle_event))
                continue
            changes[e.pbx_id].append(e)
        for pbx_id, pbx_events in changes.items():
            parsed = [relevance.parse(e.resource) for e in pbx_events]
            verdicts = await relevance.concerning(session, pbx_id, parsed)
            for e, parsed_event, counts_toward in zip(pbx_events, parsed, verdicts, strict=True):
                if not counts_toward:
                    metrics.change_events_dropped.labels(parsed_event.kind).inc()
                    continue
                counts[pbx_id] += 1
                first.setdefault(pbx_id, e.received_at)
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
            queued_run = await queue_active(
                session, row.pbx_id, "changes", sections=DIRECTORY_SECTIONS
            )
            if queued_run is not None:
                queued.append(queued_run[0].id)
    return queued
