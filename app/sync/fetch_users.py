"""Reading users from Graph: a full listing (with a fresh delta baseline) or a delta round."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.graph.client import GraphClient
from app.graph.errors import GraphError
from app.sync.plan_users import UserInput, UserRules
from app.sync.users_model import EntraUser, user_select

log = logging.getLogger("pbx_entra.sync")
Progress = Callable[[int], Awaitable[None]]
PAGE_SIZE = 999


@dataclass
class UserFetch:
    input: UserInput
    delta_link: str | None
    full: bool
    warnings: list[dict[str, str]] = field(default_factory=list)


async def _noop(_: int) -> None:
    return None


async def read_by_ids(
    graph: GraphClient, ids: list[str], select: str, number_property: str | None
) -> tuple[dict[str, EntraUser], dict[str, str]]:
    """Users by id through $batch (20 a call); a 404 means the user is gone."""
    found: dict[str, EntraUser] = {}
    gone: dict[str, str] = {}
    if not ids:
        return found, gone
    requests = [
        {"id": str(i), "method": "GET", "url": f"/users/{uid}?$select={select}"}
        for i, uid in enumerate(ids)
    ]
    responses = await graph.batch(requests)
    for i, uid in enumerate(ids):
        resp = responses.get(str(i), {})
        status = int(resp.get("status", 0))
        if status == 200:
            found[uid] = EntraUser.from_graph(resp["body"], number_property)
        elif status == 404:
            gone[uid] = "deleted"
        else:
            body = resp.get("body") or {}
            err = body.get("error", {}) if isinstance(body, dict) else {}
            raise GraphError(
                status, str(err.get("code", "batch_error")), str(err.get("message", ""))
            )
    return found, gone


async def group_members(graph: GraphClient, group_ids: list[str]) -> tuple[set[str], list[str]]:
    """Transitive user members of the groups (nested groups count); the ids of missing groups."""
    members: set[str] = set()
    missing: list[str] = []
    for gid in group_ids:
        try:
            async for page in graph.pages(
                f"groups/{gid}/transitiveMembers/microsoft.graph.user",
                {"$select": "id", "$top": str(PAGE_SIZE)},
            ):
                members.update(item["id"] for item in page.items)
        except GraphError as exc:
            if exc.status == 404:
                missing.append(gid)
                continue
            raise
    return members, missing


async def fetch_users(
    graph: GraphClient,
    rules: UserRules,
    *,
    delta_link: str | None,
    full: bool,
    retry_ids: set[str],
    managed_ids: set[str],
    progress: Progress = _noop,
) -> UserFetch:
    number_property = rules.number_property if rules.number_mode == "property" else None
    select = user_select(rules.number_mode, rules.number_property)
    warnings: list[dict[str, str]] = []
    if not full and delta_link:
        try:
            return await _delta(
                graph, rules, delta_link, select, number_property, retry_ids, managed_ids, progress
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
    in_groups, warnings = await _range_groups(graph, rules)
    return UserFetch(
        UserInput(users=users, in_groups=in_groups, full=True), delta_link, True, warnings
    )


async def _range_groups(
    graph: GraphClient, rules: UserRules
) -> tuple[frozenset[str] | None, list[dict[str, str]]]:
    if rules.range_mode != "groups":
        return None, []
    members, missing = await group_members(graph, sorted(rules.group_ids))
    warnings = [
        {
            "code": "range_group_missing",
            "message": f"Group {gid} of the user range no longer exists.",
        }
        for gid in missing
    ]
    return frozenset(members), warnings


async def _delta(
    graph: GraphClient,
    rules: UserRules,
    delta_link: str,
    select: str,
    number_property: str | None,
    retry_ids: set[str],
    managed_ids: set[str],
    progress: Progress,
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
    in_groups, warnings = await _range_groups(graph, rules)
    # Re-read by id: last run's failures (a freed number or seat), and users whose group
    # membership moved them into or out of the range without a change to the user itself.
    wanted = set(retry_ids)
    if in_groups is not None:
        wanted |= in_groups ^ managed_ids
    wanted -= users.keys() | removed.keys()
    found, gone_ids = await read_by_ids(graph, sorted(wanted), select, number_property)
    users.update(found)
    removed.update(gone_ids)
    return UserFetch(
        UserInput(users=users, removed=removed, in_groups=in_groups, full=False),
        new_link,
        False,
        warnings,
    )
