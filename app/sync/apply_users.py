"""Writing a user plan: bulk statements in the caller's transaction, one change-log row per object."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import new_id, table_of, utcnow
from app.directory.models import Extension
from app.sync import repository as repo
from app.sync.models import Outbox
from app.sync.plan_users import UserPlan

CHUNK = 1000


def _chunks(items: list[Any], size: int = CHUNK) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def apply_users(
    session: AsyncSession,
    *,
    pbx_id: str,
    run_id: str,
    plan: UserPlan,
    apply_deletes: bool,
    send_welcome: bool,
    mail_configured: bool,
    known_failures: set[str] | None = None,
) -> dict[str, str]:
    """Apply the plan; returns {extension id: entra id} of the created extensions."""
    now = utcnow()
    changes: list[dict[str, Any]] = []

    def change(
        action: str, object_id: str, entra_id: str | None, name: str | None, fields: dict[str, Any]
    ) -> None:
        changes.append(
            {
                "run_id": run_id,
                "pbx_id": pbx_id,
                "action": action,
                "object_type": "extension",
                "object_id": object_id,
                "entra_id": entra_id,
                "display_name": name,
                "fields": fields,
                "created_at": now,
            }
        )

    def label(first: str | None, last: str | None) -> str:
        return " ".join(filter(None, [first, last]))

    if apply_deletes and plan.deletes:
        ids = [r.ext.id for r in plan.deletes]
        for chunk in _chunks(ids):
            await session.execute(
                delete(Extension).where(Extension.pbx_id == pbx_id, Extension.id.in_(chunk))
            )
        for r in plan.deletes:
            change(
                "delete",
                r.ext.id,
                r.ext.entra_id,
                label(r.ext.first_name, r.ext.last_name),
                {"reason": [None, r.reason]},
            )

    if plan.releases:
        rows = [
            {
                "id": r.ext.id,
                "managed_by": "pbx",
                "former_entra_id": r.ext.entra_id,
                "entra_id": None,
                "updated_at": now,
            }
            for r in plan.releases
        ]
        for chunk in _chunks(rows):
            await session.execute(update(Extension), chunk)
        for r in plan.releases:
            change(
                "release",
                r.ext.id,
                r.ext.entra_id,
                label(r.ext.first_name, r.ext.last_name),
                {"managed_by": ["entra", "pbx"], "reason": [None, r.reason]},
            )

    # Bulk UPDATE by primary key wants one key set per statement.
    by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for u in plan.updates:
        row: dict[str, Any] = {"id": u.ext.id, "updated_at": now}
        for name, (_, new) in u.fields.items():
            row[name] = new
            if name == "email":
                row["email_key"] = new.lower() if new else None
        if u.associate:
            row.update(managed_by="entra", entra_id=u.entra_id, former_entra_id=None)
        by_keys[tuple(sorted(row))].append(row)
    for rows in by_keys.values():
        for chunk in _chunks(rows):
            await session.execute(update(Extension), chunk)
    for u in plan.updates:
        fields = {k: [old, new] for k, (old, new) in u.fields.items()}
        if u.associate:
            fields["managed_by"] = [u.ext.managed_by, "entra"]
        first = u.fields.get("first_name", (None, u.ext.first_name))[1]
        last = u.fields.get("last_name", (None, u.ext.last_name))[1]
        change("update", u.ext.id, u.entra_id, label(first, last), fields)

    created: dict[str, str] = {}
    if plan.creates:
        rows = []
        outbox = []
        for c in plan.creates:
            ext_id = new_id()
            created[ext_id] = c.entra_id
            status = None
            if send_welcome:
                status = (
                    "no_address" if not c.email else ("pending" if mail_configured else "not_sent")
                )
            rows.append(
                {
                    "id": ext_id,
                    "pbx_id": pbx_id,
                    "number": c.number,
                    "first_name": c.first_name,
                    "last_name": c.last_name,
                    "email": c.email,
                    "email_key": c.email.lower() if c.email else None,
                    "mobile": c.mobile,
                    "job_title": c.job_title,
                    "managed_by": "entra",
                    "entra_id": c.entra_id,
                    "former_entra_id": None,
                    "welcome_email_status": status,
                    "welcome_email_at": now if status in ("no_address", "not_sent") else None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            if status == "pending":
                outbox.append(
                    {
                        "id": new_id(),
                        "pbx_id": pbx_id,
                        "kind": "welcome_email",
                        "extension_id": ext_id,
                        "payload": {},
                        "status": "pending",
                        "attempts": 0,
                        "created_at": now,
                    }
                )
            change(
                "create",
                ext_id,
                c.entra_id,
                label(c.first_name, c.last_name),
                {
                    k: [None, getattr(c, k)]
                    for k in ("number", "first_name", "last_name", "email", "mobile", "job_title")
                },
            )
        for chunk in _chunks(rows):
            await session.execute(insert(table_of(Extension)), chunk)
        for chunk in _chunks(outbox):
            await session.execute(insert(table_of(Outbox)), chunk)

    for chunk in _chunks(changes):
        await repo.add_changes(session, chunk)
    failures = [
        {
            "pbx_id": pbx_id,
            "scope": "users",
            "entra_id": f.entra_id,
            "code": f.code,
            "message": f.message,
            "run_id": run_id,
            "failed_at": now,
        }
        for f in plan.failures
    ]
    await repo.replace_failures(session, pbx_id, "users", plan.settled, failures, known_failures)
    return created
