"""Writing a group plan: bulk statements in the caller's transaction, one change-log row per group.

Membership rows are written as differences (rows added, rows removed), a chunk at a time.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import new_id, table_of, utcnow
from app.directory.models import ExtensionGroup, ExtensionGroupMember
from app.runs import repository as runs_repo
from app.sync.apply_users import CHUNK, chunks
from app.sync.plan_groups import GroupPlan

OBJECT_TYPE = "extension_group"


async def _add_members(session: AsyncSession, pairs: list[tuple[str, str]]) -> None:
    table = table_of(ExtensionGroupMember)
    for batch in chunks(pairs, CHUNK * 5):
        await session.execute(insert(table), [{"group_id": g, "extension_id": e} for g, e in batch])


async def _remove_members(session: AsyncSession, pairs: list[tuple[str, str]]) -> None:
    table = table_of(ExtensionGroupMember)
    stmt = delete(table).where(
        and_(
            table.c.group_id == bindparam("g"),
            table.c.extension_id == bindparam("e"),
        )
    )
    for batch in chunks(pairs, CHUNK * 5):
        await session.execute(stmt, [{"g": g, "e": e} for g, e in batch])


async def apply_groups(
    session: AsyncSession,
    *,
    pbx_id: str,
    run_id: str,
    plan: GroupPlan,
    apply_deletes: bool,
    known_failures: set[str] | None = None,
) -> None:
    now = utcnow()
    base = {"run_id": run_id, "pbx_id": pbx_id, "object_type": OBJECT_TYPE, "created_at": now}
    log: list[dict[str, Any]] = []

    def change(
        action: str, object_id: str, entra_id: str | None, name: str, fields: dict[str, Any]
    ) -> None:
        log.append(
            {
                **base,
                "action": action,
                "object_id": object_id,
                "entra_id": entra_id,
                "display_name": name,
                "fields": fields,
            }
        )

    groups = table_of(ExtensionGroup)
    members = table_of(ExtensionGroupMember)
    if apply_deletes and plan.deletes:
        for gone in chunks(plan.deletes):
            ids = [r.group.id for r in gone]
            await session.execute(delete(members).where(members.c.group_id.in_(ids)))
            await session.execute(
                delete(groups).where(groups.c.pbx_id == pbx_id, groups.c.id.in_(ids))
            )
            for r in gone:
                change(
                    "delete",
                    r.group.id,
                    r.group.entra_id,
                    r.group.name,
                    {"reason": [None, r.reason]},
                )

    if plan.releases:
        await session.execute(
            update(ExtensionGroup),
            [
                {
                    "id": r.group.id,
                    "managed_by": "pbx",
                    "former_entra_id": r.group.entra_id,
                    "entra_id": None,
                    "updated_at": now,
                }
                for r in plan.releases
            ],
        )
        for r in plan.releases:
            change(
                "release",
                r.group.id,
                r.group.entra_id,
                r.group.name,
                {"managed_by": ["entra", "pbx"], "reason": [None, r.reason]},
            )

    # Renames go through a temporary name first: two groups may trade names in one run.
    renamed = [u for u in plan.updates if u.name is not None]
    if renamed:
        await session.execute(
            update(ExtensionGroup),
            [{"id": u.group.id, "name": f"~renaming~{u.group.id}"} for u in renamed],
        )
    by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    added: list[tuple[str, str]] = []
    removed: list[tuple[str, str]] = []
    for u in plan.updates:
        row: dict[str, Any] = {"id": u.group.id, "updated_at": now}
        fields: dict[str, Any] = {}
        if u.name is not None:
            row["name"] = u.name
            fields["name"] = [u.group.name, u.name]
        if u.adopt:
            row.update(managed_by="entra", entra_id=u.entra_id, former_entra_id=None)
            fields["managed_by"] = [u.group.managed_by, "entra"]
        if u.member_ids is not None:
            plus, minus = u.added, u.removed
            added += [(u.group.id, e) for e in plus]
            removed += [(u.group.id, e) for e in minus]
            fields["members"] = [len(u.group.member_ids), len(u.member_ids)]
            if plus:
                fields["members_added"] = [None, len(plus)]
            if minus:
                fields["members_removed"] = [None, len(minus)]
        by_keys[tuple(sorted(row))].append(row)
        change("update", u.group.id, u.entra_id, u.name or u.group.name, fields)
    for same_keys in by_keys.values():
        for batch in chunks(same_keys):
            await session.execute(update(ExtensionGroup), batch)
    await _remove_members(session, removed)

    for created in chunks(plan.creates):
        rows = []
        for c in created:
            gid = new_id()
            rows.append(
                {
                    "id": gid,
                    "pbx_id": pbx_id,
                    "name": c.name,
                    "managed_by": "entra",
                    "entra_id": c.entra_id,
                    "former_entra_id": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            added += [(gid, e) for e in c.member_ids]
            change(
                "create",
                gid,
                c.entra_id,
                c.name,
                {"name": [None, c.name], "members": [None, len(c.member_ids)]},
            )
        await session.execute(insert(groups), rows)
    await _add_members(session, added)
    for batch in chunks(log):
        await runs_repo.add_changes(session, batch)

    failures = [
        {
            "pbx_id": pbx_id,
            "scope": "groups",
            "entra_id": f.entra_id,
            "code": f.code,
            "message": f.message,
            "display_name": f.display_name,
            "conflict": None,
            "run_id": run_id,
            "failed_at": now,
        }
        for f in plan.failures
    ]
    await runs_repo.replace_failures(
        session, pbx_id, "groups", plan.settled, failures, known_failures
    )
