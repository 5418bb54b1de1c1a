"""The groups scope: Entra groups to extension groups (fetch → plan → guard → apply → report)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from app import metrics
from app.db import session_scope
from app.runs import repository as runs_repo
from app.sync import steps
from app.sync.apply_groups import apply_groups
from app.sync.current import current_groups, synced_extension_map
from app.sync.fetch_groups import DELTA_RESOURCE, NESTING_RESOURCE, GroupFetch, fetch_groups
from app.sync.fetch_groups import groups_of_users as entra_groups_of_users
from app.sync.fetch_users import Progress
from app.sync.plan_groups import GroupPlan, plan_groups
from app.tenants import repository as tenants_repo
from app.tenants.models import Pbx

if TYPE_CHECKING:
    from app.sync.executor import RunExecutor

SCOPE = "groups"
SECTION = "group_sync"
# New synced users up to this many have their groups looked up one by one (transitiveMemberOf);
# more, and the group run lists every group again.
USER_LOOKUP_MAX = 50


async def run(ex: RunExecutor) -> None:
    rule = ex.rules.active(SECTION)
    rules = ex.rules.groups
    if rule is None or rules is None:
        ex.report.warn(SCOPE, "section_not_active", "Groups sync is not active.")
        return
    approved = ex.approved_ids("extension_groups")
    async with session_scope(ex.runtime.sessionmaker) as session:
        delta_link = await runs_repo.delta_link(session, ex.pbx_id, DELTA_RESOURCE)
        nesting_text = await runs_repo.delta_link(session, ex.pbx_id, NESTING_RESOURCE)
        failed = await runs_repo.failures(session, ex.pbx_id, SCOPE)
        pbx = await session.get(Pbx, ex.pbx_id)
        assert pbx is not None
        max_groups = pbx.max_extension_groups
        current = await current_groups(session, ex.pbx_id)
    synced_ids = {g.entra_id for g in current if g.managed_by == "entra" and g.entra_id}
    # Groups that failed for want of a seat are listed again once a seat is free.
    seat_freed = len(current) < max_groups and any(
        f.code == "group_limit_reached" for f in failed.values()
    )
    full = (
        ex.full(rule)
        or approved is not None
        or delta_link is None
        or nesting_text is None
        or seat_freed
        or len(ex.new_synced_users) > USER_LOOKUP_MAX
    )
    nesting: dict[str, list[str]] = json.loads(nesting_text) if nesting_text else {}

    async def read(progress: Progress) -> GroupFetch:
        expand: set[str] = set()
        if not full and ex.new_synced_users:
            expand = await entra_groups_of_users(ex.graph, ex.new_synced_users) & synced_ids
        return await fetch_groups(
            ex.graph,
            rules,
            delta_link=delta_link,
            full=full,
            synced_ids=synced_ids,
            nesting=nesting,
            expand_ids=expand,
            progress=progress,
        )

    fetched = await ex.fetch(SCOPE, read, timing="groups_fetch")
    seen = len(fetched.input.groups) + len(fetched.input.removed)
    await steps.set_progress(ex.runtime, ex.run_id, "applying", seen, seen)

    async with session_scope(ex.runtime.sessionmaker) as session:
        # Seats are counted and taken under the PBX row's lock (API creates wait).
        await tenants_repo.lock_seats(session, ex.pbx_id)
        t1 = time.perf_counter()
        # Read again inside the apply's transaction: the user scope may have just changed
        # the extensions (deleted ones left their groups with them).
        current = await current_groups(session, ex.pbx_id)
        extensions = await synced_extension_map(session, ex.pbx_id)
        # Pure and CPU-bound: in a thread, so the event loop keeps serving meanwhile.
        plan = await asyncio.to_thread(
            plan_groups, fetched.input, current, extensions, rules, max_groups
        )
        synced = sum(1 for g in current if g.managed_by == "entra")
        hold = steps.guard(
            SCOPE, {r.group.id for r in plan.deletes}, synced, ex.rules.guard, approved
        )
        if hold:
            # Held deletions keep their seats and names until approved.
            plan = await asyncio.to_thread(
                plan_groups,
                fetched.input,
                current,
                extensions,
                rules,
                max_groups,
                free_deleted=False,
            )
        ex.timings["groups_plan"] = time.perf_counter() - t1
        _report(ex, plan, hold)
        if ex.dry_run:
            ex.report.plan = {**(ex.report.plan or {}), "groups": plan_summary(plan)}
            return
        t2 = time.perf_counter()
        await apply_groups(
            session,
            pbx_id=ex.pbx_id,
            run_id=ex.run_id,
            plan=plan,
            apply_deletes=not hold,
            known_failures=set(failed),
        )
        if hold:
            await ex.hold(session)
        if fetched.delta_link:
            await runs_repo.save_delta_link(session, ex.pbx_id, DELTA_RESOURCE, fetched.delta_link)
            await runs_repo.save_delta_link(
                session,
                ex.pbx_id,
                NESTING_RESOURCE,
                json.dumps(fetched.nesting, sort_keys=True, separators=(",", ":")),
            )
        await ex.next_listing(session, SECTION, full=hold)
        ex.timings["groups_apply"] = time.perf_counter() - t2
    for action, n in (
        ("create", len(plan.creates)),
        ("update", len(plan.updates) + len(plan.releases)),
        ("delete", 0 if hold else len(plan.deletes)),
    ):
        if n:
            metrics.sync_objects.labels("groups", action).inc(n)


def _report(ex: RunExecutor, plan: GroupPlan, hold: bool) -> None:
    counts = plan.counts()
    if hold:
        counts["deleted"] = 0
    ex.report.counts["groups"] = counts
    ex.report.failures += steps.failure_rows(SCOPE, plan.failures)
    for w in plan.warnings:
        ex.report.warn(SCOPE, w.code, w.message, w.entra_id)
    if hold:
        ex.report.hold(
            "extension_groups",
            [
                {
                    "id": r.group.id,
                    "name": r.group.name,
                    "entra_id": r.group.entra_id,
                    "reason": r.reason,
                }
                for r in plan.deletes
            ],
        )


def plan_summary(plan: GroupPlan) -> dict[str, Any]:
    return {
        "creates": [
            {"entra_id": c.entra_id, "name": c.name, "member_ids": list(c.member_ids)}
            for c in plan.creates
        ],
        "updates": [
            {
                "extension_group_id": u.group.id,
                "entra_id": u.entra_id,
                "adopt": u.adopt,
                "name": [u.group.name, u.name] if u.name is not None else None,
                "members_added": list(u.added),
                "members_removed": list(u.removed),
            }
            for u in plan.updates
        ],
        "deletes": [
            {"extension_group_id": r.group.id, "entra_id": r.group.entra_id, "reason": r.reason}
            for r in plan.deletes
        ],
        "releases": [
            {"extension_group_id": r.group.id, "entra_id": r.group.entra_id, "reason": r.reason}
            for r in plan.releases
        ],
    }
