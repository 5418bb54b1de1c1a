"""The cleanup run: deletes what disable, disconnect or a pause chose to delete (never held)."""

from __future__ import annotations

from typing import Any

from app.db import session_scope, utcnow
from app.directory import repository as directory_repo
from app.runs import repository as runs_repo
from app.runs.scopes import BY_KIND
from app.runtime import Runtime
from app.sync.steps import Report


def _label(row: Any) -> str:
    return getattr(row, "name", None) or " ".join(
        filter(None, [getattr(row, "first_name", None), getattr(row, "last_name", None)])
    )


async def run_cleanup(
    runtime: Runtime, pbx_id: str, run_id: str, kinds: list[str], report: Report
) -> None:
    for kind in kinds:
        info = BY_KIND[kind]
        async with session_scope(runtime.sessionmaker) as session:
            # The first table holds the objects; the others (personal contacts) go with them.
            rows = await directory_repo.synced_rows(session, pbx_id, info.models[0])
            now = utcnow()
            changes = [
                {
                    "run_id": run_id,
                    "pbx_id": pbx_id,
                    "action": "delete",
                    "object_type": kind.rstrip("s"),
                    "object_id": row.id,
                    "entra_id": row.entra_id,
                    "display_name": _label(row),
                    "fields": {},
                    "created_at": now,
                }
                for row in rows
            ]
            for model in reversed(info.models):
                await directory_repo.delete_synced(session, pbx_id, model)
            await runs_repo.add_changes(session, changes)
        counts = report.counts.setdefault(
            info.scope, {"created": 0, "updated": 0, "deleted": 0, "unchanged": 0, "failed": 0}
        )
        counts["deleted"] = len(changes)
