"""Every query on subscriptions, accepted notifications and pending change counters."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, insert, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import chunked, table_of, utcnow
from app.notifications.models import GraphSubscription, NotificationEvent, PendingChanges

# Presence subscriptions and their notifications belong to the presence loop, not to the runs.
PRESENCE_RESOURCE = "/communications/presences"


def presence_events() -> ColumnElement[bool]:
    """Events of a presence subscription (by its resource) or about a presence resource."""
    resource = func.lower(NotificationEvent.resource)
    return or_(
        resource.like("communications/presences%"),
        resource.like("/communications/presences%"),
        NotificationEvent.subscription_id.in_(
            select(GraphSubscription.id).where(
                GraphSubscription.resource.like(f"{PRESENCE_RESOURCE}%")
            )
        ),
    )


async def subscriptions_by_ids(
    session: AsyncSession, ids: Iterable[str]
) -> dict[str, GraphSubscription]:
    found: dict[str, GraphSubscription] = {}
    for chunk in chunked(ids):
        stmt = select(GraphSubscription).where(GraphSubscription.id.in_(chunk))
        found.update({s.id: s for s in (await session.execute(stmt)).scalars()})
    return found


def subscriptions_query(pbx_id: str) -> Select[GraphSubscription]:
    return select(GraphSubscription).where(GraphSubscription.pbx_id == pbx_id)


async def subscriptions_of(session: AsyncSession, pbx_id: str) -> list[GraphSubscription]:
    stmt = (
        select(GraphSubscription)
        .where(GraphSubscription.pbx_id == pbx_id)
        .order_by(GraphSubscription.resource)
    )
    return list((await session.execute(stmt)).scalars())


async def add_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(table_of(NotificationEvent)), rows)


async def claim_events(session: AsyncSession, limit: int = 5000) -> list[NotificationEvent]:
    """Unprocessed events, locked so that one replica counts each (SKIP LOCKED on PostgreSQL)."""
    stmt = (
        select(NotificationEvent)
        .where(NotificationEvent.processed_at.is_(None), not_(presence_events()))
        .order_by(NotificationEvent.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list((await session.execute(stmt)).scalars())


async def mark_processed(session: AsyncSession, ids: list[int], at: datetime) -> None:
    for chunk in chunked(ids):
        await session.execute(
            update(NotificationEvent).where(NotificationEvent.id.in_(chunk)).values(processed_at=at)
        )


async def add_pending(session: AsyncSession, pbx_id: str, count: int, first_at: datetime) -> None:
    row = await session.get(PendingChanges, pbx_id, with_for_update=True)
    if row is None:
        session.add(PendingChanges(pbx_id=pbx_id, count=count, first_at=first_at))
    else:
        row.count += count
        row.first_at = row.first_at or first_at
    await session.flush()


async def pending(session: AsyncSession) -> list[PendingChanges]:
    stmt = select(PendingChanges).where(PendingChanges.count > 0)
    return list((await session.execute(stmt)).scalars())


async def reset_pending(session: AsyncSession, pbx_id: str) -> None:
    await session.execute(
        update(PendingChanges).where(PendingChanges.pbx_id == pbx_id).values(count=0, first_at=None)
    )


async def purge_events(session: AsyncSession, before: datetime) -> None:
    await session.execute(
        delete(NotificationEvent).where(
            NotificationEvent.processed_at.is_not(None), NotificationEvent.processed_at < before
        )
    )


def now() -> datetime:
    return utcnow()


async def forget(session: AsyncSession, pbx_id: str) -> None:
    """Disconnect: the PBX's subscriptions, accepted events and counters go."""
    for model in (PendingChanges, GraphSubscription, NotificationEvent):
        await session.execute(delete(model).where(model.pbx_id == pbx_id))
