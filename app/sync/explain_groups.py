"""Why is this group (not) synced: one group's plan, step by step, by the sync's own planner."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.directory import repository as directory_repo
from app.errors import NotFound
from app.graph.client import GraphClient
from app.graph.errors import GraphError
from app.integration import repository as integ_repo
from app.runs import repository as repo
from app.sync.explain import GUID, PAGE_SIZE, connected_integration, section_step
from app.sync.groups_model import GROUP_SELECT, EntraGroup, PbxGroup
from app.sync.plan_groups import GroupInput, GroupPlan, plan_groups
from app.sync.schemas import (
    ExplainFailure,
    ExplainGroup,
    ExplainStep,
    GroupExplainOut,
    GroupMembers,
    GroupOutcome,
)
from app.sync.trace import Trace
from app.tenants.models import Pbx

FIRST_FEW = 5


async def _read_group(graph: GraphClient, query: str) -> tuple[dict[str, Any] | None, int]:
    """(the group, how many share its name) by id or displayName (one request)."""
    if GUID.match(query):
        try:
            return await graph.get(f"groups/{query}", {"$select": GROUP_SELECT}), 1
        except GraphError as exc:
            if exc.status in (400, 404):
                return None, 0
            raise
    quoted = query.replace("'", "''")
    body = await graph.get(
        "groups", {"$filter": f"displayName eq '{quoted}'", "$select": GROUP_SELECT, "$top": "20"}
    )
    items: list[dict[str, Any]] = sorted(body.get("value", []), key=lambda g: str(g["id"]))
    return (items[0] if items else None), len(items)


async def _members(graph: GraphClient, group_id: str) -> dict[str, str]:
    """Transitive user members: id -> display name."""
    users: dict[str, str] = {}
    async for page in graph.pages(
        f"groups/{group_id}/transitiveMembers",
        {"$select": "id,displayName", "$top": str(PAGE_SIZE)},
    ):
        for item in page.items:
            if item.get("@odata.type", "#microsoft.graph.user") == "#microsoft.graph.user":
                users[item["id"]] = str(item.get("displayName") or item["id"])
    return users


def _outcome(plan: GroupPlan, entra_id: str) -> GroupOutcome:
    for c in plan.creates:
        if c.entra_id == entra_id:
            return GroupOutcome(action="create", name=c.name, members_added=len(c.member_ids))
    for u in plan.updates:
        if u.entra_id == entra_id:
            return GroupOutcome(
                action="update",
                extension_group_id=u.group.id,
                name=u.name or u.group.name,
                members_added=len(u.added),
                members_removed=len(u.removed),
            )
    for action, removals in (("delete", plan.deletes), ("release", plan.releases)):
        for r in removals:
            if r.group.entra_id == entra_id:
                return GroupOutcome(
                    action=action,
                    extension_group_id=r.group.id,
                    name=r.group.name,
                )
    for f in plan.failures:
        if f.entra_id == entra_id:
            return GroupOutcome(action="fail", code=f.code)
    return GroupOutcome(action="nothing")


async def explain_group(
    session: AsyncSession, graph: GraphClient, pbx: Pbx, query: str
) -> GroupExplainOut:
    from app.sync.rules import group_rules

    integ = await connected_integration(session, pbx.id)
    rule = (await integ_repo.rules(session, pbx.id)).get("group_sync")
    rules = group_rules(rule.config if rule is not None else {})
    query = query.strip()
    item, sharing = await _read_group(graph, query)
    rows = await directory_repo.groups_without_members(session, pbx.id)
    entra_id = str(item["id"]) if item else (query.lower() if GUID.match(query) else None)
    follows = next(
        (g for g in rows if entra_id and entra_id in (g.entra_id, g.former_entra_id)), None
    )
    if item is None and follows is None:
        raise NotFound(
            f"No group {query!r} in Entra, and no extension group refers to it.",
            code="group_not_found",
        )
    assert entra_id is not None
    members: dict[str, str] | None = None
    steps = []
    if item is not None:
        detail = f"Found in Entra: {item.get('displayName')!r}."
        if sharing > 1:
            detail += f" {sharing} groups have this name; the first by id is explained."
        steps.append(ExplainStep(step="found", ok=True, detail=detail))
        members = await _members(graph, entra_id)
    else:
        steps.append(
            ExplainStep(
                step="found",
                ok=False,
                detail=f"Entra has no group {entra_id} (deleted); an extension group refers to it.",
                code="group_not_found",
            )
        )
    section = section_step(integ, rule, "Group sync")
    steps.append(section)
    synced = await directory_repo.synced_extensions_of(session, pbx.id, members or {})
    extensions = {str(e.entra_id): e.id for e in synced}
    member_ids = await directory_repo.members_of(session, [follows.id]) if follows else {}
    current = [
        PbxGroup(
            g.id,
            g.name,
            g.managed_by,
            g.entra_id,
            g.former_entra_id,
            frozenset(member_ids.get(g.id, [])),
        )
        for g in rows
    ]
    if item is not None:
        entra = EntraGroup.from_graph(item, frozenset(members or {}))
        inp = GroupInput(groups={entra_id: entra}, full=False)
    else:
        inp = GroupInput(groups={}, removed={entra_id: "deleted"}, full=False)
    trace = Trace([entra_id])
    plan = plan_groups(inp, current, extensions, rules, pbx.max_extension_groups, trace=trace)
    steps += [
        ExplainStep(step=v.step, ok=v.ok, detail=v.detail, code=v.code)
        for v in trace.steps[entra_id]
    ]
    summary = None
    if members is not None:
        names = {e.entra_id: " ".join(filter(None, [e.first_name, e.last_name])) for e in synced}
        with_ext = sorted(names.get(u) or members[u] for u in members if u in extensions)
        skipped = sorted(members[u] for u in members if u not in extensions)
        summary = GroupMembers(
            with_extension=len(with_ext),
            skipped=len(skipped),
            with_extension_first=with_ext[:FIRST_FEW],
            skipped_first=skipped[:FIRST_FEW],
        )
        steps.append(
            ExplainStep(
                step="members",
                ok=True,
                detail=f"{len(with_ext)} members have extensions; {len(skipped)} are skipped "
                "(no synced extension).",
            )
        )
    outcome = _outcome(plan, entra_id)
    if not section.ok:
        outcome = GroupOutcome(action="nothing", code=section.code, planned=outcome.action)
    failed = await repo.failure(session, pbx.id, "groups", entra_id)
    return GroupExplainOut(
        group=ExplainGroup(
            id=entra_id,
            display_name=str(item.get("displayName")) if item else None,
            type=EntraGroup.from_graph(item).kind if item else None,
            found=item is not None,
        ),
        steps=steps,
        members=summary,
        outcome=outcome,
        outstanding_failure=ExplainFailure(
            code=failed.code, message=failed.message, first_failed_at=failed.failed_at
        )
        if failed is not None
        else None,
    )
