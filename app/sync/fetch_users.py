"""Reading users from Graph: a full listing (with a fresh delta baseline) or a delta round."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.graph.client import GraphClient
from app.graph.errors import GraphError, batch_error
from app.sync.plan_users import UserInput, UserRules
from app.sync.users_model import EntraUser, user_select

log = logging.getLogger("pbx_entra.sync")
Progress = Callable[[int], Awaitable[None]]
PAGE_SIZE = 999


GROUP_LINK_PREFIX = "users:groups:"
GROUP_FILTER_MAX = 50  # ids per $filter of a groups delta query (group-delta.md)


@dataclass
class UserFetch:
    input: UserInput
    delta_link: str | None
    full: bool
    warnings: list[dict[str, str]] = field(default_factory=list)
    # Delta links following the range groups' membership (range "groups" only), by resource
    # name; `replace_group_links` when they were taken anew (the tracked groups changed).
    group_links: dict[str, str] = field(default_factory=dict)
    replace_group_links: bool = False


async def _noop(_: int) -> None:
    return None


async def read_by_ids(
    graph: GraphClient, ids: list[str], select: str, number_property: str | None
) -> tuple[dict[str, EntraUser], dict[str, str]]:
    """Users by id through $batch (20 a call); a 404 means the user is gone."""
    found: dict[str, EntraUser] = {}
    gone: dict[str, str] = {}
    answers = await graph.get_each([f"/users/{uid}?$select={select}" for uid in ids])
    for uid, (status, body) in zip(ids, answers, strict=True):
        if status == 200:
            found[uid] = EntraUser.from_graph(body, number_property)
        elif status == 404:
            gone[uid] = "deleted"
        else:
            raise batch_error(status, body)
    return found, gone


async def group_members(
    graph: GraphClient, group_ids: list[str]
) -> tuple[set[str], set[str], list[str]]:
    """Transitive members of the groups (nested groups count): the users, the nested groups,
    and the ids of groups that no longer exist. Paged, never `$expand`ed."""
    members: set[str] = set()
    nested: set[str] = set()
    missing: list[str] = []
    for gid in group_ids:
        try:
            async for page in graph.pages(
                f"groups/{gid}/transitiveMembers",
                {"$select": "id", "$top": str(PAGE_SIZE)},
            ):
                for item in page.items:
                    if item.get("@odata.type") == "#microsoft.graph.group":
                        nested.add(item["id"])
                    elif (
                        item.get("@odata.type", "#microsoft.graph.user") == "#microsoft.graph.user"
                    ):
                        members.add(item["id"])
        except GraphError as exc:
            if exc.status == 404:
                missing.append(gid)
                continue
            raise
    return members, nested, missing


async def group_baselines(graph: GraphClient, group_ids: list[str]) -> dict[str, str]:
    """Delta links ("from now") following these groups' members, 50 groups a link."""
    links: dict[str, str] = {}
    for n, start in enumerate(range(0, len(group_ids), GROUP_FILTER_MAX)):
        chunk = group_ids[start : start + GROUP_FILTER_MAX]
        body = await graph.get(
            "groups/delta",
            {
                "$filter": " or ".join(f"id eq '{gid}'" for gid in chunk),
                "$select": "members",
                "$deltatoken": "latest",
            },
        )
        links[f"{GROUP_LINK_PREFIX}{n}"] = str(body["@odata.deltaLink"])
    return links


