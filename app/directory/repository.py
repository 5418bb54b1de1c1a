"""Every query on the PBX directory tables."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import chunked, table_of
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
        # `%`, `_` and the escape character are matched as themselves, not as wildcards.
        text = search.lower()
        stmt = stmt.where(
            or_(
                Extension.number.startswith(search, autoescape=True),
                func.lower(Extension.first_name).contains(text, autoescape=True),
                func.lower(Extension.last_name).contains(text, autoescape=True),
                Extension.email_key.contains(text, autoescape=True),
            )
        )
    return stmt


async def presence_for(
    session: AsyncSession, ext_ids: Iterable[str]
) -> dict[str, ExtensionPresence]:
    result: dict[str, ExtensionPresence] = {}
    for ids in chunked(ext_ids):
        stmt = select(ExtensionPresence).where(ExtensionPresence.extension_id.in_(ids))
        result.update({p.extension_id: p for p in (await session.execute(stmt)).scalars()})
    return result


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
    result: dict[str, list[str]] = defaultdict(list)
    for ids in chunked(group_ids):
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
    found: set[str] = set()
    for chunk in chunked(ids):
        stmt = select(Extension.id).where(Extension.pbx_id == pbx_id, Extension.id.in_(chunk))
        found.update((await session.execute(stmt)).scalars())
    return found


async def existing_group_ids(session: AsyncSession, pbx_id: str, ids: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunked(ids):
        stmt = select(ExtensionGroup.id).where(
            ExtensionGroup.pbx_id == pbx_id, ExtensionGroup.id.in_(chunk)
        )
        found.update((await session.execute(stmt)).scalars())
    return found


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
    for chunk in chunked(ids):
        stmt = (
            select(PhonebookVisibility)
            .where(PhonebookVisibility.phonebook_id.in_(chunk))
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


# Snapshots for the sync engine: plain rows of the columns asked for, read in bulk.

EXTENSION_SNAPSHOT_COLUMNS = (
    "id",
    "number",
    "first_name",
    "last_name",
    "email",
    "mobile",
    "job_title",
    "managed_by",
    "entra_id",
    "former_entra_id",
)


async def extension_rows(session: AsyncSession, pbx_id: str) -> list[dict[str, Any]]:
    """Every extension of the PBX, as the columns of EXTENSION_SNAPSHOT_COLUMNS."""
    cols = [getattr(Extension, name) for name in EXTENSION_SNAPSHOT_COLUMNS]
    rows = await session.execute(select(*cols).where(Extension.pbx_id == pbx_id))
    return [dict(zip(EXTENSION_SNAPSHOT_COLUMNS, row, strict=True)) for row in rows]


async def extension_rows_touching(
    session: AsyncSession, pbx_id: str, entra_ids: set[str], email_keys: set[str]
) -> list[dict[str, Any]]:
    """The extensions that follow, followed, or share an address with these users."""
    cols = [getattr(Extension, name) for name in EXTENSION_SNAPSHOT_COLUMNS]
    found: dict[str, dict[str, Any]] = {}
    for column, values in (
        (Extension.entra_id, entra_ids),
        (Extension.former_entra_id, entra_ids),
        (Extension.email_key, email_keys),
    ):
        ordered = sorted(values)
        for i in range(0, len(ordered), 500):
            stmt = select(*cols).where(Extension.pbx_id == pbx_id, column.in_(ordered[i : i + 500]))
            for row in await session.execute(stmt):
                found[row[0]] = dict(zip(EXTENSION_SNAPSHOT_COLUMNS, row, strict=True))
    return list(found.values())


async def group_rows(session: AsyncSession, pbx_id: str) -> list[dict[str, Any]]:
    """Every extension group of the PBX with its member extension ids."""
    rows = (
        await session.execute(
            select(
                ExtensionGroup.id,
                ExtensionGroup.name,
                ExtensionGroup.managed_by,
                ExtensionGroup.entra_id,
                ExtensionGroup.former_entra_id,
            ).where(ExtensionGroup.pbx_id == pbx_id)
        )
    ).all()
    members: dict[str, set[str]] = {row[0]: set() for row in rows}
    stmt = (
        select(ExtensionGroupMember.group_id, ExtensionGroupMember.extension_id)
        .join(ExtensionGroup, ExtensionGroup.id == ExtensionGroupMember.group_id)
        .where(ExtensionGroup.pbx_id == pbx_id)
    )
    for group_id, ext_id in await session.execute(stmt):
        members[group_id].add(ext_id)
    return [
        {
            "id": row[0],
            "name": row[1],
            "managed_by": row[2],
            "entra_id": row[3],
            "former_entra_id": row[4],
            "member_ids": frozenset(members[row[0]]),
        }
        for row in rows
    ]


async def synced_extension_map(session: AsyncSession, pbx_id: str) -> dict[str, str]:
    """Entra user id -> extension id of the synced extensions (frozen ones too: a paused user
    sync keeps its people in their groups)."""
    stmt = select(Extension.entra_id, Extension.id).where(
        Extension.pbx_id == pbx_id,
        Extension.managed_by.in_(("entra", "entra_frozen")),
        Extension.entra_id.is_not(None),
    )
    return {str(entra_id): ext_id for entra_id, ext_id in await session.execute(stmt)}


async def synced_rows(session: AsyncSession, pbx_id: str, model: type[Any]) -> list[Any]:
    """The rows of a directory table that a sync owns (entra or entra_frozen)."""
    stmt = select(model).where(
        model.pbx_id == pbx_id, model.managed_by.in_(("entra", "entra_frozen"))
    )
    return list((await session.execute(stmt)).scalars())


async def delete_synced(session: AsyncSession, pbx_id: str, model: type[Any]) -> None:
    await session.execute(
        delete(model).where(model.pbx_id == pbx_id, model.managed_by.in_(("entra", "entra_frozen")))
    )


async def entra_ids_among(
    session: AsyncSession, pbx_id: str, model: type[Any], ids: set[str]
) -> set[str]:
    """Those of these Entra ids that an object of the PBX in this table (extensions,
    extension groups) follows."""
    found: set[str] = set()
    ordered = sorted(ids)
    for i in range(0, len(ordered), 500):
        stmt = select(model.entra_id).where(
            model.pbx_id == pbx_id, model.entra_id.in_(ordered[i : i + 500])
        )
        found |= {str(x) for x in (await session.execute(stmt)).scalars()}
    return found


# One user's plan (explain, provision on demand): indexed lookups only.

NUMBER_MAX_LENGTH = 12
_GAP_CHUNK = 1000


async def extensions_touching(
    session: AsyncSession, pbx_id: str, entra_id: str, email_key: str | None
) -> list[Extension]:
    """The extensions that follow, followed, or share the address of one user."""
    conditions = [Extension.entra_id == entra_id, Extension.former_entra_id == entra_id]
    if email_key:
        conditions.append(Extension.email_key == email_key)
    stmt = select(Extension).where(Extension.pbx_id == pbx_id, or_(*conditions))
    return list((await session.execute(stmt)).scalars())


async def extension_following(
    session: AsyncSession, pbx_id: str, entra_id: str
) -> Extension | None:
    """The extension that follows (or followed) this Entra user: synced first, then released."""
    stmt = select(Extension).where(
        Extension.pbx_id == pbx_id,
        or_(Extension.entra_id == entra_id, Extension.former_entra_id == entra_id),
    )
    rows = list((await session.execute(stmt)).scalars())
    rows.sort(key=lambda e: e.entra_id != entra_id)
    return rows[0] if rows else None


async def auto_number_and_seats(
    session: AsyncSession, pbx_id: str, start: str
) -> tuple[str | None, int]:
    """The first number the auto-number scan from `start` finds free (`start`, `start`+1, …
    zero-padded to the width of `start`, up to 12 digits; None when none is), and the seats in
    use. One count per number length over the (pbx, length(number), number) index gives the
    seats and, with a point lookup of the first candidate and the largest number of each
    length (index seeks), whether that length's candidates are all taken; only a run with
    holes is walked, up to its first hole."""
    mine = Extension.pbx_id == pbx_id
    width = func.length(Extension.number)
    per_length = {
        int(n): int(count)
        for n, count in await session.execute(
            select(width, func.count()).where(mine).group_by(width)
        )
    }
    seats = sum(per_length.values())
    length = len(start)
    low = start
    below = 0
    if per_length.get(length):
        stmt = select(func.count()).where(mine, width == length, Extension.number < start)
        below = int((await session.execute(stmt)).scalar_one())
    while length <= NUMBER_MAX_LENGTH:
        count = per_length.get(length, 0) - (below if length == len(start) else 0)
        if count == 0 or await extension_with_number(session, pbx_id, low) is None:
            return low, seats
        largest = (
            select(Extension.number)
            .where(mine, width == length)
            .order_by(Extension.number.desc())
            .limit(1)
        )
        top = str((await session.execute(largest)).scalar_one())
        if count != int(top) - int(low) + 1:
            return await _first_hole(session, pbx_id, length, low), seats
        if top != "9" * length:
            return str(int(top) + 1).zfill(length), seats
        length += 1
        low = "1" + "0" * (length - 1)
    return None, seats


async def _first_hole(session: AsyncSession, pbx_id: str, length: int, low: str) -> str:
    expected = int(low)
    cursor = low
    while True:
        stmt = (
            select(Extension.number)
            .where(
                Extension.pbx_id == pbx_id,
                func.length(Extension.number) == length,
                Extension.number >= cursor,
            )
            .order_by(Extension.number)
            .limit(_GAP_CHUNK)
        )
        numbers = list((await session.execute(stmt)).scalars())
        for number in numbers:
            if int(number) != expected:
                return str(expected).zfill(length)
            expected += 1
        if len(numbers) < _GAP_CHUNK:
            return str(expected).zfill(length)
        cursor = str(expected).zfill(length)


async def synced_extensions_of(
    session: AsyncSession, pbx_id: str, entra_ids: Iterable[str]
) -> list[Extension]:
    """The synced (or frozen) extensions of these Entra users, by the (pbx, entra id) index."""
    ordered = sorted(set(entra_ids))
    found: list[Extension] = []
    for i in range(0, len(ordered), 500):
        stmt = select(Extension).where(
            Extension.pbx_id == pbx_id,
            Extension.entra_id.in_(ordered[i : i + 500]),
            Extension.managed_by.in_(("entra", "entra_frozen")),
        )
        found += list((await session.execute(stmt)).scalars())
    return found


async def groups_without_members(session: AsyncSession, pbx_id: str) -> list[ExtensionGroup]:
    """The PBX's extension groups (at most `max_extension_groups`), without their members."""
    stmt = select(ExtensionGroup).where(ExtensionGroup.pbx_id == pbx_id)
    return list((await session.execute(stmt)).scalars())
