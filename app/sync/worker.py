"""The run loop: up to WORKER_CONCURRENCY runs at once in this process, never two for one PBX,
the PBX whose run has waited longest first; each run under a lease renewed by its heartbeat.
Runs of dead workers are reaped (`reap`). One loop of the process's supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import session_scope, utcnow, wakeup_of
from app.runs import queue
from app.runs import repository as runs_repo
from app.runs.models import SyncRun
from app.runtime import Runtime
from app.sync.executor import RunExecutor

log = logging.getLogger("pbx_entra.worker")
OnClaim = Callable[[AsyncSession, SyncRun], Awaitable[None]]


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        *,
        lease_seconds: float = 60,
        poll_seconds: float = 2.0,
        concurrency: int = 1,
        name: str | None = None,
        on_claim: list[OnClaim] | None = None,
    ) -> None:
        self.runtime = runtime
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_seconds = poll_seconds
        self.concurrency = concurrency
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.on_claim = list(on_claim or [])
        self.bell = wakeup_of(runtime.sessionmaker, queue.RUNS)
        self.running: dict[str, asyncio.Task[str]] = {}
        # Runs this worker finished, in order (for tests and the CLI).
        self.finished: list[str] = []

    def wake(self) -> None:
        self.bell.ring()

    async def loop(self) -> None:
        """Keep the slots filled until cancelled; finished runs free their slot at once."""
        try:
            while True:
                await self.fill()
                await self.bell.wait(self.poll_seconds)
        finally:
            for task in self.running.values():
                task.cancel()
            for task in list(self.running.values()):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def fill(self) -> int:
        """Claim runs for the free slots; how many were started."""
        started = 0
        while len(self.running) < self.concurrency:
            run = await self._claim()
            if run is None:
                break
            task = asyncio.create_task(self._execute(run), name=f"run-{run.id}")
            self.running[run.id] = task
            task.add_done_callback(self._done)
            started += 1
        return started

    def _done(self, task: asyncio.Task[str]) -> None:
        for run_id, held in list(self.running.items()):
            if held is task:
                self.running.pop(run_id)
        self.bell.ring()

    async def run_once(self) -> str | None:
        """Claim and execute one run here; its id, or None when nothing is waiting."""
        run = await self._claim()
        if run is None:
            return None
        await self._execute(run)
        return run.id

    async def _claim(self) -> SyncRun | None:
        async with session_scope(self.runtime.sessionmaker) as session:
            run = await runs_repo.claim_next(session, self.name, self.lease)
            if run is not None:
                for hook in self.on_claim:
                    await hook(session, run)
        return run

    async def _execute(self, run: SyncRun) -> str:
        heartbeat = asyncio.create_task(self._heartbeat(run.id))
        try:
            status = await RunExecutor(self.runtime, run).execute()
            log.info("run %s (%s) finished: %s", run.id, run.trigger, status)
        except Exception as exc:
            log.exception("run %s failed unexpectedly", run.id)
            status = "failed"
            async with session_scope(self.runtime.sessionmaker) as session:
                row = await runs_repo.get(session, run.id, for_update=True)
                if row is not None and row.status == "running":
                    row.status = "failed"
                    row.finished_at = utcnow()
                    row.error = {"code": "internal_error", "message": type(exc).__name__}
                    row.locked_by = None
                    row.locked_until = None
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        self.finished.append(run.id)
        return status

    async def _heartbeat(self, run_id: str) -> None:
        interval = self.lease.total_seconds() / 3
        while True:
            await self.runtime.clock.wait(interval)
            async with session_scope(self.runtime.sessionmaker) as session:
                await runs_repo.renew_lease(session, run_id, self.name, utcnow() + self.lease)

    async def reap(self) -> int:
        """Runs whose lease ran out lost their worker: interrupted, and a retry queued."""
        async with session_scope(self.runtime.sessionmaker) as session:
            pairs = await queue.reap(session)
        return len(pairs)
