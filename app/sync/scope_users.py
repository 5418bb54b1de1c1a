"""The users scope: Entra users to extensions (fetch → plan → guard → apply → report)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.db import session_scope
from app.directory import repository as directory_repo
from app.runs import repository as runs_repo
from app.runs.models import SyncFailure
from app.runs.outbox import send_pending
from app.sync import steps
from app.sync.apply_users import apply_users
from app.sync.current import current_extensions, touched_extensions
from app.sync.fetch_users import GROUP_LINK_PREFIX, UserFetch, fetch_users
from app.sync.plan_users import UserPlan, plan_users
from app.sync.provision import run_on_demand
from app.sync.users_model import PbxExtension
from app.tenants import repository as tenants_repo
from app.tenants.models import Pbx

if TYPE_CHECKING:
    from app.sync.executor import RunExecutor

SCOPE = "users"
SECTION = "user_sync"


async def _worth_retrying(
    session: AsyncSession, pbx_id: str, failed: dict[str, SyncFailure], max_extensions: int
) -> set[str]:
    """Failed users whose obstacle is on the PBX side and is gone now: re-read them by id.
    (Failures that only Entra can fix come back through the delta round anyway.)"""
    if not failed:
        return set()
    numbers = await directory_repo.numbers_in_use(session, pbx_id)
    emails = await directory_repo.email_keys_in_use(session, pbx_id)
    free_seats = max_extensions - len(numbers)
    retry = set()
    for entra_id in sorted(failed):
        f = failed[entra_id]
        if f.code == "capacity_exceeded" and free_seats > 0:
            free_seats -= 1
            retry.add(entra_id)
        elif (f.code == "extension_number_taken" and f.conflict and f.conflict not in numbers) or (
            f.code == "email_taken" and f.conflict and f.conflict not in emails
        ):
            retry.add(entra_id)
    return retry


async def run(ex: RunExecutor) -> None:
    if ex.trigger != "on_demand":
        await _sync(ex)
    # Users provisioned on demand: their own plans, in this run (no deletion guard).
    await run_on_demand(ex)


async def _sync(ex: RunExecutor) -> None:
    rule = ex.rules.active(SECTION)
    rules = ex.rules.users
    if rule is None or rules is None:
        ex.report.warn(SCOPE, "section_not_active", "Users sync is not active.")
        return
    approved = ex.approved_ids("extensions")
    async with session_scope(ex.runtime.sessionmaker) as session:
        delta_link = await runs_repo.delta_link(session, ex.pbx_id, "users")
        failed = await runs_repo.failures(session, ex.pbx_id, SCOPE)
        pbx = await session.get(Pbx, ex.pbx_id)
        assert pbx is not None
        max_extensions = pbx.max_extensions
        full = ex.full(rule) or delta_link is None or approved is not None
        managed_ids: set[str] = set()
        retry: set[str] = set()
        group_links: dict[str, str] = {}
        if not full:
            if rules.range_mode == "groups":
                managed_ids = await directory_repo.synced_entra_ids(session, ex.pbx_id)
                group_links = await runs_repo.delta_links(session, ex.pbx_id, GROUP_LINK_PREFIX)
            retry = await _worth_retrying(session, ex.pbx_id, failed, max_extensions)
    fetched = await ex.fetch(
        SCOPE,
        lambda progress: fetch_users(
            ex.graph,
            rules,
            delta_link=delta_link,
            full=full,
            retry_ids=retry,
            managed_ids=managed_ids,
            progress=progress,
            group_links=group_links,
            failed_ids=set(failed),
        ),
        timing="fetch",
    )
    seen = len(fetched.input.users) + len(fetched.input.removed)
    await steps.set_progress(ex.runtime, ex.run_id, "applying", seen, seen)

    async with session_scope(ex.runtime.sessionmaker) as session:
        # Seats are counted and taken under the PBX row's lock (API creates wait).
        await tenants_repo.lock_seats(session, ex.pbx_id)
        t1 = time.perf_counter()
        current, numbers, seats, synced = await _snapshot(session, ex.pbx_id, fetched)

        # The planner is pure and CPU-bound (about 1 s at 100k users): in a thread, the event
        # loop keeps serving requests and the other runs meanwhile.
        def planned(free_deleted: bool) -> Awaitable[UserPlan]:
            return asyncio.to_thread(
                plan_users,
                fetched.input,
                current,
                rules,
                max_extensions,
                free_deleted=free_deleted,
                numbers_in_use=numbers,
                seats_used=seats,
            )

        plan = await planned(True)
        ex.timings["plan"] = time.perf_counter() - t1
        hold = steps.guard(
            SCOPE, {r.ext.id for r in plan.deletes}, synced, ex.rules.guard, approved
        )
        if hold:
            # Held deletions keep their numbers, seats and addresses until approved.
            plan = await planned(False)
        _report(ex, plan, hold)
        if ex.dry_run:
            ex.report.plan = {**(ex.report.plan or {}), "users": plan_summary(plan)}
            return
        t2 = time.perf_counter()
        created = await apply_users(
            session,
            pbx_id=ex.pbx_id,
            run_id=ex.run_id,
            plan=plan,
            apply_deletes=not hold,
            send_welcome=rules.send_welcome_email,
            mail_configured=ex.runtime.settings.smtp_url is not None,
            known_failures=set(failed),
        )
        if hold:
            await ex.hold(session)
        _changed(ex, plan, hold)
        await _save_links(session, ex.pbx_id, fetched, groups_range=rules.range_mode == "groups")
        await ex.next_listing(session, SECTION, full=hold)
        ex.timings["apply"] = time.perf_counter() - t2
    _count(created, plan, hold)
    if created and rules.send_welcome_email:
        await send_pending(ex.runtime, ex.pbx_id)


def _changed(ex: RunExecutor, plan: UserPlan, hold: bool) -> None:
    """What the groups scope follows in the same run: new synced users, and whether any left."""
    ex.new_synced_users = {c.entra_id for c in plan.creates} | {
        u.entra_id for u in plan.updates if u.associate
    }
    ex.users_changed = bool(ex.new_synced_users or plan.releases or (plan.deletes and not hold))


def _count(created: int, plan: UserPlan, hold: bool) -> None:
    for action, n in (
        ("create", created),
        ("update", len(plan.updates)),
        ("delete", 0 if hold else len(plan.deletes)),
    ):
        if n:
            metrics.sync_objects.labels("users", action).inc(n)


async def _snapshot(
    session: AsyncSession, pbx_id: str, fetched: UserFetch
) -> tuple[list[PbxExtension], set[str] | None, int | None, int]:
    """The extensions the plan compares against, the numbers and seats in use (None: the plan
    counts them from a full snapshot), and how many extensions are synced."""
    if fetched.full:
        current = await current_extensions(session, pbx_id)
        synced = sum(1 for e in current if e.managed_by == "entra")
        return current, None, None, synced
    # An incremental run reads only the extensions its users touch.
    ids = set(fetched.input.users) | set(fetched.input.removed)
    emails = {(u.mail or u.upn or "").lower() for u in fetched.input.users.values()} - {""}
    current = await touched_extensions(session, pbx_id, ids, emails)
    numbers = await directory_repo.numbers_in_use(session, pbx_id)
    synced = await directory_repo.count_synced(session, pbx_id)
    return current, numbers, len(numbers), synced


async def _save_links(
    session: AsyncSession, pbx_id: str, fetched: UserFetch, *, groups_range: bool
) -> None:
    if fetched.delta_link:
        await runs_repo.save_delta_link(session, pbx_id, "users", fetched.delta_link)
    if fetched.replace_group_links or not groups_range:
        await runs_repo.drop_delta_links(session, pbx_id, GROUP_LINK_PREFIX)
    for resource, link in fetched.group_links.items():
        await runs_repo.save_delta_link(session, pbx_id, resource, link)


def _report(ex: RunExecutor, plan: UserPlan, hold: bool) -> None:
    counts = plan.counts()
    if hold:
        counts["deleted"] = 0
    ex.report.counts["users"] = counts
    ex.report.failures += steps.failure_rows(SCOPE, plan.failures)
    if hold:
        ex.report.hold(
            "extensions",
            [
                {
                    "id": r.ext.id,
                    "number": r.ext.number,
                    "entra_id": r.ext.entra_id,
                    "reason": r.reason,
                }
                for r in plan.deletes
            ],
        )


def plan_summary(plan: UserPlan) -> dict[str, Any]:
    return {
        "creates": [
            {
                "entra_id": c.entra_id,
                "number": c.number,
                "display_name": c.display_name,
                "email": c.email,
            }
            for c in plan.creates
        ],
        "updates": [
            {
                "extension_id": u.ext.id,
                "entra_id": u.entra_id,
                "associate": u.associate,
                "fields": {k: list(v) for k, v in u.fields.items()},
            }
            for u in plan.updates
        ],
        "deletes": [
            {"extension_id": r.ext.id, "entra_id": r.ext.entra_id, "reason": r.reason}
            for r in plan.deletes
        ],
        "releases": [
            {"extension_id": r.ext.id, "entra_id": r.ext.entra_id, "reason": r.reason}
            for r in plan.releases
        ],
    }
