"""Every query on the PBX directory tables."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import Select, delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import table_of
from app.directory.models import (
    Contact,
    Extension,
    ExtensionGroup,
    ExtensionGroupMember,
    ExtensionPresence,
    Phonebook,
    PhonebookVisibility,
    TeamsPresenceSetting,
)


async def get_extension(session: AsyncSession, pbx_id: str, ext_id: str) -> Extension | None:
    stmt = select(Extension).where(Extension.pbx_id == pbx_id, Extension.id == ext_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def count_extensions(session: AsyncSession, pbx_id: str) -> int:
    stmt = select(func.count()).select_from(Extension).where(Extension.pbx_id == pbx_id)
    return int((await session.execute(stmt)).scalar_one())


async def extension_with_number(
    session: AsyncSession, pbx_id: str, number: str
) -> Extension | None:
    stmt = select(Extension).where(Extension.pbx_id == pbx_id, Extension.number == number)
    return (await session.execute(stmt)).scalar_one_or_none()


async def extension_with_email(
    session: AsyncSession, pbx_id: str, email_key: str
) -> Extension | None:
    stmt = select(Extension).where(Extension.pbx_id == pbx_id, Extension.email_key == email_key)
    return (await session.execute(stmt)).scalar_one_or_none()


def extensions_query(pbx_id: str, managed_by: str | None, search: str | None) -> Select[Extension]:
    stmt = select(Extension).where(Extension.pbx_id == pbx_id)
    if managed_by:
        stmt = stmt.where(Extension.managed_by == managed_by)
    if search:
        like = f"%{search.lower()}%"
        stmt = stmt.where(
            or_(
                Extension.number.startswith(search),
                func.lower(Extension.first_name).like(like),
                func.lower(Extension.last_name).like(like),
                Extension.email_key.like(like),
            )
        )
    return stmt


async def presence_for(
    session: AsyncSession, ext_ids: Iterable[str]
) -> dict[str, ExtensionPresence]:
    ids = list(ext_ids)
    if not ids:
        return {}
    stmt = select(ExtensionPresence).where(ExtensionPresence.extension_id.in_(ids))
    return {p.extension_id: p for p in (await session.execute(stmt)).scalars()}


async def get_presence(session: AsyncSession, ext_id: str) -> ExtensionPresence | None:
    return await session.get(ExtensionPresence, ext_id)


async def get_teams_setting(session: AsyncSession, ext_id: str) -> TeamsPresenceSetting | None:
    return await session.get(TeamsPresenceSetting, ext_id)


async def get_group(session: AsyncSession, pbx_id: str, group_id: str) -> ExtensionGroup | None:
    stmt = select(ExtensionGroup).where(
        ExtensionGroup.pbx_id == pbx_id, ExtensionGroup.id == group_id
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def group_with_name(session: AsyncSession, pbx_id: str, name: str) -> ExtensionGroup | None:
    stmt = select(ExtensionGroup).where(
        ExtensionGroup.pbx_id == pbx_id, ExtensionGroup.name == name
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def count_groups(session: AsyncSession, pbx_id: str) -> int:
    stmt = select(func.count()).select_from(ExtensionGroup).where(ExtensionGroup.pbx_id == pbx_id)
    return int((await session.execute(stmt)).scalar_one())


async def members_of(session: AsyncSession, group_ids: Iterable[str]) -> dict[str, list[str]]:
    ids = list(group_ids)
    result: dict[str, list[str]] = defaultdict(list)
    if not ids:
        return result
    stmt = (
        select(ExtensionGroupMember.group_id, ExtensionGroupMember.extension_id)
        .where(ExtensionGroupMember.group_id.in_(ids))
        .order_by(ExtensionGroupMember.extension_id)
    )
    for group_id, ext_id in (await session.execute(stmt)).all():
        result[group_id].append(ext_id)
    return result


async def set_members(session: AsyncSession, group_id: str, ext_ids: Iterable[str]) -> None:
    await session.execute(
        delete(ExtensionGroupMember).where(ExtensionGroupMember.group_id == group_id)
    )
    rows = [{"group_id": group_id, "extension_id": e} for e in sorted(set(ext_ids))]
    if rows:
        await session.execute(insert(table_of(ExtensionGroupMember)), rows)


async def existing_extension_ids(
    session: AsyncSession, pbx_id: str, ids: Iterable[str]
) -> set[str]:
    wanted = set(ids)
    if not wanted:
        return set()
    stmt = select(Extension.id).where(Extension.pbx_id == pbx_id, Extension.id.in_(wanted))
    return set((await session.execute(stmt)).scalars())


async def existing_group_ids(session: AsyncSession, pbx_id: str, ids: Iterable[str]) -> set[str]:
    wanted = set(ids)
    if not wanted:
        return set()
    stmt = select(ExtensionGroup.id).where(
        ExtensionGroup.pbx_id == pbx_id, ExtensionGroup.id.in_(wanted)
    )
    return set((await session.execute(stmt)).scalars())


async def groups_of_extension(session: AsyncSession, ext_id: str) -> set[str]:
    stmt = select(ExtensionGroupMember.group_id).where(ExtensionGroupMember.extension_id == ext_id)
    return set((await session.execute(stmt)).scalars())


async def get_phonebook(session: AsyncSession, pbx_id: str, book_id: str) -> Phonebook | None:
    stmt = select(Phonebook).where(Phonebook.pbx_id == pbx_id, Phonebook.id == book_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def phonebook_with_name(session: AsyncSession, pbx_id: str, name: str) -> Phonebook | None:
    stmt = select(Phonebook).where(Phonebook.pbx_id == pbx_id, Phonebook.name == name)
    return (await session.execute(stmt)).scalar_one_or_none()


async def visibility_of(
    session: AsyncSession, book_ids: Iterable[str]
) -> dict[str, tuple[list[str], list[str]]]:
    ids = list(book_ids)
    result: dict[str, tuple[list[str], list[str]]] = {i: ([], []) for i in ids}
    if not ids:
        return result
    stmt = (
        select(PhonebookVisibility)
        .where(PhonebookVisibility.phonebook_id.in_(ids))
        .order_by(PhonebookVisibility.id)
    )
    for row in (await session.execute(stmt)).scalars():
        exts, groups = result[row.phonebook_id]
        if row.extension_id:
            exts.append(row.extension_id)
        if row.extension_group_id:
            groups.append(row.extension_group_id)
    return result


async def set_visibility(
    session: AsyncSession, book_id: str, ext_ids: list[str], group_ids: list[str]
) -> None:
    await session.execute(
        delete(PhonebookVisibility).where(PhonebookVisibility.phonebook_id == book_id)
    )
    rows = [
        {"phonebook_id": book_id, "extension_id": e, "extension_group_id": None} for e in ext_ids
    ]
    rows += [
        {"phonebook_id": book_id, "extension_id": None, "extension_group_id": g} for g in group_ids
    ]
    if rows:
        await session.execute(insert(table_of(PhonebookVisibility)), rows)


def visible_phonebooks_query(pbx_id: str, ext_id: str, group_ids: set[str]) -> Select[Phonebook]:
    allowed = select(PhonebookVisibility.phonebook_id).where(
        or_(
            PhonebookVisibility.extension_id == ext_id,
            PhonebookVisibility.extension_group_id.in_(group_ids or {""}),
        )
    )
    return select(Phonebook).where(
        Phonebook.pbx_id == pbx_id,
        or_(Phonebook.visible_to_all.is_(True), Phonebook.id.in_(allowed)),
    )


def contacts_query(
    *, phonebook_id: str | None = None, extension_id: str | None = None
) -> Select[Contact]:
    stmt = select(Contact)
    if phonebook_id is not None:
        stmt = stmt.where(Contact.phonebook_id == phonebook_id)
    if extension_id is not None:
        stmt = stmt.where(Contact.extension_id == extension_id)
    return stmt


async def get_contact(session: AsyncSession, book_id: str, contact_id: str) -> Contact | None:
    stmt = select(Contact).where(Contact.phonebook_id == book_id, Contact.id == contact_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def numbers_in_use(session: AsyncSession, pbx_id: str) -> set[str]:
    stmt = select(Extension.number).where(Extension.pbx_id == pbx_id)
    return set((await session.execute(stmt)).scalars())


async def email_keys_in_use(session: AsyncSession, pbx_id: str) -> set[str]:
    stmt = select(Extension.email_key).where(
        Extension.pbx_id == pbx_id, Extension.email_key.is_not(None)
    )
    return {k for k in (await session.execute(stmt)).scalars() if k}


async def synced_entra_ids(session: AsyncSession, pbx_id: str) -> set[str]:
    stmt = select(Extension.entra_id).where(
        Extension.pbx_id == pbx_id, Extension.managed_by == "entra"
    )
    return {i for i in (await session.execute(stmt)).scalars() if i}


async def count_synced(session: AsyncSession, pbx_id: str) -> int:
    stmt = (
        select(func.count())
        .select_from(Extension)
        .where(Extension.pbx_id == pbx_id, Extension.managed_by == "entra")
    )
    return int((await session.execute(stmt)).scalar_one())


# Synced contacts (the contacts sync) ---------------------------------------------------------


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
