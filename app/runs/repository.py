"""Every query on runs, their change log, failures and delta links."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import rowcount, table_of, utcnow
from app.directory.models import Extension
from app.runs.models import DeltaLink, Outbox, SyncChange, SyncFailure, SyncRun


async def get(session: AsyncSession, run_id: str, *, for_update: bool = False) -> SyncRun | None:
    stmt = select(SyncRun).where(SyncRun.id == run_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def claim_next(session: AsyncSession, worker: str, lease: timedelta) -> SyncRun | None:
    """Take the oldest queued run of a PBX that has none running (SKIP LOCKED on PostgreSQL)."""
    busy = select(SyncRun.pbx_id).where(SyncRun.status == "running")
    stmt = (
        select(SyncRun)
        .where(SyncRun.status == "queued", SyncRun.pbx_id.not_in(busy))
        .order_by(SyncRun.queued_at, SyncRun.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=SyncRun)
    run = (await session.execute(stmt)).scalar_one_or_none()
    if run is None:
        return None
    now = utcnow()
    try:
        async with session.begin_nested():
            run.status = "running"
            run.started_at = now
            run.locked_by = worker
            run.locked_until = now + lease
            await session.flush()
    except IntegrityError:
        # Another worker started a run of this PBX a moment ago.
        return None
    return run


async def renew_lease(session: AsyncSession, run_id: str, worker: str, until: datetime) -> bool:
    result = await session.execute(
        update(SyncRun)
        .where(SyncRun.id == run_id, SyncRun.locked_by == worker, SyncRun.status == "running")
        .values(locked_until=until)
    )
    return rowcount(result) > 0


async def expired_runs(session: AsyncSession) -> list[SyncRun]:
    stmt = select(SyncRun).where(SyncRun.status == "running", SyncRun.locked_until < utcnow())
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list((await session.execute(stmt)).scalars())


async def by_idempotency_key(session: AsyncSession, key: str) -> SyncRun | None:
    stmt = select(SyncRun).where(SyncRun.idempotency_key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def queued_run(session: AsyncSession, pbx_id: str) -> SyncRun | None:
    """The real run waiting for the PBX (locked), which later triggers fold into."""
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


async def cancel_runs(session: AsyncSession, pbx_id: str, statuses: tuple[str, ...]) -> int:
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


async def last_finished_id(session: AsyncSession, pbx_id: str) -> str | None:
    stmt = (
        select(SyncRun.id)
        .where(
            SyncRun.pbx_id == pbx_id,
            SyncRun.dry_run.is_(False),
            SyncRun.finished_at.is_not(None),
        )
        .order_by(SyncRun.finished_at.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def count_failures(
    session: AsyncSession, pbx_id: str, scope: str, except_codes: frozenset[str] = frozenset()
) -> int:
    stmt = (
        select(func.count())
        .select_from(SyncFailure)
        .where(SyncFailure.pbx_id == pbx_id, SyncFailure.scope == scope)
    )
    if except_codes:
        stmt = stmt.where(SyncFailure.code.not_in(sorted(except_codes)))
    return int((await session.execute(stmt)).scalar_one())


async def failed_entra_ids(session: AsyncSession, pbx_id: str, scope: str) -> set[str]:
    stmt = select(SyncFailure.entra_id).where(
        SyncFailure.pbx_id == pbx_id, SyncFailure.scope == scope
    )
    return {str(i) for i in (await session.execute(stmt)).scalars()}


def runs_query(pbx_id: str) -> Select[SyncRun]:
    return select(SyncRun).where(SyncRun.pbx_id == pbx_id)


async def add_changes(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(table_of(SyncChange)), rows)


def changes_query(run_id: str) -> Select[SyncChange]:
    return select(SyncChange).where(SyncChange.run_id == run_id)


async def purge_changes(session: AsyncSession, older_than: datetime) -> int:
    result = await session.execute(delete(SyncChange).where(SyncChange.created_at < older_than))
    return rowcount(result)


async def outstanding(
    session: AsyncSession, pbx_id: str, scopes: list[str], limit: int
) -> list[SyncFailure]:
    """The failures still outstanding for these scopes, oldest first."""
    stmt = (
        select(SyncFailure)
        .where(SyncFailure.pbx_id == pbx_id, SyncFailure.scope.in_(scopes))
        .order_by(SyncFailure.scope, SyncFailure.failed_at, SyncFailure.entra_id)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def failures(session: AsyncSession, pbx_id: str, scope: str) -> dict[str, SyncFailure]:
    stmt = select(SyncFailure).where(SyncFailure.pbx_id == pbx_id, SyncFailure.scope == scope)
    return {f.entra_id: f for f in (await session.execute(stmt)).scalars()}


async def failure_rows(
    session: AsyncSession, pbx_id: str, scope: str
) -> dict[str, tuple[str, str, datetime]]:
    """entra id → (code, message, failed_at) of a scope's failures, without loading objects."""
    stmt = select(
        SyncFailure.entra_id, SyncFailure.code, SyncFailure.message, SyncFailure.failed_at
    ).where(SyncFailure.pbx_id == pbx_id, SyncFailure.scope == scope)
    return {r[0]: (r[1], r[2], r[3]) for r in await session.execute(stmt)}


