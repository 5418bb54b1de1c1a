"""What presence does when the integration stops: registered at start-up by the application."""

from __future__ import annotations

from typing import Any

from app.presence import repository as repo
from app.presence import service
from app.runtime import Runtime


async def stopping(runtime: Runtime, pbx_id: str) -> None:
    """Disable or disconnect: delete the presence subscription at Graph (while Graph still
    answers) and poll no more; turning the integration on again catches up."""
    await service.stop(runtime, pbx_id, connected=True, keep_state=True)


async def forgotten(session: Any, pbx_id: str) -> None:
    """Disconnect: the presence loop's state for the PBX goes with it."""
    await repo.drop_state(session, pbx_id)


def install(runtime: Runtime) -> None:
    runtime.integration_stopping.append(stopping)
    runtime.integration_forgotten.append(forgotten)
