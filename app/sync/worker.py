"""The worker loop: claim queued runs under a lease, keep it alive, reap the runs of dead workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.db import session_scope, utcnow
from app.integration.models import Integration
from app.notifications import processing, subscriptions
from app.notifications import repository as notifications_repo
from app.runtime import Runtime
from app.sync import repository as repo
from app.sync import runs
from app.sync.engine import RunExecutor

log = logging.getLogger("pbx_entra.worker")
CHANGE_LOG_DAYS = 90
PURGE_EVERY_SECONDS = 3600


class Worker:
    def __init__(
        self,
        runtime: Runtime,
        *,
        lease_seconds: float = 60,
        poll_seconds: float = 2.0,
        subscription_check_seconds: float = 60.0,
        name: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_seconds = poll_seconds
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_purge = float("-inf")
        self.subscription_check_seconds = subscription_check_seconds
        self._last_subscription_check = float("-inf")

    def wake(self) -> None:
        self._wake.set()

    def check_subscriptions_soon(self) -> None:
        """A sync section was turned on: create its Graph subscriptions without waiting."""
        self._last_subscription_check = float("-inf")
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sync-worker")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while not self._stopping:
            # Each chore on its own: one that keeps failing must not stop the others.
            await self._chore("reaping", self.reap)
            if time.monotonic() - self._last_purge > PURGE_EVERY_SECONDS:
                self._last_purge = time.monotonic()
                await self._chore("purging the change log", self.purge)
            await self._chore("counting notifications", self._process_notifications)
            if time.monotonic() - self._last_subscription_check > self.subscription_check_seconds:
                self._last_subscription_check = time.monotonic()
                await self._chore("subscriptions", self.maintain_subscriptions)
            await self._chore("running", self._drain)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def _chore(self, what: str, step: Callable[[], Awaitable[Any]]) -> None:
        try:
            await step()
        except Exception:
            log.exception("worker: %s failed", what)

    async def _process_notifications(self) -> None:
        await processing.process(self.runtime)

    async def _drain(self) -> None:
        while await self.run_once():
            pass

    async def run_once(self) -> str | None:
        """Claim and execute one run; its id, or None when nothing is waiting."""
        async with session_scope(self.runtime.sessionmaker) as session:
            run = await repo.claim_next(session, self.name, self.lease)
        if run is None:
            return None
        if not run.dry_run and run.trigger != "cleanup":
            # Change events counted from here on lead to a follow-up run.
            async with session_scope(self.runtime.sessionmaker) as session:
                await notifications_repo.reset_pending(session, run.pbx_id)
        heartbeat = asyncio.create_task(self._heartbeat(run.id))
        try:
            status = await RunExecutor(self.runtime, run).execute()
            log.info("run %s (%s) finished: %s", run.id, run.trigger, status)
        except Exception as exc:
            log.exception("run %s failed unexpectedly", run.id)
            async with session_scope(self.runtime.sessionmaker) as session:
                row = await repo.get(session, run.id, for_update=True)
                if row is not None and row.status == "running":
                    row.status = "failed"
                    row.finished_at = utcnow()
                    row.error = {"code": "internal_error", "message": type(exc).__name__}
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        return run.id

    async def _heartbeat(self, run_id: str) -> None:
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            async with session_scope(self.runtime.sessionmaker) as session:
                await repo.renew_lease(session, run_id, self.name, utcnow() + self.lease)

    async def maintain_subscriptions(self) -> None:
        """Every connected PBX with user or group sync on holds live Graph subscriptions."""
        async with session_scope(self.runtime.sessionmaker) as session:
            connected = select(Integration.pbx_id).where(Integration.status == "connected")
            pbx_ids = list((await session.execute(connected)).scalars())
        for pbx_id in pbx_ids:
            try:
                await subscriptions.ensure(self.runtime, pbx_id)
            except Exception:
                log.exception("subscriptions of PBX %s", pbx_id)

    async def purge(self) -> int:
        """The change log is kept 90 days."""
        async with session_scope(self.runtime.sessionmaker) as session:
            removed = await repo.purge_changes(session, utcnow() - timedelta(days=CHANGE_LOG_DAYS))
        if removed:
            log.info("purged %d change-log rows older than %d days", removed, CHANGE_LOG_DAYS)
        return removed

    async def reap(self) -> int:
        """Runs whose lease ran out lost their worker: mark them interrupted and queue a retry."""
        async with session_scope(self.runtime.sessionmaker) as session:
            dead = await repo.expired_runs(session)
            for run in dead:
                run.status = "interrupted"
                run.finished_at = utcnow()
                run.error = {
                    "code": "worker_lost",
                    "message": f"The worker {run.locked_by} stopped renewing its lease.",
                }
                run.locked_by = None
                run.locked_until = None
                retry, _ = await runs.enqueue(
                    session,
                    run.pbx_id,
                    run.trigger,
                    run.scopes,
                    dry_run=run.dry_run,
                    plan=run.plan if run.trigger in ("cleanup", "on_demand") else None,
                )
                if retry.retry_of is None:
                    retry.retry_of = run.id
                log.warning("run %s interrupted; retried as %s", run.id, retry.id)
        return len(dead)