async def fetch_users(
    graph: GraphClient,
    rules: UserRules,
    *,
    delta_link: str | None,
    full: bool,
    retry_ids: set[str],
    managed_ids: set[str],
    progress: Progress = _noop,
    group_links: dict[str, str] | None = None,
    failed_ids: set[str] | None = None,
) -> UserFetch:
    number_property = rules.number_property if rules.number_mode == "property" else None
    select = user_select(rules.number_mode, rules.number_property)
    warnings: list[dict[str, str]] = []
    if not full and delta_link:
        try:
            return await _delta(
                graph,
                rules,
                delta_link,
                select,
                number_property,
                retry_ids,
                managed_ids,
                progress,
                group_links or {},
                failed_ids or set(),
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
    result = await _full(graph, rules, select, number_property, progress)
    result.warnings = warnings + result.warnings
    return result


async def _full(
    graph: GraphClient,
    rules: UserRules,
    select: str,
    number_property: str | None,
    progress: Progress,
) -> UserFetch:
    # The baseline first: changes made while we list come back in the next delta round.
    baseline = await graph.get("users/delta", {"$deltatoken": "latest", "$select": select})
    delta_link = baseline.get("@odata.deltaLink")
    users: dict[str, EntraUser] = {}
    async for page in graph.pages("users", {"$select": select, "$top": str(PAGE_SIZE)}):
        for item in page.items:
            users[item["id"]] = EntraUser.from_graph(item, number_property)
        await progress(len(users))
    result = UserFetch(UserInput(users=users, full=True), delta_link, True)
    await _expand_range(graph, rules, result)
    return result


async def _expand_range(graph: GraphClient, rules: UserRules, result: UserFetch) -> None:
    """Range "groups": every range group expanded (transitively), and delta links taken anew
    on the range groups and their nested groups."""
    if rules.range_mode != "groups":
        return
    range_ids = sorted(rules.group_ids)
    members, nested, missing = await group_members(graph, range_ids)
    result.warnings += [
        {
            "code": "range_group_missing",
            "message": f"Group {gid} of the user range no longer exists.",
        }
        for gid in missing
    ]
    tracked = sorted((set(range_ids) - set(missing)) | nested)
    result.group_links = await group_baselines(graph, tracked)
    result.replace_group_links = True
    result.input = UserInput(
        users=result.input.users,
        removed=result.input.removed,
        in_groups=frozenset(members),
        full=result.input.full,
    )


@dataclass
class MembershipChanges:
    added: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    # A group joined or left a tracked group, or a tracked group went away.
    structural: bool = False
    links: dict[str, str] = field(default_factory=dict)


async def _membership_changes(graph: GraphClient, links: dict[str, str]) -> MembershipChanges:
    out = MembershipChanges(structural=not links)
    for name, link in sorted(links.items()):
        new_link = link
        async for page in graph.pages(link):
            for item in page.items:
                if item.get("@removed") is not None:
                    out.structural = True
                for member in item.get("members@delta", []):
                    if member.get("@odata.type") == "#microsoft.graph.group":
                        out.structural = True
                    elif member.get("@removed") is not None:
                        out.removed.add(member["id"])
                    else:
                        out.added.add(member["id"])
            new_link = page.delta_link or new_link
        out.links[name] = new_link
    return out


async def _still_in_range(graph: GraphClient, user_id: str, range_ids: frozenset[str]) -> bool:
    try:
        async for page in graph.pages(
            f"users/{user_id}/transitiveMemberOf/microsoft.graph.group",
            {"$select": "id", "$top": "999"},
        ):
            if any(item["id"] in range_ids for item in page.items):
                return True
    except GraphError as exc:
        if exc.status != 404:
            raise
        # The user is gone (deleted): out of every group; its removal comes with the delta.
    return False


async def _delta(
    graph: GraphClient,
    rules: UserRules,
    delta_link: str,
    select: str,
    number_property: str | None,
    retry_ids: set[str],
    managed_ids: set[str],
    progress: Progress,
    group_links: dict[str, str],
    failed_ids: set[str],
) -> UserFetch:
    users: dict[str, EntraUser] = {}
    removed: dict[str, str] = {}
    new_link: str | None = None
    async for page in graph.pages(delta_link):
        for item in page.items:
            uid = item["id"]
            gone: dict[str, Any] | None = item.get("@removed")
            # Replays happen: the last state of an object wins.
            if gone is not None:
                removed[uid] = str(gone.get("reason", "deleted"))
                users.pop(uid, None)
            else:
                users[uid] = EntraUser.from_graph(item, number_property)
                removed.pop(uid, None)
        new_link = page.delta_link or new_link
        await progress(len(users) + len(removed))
    result = UserFetch(UserInput(users=users, removed=removed, full=False), new_link, False)
    # Re-read by id: last run's failures whose obstacle is gone (a freed number or seat), and
    # users whose group membership moved them into or out of the range.
    wanted = set(retry_ids)
    if rules.range_mode == "groups":
        changes = await _membership_changes(graph, group_links)
        if changes.structural:
            # Nested groups changed: expand the range again and follow the new set of groups.
            await _expand_range(graph, rules, result)
            assert result.input.in_groups is not None
            wanted |= set(result.input.in_groups) ^ managed_ids
        else:
            result.group_links = changes.links
            entering = changes.added - managed_ids
            leaving = {
                uid
                # Users with an extension or an outstanding failure: both must be settled.
                for uid in sorted((changes.removed - changes.added) & (managed_ids | failed_ids))
                if not await _still_in_range(graph, uid, rules.group_ids)
            }
            in_groups = (managed_ids | failed_ids | changes.added) - leaving
            result.input = UserInput(
                users=users, removed=removed, in_groups=frozenset(in_groups), full=False
            )
            wanted |= entering | leaving
    wanted -= users.keys() | removed.keys()
    found, gone_ids = await read_by_ids(graph, sorted(wanted), select, number_property)
    users.update(found)
    removed.update(gone_ids)
    return result
