"""Queries on PBXes and API keys."""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.tenants.models import ApiKey, Pbx


async def pbx_by_key_hash(session: AsyncSession, key_hash: str) -> Pbx | None:
    stmt = select(Pbx).join(ApiKey, ApiKey.pbx_id == Pbx.id).where(ApiKey.key_hash == key_hash)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get(session: AsyncSession, pbx_id: str) -> Pbx | None:
    return await session.get(Pbx, pbx_id)


async def by_name(session: AsyncSession, name: str) -> Pbx | None:
    return (await session.execute(select(Pbx).where(Pbx.name == name))).scalar_one_or_none()


async def count(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(Pbx))).scalar_one())


async def add_key(session: AsyncSession, pbx_id: str, key_hash: str, prefix: str) -> None:
    session.add(ApiKey(pbx_id=pbx_id, key_hash=key_hash, prefix=prefix))


async def drop_keys(session: AsyncSession, pbx_id: str) -> None:
    await session.execute(delete(ApiKey).where(ApiKey.pbx_id == pbx_id))


async def delete_pbx(session: AsyncSession, pbx: Pbx) -> None:
    # Foreign keys cascade: every object the PBX owns goes with it.
    await session.execute(delete(Pbx).where(Pbx.id == pbx.id))


async def lock_seats(session: AsyncSession, pbx_id: str) -> None:
    """Hold the PBX row until the transaction ends: seat counts read after this stay true until
    the commit, under any concurrency. PostgreSQL locks the row FOR NO KEY UPDATE: it excludes
    every other seat holder, but not the key-share locks with which inserts elsewhere check
    their reference to the PBX (a webhook's events, a sign-in's state), which FOR UPDATE would
    hold up for the whole of a large sync's apply. SQLite has one writer at a time, so a no-op
    write takes the database's write lock now rather than at the first insert (after the
    count)."""
    if session.get_bind().dialect.name == "postgresql":
        # key_share: FOR NO KEY UPDATE
        await session.execute(
            select(Pbx.id).where(Pbx.id == pbx_id).with_for_update(key_share=True)
        )
    else:
        await session.execute(
            update(Pbx).where(Pbx.id == pbx_id).values(name=Pbx.name, updated_at=Pbx.updated_at)
        )
