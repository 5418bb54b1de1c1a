"""The PBX side as the planners see it: snapshots of extensions and extension groups."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.directory import repository as directory_repo
from app.sync.groups_model import PbxGroup
from app.sync.users_model import PbxExtension


async def current_extensions(session: AsyncSession, pbx_id: str) -> list[PbxExtension]:
    return [PbxExtension(**row) for row in await directory_repo.extension_rows(session, pbx_id)]


async def touched_extensions(
    session: AsyncSession, pbx_id: str, entra_ids: set[str], email_keys: set[str]
) -> list[PbxExtension]:
    """The extensions that follow, followed, or share an address with these users."""
    rows = await directory_repo.extension_rows_touching(session, pbx_id, entra_ids, email_keys)
    return [PbxExtension(**row) for row in rows]


async def current_groups(session: AsyncSession, pbx_id: str) -> list[PbxGroup]:
    return [PbxGroup(**row) for row in await directory_repo.group_rows(session, pbx_id)]


synced_extension_map = directory_repo.synced_extension_map
