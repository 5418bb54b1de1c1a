"""The cleanup run: deletes what disable, disconnect or a pause chose to delete (never held)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from app.db import session_scope, utcnow
from app.directory.models import Contact, Extension, ExtensionGroup, Phonebook
from app.sync import repository as repo

if TYPE_CHECKING:
    from app.sync.engine import RunExecutor

KINDS: dict[str, tuple[str, type[Any]]] = {
    "extensions": ("users", Extension),
    "extension_groups": ("groups", ExtensionGroup),
    "phonebooks": ("contacts", Phonebook),
}


async def run_cleanup(executor: RunExecutor) -> None:
    kinds = list(executor.plan_payload.get("cleanup", []))
    for kind in kinds:
        scope, model = KINDS[kind]
        async with session_scope(executor.runtime.sessionmaker) as session:
            where = (
                model.pbx_id == executor.pbx_id,
                model.managed_by.in_(("entra", "entra_frozen")),
            )
            rows = (await session.execute(select(model).where(*where))).scalars().all()
            now = utcnow()
            changes = [
                {
                    "run_id": executor.run_id,
                    "pbx_id": executor.pbx_id,
                    "action": "delete",
                    "object_type": kind.rstrip("s"),
                    "object_id": row.id,
                    "entra_id": row.entra_id,
                    "display_name": getattr(row, "name", None)
                    or " ".join(
                        filter(
                            None,
                            [getattr(row, "first_name", None), getattr(row, "last_name", None)],
                        )
                    ),
                    "fields": {},
                    "created_at": now,
                }
                for row in rows
            ]
            if kind == "phonebooks":
                # Personal contacts synced from Outlook go with the synced phonebooks.
                await session.execute(
                    delete(Contact).where(
                        *(
                            Contact.pbx_id == executor.pbx_id,
                            Contact.managed_by.in_(("entra", "entra_frozen")),
                        )
                    )
                )
            await session.execute(delete(model).where(*where))
            await repo.add_changes(session, changes)
        counts = executor.report.counts.setdefault(
            scope, {"created": 0, "updated": 0, "deleted": 0, "unchanged": 0, "failed": 0}
        )
        counts["deleted"] = len(changes)
