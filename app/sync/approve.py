"""Approving held deletions: re-plan against the current directory, delete only what was held."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, ProblemError
from app.graph.auth import TokenError
from app.graph.errors import GraphError
from app.integration import repository as integ_repo
from app.integration.tokens import graph_for
from app.runtime import Runtime
from app.sync.apply_users import apply_users
from app.sync.engine import current_extensions, user_rules
from app.sync.fetch_users import fetch_users
from app.sync.models import SyncRun
from app.sync.plan_users import UserPlan, plan_users
from app.tenants.models import Pbx


async def approve_held(session: AsyncSession, runtime: Runtime, run: SyncRun) -> None:
    held_ids = {e["id"] for e in (run.held or {}).get("extensions", [])}
    rules_rows = await integ_repo.rules(session, run.pbx_id)
    rule = rules_rows.get("user_sync")
    if rule is None or rule.state != "active":
        raise Conflict(
            "User sync is not active: nothing can be approved.", code="section_not_active"
        )
    rules = user_rules(rule.config)
    pbx = await session.get(Pbx, run.pbx_id)
    assert pbx is not None
    try:
        fetched = await fetch_users(
            graph_for(runtime, run.pbx_id),
            rules,
            delta_link=None,
            full=True,
            retry_ids=set(),
            managed_ids=set(),
        )
    except (GraphError, TokenError) as exc:
        raise ProblemError(
            f"The directory could not be read: {exc}", status=502, code="graph_error"
        ) from None
    plan = plan_users(
        fetched.input, await current_extensions(session, run.pbx_id), rules, pbx.max_extensions
    )
    now_ids = {r.ext.id for r in plan.deletes}
    grown = sorted(now_ids - held_ids)
    if grown:
        raise Conflict(
            f"{len(grown)} more extensions would be deleted now than were held; run a new sync.",
            code="plan_stale",
            extra_deletions=len(grown),
        )
    await apply_users(
        session,
        pbx_id=run.pbx_id,
        run_id=run.id,
        plan=UserPlan(deletes=plan.deletes),
        apply_deletes=True,
        send_welcome=False,
        mail_configured=False,
    )
    counts = dict((run.counts or {}).get("users", {}))
    counts["deleted"] = counts.get("deleted", 0) + len(plan.deletes)
    run.counts = {**(run.counts or {}), "users": counts}
    run.held = {**(run.held or {}), "decision": "approved", "deleted": len(plan.deletes)}
    run.status = "partial" if run.failures else "succeeded"
