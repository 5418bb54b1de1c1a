"""Every query of the presence loop: who follows Teams, their presence rows, the loop's state."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import rowcount, table_of
from app.directory.models import Extension, ExtensionPresence, TeamsPresenceSetting
from app.integration.models import Integration, SyncRule
from app.notifications.models import GraphSubscription, NotificationEvent
from app.notifications.repository import presence_events
from app.presence.apply import Current
from app.presence.models import PresenceState


@dataclass(frozen=True)
class Follower:
    """An enabled extension of a synced user: it follows its user's Teams presence."""

    extension_id: str
    entra_id: str
    mapping: dict[str, str]
    current: Current | None
    teams_changed_at: datetime | None


@dataclass(frozen=True)
class Conditions:
    integration: str | None
    presence_sync: str | None
    user_sync: str | None

    @property
    def active(self) -> bool:
        return (
            self.integration == "connected"
            and self.presence_sync == "active"
            and self.user_sync == "active"
        )


async def pbxes_to_visit(session: AsyncSession) -> list[str]:
    """PBXes with presence sync on, or with presence state left to clean up."""
    on = select(SyncRule.pbx_id).where(
        SyncRule.section == "presence_sync", SyncRule.state == "active"
    )
    held = select(PresenceState.pbx_id)
    return sorted(
        set((await session.execute(on)).scalars()) | set((await session.execute(held)).scalars())
    )


async def conditions(session: AsyncSession, pbx_id: str) -> Conditions:
    status = (
        await session.execute(select(Integration.status).where(Integration.pbx_id == pbx_id))
    ).scalar_one_or_none()
    rules = dict(
        (
            await session.execute(
                select(SyncRule.section, SyncRule.state).where(
                    SyncRule.pbx_id == pbx_id,
                    SyncRule.section.in_(("presence_sync", "user_sync")),
                )
            )
        ).all()
    )
    return Conditions(status, rules.get("presence_sync"), rules.get("user_sync"))


async def followers(
    session: AsyncSession, pbx_id: str, entra_ids: Iterable[str] | None = None
) -> list[Follower]:
    """The PBX's enabled extensions of synced users (optionally only these Entra ids)."""
    stmt = (
        select(
            Extension.id,
            Extension.entra_id,
            TeamsPresenceSetting.mapping,
            ExtensionPresence.status,
            ExtensionPresence.source,
            ExtensionPresence.teams_availability,
            ExtensionPresence.teams_activity,
            ExtensionPresence.teams_changed_at,
        )
        .join(TeamsPresenceSetting, TeamsPresenceSetting.extension_id == Extension.id)
        .outerjoin(ExtensionPresence, ExtensionPresence.extension_id == Extension.id)
        .where(
            Extension.pbx_id == pbx_id,
            Extension.managed_by == "entra",
            Extension.entra_id.is_not(None),
            TeamsPresenceSetting.enabled.is_(True),
        )
        .order_by(Extension.entra_id)
    )
    wanted = set(entra_ids) if entra_ids is not None else None
    if wanted is not None and not wanted:
        return []
    # A few ids: by id; many: the PBX's followers in one query, filtered here.
    few = wanted is not None and len(wanted) <= 500
    query = stmt.where(Extension.entra_id.in_(sorted(wanted))) if few and wanted else stmt
    found: list[Follower] = []
    for n, row in enumerate((await session.execute(query)).all()):
        if n % 1000 == 999:
            await asyncio.sleep(0)  # long lists: let the webhook and the API in
        if wanted is None or row.entra_id in wanted:
            current = (
                Current(row.status, row.source, row.teams_availability, row.teams_activity)
                if row.status is not None
                else None
            )
            found.append(
                Follower(row.id, row.entra_id, dict(row.mapping), current, row.teams_changed_at)
            )
    return found


async def fingerprint(session: AsyncSession, pbx_id: str) -> tuple[int, Any, Any]:
    """(count, latest setting change, latest extension change) of the PBX's followers: cheap,
    and different whenever a user enables or disables the feature or an extension changes."""
    stmt = (
        select(
            func.count(),
            func.max(TeamsPresenceSetting.updated_at),
            func.max(Extension.updated_at),
        )
        .select_from(Extension)
        .join(TeamsPresenceSetting, TeamsPresenceSetting.extension_id == Extension.id)
        .where(
            Extension.pbx_id == pbx_id,
            Extension.managed_by == "entra",
            Extension.entra_id.is_not(None),
            TeamsPresenceSetting.enabled.is_(True),
        )
    )
    row = (await session.execute(stmt)).one()
    return int(row[0]), row[1], row[2]


