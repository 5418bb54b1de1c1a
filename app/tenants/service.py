"""PBX tenants: create, list, delete, rotate keys, and the PBX_API_KEY bootstrap."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.crypto import hash_api_key, new_api_key
from app.errors import Conflict, NotFound
from app.pagination import PageParams, next_cursor, paginate
from app.tenants import repository
from app.tenants.models import Pbx
from app.tenants.schemas import PbxCreate, PbxUpdate


async def create(
    session: AsyncSession, data: PbxCreate, api_key: str | None = None
) -> tuple[Pbx, str]:
    if await repository.by_name(session, data.name) is not None:
        raise Conflict(f"A PBX named {data.name!r} exists.", code="pbx_name_taken")
    pbx = Pbx(**data.model_dump())
    session.add(pbx)
    key = api_key or new_api_key()
    await session.flush()
    await repository.add_key(session, pbx.id, hash_api_key(key), key[:8])
    await session.flush()
    return pbx, key


async def get(session: AsyncSession, pbx_id: str) -> Pbx:
    pbx = await repository.get(session, pbx_id)
    if pbx is None:
        raise NotFound(f"No PBX {pbx_id}.")
    return pbx


async def list_page(session: AsyncSession, params: PageParams) -> tuple[list[Pbx], str | None]:
    stmt = paginate(select(Pbx), Pbx.name, Pbx.id, params)
    rows = list((await session.execute(stmt)).scalars())
    return next_cursor(rows, params, "name")


async def update(session: AsyncSession, pbx_id: str, data: PbxUpdate) -> Pbx:
    pbx = await get(session, pbx_id)
    for field, value in data.model_dump(exclude_none=True).items():
        setattr(pbx, field, value)
    await session.flush()
    return pbx


async def delete(session: AsyncSession, pbx_id: str) -> None:
    pbx = await get(session, pbx_id)
    await repository.delete_pbx(session, pbx)


async def rotate_key(session: AsyncSession, pbx_id: str) -> str:
    await get(session, pbx_id)
    await repository.drop_keys(session, pbx_id)
    key = new_api_key()
    await repository.add_key(session, pbx_id, hash_api_key(key), key[:8])
    return key


async def bootstrap_default(session: AsyncSession, api_key: str) -> Pbx | None:
    """With PBX_API_KEY set and no PBX yet, create `default` holding that key."""
    if await repository.count(session) > 0:
        return None
    pbx, _ = await create(session, PbxCreate(name="default"), api_key=api_key)
    return pbx
