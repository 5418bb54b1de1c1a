"""Provision on demand: one user's plan applied now, as a queued run (`trigger: "on_demand"`).

The request queues the run (or folds into the one waiting, which then covers the user); the
worker reads each such user by id, plans it with the sync's planner alone, and applies it
without the deletion guard (one user is no mass deletion). A held run blocks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import session_scope
from app.errors import Conflict, NotFound
from app.graph.client import GraphClient
from app.integration import repository as integ_repo
from app.runs import queue
from app.runs import repository as repo
from app.runs.models import SyncRun
from app.runs.outbox import send_pending
from app.sync.apply_users import apply_users
from app.sync.explain import Subject, pbx_side, plan_one, read_subject, read_user_by_id, user_groups
from app.sync.plan_users import UserPlan, UserRules
from app.sync.rules import user_rules
from app.sync.steps import ScopeFailed, failure_rows
from app.tenants.models import Pbx

if TYPE_CHECKING:
    from app.sync.executor import RunExecutor

# Where a run keeps the users it must provision (the run's plan JSON).
PLAN_KEY = "on_demand_users"


def on_demand_users(plan: dict[str, Any] | None) -> list[str]:
    return list((plan or {}).get(PLAN_KEY, []))


async def queue_on_demand(
    session: AsyncSession, pbx_id: str, user_ids: list[str]
) -> tuple[SyncRun, bool]:
    """The one place an on-demand run is queued: a new run, or the waiting one, which then
    covers these users too."""
    run, created = await queue.request_run(
        session, pbx_id, "on_demand", ["users"], plan={PLAN_KEY: sorted(set(user_ids))}
    )
    if not created:
        plan = dict(run.plan or {})
        plan[PLAN_KEY] = sorted(set(plan.get(PLAN_KEY, [])) | set(user_ids))
        run.plan = plan
        await session.flush()
    return run, created


async def request_provision(
    session: AsyncSession, graph: GraphClient, pbx: Pbx, query: str
) -> tuple[SyncRun, bool]:
    integ = await integ_repo.get(session, pbx.id, for_update=True)
    if integ is not None and integ.status == "disabled":
        raise Conflict("The integration is disabled.", code="integration_disabled")
    if integ is None or integ.status != "connected":
        raise Conflict("Sync needs a connected integration.", code="integration_not_connected")
    rule = (await integ_repo.rules(session, pbx.id)).get("user_sync")
    if rule is not None and rule.state == "paused":
        raise Conflict("User sync is paused.", code="sync_paused")
    if rule is None or rule.state != "active":
        raise Conflict("User sync is not active.", code="section_not_active", scopes=["users"])
    if integ.held_run_id:
        raise Conflict(
            f"Run {integ.held_run_id} holds deletions: approve or reject it first.",
            code="run_held",
            held_run_id=integ.held_run_id,
        )
    rules = user_rules(rule.config)
    subject = await read_subject(session, graph, pbx.id, rules, query)
    if subject.entra_id is None or (
        subject.user is None and not (await pbx_side(session, pbx.id, rules, subject)).current
    ):
        raise NotFound(
            f"No user {query!r} in Entra, and no extension refers to it.", code="user_not_found"
        )
    return await queue_on_demand(session, pbx.id, [subject.entra_id])


# The worker's side ---------------------------------------------------------------------------


@dataclass
class _Read:
    subjects: list[Subject]
    warnings: list[dict[str, str]] = field(default_factory=list)


async def _read(graph: GraphClient, rules: UserRules, ids: list[str]) -> _Read:
    out = _Read([])
    for uid in ids:
        subject = Subject(uid, uid)
        found = await read_user_by_id(graph, rules, uid)
        if found is not None:
            subject.user, subject.raw = found
            if rules.range_mode == "groups":
                subject.groups = await user_groups(graph, uid)
        out.subjects.append(subject)
    return out


def _add_counts(total: dict[str, int], plan: UserPlan) -> None:
    for key, value in plan.counts().items():
        total[key] = total.get(key, 0) + value


async def run_on_demand(executor: RunExecutor) -> None:
    """Apply each on-demand user's own plan, in this run (one Graph read by id each)."""
    ids = on_demand_users(executor.plan_payload)
    if not ids:
        return
    runtime = executor.runtime
    rules = executor.rules.users
    if executor.rules.active("user_sync") is None or rules is None:
        return
    async with session_scope(runtime.sessionmaker) as session:
        integ = await integ_repo.get(session, executor.pbx_id)
        held = integ.held_run_id if integ is not None else None
        pbx = await session.get(Pbx, executor.pbx_id)
        assert pbx is not None
        max_extensions = pbx.max_extensions
    if held and held != executor.run_id:
        message = f"Run {held} holds deletions: on-demand users were not applied."
        if executor.trigger == "on_demand":
            raise ScopeFailed("run_held", message)
        executor.report.warn("users", "run_held", message)
        return
    read = await executor.fetch(
        "users", lambda _progress: _read(executor.graph, rules, ids), timing="fetch_on_demand"
    )
    counts: dict[str, int] = dict(executor.report.counts.get("users") or {})
    created_any = False
    for subject in read.subjects:
        async with session_scope(runtime.sessionmaker) as session:
            side = await pbx_side(session, executor.pbx_id, rules, subject)
            plan, _ = plan_one(subject, side, rules, max_extensions)
            assert subject.entra_id is not None
            known = (
                {subject.entra_id}
                if await repo.failure(session, executor.pbx_id, "users", subject.entra_id)
                else set()
            )
            created = await apply_users(
                session,
                pbx_id=executor.pbx_id,
                run_id=executor.run_id,
                plan=plan,
                apply_deletes=True,
                send_welcome=rules.send_welcome_email,
                mail_configured=runtime.settings.smtp_url is not None,
                known_failures=known,
            )
        created_any = created_any or created > 0
        if executor.trigger != "on_demand":
            # The run's own sync counted this user already, unless it changes it now.
            plan.unchanged = 0
        _add_counts(counts, plan)
        executor.report.failures = [
            f for f in executor.report.failures if f.get("source_id") != subject.entra_id
        ] + failure_rows("users", plan.failures)
        executor.new_synced_users |= {c.entra_id for c in plan.creates} | {
            u.entra_id for u in plan.updates if u.associate
        }
        executor.users_changed = executor.users_changed or bool(
            plan.creates or plan.releases or plan.deletes or any(u.associate for u in plan.updates)
        )
    executor.report.counts["users"] = counts
    if created_any and rules.send_welcome_email:
        await send_pending(runtime, executor.pbx_id)