async def write_presence(
    session: AsyncSession, inserts: list[dict[str, Any]], updates: list[dict[str, Any]]
) -> None:
    """New presence rows in one executemany; changed ones by primary key, also in bulk."""
    if inserts:
        await session.execute(insert(table_of(ExtensionPresence)), inserts)
    if updates:
        # Group by the columns set, so each group is one executemany.
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in updates:
            groups.setdefault(tuple(sorted(row)), []).append(row)
        table = table_of(ExtensionPresence)
        for columns, rows in groups.items():
            values: dict[str, Any] = {
                c: bindparam(f"v_{c}") for c in columns if c != "extension_id"
            }
            stmt = (
                update(table)
                .where(table.c.extension_id == bindparam("v_extension_id"))
                .values(**values)
            )
            await session.execute(stmt, [{f"v_{k}": v for k, v in r.items()} for r in rows])


# The loop's state -----------------------------------------------------------------------------


async def state(session: AsyncSession, pbx_id: str) -> PresenceState:
    row = await session.get(PresenceState, pbx_id)
    if row is None:
        row = PresenceState(pbx_id=pbx_id, subscribed_ids=[], catchup_needed=True)
        session.add(row)
        await session.flush()
    return row


async def take_lease(
    session: AsyncSession, pbx_id: str, owner: str, now: datetime, until: datetime
) -> bool | None:
    """Hold the PBX for `owner` until `until`: True if newly taken (the previous owner, or this
    one, stopped renewing in time: a gap), False if renewed, None if another process holds it."""
    await state(session, pbx_id)
    renewed = await session.execute(
        update(PresenceState)
        .where(
            PresenceState.pbx_id == pbx_id,
            PresenceState.locked_by == owner,
            PresenceState.locked_until >= now,
        )
        .values(locked_until=until)
    )
    if rowcount(renewed):
        return False
    taken = await session.execute(
        update(PresenceState)
        .where(
            PresenceState.pbx_id == pbx_id,
            or_(PresenceState.locked_until.is_(None), PresenceState.locked_until < now),
        )
        .values(locked_by=owner, locked_until=until)
    )
    return True if rowcount(taken) else None


async def renew_leases(session: AsyncSession, owner: str, now: datetime, until: datetime) -> None:
    """Extend every live lease `owner` holds: a pass over many PBXes may outlast one lease."""
    await session.execute(
        update(PresenceState)
        .where(PresenceState.locked_by == owner, PresenceState.locked_until >= now)
        .values(locked_until=until)
    )


async def release(session: AsyncSession, owner: str) -> None:
    await session.execute(
        update(PresenceState)
        .where(PresenceState.locked_by == owner)
        .values(locked_by=None, locked_until=None)
    )


async def drop_state(session: AsyncSession, pbx_id: str) -> None:
    await session.execute(delete(PresenceState).where(PresenceState.pbx_id == pbx_id))


# Subscriptions and notifications ------------------------------------------------------------


async def add_subscription(session: AsyncSession, row: GraphSubscription) -> None:
    session.add(row)
    await session.flush()


async def forget_subscription(session: AsyncSession, subscription_id: str) -> None:
    await session.execute(delete(GraphSubscription).where(GraphSubscription.id == subscription_id))


async def presence_subscriptions(session: AsyncSession, pbx_id: str) -> list[GraphSubscription]:
    stmt = select(GraphSubscription).where(
        GraphSubscription.pbx_id == pbx_id,
        GraphSubscription.resource.like("/communications/presences%"),
    )
    return list((await session.execute(stmt)).scalars())


async def claim_events(session: AsyncSession, limit: int = 5000) -> list[NotificationEvent]:
    """Unprocessed presence notifications, marked processed in the same transaction (SKIP
    LOCKED on PostgreSQL: each replica takes its own)."""
    stmt = (
        select(NotificationEvent)
        .where(NotificationEvent.processed_at.is_(None), presence_events())
        .order_by(NotificationEvent.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list((await session.execute(stmt)).scalars())


async def mark_processed(session: AsyncSession, ids: list[int], at: datetime) -> None:
    for i in range(0, len(ids), 1000):
        await session.execute(
            update(NotificationEvent)
            .where(NotificationEvent.id.in_(ids[i : i + 1000]))
            .values(processed_at=at)
        )
