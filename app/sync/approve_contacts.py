"""Approving held contact deletions: re-read everything, re-plan against the PBX as it is now,
and delete only what was held."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.directory import repository as directory_repo
from app.errors import Conflict
from app.graph.client import GraphClient
from app.integration import repository as integ_repo
from app.integration.schemas import ContactsSyncRules
from app.sync.apply_contacts import apply_contacts
from app.sync.fetch_contacts import fetch
from app.sync.plan_contacts import ContactsInput, ContactsPlan, plan_contacts
from app.sync.scope_contacts import current_state


async def approve_contacts(
    session: AsyncSession, graph: GraphClient, run: Any, held_ids: set[str]
) -> int:
    """Held contact deletions approved: re-read everything and re-plan against the PBX as it is
    now; delete only when the deletions did not grow (409 plan_stale otherwise)."""
    rule = (await integ_repo.rules(session, run.pbx_id)).get("contacts_sync")
    if rule is None or rule.state != "active":
        raise Conflict(
            "Contacts sync is not active: nothing can be approved.", code="section_not_active"
        )
    cfg = ContactsSyncRules.model_validate(rule.config)
    synced = await directory_repo.synced_extension_ids_by_user(session, run.pbx_id)
    books = await directory_repo.phonebooks(session, run.pbx_id)

    async def quiet(_: int) -> None:
        return None

    fetched = await fetch(
        graph,
        cfg,
        synced=synced,
        links={},
        synced_books={b[3] for b in books if b[2] == "entra" and b[3]},
        full=True,
        progress=quiet,
    )
    inp = ContactsInput(
        personal=fetched.personal,
        users=fetched.users,
        personal_enabled=cfg.personal.enabled,
        mailboxes=fetched.mailboxes,
        shared_enabled=cfg.shared.enabled,
    )
    current_books, held, holders = await current_state(session, run.pbx_id, inp)
    plan = plan_contacts(inp, current_books, held, holders)
    grown = sorted({d.contact.id for d in plan.deletes} - held_ids)
    if grown:
        raise Conflict(
            f"{len(grown)} more contacts would be deleted now than were held; run a new sync.",
            code="plan_stale",
            extra_deletions=len(grown),
        )
    only = ContactsPlan(deletes=plan.deletes, book_deletes=plan.book_deletes)
    await apply_contacts(
        session,
        pbx_id=run.pbx_id,
        run_id=run.id,
        plan=only,
        apply_deletes=True,
        known_failures=set(),
        scope_failures=[],
        settled=set(),
    )
    return len(plan.deletes)
