"""Reading groups from Graph: a full listing (with a fresh delta baseline) or a delta round.

Members are read per in-range group from `/groups/{id}/transitiveMembers` (paged, `$select=id`,
never `$expand`): users count as members, nested groups are remembered so that a membership
change inside a nested group re-expands every in-range group that contains it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.graph.client import GraphClient
from app.graph.errors import GraphError, batch_error
from app.runs.models import GROUP_NESTING
from app.sync.groups_model import GROUP_SELECT, EntraGroup
from app.sync.plan_groups import GroupInput, GroupRules, in_range

Progress = Callable[[int], Awaitable[None]]
PAGE_SIZE = 999
DELTA_RESOURCE = "groups"
# The tracking state beside the delta link: in-range group -> the groups nested in it.
NESTING_RESOURCE = GROUP_NESTING
# Delta items carry the properties the range depends on, and membership changes.
DELTA_SELECT = "displayName,groupTypes,securityEnabled,mailEnabled,members"
CONCURRENCY = 8
USER = "#microsoft.graph.user"
GROUP = "#microsoft.graph.group"


@dataclass
class GroupFetch:
    input: GroupInput
    delta_link: str | None
    full: bool
    # In-range group -> ids of the groups nested in it (transitively), for the next delta round.
    nesting: dict[str, list[str]]
    warnings: list[dict[str, str]] = field(default_factory=list)
    expanded: int = 0


async def _noop(_: int) -> None:
    return None


async def transitive_members(graph: GraphClient, group_id: str) -> tuple[set[str], set[str]]:
    """The users and nested groups of one group, transitively, page by page."""
    users: set[str] = set()
    nested: set[str] = set()
    async for page in graph.pages(
        f"groups/{group_id}/transitiveMembers", {"$select": "id", "$top": str(PAGE_SIZE)}
    ):
        for item in page.items:
            kind = item.get("@odata.type", USER)
            if kind == USER:
                users.add(item["id"])
            elif kind == GROUP:
                nested.add(item["id"])
    return users, nested


async def _expand(
    graph: GraphClient, groups: dict[str, EntraGroup], ids: Iterable[str], progress: Progress
) -> tuple[dict[str, EntraGroup], dict[str, list[str]], list[str]]:
    """Read the members of these groups, a few at a time. A group that vanished meanwhile is
    returned as gone."""
    wanted = sorted(set(ids))
    out: dict[str, EntraGroup] = {}
    nesting: dict[str, list[str]] = {}
    gone: list[str] = []
    limit = asyncio.Semaphore(CONCURRENCY)
    done = 0

    async def one(gid: str) -> None:
        nonlocal done
        async with limit:
            try:
                users, nested = await transitive_members(graph, gid)
            except GraphError as exc:
                if exc.status == 404:
                    gone.append(gid)
                    return
                raise
        g = groups[gid]
        out[gid] = EntraGroup(g.id, g.display_name, g.kind, frozenset(users))
        if nested:
            nesting[gid] = sorted(nested)
        done += 1
        await progress(done)

    # A task group: when one read fails for good, the others stop instead of reading on.
    try:
        async with asyncio.TaskGroup() as tasks:
            for gid in wanted:
                tasks.create_task(one(gid))
    except* GraphError as failed:
        raise failed.exceptions[0] from None
    return out, nesting, sorted(gone)


async def read_groups(
    graph: GraphClient, ids: Iterable[str]
) -> tuple[dict[str, EntraGroup], set[str]]:
    """Groups by id through $batch (20 a call): the ones found and the ids that are gone."""
    ordered = sorted(set(ids))
    found: dict[str, EntraGroup] = {}
    gone: set[str] = set()
    answers = await graph.get_each([f"/groups/{gid}?$select={GROUP_SELECT}" for gid in ordered])
    for gid, (status, body) in zip(ordered, answers, strict=True):
        if status == 200:
            found[gid] = EntraGroup.from_graph(body)
        elif status == 404:
            gone.add(gid)
        else:
            raise batch_error(status, body)
    return found, gone


async def fetch_groups(
    graph: GraphClient,
    rules: GroupRules,
    *,
    delta_link: str | None,
    full: bool,
    synced_ids: set[str],
    nesting: dict[str, list[str]],
    expand_ids: set[str] | None = None,
    progress: Progress = _noop,
) -> GroupFetch:
    """`synced_ids`: the Entra ids of the synced groups; `expand_ids`: groups whose members must
    be read again though Entra reports no change (their users just got extensions)."""
    warnings: list[dict[str, str]] = []
    if not full and delta_link:
        try:
            return await _delta(
                graph, rules, delta_link, synced_ids, nesting, expand_ids or set(), progress
            )
        except GraphError as exc:
            if not exc.sync_state_lost:
                raise
            warnings.append(
                {
                    "code": "delta_token_expired",
                    "message": "The delta token expired: a full listing was made.",
                }
            )
    result = await _full(graph, rules, synced_ids, progress)
    result.warnings = warnings + result.warnings
    return result


async def _baseline(graph: GraphClient) -> str | None:
    body = await graph.get("groups/delta", {"$select": DELTA_SELECT, "$deltatoken": "latest"})
    link = body.get("@odata.deltaLink")
    return str(link) if link else None


async def _full(
    graph: GraphClient, rules: GroupRules, synced_ids: set[str], progress: Progress
) -> GroupFetch:
    # The baseline first: changes made while we list come back in the next delta round.
    delta_link = await _baseline(graph)
    warnings: list[dict[str, str]] = []
    removed: dict[str, str] = {}
    if rules.range_mode == "groups":
        chosen = set(rules.group_ids)
        listed, gone = await read_groups(graph, chosen | synced_ids)
        warnings += [
            {
                "code": "range_group_missing",
                "message": f"Group {gid} of the group range no longer exists.",
            }
            for gid in sorted(gone & chosen)
        ]
        removed = dict.fromkeys(sorted(gone), "deleted")
    else:
        listed = {}
        async for page in graph.pages("groups", {"$select": GROUP_SELECT, "$top": str(PAGE_SIZE)}):
            for item in page.items:
                listed[item["id"]] = EntraGroup.from_graph(item)
    wanted = [gid for gid, g in listed.items() if in_range(g, rules)]
    expanded, nesting, vanished = await _expand(graph, listed, wanted, progress)
    listed.update(expanded)
    for gid in vanished:
        listed.pop(gid, None)
        removed[gid] = "deleted"
    return GroupFetch(
        GroupInput(groups=listed, removed=removed, full=True),
        delta_link,
        True,
        nesting,
        warnings,
        expanded=len(expanded),
    )


async def _delta(
    graph: GraphClient,
    rules: GroupRules,
    delta_link: str,
    synced_ids: set[str],
    nesting: dict[str, list[str]],
    expand_ids: set[str],
    progress: Progress,
) -> GroupFetch:
    listed: dict[str, EntraGroup] = {}
    removed: dict[str, str] = {}
    changed: set[str] = set()  # groups whose direct membership changed
    unread: set[str] = set()  # reported without their properties
    new_link: str | None = None
    async for page in graph.pages(delta_link):
        for item in page.items:
            gid = item["id"]
            gone: dict[str, Any] | None = item.get("@removed")
            # Replays happen: the last state of an object wins.
            if gone is not None:
                removed[gid] = str(gone.get("reason", "deleted"))
                listed.pop(gid, None)
                unread.discard(gid)
                continue
            removed.pop(gid, None)
            if item.get("members@delta"):
                changed.add(gid)
            if "displayName" in item:
                listed[gid] = EntraGroup.from_graph(item)
                unread.discard(gid)
            elif gid not in listed:
                unread.add(gid)
        new_link = page.delta_link or new_link
    # A change inside a group reaches every in-range group it is nested in.
    containing = {
        parent for parent, nested in nesting.items() if changed.intersection(nested)
    } - removed.keys()
    candidates = (changed | containing | set(expand_ids)) - removed.keys()
    # Groups reported but not followed yet may have come into range (new, retyped).
    candidates |= {gid for gid in listed if gid not in synced_ids}
    found, gone_ids = await read_groups(graph, (candidates | unread) - listed.keys())
    listed.update(found)
    for gid in gone_ids:
        removed[gid] = "deleted"
    wanted = [gid for gid in sorted(candidates) if gid in listed and in_range(listed[gid], rules)]
    expanded, new_nesting, vanished = await _expand(graph, listed, wanted, progress)
    listed.update(expanded)
    for gid in vanished:
        listed.pop(gid, None)
        removed[gid] = "deleted"
    nesting = {
        gid: nested
        for gid, nested in nesting.items()
        if gid not in removed
        and gid not in expanded
        and (gid not in listed or in_range(listed[gid], rules))
    }
    nesting.update(new_nesting)
    return GroupFetch(
        GroupInput(groups=listed, removed=removed, full=False),
        new_link,
        False,
        nesting,
        expanded=len(expanded),
    )


async def groups_of_users(graph: GraphClient, user_ids: Iterable[str]) -> set[str]:
    """Every group the users belong to, directly or through nesting."""
    found: set[str] = set()
    for uid in sorted(set(user_ids)):
        try:
            async for page in graph.pages(
                f"users/{uid}/transitiveMemberOf/microsoft.graph.group",
                {"$select": "id", "$top": str(PAGE_SIZE)},
            ):
                found.update(item["id"] for item in page.items)
        except GraphError as exc:
            if exc.status != 404:
                raise
    return found
