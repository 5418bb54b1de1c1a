"""What notifications do when the rest of the service acts: registered at start-up."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.notifications import repository as repo
from app.notifications import subscriptions
from app.runs.models import SyncRun
from app.runtime import Runtime


def install(runtime: Runtime) -> None:
    """Disable and disconnect delete the PBX's subscriptions (Graph first) and, on disconnect,
    its counters and accepted events."""
    runtime.integration_stopping.append(subscriptions.remove_all)
    runtime.integration_forgotten.append(repo.forget)


async def run_claimed(session: AsyncSession, run: SyncRun) -> None:
    """Change events counted from a real run's start on lead to a follow-up run."""
    if not run.dry_run and run.trigger != "cleanup":
        await repo.reset_pending(session, run.pbx_id)
