"""Directory use cases, and the one place where the `managed_by` locks are enforced."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.directory import repository as repo
from app.directory.models import (
    Contact,
    Extension,
    ExtensionGroup,
    ExtensionPresence,
    Phonebook,
    TeamsPresenceSetting,
)
from app.directory.schemas import (
    ContactCreate,
    ExtensionCreate,
    ExtensionGroupCreate,
    ExtensionGroupOut,
    ExtensionGroupUpdate,
    ExtensionOut,
    ExtensionUpdate,
    PhonebookOut,
    PresenceOut,
    PresenceUpdate,
    TeamsPresence,
    Visibility,
    WelcomeEmail,
)
from app.errors import Conflict, NotFound, Unprocessable
from app.pagination import PageParams, next_cursor, paginate
from app.tenants import repository as tenants_repo
from app.tenants.models import Pbx

# The fields Entra owns on a synced extension (the guide's list).
EXTENSION_LOCKED_FIELDS = ("first_name", "last_name", "email", "mobile", "job_title")
GROUP_LOCKED_FIELDS = ("name", "member_ids")


def email_key(email: str | None) -> str | None:
    return email.strip().lower() if email else None


def _locked(kind: str, managed_by: str, fields: list[str]) -> Conflict:
    state = (
        "frozen while its sync is paused or disabled"
        if managed_by == "entra_frozen"
        else "synced from Microsoft Entra ID"
    )
    return Conflict(
        f"This {kind} is {state}; {', '.join(fields)} can't be changed here.",
        code="managed_by_entra",
        title="Managed by Microsoft Entra ID",
        managed_by=managed_by,
        locked_fields=fields,
    )


def check_edit(kind: str, obj: Any, changes: dict[str, Any], locked: tuple[str, ...]) -> None:
    """Refuse a change to an Entra-owned field, or to any field of a frozen object (its sync is
    paused or the integration disabled); the same value is not a change."""
    if obj.managed_by == "pbx":
        return
    fields = tuple(changes) if obj.managed_by == "entra_frozen" else locked
    touched = [f for f in fields if f in changes and changes[f] != getattr(obj, f, None)]
    if touched:
        raise _locked(kind, obj.managed_by, touched)


def check_delete(kind: str, obj: Any, locked: tuple[str, ...]) -> None:
    if obj.managed_by != "pbx":
        raise Conflict(
            f"This {kind} is managed by Microsoft Entra ID and can't be deleted here.",
            code="managed_by_entra",
            title="Managed by Microsoft Entra ID",
            managed_by=obj.managed_by,
            locked_fields=list(locked),
        )


# Extensions ---------------------------------------------------------------------------------


def _presence_out(p: ExtensionPresence | None) -> PresenceOut:
    if p is None:
        return PresenceOut(
            status="available",
            source="manual",
            teams_availability=None,
            teams_activity=None,
            updated_at=None,
        )
    return PresenceOut(
        status=p.status,
        source=p.source,
        teams_availability=p.teams_availability,
        teams_activity=p.teams_activity,
        updated_at=p.updated_at,
    )


def extension_out(ext: Extension, presence: ExtensionPresence | None) -> ExtensionOut:
    welcome = None
    if ext.welcome_email_status:
        welcome = WelcomeEmail(
            status=ext.welcome_email_status,
            at=ext.welcome_email_at,
            error=ext.welcome_email_error,
        )
    return ExtensionOut(
        id=ext.id,
        number=ext.number,
        first_name=ext.first_name,
        last_name=ext.last_name,
        email=ext.email,
        mobile=ext.mobile,
        job_title=ext.job_title,
        managed_by=ext.managed_by,
        entra_user_id=ext.entra_id,
        former_entra_id=ext.former_entra_id,
        presence=_presence_out(presence),
        welcome_email=welcome,
        created_at=ext.created_at,
        updated_at=ext.updated_at,
    )


async def get_extension(session: AsyncSession, pbx: Pbx, ext_id: str) -> Extension:
    ext = await repo.get_extension(session, pbx.id, ext_id)
    if ext is None:
        raise NotFound(f"No extension {ext_id}.")
    return ext


async def extension_view(session: AsyncSession, ext: Extension) -> ExtensionOut:
    return extension_out(ext, await repo.get_presence(session, ext.id))


async def list_extensions(
    session: AsyncSession,
    pbx: Pbx,
    params: PageParams,
    managed_by: str | None = None,
    search: str | None = None,
) -> tuple[list[ExtensionOut], str | None]:
    stmt = paginate(
        repo.extensions_query(pbx.id, managed_by, search), Extension.number, Extension.id, params
    )
    rows, cursor = next_cursor(list((await session.execute(stmt)).scalars()), params, "number")
    presence = await repo.presence_for(session, (r.id for r in rows))
    return [extension_out(r, presence.get(r.id)) for r in rows], cursor


async def _check_unique(
    session: AsyncSession, pbx: Pbx, *, number: str | None, email: str | None, exclude: str | None
) -> None:
    if number is not None:
        other = await repo.extension_with_number(session, pbx.id, number)
        if other is not None and other.id != exclude:
            raise Conflict(f"Extension number {number} is in use.", code="extension_number_taken")
    key = email_key(email)
    if key is not None:
        other = await repo.extension_with_email(session, pbx.id, key)
        if other is not None and other.id != exclude:
            raise Conflict(
                f"The email address {email} is in use by another extension.", code="email_taken"
            )


async def create_extension(session: AsyncSession, pbx: Pbx, data: ExtensionCreate) -> Extension:
    await tenants_repo.lock_seats(session, pbx.id)
    if await repo.count_extensions(session, pbx.id) >= pbx.max_extensions:
        raise Conflict(
            f"This PBX has reached its limit of {pbx.max_extensions} extensions.",
            code="capacity_exceeded",
        )
    await _check_unique(session, pbx, number=data.number, email=data.email, exclude=None)
    ext = Extension(
        pbx_id=pbx.id, managed_by="pbx", email_key=email_key(data.email), **data.model_dump()
    )
    session.add(ext)
    await session.flush()
    return ext


async def update_extension(
    session: AsyncSession, pbx: Pbx, ext_id: str, data: ExtensionUpdate
) -> Extension:
    ext = await get_extension(session, pbx, ext_id)
    changes = data.model_dump(exclude_unset=True)
    if "email" in changes:
        changes["email"] = changes["email"] or None
    check_edit("extension", ext, changes, EXTENSION_LOCKED_FIELDS)
    if "first_name" in changes or "last_name" in changes:
        first = changes.get("first_name", ext.first_name)
        last = changes.get("last_name", ext.last_name)
        if not (first or last):
            raise Unprocessable(
                "first_name or last_name is required.", code="missing_required_field"
            )
    await _check_unique(
        session, pbx, number=changes.get("number"), email=changes.get("email"), exclude=ext.id
    )
    for field, value in changes.items():
        setattr(ext, field, value)
    if "email" in changes:
        ext.email_key = email_key(ext.email)
    ext.updated_at = utcnow()
    await session.flush()
    return ext


async def delete_extension(session: AsyncSession, pbx: Pbx, ext_id: str) -> None:
    ext = await get_extension(session, pbx, ext_id)
    check_delete("extension", ext, EXTENSION_LOCKED_FIELDS)
    await session.delete(ext)
    await session.flush()


async def set_presence(
    session: AsyncSession, pbx: Pbx, ext_id: str, data: PresenceUpdate
) -> PresenceOut:
    ext = await get_extension(session, pbx, ext_id)
    row = await repo.get_presence(session, ext.id)
    if row is None:
        row = ExtensionPresence(extension_id=ext.id, updated_at=utcnow())
        session.add(row)
    row.status = data.status
    row.source = "manual"
    row.updated_at = utcnow()
    await session.flush()
    return _presence_out(row)


async def get_teams_presence(session: AsyncSession, pbx: Pbx, ext_id: str) -> TeamsPresence:
    ext = await get_extension(session, pbx, ext_id)
    row = await repo.get_teams_setting(session, ext.id)
    if row is None:
        return TeamsPresence()
    return TeamsPresence(enabled=row.enabled, mapping=row.mapping)


async def put_teams_presence(
    session: AsyncSession, pbx: Pbx, ext_id: str, data: TeamsPresence
) -> TeamsPresence:
    ext = await get_extension(session, pbx, ext_id)
    row = await repo.get_teams_setting(session, ext.id)
    if row is None:
        row = TeamsPresenceSetting(extension_id=ext.id, mapping={}, updated_at=utcnow())
        session.add(row)
    row.enabled = data.enabled
    row.mapping = dict(data.mapping)
    row.updated_at = utcnow()
    await session.flush()
    return TeamsPresence(enabled=row.enabled, mapping=row.mapping)


# Extension groups ---------------------------------------------------------------------------


def group_out(group: ExtensionGroup, members: list[str]) -> ExtensionGroupOut:
    return ExtensionGroupOut(
        id=group.id,
        name=group.name,
        member_ids=members,
        managed_by=group.managed_by,
        entra_group_id=group.entra_id,
        former_entra_id=group.former_entra_id,
        created_at=group.created_at,
        updated_at=group.updated_at,
    )


async def get_group(session: AsyncSession, pbx: Pbx, group_id: str) -> ExtensionGroup:
    group = await repo.get_group(session, pbx.id, group_id)
    if group is None:
        raise NotFound(f"No extension group {group_id}.")
    return group


async def group_view(session: AsyncSession, group: ExtensionGroup) -> ExtensionGroupOut:
    members = await repo.members_of(session, [group.id])
    return group_out(group, members.get(group.id, []))


async def list_groups(
    session: AsyncSession, pbx: Pbx, params: PageParams
) -> tuple[list[ExtensionGroupOut], str | None]:
    stmt = paginate(
        select(ExtensionGroup).where(ExtensionGroup.pbx_id == pbx.id),
        ExtensionGroup.name,
        ExtensionGroup.id,
        params,
    )
    rows, cursor = next_cursor(list((await session.execute(stmt)).scalars()), params, "name")
    members = await repo.members_of(session, (r.id for r in rows))
    return [group_out(r, members.get(r.id, [])) for r in rows], cursor


async def _check_members(session: AsyncSession, pbx: Pbx, member_ids: list[str]) -> list[str]:
    wanted = sorted(set(member_ids))
    found = await repo.existing_extension_ids(session, pbx.id, wanted)
    unknown = [m for m in wanted if m not in found]
    if unknown:
        raise Unprocessable(
            f"Unknown extension ids: {', '.join(unknown)}.", code="unknown_extension", ids=unknown
        )
    return wanted


async def _check_group_name(
    session: AsyncSession, pbx: Pbx, name: str, exclude: str | None
) -> None:
    other = await repo.group_with_name(session, pbx.id, name)
    if other is not None and other.id != exclude:
        raise Conflict(f"An extension group named {name!r} exists.", code="group_name_taken")


async def create_group(
    session: AsyncSession, pbx: Pbx, data: ExtensionGroupCreate
) -> ExtensionGroupOut:
    await tenants_repo.lock_seats(session, pbx.id)
    if await repo.count_groups(session, pbx.id) >= pbx.max_extension_groups:
        raise Conflict(
            f"This PBX has reached its limit of {pbx.max_extension_groups} extension groups.",
            code="group_limit_reached",
        )
    await _check_group_name(session, pbx, data.name, None)
    members = await _check_members(session, pbx, data.member_ids)
    group = ExtensionGroup(pbx_id=pbx.id, name=data.name, managed_by="pbx")
    session.add(group)
    await session.flush()
    await repo.set_members(session, group.id, members)
    return group_out(group, members)


async def update_group(
    session: AsyncSession, pbx: Pbx, group_id: str, data: ExtensionGroupUpdate
) -> ExtensionGroupOut:
    group = await get_group(session, pbx, group_id)
    current = (await repo.members_of(session, [group.id])).get(group.id, [])
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if "member_ids" in changes:
        changes["member_ids"] = sorted(set(changes["member_ids"]))
    snapshot = SimpleNamespace(managed_by=group.managed_by, name=group.name, member_ids=current)
    check_edit("extension group", snapshot, changes, GROUP_LOCKED_FIELDS)
    if "name" in changes:
        await _check_group_name(session, pbx, changes["name"], group.id)
        group.name = changes["name"]
    if "member_ids" in changes:
        current = await _check_members(session, pbx, changes["member_ids"])
        await repo.set_members(session, group.id, current)
    group.updated_at = utcnow()
    await session.flush()
    return group_out(group, current)


async def delete_group(session: AsyncSession, pbx: Pbx, group_id: str) -> None:
    group = await get_group(session, pbx, group_id)
    check_delete("extension group", group, GROUP_LOCKED_FIELDS)
    await session.delete(group)
    await session.flush()


# Phonebooks and contacts --------------------------------------------------------------------


def phonebook_out(book: Phonebook, visibility: tuple[list[str], list[str]]) -> PhonebookOut:
    exts, groups = visibility
    return PhonebookOut(
        id=book.id,
        name=book.name,
        managed_by=book.managed_by,
        mailbox_id=book.entra_id,
        visible_to=Visibility(
            all=book.visible_to_all, extension_ids=exts, extension_group_ids=groups
        ),
    )


async def get_phonebook(session: AsyncSession, pbx: Pbx, book_id: str) -> Phonebook:
    book = await repo.get_phonebook(session, pbx.id, book_id)
    if book is None:
        raise NotFound(f"No phonebook {book_id}.")
    return book


async def _books_out(session: AsyncSession, rows: list[Phonebook]) -> list[PhonebookOut]:
    vis = await repo.visibility_of(session, (r.id for r in rows))
    return [phonebook_out(r, vis[r.id]) for r in rows]


async def list_phonebooks(
    session: AsyncSession, pbx: Pbx, params: PageParams
) -> tuple[list[PhonebookOut], str | None]:
    stmt = paginate(
        select(Phonebook).where(Phonebook.pbx_id == pbx.id), Phonebook.name, Phonebook.id, params
    )
    rows, cursor = next_cursor(list((await session.execute(stmt)).scalars()), params, "name")
    return await _books_out(session, rows), cursor


async def create_phonebook(session: AsyncSession, pbx: Pbx, name: str) -> PhonebookOut:
    if await repo.phonebook_with_name(session, pbx.id, name) is not None:
        raise Conflict(f"A phonebook named {name!r} exists.", code="phonebook_name_taken")
    book = Phonebook(pbx_id=pbx.id, name=name, managed_by="pbx")
    session.add(book)
    await session.flush()
    return phonebook_out(book, ([], []))


async def delete_phonebook(session: AsyncSession, pbx: Pbx, book_id: str) -> None:
    book = await get_phonebook(session, pbx, book_id)
    check_delete("phonebook", book, ("name", "contacts"))
    await session.delete(book)
    await session.flush()


async def set_visibility(
    session: AsyncSession, pbx: Pbx, book_id: str, data: Visibility
) -> PhonebookOut:
    book = await get_phonebook(session, pbx, book_id)
    exts = sorted(set(data.extension_ids))
    groups = sorted(set(data.extension_group_ids))
    # One set-based lookup per kind (chunked in the repository), then set differences.
    missing = sorted(set(exts) - await repo.existing_extension_ids(session, pbx.id, exts))
    missing += sorted(set(groups) - await repo.existing_group_ids(session, pbx.id, groups))
    if missing:
        raise Unprocessable(
            f"Unknown ids: {', '.join(missing)}.", code="unknown_reference", ids=missing
        )
    book.visible_to_all = data.all
    book.updated_at = utcnow()
    await repo.set_visibility(session, book.id, exts, groups)
    await session.flush()
    return phonebook_out(book, (exts, groups))


async def list_contacts(
    session: AsyncSession,
    params: PageParams,
    *,
    phonebook_id: str | None = None,
    extension_id: str | None = None,
) -> tuple[list[Contact], str | None]:
    stmt = paginate(
        repo.contacts_query(phonebook_id=phonebook_id, extension_id=extension_id),
        Contact.id,
        Contact.id,
        params,
    )
    return next_cursor(list((await session.execute(stmt)).scalars()), params, "id")


async def add_contact(
    session: AsyncSession, pbx: Pbx, book_id: str, data: ContactCreate
) -> Contact:
    book = await get_phonebook(session, pbx, book_id)
    if book.managed_by != "pbx":
        raise _locked("phonebook", book.managed_by, ["contacts"])
    contact = Contact(pbx_id=pbx.id, phonebook_id=book.id, managed_by="pbx", **data.model_dump())
    session.add(contact)
    await session.flush()
    return contact


async def delete_contact(session: AsyncSession, pbx: Pbx, book_id: str, contact_id: str) -> None:
    book = await get_phonebook(session, pbx, book_id)
    contact = await repo.get_contact(session, book.id, contact_id)
    if contact is None:
        raise NotFound(f"No contact {contact_id} in this phonebook.")
    check_delete("contact", contact, ("contact",))
    await session.delete(contact)
    await session.flush()


async def visible_phonebooks(
    session: AsyncSession, pbx: Pbx, ext_id: str, params: PageParams
) -> tuple[list[PhonebookOut], str | None]:
    """The phonebooks this extension's Linkus user may see (Contact Visibility Permission)."""
    ext = await get_extension(session, pbx, ext_id)
    groups = await repo.groups_of_extension(session, ext.id)
    stmt = paginate(
        repo.visible_phonebooks_query(pbx.id, ext.id, groups), Phonebook.name, Phonebook.id, params
    )
    rows, cursor = next_cursor(list((await session.execute(stmt)).scalars()), params, "name")
    return await _books_out(session, rows), cursor
