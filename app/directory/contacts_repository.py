"""Queries of the contacts sync: phonebooks, synced contacts and the extensions that hold them."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.directory.models import Contact, Extension, Phonebook


async def phonebooks(
    session: AsyncSession, pbx_id: str
) -> list[tuple[str, str, str, str | None, str | None]]:
    """(id, name, managed_by, entra_id, former_entra_id) of every phonebook of the PBX."""
    stmt = select(
        Phonebook.id,
        Phonebook.name,
        Phonebook.managed_by,
        Phonebook.entra_id,
        Phonebook.former_entra_id,
    ).where(Phonebook.pbx_id == pbx_id)
    return [(r[0], r[1], r[2], r[3], r[4]) for r in await session.execute(stmt)]


async def personal_contact_holders(session: AsyncSession, pbx_id: str) -> set[str]:
    """The extensions that hold synced personal contacts."""
    stmt = (
        select(Contact.extension_id)
        .where(
            Contact.pbx_id == pbx_id,
            Contact.extension_id.is_not(None),
            Contact.managed_by == "entra",
        )
        .distinct()
    )
    return {e for e in (await session.execute(stmt)).scalars() if e}


SYNCED_CONTACT_COLUMNS = (
    Contact.id,
    func.coalesce(Contact.entra_id, Contact.former_entra_id),
    Contact.extension_id,
    Contact.phonebook_id,
    Contact.change_key,
    Contact.first_name,
    Contact.last_name,
    Contact.company,
    Contact.email,
    Contact.mobile_phone,
    Contact.home_phone,
    Contact.business_phone,
    Contact.managed_by,
)


async def synced_contacts_of(
    session: AsyncSession, pbx_id: str, owners: Iterable[str]
) -> list[tuple[object, ...]]:
    """The synced contacts held by these extensions or phonebooks, and the released ones that
    may be taken back (rows of SYNCED_CONTACT_COLUMNS, the Entra id or former one second)."""
    ids = sorted(set(owners))
    rows: list[tuple[object, ...]] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        stmt = select(*SYNCED_CONTACT_COLUMNS).where(
            Contact.pbx_id == pbx_id,
            or_(
                (Contact.managed_by == "entra") & Contact.entra_id.is_not(None),
                (Contact.managed_by == "pbx") & Contact.former_entra_id.is_not(None),
            ),
            or_(Contact.extension_id.in_(chunk), Contact.phonebook_id.in_(chunk)),
        )
        rows += [tuple(r) for r in await session.execute(stmt)]
    return rows


async def count_synced_contacts(session: AsyncSession, pbx_id: str) -> int:
    stmt = (
        select(func.count())
        .select_from(Contact)
        .where(Contact.pbx_id == pbx_id, Contact.managed_by == "entra")
    )
    return int((await session.execute(stmt)).scalar_one())


async def synced_extension_ids_by_user(session: AsyncSession, pbx_id: str) -> dict[str, str]:
    """Entra user id → extension id of the extensions synced now (not frozen)."""
    stmt = select(Extension.entra_id, Extension.id).where(
        Extension.pbx_id == pbx_id,
        Extension.managed_by == "entra",
        Extension.entra_id.is_not(None),
    )
    return {str(u): e for u, e in await session.execute(stmt)}
