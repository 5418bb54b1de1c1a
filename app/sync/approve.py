"""Approving held deletions: re-plan against the current directory, delete only what was held
(409 `plan_stale` when the deletions grew since), for extensions and extension groups alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, ProblemError
from app.graph.auth import TokenError
from app.graph.errors import GraphError
from app.integration import repository as integ_repo
from app.integration.tokens import graph_for
from app.runtime import Runtime
from app.sync.apply_groups import apply_groups
from app.sync.apply_users import apply_users
from app.sync.approve_contacts import approve_contacts
from app.sync.engine import (
    current_extensions,
    current_groups,
    group_rules,
    synced_extension_map,
    user_rules,
)
from app.sync.fetch_groups import fetch_groups
from app.sync.fetch_users import fetch_users
from app.sync.models import SyncRun
from app.sync.plan_groups import GroupPlan, plan_groups
from app.sync.plan_users import UserPlan, plan_users
from app.sync.scope_contacts import HELD_KEY
from app.tenants.models import Pbx


def _stale(grown: list[str], what: str) -> Conflict:
    return Conflict(
        f"{len(grown)} more {what} would be deleted now than were held; run a new sync.",
        code="plan_stale",
        extra_deletions=len(grown),
    )


async def approve_held(session: AsyncSession, runtime: Runtime, run: SyncRun) -> None:
    held: dict[str, Any] = run.held or {}
    pbx = await session.get(Pbx, run.pbx_id)
    assert pbx is not None
    rules_rows = await integ_repo.rules(session, run.pbx_id)
    graph = graph_for(runtime, run.pbx_id)
    counts = dict(run.counts or {})
    user_plan: UserPlan | None = None
    group_plan: GroupPlan | None = None
    try:
        held_exts = {e["id"] for e in held.get("extensions", [])}
        if held_exts:
            rule = rules_rows.get("user_sync")
            if rule is None or rule.state != "active":
                raise Conflict(
                    "User sync is not active: nothing can be approved.", code="section_not_active"
                )
            rules = user_rules(rule.config)
            fetched = await fetch_users(
                graph, rules, delta_link=None, full=True, retry_ids=set(), managed_ids=set()
            )
            plan = plan_users(
                fetched.input,
                await current_extensions(session, run.pbx_id),
                rules,
                pbx.max_extensions,
            )
            grown = sorted({r.ext.id for r in plan.deletes} - held_exts)
            if grown:
                raise _stale(grown, "extensions")
            user_plan = UserPlan(deletes=plan.deletes)
        held_groups = {g["id"] for g in held.get("extension_groups", [])}
        if held_groups:
            rule = rules_rows.get("group_sync")
            if rule is None or rule.state != "active":
                raise Conflict(
                    "Group sync is not active: nothing can be approved.", code="section_not_active"
                )
            grules = group_rules(rule.config)
            current = await current_groups(session, run.pbx_id)
            synced = {g.entra_id for g in current if g.managed_by == "entra" and g.entra_id}
            gfetched = await fetch_groups(
                graph, grules, delta_link=None, full=True, synced_ids=synced, nesting={}
            )
            gplan = plan_groups(
                gfetched.input,
                current,
                await synced_extension_map(session, run.pbx_id),
                grules,
                pbx.max_extension_groups,
            )
            grown = sorted({r.group.id for r in gplan.deletes} - held_groups)
            if grown:
                raise _stale(grown, "extension groups")
            group_plan = GroupPlan(deletes=gplan.deletes)
        held_contacts = set((run.plan or {}).get(HELD_KEY, []))
        if held_contacts:
            deleted = await approve_contacts(session, graph, run, held_contacts)
            contacts = dict(counts.get("contacts", {}))
            contacts["deleted"] = contacts.get("deleted", 0) + deleted
            counts["contacts"] = contacts
    except (GraphError, TokenError) as exc:
        raise ProblemError(
            f"The directory could not be read: {exc}", status=502, code="graph_error"
        ) from None
    decided: dict[str, Any] = {"decision": "approved"}
    if user_plan is not None:
        await apply_users(
            session,
            pbx_id=run.pbx_id,
            run_id=run.id,
            plan=user_plan,
            apply_deletes=True,
            send_welcome=False,
            mail_configured=False,
        )
        users = dict(counts.get("users", {}))
        users["deleted"] = users.get("deleted", 0) + len(user_plan.deletes)
        counts["users"] = users
        decided["deleted"] = len(user_plan.deletes)
    if group_plan is not None:
        await apply_groups(
            session, pbx_id=run.pbx_id, run_id=run.id, plan=group_plan, apply_deletes=True
        )
        groups = dict(counts.get("groups", {}))
        groups["deleted"] = groups.get("deleted", 0) + len(group_plan.deletes)
        counts["groups"] = groups
        decided["deleted_groups"] = len(group_plan.deletes)
    run.counts = counts
    run.held = {**held, **decided}
    run.status = "partial" if run.failures else "succeeded"
