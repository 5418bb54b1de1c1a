"""The presence loop: two steps of the process's supervisor beside the run loop, never blocking it.

Two cadences: presence notifications are picked up from the database every
`presence_notify_seconds` (then gathered for `presence_gather_seconds` and read in bulk); every
`presence_tick_seconds` each PBX is visited (stop conditions, subscription upkeep, polling every
`presence_poll_seconds`, catch-up). app.main registers both with the supervisor; tests drive
`tick()` and `notifications()` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from app.clock import Clock
from app.db import session_scope, utcnow
from app.graph.auth import TokenError
from app.graph.errors import GraphError
from app.presence import repository as repo
from app.presence import service
from app.presence.service import Outcome
from app.runtime import Runtime

log = logging.getLogger("pbx_entra.presence")
Sleep = Callable[[float], Awaitable[None]]


class PresenceLoop:
    def __init__(
        self,
        runtime: Runtime,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.clock = clock or runtime.clock
        self.sleep = sleep
        self.tick_seconds = settings.presence_tick_seconds
        self.notify_seconds = settings.presence_notify_seconds
        self.gather_seconds = settings.presence_gather_seconds
        # A poll is due a little early rather than a tick late: every user is read within
        # presence_poll_seconds of the last read.
        self.poll_every = timedelta(
            seconds=max(settings.presence_poll_seconds - self.tick_seconds, self.tick_seconds)
        )
        # Renewed at the start of every pass: only a loop stalled this long counts as a gap.
        self.lease = timedelta(seconds=max(60.0, 10 * self.tick_seconds))
        self.memo: dict[str, Any] = {}  # per PBX: its followers' fingerprint at the last visit

    async def tick(self, now: datetime | None = None) -> dict[str, Outcome]:
        """Visit every PBX with presence sync on (or state to clean up); the outcomes of those
        this process looks after."""
        now = now or self.clock.now()
        async with session_scope(self.runtime.sessionmaker) as session:
            pbx_ids = await repo.pbxes_to_visit(session)
            await repo.renew_leases(session, self.name, now, now + self.lease)
        done: dict[str, Outcome] = {}
        for pbx_id in pbx_ids:
            try:
                outcome = await service.step(
                    self.runtime,
                    pbx_id,
                    self.name,
                    now,
                    lease=self.lease,
                    poll_every=self.poll_every,
                    memo=self.memo,
                )
            except Exception:
                log.exception("presence of PBX %s", pbx_id)
                continue
            if outcome is not None:
                done[pbx_id] = outcome
        return done

    async def notifications(self, gather: bool = True) -> int:
        """Take the presence notifications waiting; after the first, wait `gather_seconds` for
        more, then read the changed users in bulk, per PBX. Returns the events taken."""
        events = await self._claim()
        if not events:
            return 0
        if gather and self.gather_seconds > 0:
            await self.sleep(self.gather_seconds)
            events += await self._claim()
        changed: defaultdict[str, set[str]] = defaultdict(set)
        lifecycle: defaultdict[str, list[str]] = defaultdict(list)
        for pbx_id, resource, event in events:
            if event:
                lifecycle[pbx_id].append(event)
            elif (user := service.user_of(resource)) is not None:
                changed[pbx_id].add(user)
        now = self.clock.now()

        async def one(pbx_id: str) -> None:
            try:
                await service.on_notifications(
                    self.runtime, pbx_id, changed.get(pbx_id, set()), lifecycle.get(pbx_id, []), now
                )
            except (GraphError, TokenError) as exc:
                # The next poll or catch-up reads them: mark the PBX for a catch-up.
                log.warning("reading notified presence of PBX %s failed: %s", pbx_id, exc)
                await service.on_notifications(self.runtime, pbx_id, set(), ["missed"], now)

        await asyncio.gather(*(one(p) for p in sorted(set(changed) | set(lifecycle))))
        return len(events)

    async def _claim(self) -> list[tuple[str, str, str | None]]:
        async with session_scope(self.runtime.sessionmaker) as session:
            events = await repo.claim_events(session)
            await repo.mark_processed(session, [e.id for e in events], utcnow())
            return [(e.pbx_id, e.resource, e.lifecycle_event) for e in events]

    async def release(self) -> None:
        """The process ends: its PBXes' leases go, so another process takes over at once."""
        with contextlib.suppress(Exception):
            async with session_scope(self.runtime.sessionmaker) as session:
                await repo.release(session, self.name)


async def tick(runtime: Runtime, now: datetime, *, name: str = "presence") -> dict[str, Outcome]:
    """One upkeep pass as the process `name` (for tests and tools)."""
    return await PresenceLoop(runtime, name=name).tick(now)