async def replace_failures(
    session: AsyncSession,
    pbx_id: str,
    scope: str,
    clear: set[str],
    rows: list[dict[str, Any]],
    known: set[str] | None = None,
) -> None:
    """Drop the failures of objects that were settled this run, then record the new ones.
    `known`: the ids that had failures before (only those can need a delete). An object that
    keeps failing keeps the time it first failed."""
    since = await drop_failures(session, pbx_id, scope, clear, {r["entra_id"] for r in rows}, known)
    if since:
        rows = [{**r, "failed_at": since.get(r["entra_id"], r["failed_at"])} for r in rows]
    await add_failures(session, rows)


async def drop_failures(
    session: AsyncSession,
    pbx_id: str,
    scope: str,
    clear: set[str],
    failing: set[str],
    known: set[str] | None = None,
) -> dict[str, datetime]:
    """Drop the failures of the `clear` and `failing` objects (only of those in `known`, when
    given), before the failing ones are recorded again (add_failures): when each of those that
    failed before first failed, to be kept."""
    ids = clear | failing if known is None else (clear & known) | (failing & known)
    since: dict[str, datetime] = {}
    for chunk in _chunks(sorted(failing & ids), 500):
        stmt = select(SyncFailure.entra_id, SyncFailure.failed_at).where(
            SyncFailure.pbx_id == pbx_id,
            SyncFailure.scope == scope,
            SyncFailure.entra_id.in_(chunk),
        )
        since.update({str(i): at for i, at in await session.execute(stmt)})
    for chunk in _chunks(sorted(ids), 500):
        await session.execute(
            delete(SyncFailure).where(
                SyncFailure.pbx_id == pbx_id,
                SyncFailure.scope == scope,
                SyncFailure.entra_id.in_(chunk),
            )
        )
    return since


async def add_failures(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(table_of(SyncFailure)), rows)


async def delta_link(session: AsyncSession, pbx_id: str, resource: str) -> str | None:
    row = await session.get(DeltaLink, (pbx_id, resource))
    return row.link if row else None


async def delta_links(session: AsyncSession, pbx_id: str, prefix: str) -> dict[str, str]:
    stmt = select(DeltaLink).where(
        DeltaLink.pbx_id == pbx_id, DeltaLink.resource.startswith(prefix)
    )
    return {row.resource: row.link for row in (await session.execute(stmt)).scalars()}


async def save_delta_link(session: AsyncSession, pbx_id: str, resource: str, link: str) -> None:
    row = await session.get(DeltaLink, (pbx_id, resource))
    if row is None:
        session.add(DeltaLink(pbx_id=pbx_id, resource=resource, link=link, updated_at=utcnow()))
    else:
        row.link = link
        row.updated_at = utcnow()


async def save_delta_links(
    session: AsyncSession, pbx_id: str, links: dict[str, str], stored: dict[str, str]
) -> None:
    """Save many links in bulk; `stored`: the links the database holds now (by resource)."""
    now = utcnow()
    changed = [
        {"p": pbx_id, "r": resource, "link": link, "at": now}
        for resource, link in links.items()
        if resource in stored and stored[resource] != link
    ]
    new = [
        {"pbx_id": pbx_id, "resource": resource, "link": link, "updated_at": now}
        for resource, link in links.items()
        if resource not in stored
    ]
    table = table_of(DeltaLink)
    if changed:
        stmt = (
            update(table)
            .where(table.c.pbx_id == bindparam("p"), table.c.resource == bindparam("r"))
            .values(link=bindparam("link"), updated_at=bindparam("at"))
        )
        for chunk in range(0, len(changed), 1000):
            await session.execute(stmt, changed[chunk : chunk + 1000])
    for chunk in range(0, len(new), 1000):
        await session.execute(insert(table), new[chunk : chunk + 1000])


async def drop_delta_resources(session: AsyncSession, pbx_id: str, resources: set[str]) -> None:
    ordered = sorted(resources)
    for i in range(0, len(ordered), 500):
        await session.execute(
            delete(DeltaLink).where(
                DeltaLink.pbx_id == pbx_id, DeltaLink.resource.in_(ordered[i : i + 500])
            )
        )


async def drop_delta_links(session: AsyncSession, pbx_id: str, prefix: str) -> None:
    await session.execute(
        delete(DeltaLink).where(DeltaLink.pbx_id == pbx_id, DeltaLink.resource.startswith(prefix))
    )


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def due_outbox(
    session: AsyncSession, kind: str, now: datetime, pbx_id: str | None = None
) -> list[Outbox]:
    stmt = select(Outbox).where(
        Outbox.status == "pending",
        Outbox.kind == kind,
        (Outbox.next_attempt_at.is_(None)) | (Outbox.next_attempt_at <= now),
    )
    if pbx_id:
        stmt = stmt.where(Outbox.pbx_id == pbx_id)
    return list((await session.execute(stmt.order_by(Outbox.created_at))).scalars())


async def outbox_item(
    session: AsyncSession, item_id: str
) -> tuple[Outbox | None, Extension | None]:
    """The outbox row (locked) and its extension."""
    row = await session.get(Outbox, item_id, with_for_update=True)
    ext = await session.get(Extension, row.extension_id) if row and row.extension_id else None
    return row, ext


async def failure(
    session: AsyncSession, pbx_id: str, scope: str, entra_id: str
) -> SyncFailure | None:
    return await session.get(SyncFailure, (pbx_id, scope, entra_id))
