"""Scheduled runs: the API, the timers, and one run per fire however many replicas fire."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from app.config import Settings
from app.db import create_engine, sessionmaker, utcnow
from app.runtime import Runtime
from app.scheduling.schedule import next_fire
from app.scheduling.timers import ScheduleTimers, fire
from tests.cloud import Cloud
from tests.conftest import SECRET_KEY, Api
from tests.hardening.test_hostile_input import statements
from tests.sync.helpers import scenario


async def test_schedule_api_and_next_fire(sync_api: Api, cloud: Cloud) -> None:
    s = await scenario(sync_api, cloud, users=0, groups=0, seed=1)
    await s.api.client.patch(
        f"/api/v1/pbxes/{s.pbx['id']}", json={"timezone": "Europe/Berlin"}, headers=s.api.operator
    )
    view = (await s.api.client.get("/api/v1/integration", headers=s.h)).json()
    assert view["schedule"] == {"frequency": "daily", "days": [], "time": "00:30"}
    assert view["next_scheduled_sync_at"] is not None
    resp = await s.api.client.put(
        "/api/v1/integration/schedule",
        json={"frequency": "weekly", "days": ["sunday", "saturday", "saturday"], "time": "23:59"},
        headers=s.h,
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["schedule"] == {
        "frequency": "weekly",
        "days": ["saturday", "sunday"],
        "time": "23:59",
    }
    from datetime import datetime
    from zoneinfo import ZoneInfo

    local = datetime.fromisoformat(body["next_scheduled_sync_at"]).astimezone(
        ZoneInfo("Europe/Berlin")
    )
    assert local.strftime("%A %H:%M") in ("Saturday 23:59", "Sunday 23:59")
    for bad in (
        {"frequency": "weekly", "days": [], "time": "10:00"},
        {"frequency": "daily", "days": ["monday"], "time": "10:00"},
        {"frequency": "daily", "time": "24:00"},
        {"frequency": "hourly", "time": "10:00"},
        {"frequency": "weekly", "days": ["someday"], "time": "10:00"},
    ):
        r = await s.api.client.put("/api/v1/integration/schedule", json=bad, headers=s.h)
        assert r.status_code == 422, bad


async def test_timers_follow_the_database_and_fire_one_run(
    sync_api: Api, cloud: Cloud, database_url: str
) -> None:
    s = await scenario(sync_api, cloud, users=2, groups=0, seed=1)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    runtime = s.api.app.state.runtime
    timers = ScheduleTimers(runtime)
    timers.scheduler.start(paused=True)
    try:
        from app.db import utcnow

        now = utcnow()
        await timers.refresh(now)
        assert timers.next_run(s.pbx["id"]) == next_fire("daily", [], "00:30", "UTC", now)
        await s.api.client.put(
            "/api/v1/integration/schedule",
            json={"frequency": "daily", "time": "06:15"},
            headers=s.h,
        )
        await timers.refresh(now)
        planned = timers.next_run(s.pbx["id"])
        assert planned == next_fire("daily", [], "06:15", "UTC", now)
        # The fire queues a scheduled run and plans the next day's.
        await timers._fire(s.pbx["id"], planned)
        runs = await s.run_worker()
        assert [r["trigger"] for r in runs] == ["schedule"]
        assert timers.next_run(s.pbx["id"]) == next_fire("daily", [], "06:15", "UTC", planned)
        # Disabled: no job any more.
        await s.api.client.post("/api/v1/integration/disable", json={}, headers=s.h)
        await timers.refresh(now)
        assert timers.next_run(s.pbx["id"]) is None
    finally:
        timers.scheduler.shutdown(wait=False)


async def test_replicas_firing_at_once_queue_one_run(
    sync_api: Api, cloud: Cloud, database_url: str
) -> None:
    s = await scenario(sync_api, cloud, users=2, groups=0, seed=1)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    # Three replicas: each its own engine and connection pool on the same database.
    replicas: list[tuple[Any, Runtime]] = []
    for _ in range(3):
        engine = create_engine(database_url)
        settings = Settings(database_url=database_url, secret_key=SECRET_KEY, **cloud.settings())
        replicas.append((engine, Runtime.create(settings, sessionmaker(engine))))
    try:
        from app.db import utcnow

        at = next_fire("daily", [], "00:30", "UTC", utcnow())
        results = await asyncio.gather(*(fire(rt, s.pbx["id"], at) for _, rt in replicas))
        assert sum(1 for r in results if r) == 1
        runs = await s.run_worker()
        assert [r["trigger"] for r in runs] == ["schedule"]
        # The same fire again (a late replica) does nothing.
        assert await fire(replicas[0][1], s.pbx["id"], at) is None
    finally:
        for engine, rt in replicas:
            await rt.close()
            await engine.dispose()


async def test_a_schedule_clock_started_just_before_a_fire_fires_it(
    sync_api: Api, cloud: Cloud
) -> None:
    s = await scenario(sync_api, cloud, users=2, groups=0, seed=1)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    runtime = s.api.app.state.runtime
    at = next_fire("daily", [], "00:30", "UTC", runtime.clock.now())
    fired = asyncio.Event()
    # The schedules' clock starts 0.2 s before the fire: APScheduler, on the system clock, fires
    # it 0.2 s from now rather than at the next 00:30.
    timers = ScheduleTimers(runtime, clock_start=at - timedelta(seconds=0.2), on_fire=fired.set)
    timers.start()
    try:
        await asyncio.wait_for(fired.wait(), 15)
        runs = await s.run_worker()
        assert [r["trigger"] for r in runs] == ["schedule"]
        assert timers.next_run(s.pbx["id"]) == at + timedelta(days=1)
        job = timers.scheduler.get_job(s.pbx["id"])
        assert abs(job.next_run_time - (utcnow() + timedelta(days=1))) < timedelta(seconds=15)
    finally:
        await timers.stop()


async def test_a_fire_reads_its_own_schedule_only(sync_api: Api, cloud: Cloud) -> None:
    """With many PBXes firing at the same minute, a fire that re-read every schedule made the
    burst quadratic: it re-plans its own PBX from its own row."""
    s = await scenario(sync_api, cloud, users=1, groups=0, seed=1)
    other = await scenario(sync_api, cloud, users=1, groups=0, seed=2)
    runtime = s.api.app.state.runtime
    timers = ScheduleTimers(runtime)
    timers.scheduler.start(paused=True)
    try:
        now = utcnow()
        await timers.refresh(now)
        assert {s.pbx["id"], other.pbx["id"]} <= set(timers.versions)
        planned = timers.next_run(s.pbx["id"])
        assert planned is not None
        with statements(s.api) as seen:
            await timers._fire(s.pbx["id"], planned)
        schedule_reads = [q for q in seen if "FROM integrations JOIN pbxes" in q]
        assert len(schedule_reads) == 1 and "integrations.pbx_id =" in schedule_reads[0]
        assert timers.next_run(s.pbx["id"]) == next_fire("daily", [], "00:30", "UTC", planned)
        assert timers.next_run(other.pbx["id"]) == next_fire("daily", [], "00:30", "UTC", now)
    finally:
        timers.scheduler.shutdown(wait=False)
