"""The contacts scope: Outlook contacts to Linkus contacts and company phonebooks (fetch → plan →
guard → apply → report).

Personal contacts: every synced user in the contacts range (all synced users, or the synced users
in the chosen groups, transitively; group members who are not synced users are reported, never
added). Shared mailboxes: the chosen ones, or every shared mailbox.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.db import session_scope
from app.directory import contacts_repository as contacts_repo
from app.runs import repository as runs_repo
from app.sync import steps
from app.sync.apply_contacts import apply_contacts
from app.sync.fetch_contacts import (
    LINK_PREFIX,
    MAILBOX_DENIED,
    Fetched,
    fetch,
    link_resource,
)
from app.sync.fetch_users import Progress
from app.sync.plan_contacts import (
    ContactsInput,
    ContactsPlan,
    PbxContact,
    PbxPhonebook,
    owners_needed,
    plan_contacts,
)

if TYPE_CHECKING:
    from app.sync.executor import RunExecutor

SCOPE = "contacts"
SECTION = "contacts_sync"
# run.plan key: the ids of the contacts whose deletion is held.
HELD_KEY = "contacts_held"
SUMMARY_MAX = 1000
# `contacts.failed` counts contacts only.
NOT_COUNTED = frozenset({MAILBOX_DENIED})


async def current_state(
    session: AsyncSession, pbx_id: str, inp: ContactsInput
) -> tuple[list[PbxPhonebook], dict[str, list[PbxContact]], set[str]]:
    books = [PbxPhonebook(*row) for row in await contacts_repo.phonebooks(session, pbx_id)]
    holders = await contacts_repo.personal_contact_holders(session, pbx_id)
    owners = owners_needed(inp, books, holders)
    held: dict[str, list[PbxContact]] = {}
    for row in await contacts_repo.synced_contacts_of(session, pbx_id, owners):
        cid, entra_id, ext_id, book_id, *rest, managed_by = row
        owner = str(ext_id or book_id)
        change_key, first, last, company, email, mobile, home, business = (
            None if v is None else str(v) for v in rest
        )
        held.setdefault(owner, []).append(
            PbxContact(
                str(cid),
                str(entra_id),
                owner,
                change_key,
                first,
                last,
                company,
                email,
                mobile,
                home,
                business,
                adopt=managed_by == "pbx",
            )
        )
    return books, held, holders


def _summary(plan: ContactsPlan) -> dict[str, Any]:
    def cap(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return items[:SUMMARY_MAX]

    return {
        "counts": plan.counts(),
        "creates": cap(
            [
                {
                    "entra_id": c.entra_id,
                    "owner_type": c.owner_kind,
                    "owner": c.owner,
                    **c.source.values(),
                }
                for c in plan.creates[:SUMMARY_MAX]
            ]
        ),
        "updates": cap(
            [
                {
                    "contact_id": u.contact.id,
                    "entra_id": u.contact.entra_id,
                    "fields": {k: list(v) for k, v in u.fields.items()},
                }
                for u in plan.updates[:SUMMARY_MAX]
            ]
        ),
        "deletes": cap(
            [
                {"contact_id": d.contact.id, "entra_id": d.contact.entra_id, "reason": d.reason}
                for d in plan.deletes[:SUMMARY_MAX]
            ]
        ),
        "phonebooks": {
            "creates": [{"mailbox_id": b.mailbox_id, "name": b.name} for b in plan.book_creates],
            "renames": [
                {"phonebook_id": r.book.id, "name": [r.book.name, r.name]}
                for r in plan.book_renames
            ],
            "deletes": [
                {"phonebook_id": d.book.id, "mailbox_id": d.book.entra_id, "reason": d.reason}
                for d in plan.book_deletes
            ],
        },
    }


def _report(ex: RunExecutor, plan: ContactsPlan, hold: bool) -> None:
    counts = plan.counts()
    if hold:
        counts["deleted"] = 0
    ex.report.counts[SCOPE] = counts
    for w in plan.warnings:
        ex.report.warn(SCOPE, w.code, w.message, w.source_id)
    if ex.dry_run:
        # A real run reports the failures the apply recorded (the executor reads them back).
        ex.report.failures += [
            {
                "scope": SCOPE,
                "source_id": f.source_id,
                "display_name": f.display_name,
                "code": f.code,
                "message": f.message,
            }
            for f in plan.failures
        ]
        ex.report.plan = {**(ex.report.plan or {}), SCOPE: _summary(plan)}
    if hold:
        ex.report.hold(
            "phonebooks",
            [
                {"id": d.book.id, "name": d.book.name, "mailbox_id": d.book.entra_id}
                for d in plan.book_deletes
            ],
        )
        assert ex.report.held is not None
        ex.report.held["contacts"] = plan.deletions()


def _approved(ex: RunExecutor) -> set[str] | None:
    """The contact ids whose held deletion was approved (None: this run approves none)."""
    if ex.approved is None or HELD_KEY not in ex.plan_payload:
        return None
    return set(ex.plan_payload[HELD_KEY])


async def _save_state(
    session: AsyncSession, pbx_id: str, fetched: Fetched, links: dict[str, str], *, full: bool
) -> None:
    """Where the next run starts: delta links, saved only with the apply."""
    if full:
        await runs_repo.drop_delta_links(session, pbx_id, LINK_PREFIX)
    else:
        # Folders no longer read (their owner left the range) start over if they return.
        read_now = {link_resource(o) for o in (*fetched.users, *fetched.mailboxes)}
        await runs_repo.drop_delta_resources(session, pbx_id, set(links) - read_now)
    await runs_repo.save_delta_links(session, pbx_id, fetched.links, {} if full else links)


async def run(ex: RunExecutor) -> None:
    rule = ex.rules.active(SECTION)
    cfg = ex.rules.contacts
    if rule is None or cfg is None:
        ex.report.warn(SCOPE, "section_not_active", "Contacts sync is not active.")
        return
    approved = _approved(ex)
    async with session_scope(ex.runtime.sessionmaker) as session:
        links = await runs_repo.delta_links(session, ex.pbx_id, LINK_PREFIX)
        known = await runs_repo.failure_rows(session, ex.pbx_id, SCOPE)
        synced = await contacts_repo.synced_extension_ids_by_user(session, ex.pbx_id)
        synced_books = {
            row[3]
            for row in await contacts_repo.phonebooks(session, ex.pbx_id)
            if row[2] == "entra" and row[3]
        }
    # An approved run reads everything again before it deletes what was held.
    full = ex.full(rule) or approved is not None or not links

    async def read(progress: Progress) -> Fetched:
        return await fetch(
            ex.graph,
            cfg,
            synced=synced,
            links={} if approved is not None else links,
            synced_books=synced_books,
            full=full,
            progress=progress,
        )

    fetched = await ex.fetch(SCOPE, read, timing="contacts_fetch")
    inp = ContactsInput(
        personal=fetched.personal,
        users=fetched.users,
        personal_enabled=cfg.personal.enabled,
        mailboxes=fetched.mailboxes,
        shared_enabled=cfg.shared.enabled,
    )
    seen = sum(r.seen() for r in fetched.personal.values())
    await steps.set_progress(ex.runtime, ex.run_id, "applying", seen, seen)
    async with session_scope(ex.runtime.sessionmaker) as session:
        t1 = time.perf_counter()
        books, held, holders = await current_state(session, ex.pbx_id, inp)
        plan = plan_contacts(inp, books, held, holders)
        ex.timings["contacts_plan"] = time.perf_counter() - t1
        synced_count = await contacts_repo.count_synced_contacts(session, ex.pbx_id)
        hold = steps.guard(
            SCOPE, {d.contact.id for d in plan.deletes}, synced_count, ex.rules.guard, approved
        )
        _report(ex, plan, hold)
        if ex.dry_run:
            return
        t2 = time.perf_counter()
        # Failures of mailboxes are re-evaluated on every run; those of contacts on full runs.
        settled = {k for k, f in known.items() if f[0] == MAILBOX_DENIED}
        if fetched.all_full:
            settled |= set(known)
        await apply_contacts(
            session,
            pbx_id=ex.pbx_id,
            run_id=ex.run_id,
            plan=plan,
            apply_deletes=not hold,
            known_failures=set(known),
            scope_failures=[
                {
                    "entra_id": f["entra_id"],
                    "display_name": f["name"],
                    "code": f["code"],
                    "message": f["message"],
                }
                for f in fetched.failures
            ],
            settled=settled,
        )
        if hold:
            await ex.hold(session)
            ex.report.plan = {
                **(ex.report.plan or {}),
                HELD_KEY: sorted(d.contact.id for d in plan.deletes),
            }
        await _save_state(session, ex.pbx_id, fetched, links, full=full)
        await ex.next_listing(session, SECTION, full=hold)
        ex.timings["contacts_apply"] = time.perf_counter() - t2
    for action, n in (
        ("create", len(plan.creates)),
        ("update", len(plan.updates)),
        ("delete", 0 if hold else plan.deletions()),
    ):
        if n:
            metrics.sync_objects.labels(SCOPE, action).inc(n)
