"""Long-lived collaborators of one process: crypto box, MSAL clients, the Graph HTTP pool, locks."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.clock import Clock
from app.config import Settings
from app.crypto import Box
from app.graph.auth import Msal
from app.graph.client import GraphClient


@dataclass
class Runtime:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    box: Box
    msal: Msal
    graph_http: httpx.AsyncClient
    # Time and waiting (tests give a FakeClock: no real sleeps, time moved on demand).
    clock: Clock = field(default_factory=Clock)
    # Access tokens kept in memory per PBX (token, monotonic time fetched), to spare MSAL calls.
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    token_locks: defaultdict[str, asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )
    # Chores of this process under way (e.g. "subscriptions:<pbx id>"): a second one passes.
    busy: set[str] = field(default_factory=set)
    # What other domains do when a PBX's integration stops (disable, disconnect), registered by
    # the application at start-up so that the integration needs to know none of them:
    # `integration_stopping(runtime, pbx_id)` before (while Graph still answers), and
    # `integration_forgotten(session, pbx_id)` in the disconnect's transaction.
    integration_stopping: list[Callable[[Runtime, str], Awaitable[None]]] = field(
        default_factory=list
    )
    integration_forgotten: list[Callable[[Any, str], Awaitable[None]]] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        settings: Settings,
        maker: async_sessionmaker[AsyncSession],
        clock: Clock | None = None,
    ) -> Runtime:
        return cls(
            settings=settings,
            sessionmaker=maker,
            box=Box(settings.effective_secret_key),
            msal=Msal(settings.login_base_url, settings.ca_bundle),
            graph_http=GraphClient.http_client(settings.ca_bundle),
            clock=clock or Clock(),
        )

    async def close(self) -> None:
        await self.graph_http.aclose()
