"""Scheduled syncs: APScheduler gives each process its timers; the database decides.

Every process keeps one date-triggered job per connected PBX, re-read from the database every
few seconds (the `schedule_version` column says when a schedule changed, so an edit through any
replica reaches every replica). A fire first claims (pbx, fire time) in `schedule_fires`: with N
replicas firing at once, one insert wins and queues the run.

The timers read the Runtime's clock. SCHEDULE_CLOCK_START starts theirs at a given instant (it runs
on from there): a rehearsal of a schedule fire without waiting for its hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db import rowcount, session_scope
from app.integration.models import Integration
from app.integration.schedule import next_fire
from app.integration.triggers import queue_active
from app.runtime import Runtime
from app.scheduling.models import ScheduleFire
from app.tenants.models import Pbx

log = logging.getLogger("pbx_entra.schedule")


async def fire(runtime: Runtime, pbx_id: str, fire_at: datetime) -> str | None:
    """Queue the scheduled run of this fire, once across every replica; the run's id or None."""
    async with session_scope(runtime.sessionmaker) as session:
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        claimed = await session.execute(
            insert(ScheduleFire).values(pbx_id=pbx_id, fire_at=fire_at).on_conflict_do_nothing()
        )
        if rowcount(claimed) == 0:
            log.debug(
                "scheduled sync of PBX %s at %s: claimed elsewhere", pbx_id, fire_at.isoformat()
            )
            return None
        queued = await queue_active(session, pbx_id, "schedule")
        if queued is None:
            return None
        run_id = queued[0].id
    log.info("scheduled sync of PBX %s at %s: run %s", pbx_id, fire_at.isoformat(), run_id)
    return run_id


class ScheduleTimers:
    def __init__(
        self,
        runtime: Runtime,
        *,
        poll_seconds: float = 5.0,
        on_fire: Any = None,
        clock_start: datetime | None = None,
    ) -> None:
        self.runtime = runtime
        self.poll_seconds = poll_seconds
        self.on_fire = on_fire
        self.clock_start = clock_start
        # How far the schedules' clock is ahead of the runtime's.
        self.offset = timedelta(0)
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.versions: dict[str, tuple[int, str]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.clock_start is not None:
            self.offset = self.clock_start - self.runtime.clock.now()
            log.warning("the schedules' clock starts at %s", self.clock_start.isoformat())
        self.scheduler.start()
        self._task = asyncio.create_task(self._poll(), name="schedule-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def _poll(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("reading the schedules failed")
            await self.runtime.clock.wait(self.poll_seconds)

    def now(self) -> datetime:
        """The time as the schedules see it."""
        return self.runtime.clock.now() + self.offset

    async def _schedules(self, pbx_id: str | None = None) -> list[Any]:
        """(pbx_id, version, frequency, days, time, timezone) of the connected PBXes (or one)."""
        stmt = (
            select(
                Integration.pbx_id,
                Integration.schedule_version,
                Integration.schedule_frequency,
                Integration.schedule_days,
                Integration.schedule_time,
                Pbx.timezone,
            )
            .join(Pbx, Pbx.id == Integration.pbx_id)
            .where(Integration.status == "connected")
        )
        if pbx_id is not None:
            stmt = stmt.where(Integration.pbx_id == pbx_id)
        async with session_scope(self.runtime.sessionmaker) as session:
            return list((await session.execute(stmt)).all())

    def _keep(self, row: Any, now: datetime) -> None:
        version = (row.schedule_version, row.timezone)
        if self.versions.get(row.pbx_id) == version and self.scheduler.get_job(row.pbx_id):
            return
        self.versions[row.pbx_id] = version
        at = next_fire(
            row.schedule_frequency, row.schedule_days, row.schedule_time, row.timezone, now
        )
        self._plan(row.pbx_id, at)

    def _drop(self, pbx_id: str) -> None:
        self.versions.pop(pbx_id, None)
        if self.scheduler.get_job(pbx_id):
            self.scheduler.remove_job(pbx_id)

    async def refresh(self, now: datetime | None = None) -> None:
        """Bring the jobs in line with the database: one per connected PBX, at its next fire."""
        now = now or self.now()
        rows = await self._schedules()
        for row in rows:
            self._keep(row, now)
        for pbx_id in set(self.versions) - {row.pbx_id for row in rows}:
            self._drop(pbx_id)

    async def _replan(self, pbx_id: str, now: datetime) -> None:
        """The next fire of one PBX, from its schedule as the database has it now (a fire reads
        its own row: with many PBXes firing at once, a full refresh per fire grew quadratic)."""
        self.versions.pop(pbx_id, None)
        rows = await self._schedules(pbx_id)
        if rows:
            self._keep(rows[0], now)
        else:
            self._drop(pbx_id)

    def next_run(self, pbx_id: str) -> datetime | None:
        """The next fire planned for this PBX, on the schedules' clock."""
        job = self.scheduler.get_job(pbx_id)
        return job.args[1] if job else None

    def _plan(self, pbx_id: str, at: datetime) -> None:
        # APScheduler waits on the system clock: when does it show `at` on the schedules' one?
        system_at = at - self.offset - timedelta(seconds=self.runtime.clock.offset)
        self.scheduler.add_job(
            self._fire,
            DateTrigger(run_date=system_at),
            args=[pbx_id, at],
            id=pbx_id,
            replace_existing=True,
            misfire_grace_time=300,
        )

    async def _fire(self, pbx_id: str, at: datetime) -> None:
        try:
            run_id = await fire(self.runtime, pbx_id, at)
            if run_id and self.on_fire is not None:
                self.on_fire()
        finally:
            await self._replan(pbx_id, at)
