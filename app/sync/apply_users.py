"""Writing a user plan: bulk statements in the caller's transaction, one change-log row per object.

Rows are built and written a chunk at a time, so memory stays flat however large the plan.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import new_id, table_of, utcnow
from app.directory.models import Extension
from app.runs import repository as runs_repo
from app.runs.models import Outbox
from app.sync.plan_users import NewExtension, UserPlan

CHUNK = 1000
T = TypeVar("T")


def chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _label(first: str | None, last: str | None) -> str:
    return " ".join(filter(None, [first, last]))


class _ChangeLog:
    def __init__(self, session: AsyncSession, pbx_id: str, run_id: str, now: datetime) -> None:
        self.session = session
        self.base = {
            "run_id": run_id,
            "pbx_id": pbx_id,
            "object_type": "extension",
            "created_at": now,
        }
        self.rows: list[dict[str, Any]] = []

    async def add(
        self,
        action: str,
        object_id: str,
        entra_id: str | None,
        name: str | None,
        fields: dict[str, Any],
    ) -> None:
        self.rows.append(
            {
                **self.base,
                "action": action,
                "object_id": object_id,
                "entra_id": entra_id,
                "display_name": name,
                "fields": fields,
            }
        )
        if len(self.rows) >= CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if self.rows:
            await runs_repo.add_changes(self.session, self.rows)
            self.rows = []


def _welcome_status(create: NewExtension, send_welcome: bool, mail_configured: bool) -> str | None:
    if not send_welcome:
        return None
    if not create.email:
        return "no_address"
    return "pending" if mail_configured else "not_sent"


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
) -> int:
    """Apply the plan; returns how many extensions were created."""
    now = utcnow()
    log = _ChangeLog(session, pbx_id, run_id, now)

    if apply_deletes and plan.deletes:
        for gone in chunks(plan.deletes):
            ids = [r.ext.id for r in gone]
            await session.execute(
                delete(Extension).where(Extension.pbx_id == pbx_id, Extension.id.in_(ids))
            )
            for r in gone:
                name = _label(r.ext.first_name, r.ext.last_name)
                await log.add(
                    "delete", r.ext.id, r.ext.entra_id, name, {"reason": [None, r.reason]}
                )

    for released in chunks(plan.releases):
        release_rows = [
            {
                "id": r.ext.id,
                "managed_by": "pbx",
                "former_entra_id": r.ext.entra_id,
                "entra_id": None,
                "updated_at": now,
            }
            for r in released
        ]
        await session.execute(update(Extension), release_rows)
        for r in released:
            fields = {"managed_by": ["entra", "pbx"], "reason": [None, r.reason]}
            await log.add(
                "release",
                r.ext.id,
                r.ext.entra_id,
                _label(r.ext.first_name, r.ext.last_name),
                fields,
            )

    for changed in chunks(plan.updates):
        # Bulk UPDATE by primary key wants one key set per statement.
        by_keys: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for u in changed:
            row: dict[str, Any] = {"id": u.ext.id, "updated_at": now}
            for name, (_, new) in u.fields.items():
                row[name] = new
                if name == "email":
                    row["email_key"] = new.lower() if new else None
            if u.associate:
                row.update(managed_by="entra", entra_id=u.entra_id, former_entra_id=None)
            by_keys[tuple(sorted(row))].append(row)
        for same_keys in by_keys.values():
            await session.execute(update(Extension), same_keys)
        for u in changed:
            changed_fields = {k: [old, new] for k, (old, new) in u.fields.items()}
            if u.associate:
                changed_fields["managed_by"] = [u.ext.managed_by, "entra"]
            first = u.fields.get("first_name", (None, u.ext.first_name))[1]
            last = u.fields.get("last_name", (None, u.ext.last_name))[1]
            await log.add("update", u.ext.id, u.entra_id, _label(first, last), changed_fields)

    for created in chunks(plan.creates):
        rows: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        for c in created:
            ext_id = new_id()
            status = _welcome_status(c, send_welcome, mail_configured)
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
        await session.execute(insert(table_of(Extension)), rows)
        if outbox:
            await session.execute(insert(table_of(Outbox)), outbox)
        for new_row, c in zip(rows, created, strict=True):
            new_fields = {
                k: [None, new_row[k]]
                for k in ("number", "first_name", "last_name", "email", "mobile", "job_title")
            }
            await log.add(
                "create", new_row["id"], c.entra_id, _label(c.first_name, c.last_name), new_fields
            )
    await log.flush()

    failures = [
        {
            "pbx_id": pbx_id,
            "scope": "users",
            "entra_id": f.entra_id,
            "code": f.code,
            "message": f.message,
            "display_name": f.display_name,
            "conflict": f.conflict,
            "run_id": run_id,
            "failed_at": now,
        }
        for f in plan.failures
    ]
    await runs_repo.replace_failures(
        session, pbx_id, "users", plan.settled, failures, known_failures
    )
    return len(plan.creates)
