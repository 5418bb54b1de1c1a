"""The contacts scope of a run: fetch (Graph) → plan (pure) → guard → apply (one transaction) →
report. One entry point, `sync_contacts(executor)`, which the run executor calls.

Personal contacts: every synced user in the contacts range (all synced users, or the synced users
in the chosen groups, transitively; group members who are not synced users are reported, never
added). Shared mailboxes: the chosen ones, or every shared mailbox.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.db import session_scope, utcnow
from app.directory import repository as directory_repo
from app.integration.models import SyncRule
from app.integration.schemas import ContactsSyncRules
from app.sync import repository as repo
from app.sync.apply_contacts import SCOPE, apply_contacts
from app.sync.fetch_contacts import (
    LINK_PREFIX,
    MAILBOX_DENIED,
    Fetched,
    fetch,
    link_resource,
)
from app.sync.guard import over_bounds
from app.sync.plan_contacts import (
    ContactsInput,
    ContactsPlan,
    PbxContact,
    PbxPhonebook,
    owners_needed,
    plan_contacts,
)

if TYPE_CHECKING:
    from app.sync.engine import RunExecutor

# run.plan key: the ids of the contacts whose deletion is held.
HELD_KEY = "contacts_held"
SUMMARY_MAX = 1000


async def current_state(
    session: AsyncSession, pbx_id: str, inp: ContactsInput
) -> tuple[list[PbxPhonebook], dict[str, list[PbxContact]], set[str]]:
    books = [PbxPhonebook(*row) for row in await directory_repo.phonebooks(session, pbx_id)]
    holders = await directory_repo.personal_contact_holders(session, pbx_id)
    owners = owners_needed(inp, books, holders)
    held: dict[str, list[PbxContact]] = {}
    for row in await directory_repo.synced_contacts_of(session, pbx_id, owners):
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
                {"entra_id": c.entra_id, "owner_type": c.owner_kind, "owner": c.owner, **c.values}
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


def _report(executor: RunExecutor, plan: ContactsPlan, hold: bool, held_count: int) -> None:
    counts = plan.counts()
    if hold:
        counts["deleted"] = 0
    executor.report.counts[SCOPE] = counts
    executor.report.warnings += [
        {"scope": SCOPE, "source_id": w.source_id, "code": w.code, "message": w.message}
        for w in plan.warnings
    ]
    if hold:
        held = executor.report.held or {"extensions": [], "extension_groups": []}
        held["contacts"] = held_count
        held["phonebooks"] = [
            {"id": d.book.id, "name": d.book.name, "mailbox_id": d.book.entra_id}
            for d in plan.book_deletes
        ]
        executor.report.held = held


def _outstanding(
    known: dict[str, tuple[str, str, datetime]],
    settled: set[str],
    plan: ContactsPlan,
    fetched: Fetched,
    now: datetime,
) -> list[dict[str, Any]]:
    """Every failure of the scope still outstanding after this run, also those of contacts not
    re-read (the same rows the apply left in sync_failures)."""
    rows: dict[str, dict[str, Any]] = {}
    for entra_id, (code, message, failed_at) in known.items():
        if entra_id not in settled:
            rows[entra_id] = {
                "source_id": entra_id,
                "display_name": None,
                "code": code,
                "message": message,
                "first_failed_at": failed_at.isoformat(),
            }
    new = [(f.source_id, f.display_name, f.code, f.message) for f in plan.failures]
    new += [(f["entra_id"], f["name"], f["code"], f["message"]) for f in fetched.failures]
    for entra_id, name, code, message in new:
        rows[entra_id] = {
            "source_id": entra_id,
            "display_name": name,
            "code": code,
            "message": message,
            "first_failed_at": now.isoformat(),
        }
    return [
        {"scope": SCOPE, **row}
        for row in sorted(rows.values(), key=lambda r: (r["code"], r["source_id"]))
    ]


def _report_dry_run(executor: RunExecutor, plan: ContactsPlan) -> None:
    executor.report.counts[SCOPE] = plan.counts()
    executor.report.failures += [
        {
            "scope": SCOPE,
            "source_id": f.source_id,
            "display_name": f.display_name,
            "code": f.code,
            "message": f.message,
        }
        for f in plan.failures
    ]
    executor.report.plan = {**(executor.report.plan or {}), SCOPE: _summary(plan)}


async def _save_state(
    session: AsyncSession,
    pbx_id: str,
    fetched: Fetched,
    links: dict[str, str],
    *,
    full: bool,
    hold: bool,
) -> None:
    """Where the next run starts: delta links (saved only with the apply), and a full listing
    next time when deletions are held (they are not in the next delta round)."""
    if full:
        await repo.drop_delta_links(session, pbx_id, LINK_PREFIX)
    else:
        # Folders no longer read (their owner left the range) start over if they return.
        read_now = {link_resource(o) for o in (*fetched.users, *fetched.mailboxes)}
        await repo.drop_delta_resources(session, pbx_id, set(links) - read_now)
    await repo.save_delta_links(session, pbx_id, fetched.links, {} if full else links)
    rule_row = await session.get(SyncRule, (pbx_id, "contacts_sync"))
    if rule_row is not None:
        rule_row.needs_full_sync = hold


async def sync_contacts(executor: RunExecutor) -> None:
    runtime, pbx_id = executor.runtime, executor.pbx_id
    async with session_scope(runtime.sessionmaker) as session:
        section = await executor._section(session, "contacts_sync", SCOPE)
        if section is None:
            return
        rule, guard = section
        cfg = ContactsSyncRules.model_validate(rule.config)
        links = await repo.delta_links(session, pbx_id, LINK_PREFIX)
        known = await repo.failure_rows(session, pbx_id, SCOPE)
        synced = await directory_repo.synced_extension_ids_by_user(session, pbx_id)
        synced_books = {
            row[3]
            for row in await directory_repo.phonebooks(session, pbx_id)
            if row[2] == "entra" and row[3]
        }
    full = rule.needs_full_sync or executor.trigger in ("initial", "resync") or not links
    fetched = await executor._fetch(
        SCOPE,
        lambda progress: fetch(
            executor.graph,
            cfg,
            synced=synced,
            links=links,
            synced_books=synced_books,
            full=full,
            progress=progress,
        ),
        timing="contacts_fetch",
    )
    inp = ContactsInput(
        personal=fetched.personal,
        users=fetched.users,
        personal_enabled=cfg.personal.enabled,
        mailboxes=fetched.mailboxes,
        shared_enabled=cfg.shared.enabled,
    )
    from app.sync.engine import set_progress

    seen = sum(len(r.contacts) + len(r.removed) for r in fetched.personal.values())
    await set_progress(runtime, executor.run_id, "applying", seen, seen)
    async with session_scope(runtime.sessionmaker) as session:
        t1 = time.perf_counter()
        books, held, holders = await current_state(session, pbx_id, inp)
        plan = plan_contacts(inp, books, held, holders)
        executor.timings["contacts_plan"] = time.perf_counter() - t1
        deletions = plan.deletions()
        synced_count = await directory_repo.count_synced_contacts(session, pbx_id)
        hold = over_bounds(deletions, synced_count, guard)
        _report(executor, plan, hold, deletions)
        if executor.dry_run:
            _report_dry_run(executor, plan)
            return
        t2 = time.perf_counter()
        # Failures of mailboxes are re-evaluated on every run; those of contacts on full runs.
        settled = {k for k, f in known.items() if f[0] == MAILBOX_DENIED}
        if fetched.all_full:
            settled |= set(known)
        await apply_contacts(
            session,
            pbx_id=pbx_id,
            run_id=executor.run_id,
            plan=plan,
            apply_deletes=not hold,
            known_failures=set(known),
            scope_failures=[
                {"entra_id": f["entra_id"], "code": f["code"], "message": f["message"]}
                for f in fetched.failures
            ],
            settled=settled,
        )
        gone = settled | plan.settled | {d.contact.entra_id for d in plan.deletes}
        executor.report.failures += _outstanding(known, gone, plan, fetched, utcnow())
        if hold:
            await executor._hold(session)
            executor.report.plan = {
                **(executor.report.plan or {}),
                HELD_KEY: sorted(d.contact.id for d in plan.deletes),
            }
        await _save_state(session, pbx_id, fetched, links, full=full, hold=hold)
        executor.timings["contacts_apply"] = time.perf_counter() - t2
    for action, n in (
        ("create", len(plan.creates)),
        ("update", len(plan.updates)),
        ("delete", 0 if hold else deletions),
    ):
        if n:
            metrics.sync_objects.labels(SCOPE, action).inc(n)
