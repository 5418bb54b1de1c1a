"""Writing a contacts plan: bulk statements in the caller's transaction, one change-log row per
contact and phonebook, and the outstanding failures of the scope."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import new_id, table_of, utcnow
from app.directory.models import Contact, Phonebook
from app.runs import repository as repo
from app.sync.apply_users import CHUNK, chunks
from app.sync.plan_contacts import PHONE_KEYS, ContactsPlan, ContactUpdate, normalise_number

SCOPE = "contacts"


class _Log:
    def __init__(self, session: AsyncSession, pbx_id: str, run_id: str, now: datetime) -> None:
        self.session = session
        self.base = {"run_id": run_id, "pbx_id": pbx_id, "created_at": now}
        self.rows: list[dict[str, Any]] = []

    async def add(
        self,
        action: str,
        object_type: str,
        object_id: str,
        entra_id: str | None,
        name: str | None,
        fields: dict[str, Any],
    ) -> None:
        self.rows.append(
            {
                **self.base,
                "action": action,
                "object_type": object_type,
                "object_id": object_id,
                "entra_id": entra_id,
                "display_name": (name or "")[:400] or None,
                "fields": fields,
            }
        )
        if len(self.rows) >= CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if self.rows:
            await repo.add_changes(self.session, self.rows)
            self.rows = []


def _label(values: dict[str, str | None]) -> str:
    return " ".join(v for v in (values.get("first_name"), values.get("last_name")) if v)


def _keys(values: dict[str, str | None]) -> dict[str, str | None]:
    return {key: normalise_number(values.get(name)) for name, key in PHONE_KEYS.items()}


async def _phonebooks(
    session: AsyncSession, pbx_id: str, plan: ContactsPlan, log: _Log, now: datetime, deletes: bool
) -> dict[str, str]:
    """Phonebook deletes, renames and creates; the ids of the created ones by mailbox id."""
    books = table_of(Phonebook)
    contacts = table_of(Contact)
    if deletes and plan.book_deletes:
        ids = [d.book.id for d in plan.book_deletes]
        for batch in chunks(ids):
            await session.execute(delete(contacts).where(contacts.c.phonebook_id.in_(batch)))
            await session.execute(delete(books).where(books.c.id.in_(batch)))
        for d in plan.book_deletes:
            await log.add(
                "delete",
                "phonebook",
                d.book.id,
                d.book.entra_id,
                d.book.name,
                {"reason": [None, d.reason]},
            )
    if plan.book_renames:
        # Through a temporary name first: two phonebooks may trade names in one run.
        await session.execute(
            update(Phonebook),
            [{"id": r.book.id, "name": f"~renaming~{r.book.id}"} for r in plan.book_renames],
        )
        await session.execute(
            update(Phonebook),
            [
                {
                    "id": r.book.id,
                    "name": r.name,
                    "updated_at": now,
                    "managed_by": "entra",
                    "entra_id": r.book.former_entra_id if r.adopt else r.book.entra_id,
                    "former_entra_id": None,
                }
                for r in plan.book_renames
            ],
        )
        for r in plan.book_renames:
            fields: dict[str, Any] = {"name": [r.book.name, r.name]}
            if r.adopt:
                fields["managed_by"] = ["pbx", "entra"]
            await log.add(
                "update",
                "phonebook",
                r.book.id,
                r.book.former_entra_id if r.adopt else r.book.entra_id,
                r.name,
                fields,
            )
    created: dict[str, str] = {}
    rows = []
    for c in plan.book_creates:
        book_id = new_id()
        created[c.mailbox_id] = book_id
        rows.append(
            {
                "id": book_id,
                "pbx_id": pbx_id,
                "name": c.name,
                "visible_to_all": False,
                "managed_by": "entra",
                "entra_id": c.mailbox_id,
                "former_entra_id": None,
                "created_at": now,
                "updated_at": now,
            }
        )
        await log.add(
            "create", "phonebook", book_id, c.mailbox_id, c.name, {"name": [None, c.name]}
        )
    if rows:
        await session.execute(insert(books), rows)
    return created


async def apply_contacts(
    session: AsyncSession,
    *,
    pbx_id: str,
    run_id: str,
    plan: ContactsPlan,
    apply_deletes: bool,
    known_failures: set[str],
    scope_failures: list[dict[str, Any]],
    settled: set[str],
) -> None:
    """`scope_failures`: failures found outside the plan (mailboxes that could not be read),
    recorded with the contacts' own; `known_failures`: the ids that had failures before;
    `settled`: more ids whose failures end (those the run re-evaluated outside the plan)."""
    now = utcnow()
    log = _Log(session, pbx_id, run_id, now)
    contacts = table_of(Contact)
    created_books = await _phonebooks(session, pbx_id, plan, log, now, apply_deletes)

    if apply_deletes and plan.deletes:
        for gone in chunks(plan.deletes):
            await session.execute(
                delete(contacts).where(contacts.c.id.in_([d.contact.id for d in gone]))
            )
            for d in gone:
                await log.add(
                    "delete",
                    "contact",
                    d.contact.id,
                    d.contact.entra_id,
                    d.contact.label(),
                    {"reason": [None, d.reason]},
                )

    if plan.updates:
        stmt = (
            update(contacts)
            .where(contacts.c.id == bindparam("_id"))
            .values({name: bindparam(name) for name in _update_columns()})
        )
        for batch in chunks(plan.updates):
            await session.execute(stmt, [_update_params(u, now) for u in batch])
            for u in batch:
                changed: dict[str, Any] = {k: list(v) for k, v in u.fields.items()}
                if u.contact.adopt:
                    changed["managed_by"] = ["pbx", "entra"]
                await log.add(
                    "update",
                    "contact",
                    u.contact.id,
                    u.contact.entra_id,
                    _label(u.source.values()) or u.contact.label(),
                    changed,
                )

    for created in chunks(plan.creates):
        rows = []
        for c in created:
            cid = new_id()
            owner = created_books.get(c.owner, c.owner)
            values = c.source.values()
            rows.append(
                {
                    "id": cid,
                    "pbx_id": pbx_id,
                    "phonebook_id": owner if c.owner_kind == "phonebook" else None,
                    "extension_id": owner if c.owner_kind == "extension" else None,
                    **values,
                    **_keys(values),
                    "change_key": c.source.change_key,
                    "managed_by": "entra",
                    "entra_id": c.entra_id,
                    "former_entra_id": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            await log.add(
                "create",
                "contact",
                cid,
                c.entra_id,
                _label(values),
                {k: [None, v] for k, v in values.items() if v is not None},
            )
        await session.execute(insert(contacts), rows)
    await log.flush()

    await _failures(session, pbx_id, run_id, now, plan, scope_failures, settled, known_failures)


async def _failures(
    session: AsyncSession,
    pbx_id: str,
    run_id: str,
    now: datetime,
    plan: ContactsPlan,
    scope_failures: list[dict[str, Any]],
    settled: set[str],
    known: set[str],
) -> None:
    """The scope's outstanding failures: those settled dropped, this run's recorded (in chunks:
    a full run can have tens of thousands)."""
    # Only ids that failed before can need a delete: narrowed first, the sets stay small.
    settled = settled | (plan.settled & known) | {d.contact.entra_id for d in plan.deletes}
    failing = {f.source_id for f in plan.failures} | {f["entra_id"] for f in scope_failures}
    since = await repo.drop_failures(session, pbx_id, SCOPE, settled, failing, known)
    base = {"pbx_id": pbx_id, "scope": SCOPE, "conflict": None, "run_id": run_id}
    for batch in chunks(plan.failures):
        rows = [
            {
                **base,
                "entra_id": f.source_id,
                "display_name": (f.display_name or "")[:400] or None,
                "code": f.code,
                "message": f.message,
                "failed_at": since.get(f.source_id, now),
            }
            for f in batch
        ]
        await repo.add_failures(session, rows)
    await repo.add_failures(
        session,
        [{**f, **base, "failed_at": since.get(f["entra_id"], now)} for f in scope_failures],
    )


def _update_params(u: ContactUpdate, now: datetime) -> dict[str, Any]:
    values = u.source.values()
    return {
        "_id": u.contact.id,
        **values,
        **_keys(values),
        "change_key": u.source.change_key,
        "updated_at": now,
        # Released contacts taken back follow Outlook again.
        "managed_by": "entra",
        "entra_id": u.contact.entra_id,
        "former_entra_id": None,
    }


def _update_columns() -> list[str]:
    return [
        "first_name",
        "last_name",
        "company",
        "email",
        "mobile_phone",
        "home_phone",
        "business_phone",
        "mobile_key",
        "home_key",
        "business_key",
        "change_key",
        "updated_at",
        "managed_by",
        "entra_id",
        "former_entra_id",
    ]
