"""Which change events can concern a PBX (api.md section 6): they alone count toward a run.

A user event counts when the user has an extension, has an outstanding failure, or could enter
the user range (ranges by type or "all": any user may; a group range is entered through group
events). A group event counts when the group is synced, in the group range, or named by the
user range (also as a group nested in one). Anything that cannot be read counts, to be safe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.directory import repository as directory_repo
from app.directory.models import Extension, ExtensionGroup
from app.integration import repository as integ_repo
from app.runs import repository as runs_repo
from app.runs.models import GROUP_NESTING


@dataclass(frozen=True)
class Event:
    kind: str  # users | groups | other
    object_id: str | None


def parse(resource: str) -> Event:
    parts = [p for p in resource.strip("/").split("/") if p]
    if len(parts) == 2 and parts[0].lower() in ("users", "groups"):
        return Event(parts[0].lower(), parts[1])
    return Event("other", None)


def _range(config: dict[str, object]) -> tuple[str, set[str]]:
    range_ = config.get("range")
    if not isinstance(range_, dict):
        return "all", set()
    ids = range_.get("group_ids")
    return str(range_.get("mode", "all")), {str(i) for i in ids} if isinstance(ids, list) else set()


async def concerning(session: AsyncSession, pbx_id: str, events: list[Event]) -> list[bool]:
    """For each event, whether it can concern the PBX."""
    rules = await integ_repo.rules(session, pbx_id)
    users = rules.get("user_sync")
    groups = rules.get("group_sync")
    user_on = users is not None and users.state == "active"
    group_on = groups is not None and groups.state == "active"
    user_mode, user_groups = _range(users.config) if users is not None else ("all", set())
    group_mode, group_ids = _range(groups.config) if groups is not None else ("all", set())
    user_ids = {e.object_id for e in events if e.kind == "users" and e.object_id}
    group_event_ids = {e.object_id for e in events if e.kind == "groups" and e.object_id}
    known_users: set[str] = set()
    if user_ids and user_on and user_mode == "groups":
        known_users = await directory_repo.entra_ids_among(session, pbx_id, Extension, user_ids)
        known_users |= await runs_repo.failed_entra_ids(session, pbx_id, "users") & user_ids
    known_groups: set[str] = set()
    if group_event_ids:
        known_groups = await directory_repo.entra_ids_among(
            session, pbx_id, ExtensionGroup, group_event_ids
        )
        known_groups |= (
            await runs_repo.failed_entra_ids(session, pbx_id, "groups") & group_event_ids
        )
        if user_on and user_mode == "groups":
            named = set(user_groups)
            nesting = await runs_repo.delta_link(session, pbx_id, GROUP_NESTING)
            if nesting:
                for nested in json.loads(nesting).values():
                    named |= set(nested)
            known_groups |= named & group_event_ids
    out = []
    for e in events:
        if e.kind == "users":
            out.append(user_on and (user_mode != "groups" or e.object_id in known_users))
        elif e.kind == "groups":
            in_range = group_on and (group_mode != "groups" or e.object_id in group_ids)
            out.append(
                in_range
                or e.object_id in known_groups
                or (user_on and user_mode == "groups" and e.object_id in user_groups)
            )
        else:
            out.append(True)
    return out
