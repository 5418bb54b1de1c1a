"""Two real service processes on one PostgreSQL: a schedule fire and a notification count once,
and a run whose process is killed is taken over by the other."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.clock import FakeClock
from app.db import create_engine, session_scope, sessionmaker, utcnow
from app.notifications.models import GraphSubscription, NotificationEvent, PendingChanges
from app.notifications.webhooks import client_state_hash
from app.runs.models import SyncRun
from tests.cloud import Cloud, connect
from tests.conftest import ADMIN_KEY, SECRET_KEY, Api, free_port


class Replica:
    def __init__(
        self, database_url: str, cloud: Cloud, log: Path | None = None, **env: str
    ) -> None:
        self.port = free_port()
        self.log = log
        self.base = f"http://127.0.0.1:{self.port}"
        environment = {
            **os.environ,
            "DATABASE_URL": database_url,
            "SECRET_KEY": SECRET_KEY,
            "ADMIN_API_KEY": ADMIN_KEY,
            "LOGIN_BASE_URL": cloud.base_url,
            "GRAPH_BASE_URL": f"{cloud.base_url}/v1.0",
            "CA_BUNDLE": str(cloud.emulator.ca_path),
            "PUBLIC_BASE_URL": "http://127.0.0.1:8000",
            "WORKER_POLL_SECONDS": "0.3",
            "WORKER_LEASE_SECONDS": "3",
            "SCHEDULE_POLL_SECONDS": "0.5",
            "CHANGE_BATCH_SIZE": "1000",
            "CHANGE_DELAY_SECONDS": "3600",
            # Retries exhausted in a fraction of a second: the faults end runs without a wait.
            "GRAPH_BACKOFF_SECONDS": "0.02",
            **env,
        }
        # Not measured by coverage: a replica runs the code the in-process tests measure, and
        # tracing it would double the CPU of every replica the suite starts.
        environment.pop("COVERAGE_PROCESS_CONFIG", None)
        environment.pop("COVERAGE_PROCESS_START", None)
        with open(log or os.devnull, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app", "serve", "--port", str(self.port), "--no-migrate"],
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def logged(self, text: str) -> bool:
        return self.log is not None and text in self.log.read_text()

    def wait_ready(self) -> None:
        deadline = (
            time.monotonic() + 120
        )  # a bound on a cold start (under coverage) on a busy machine
        # One client for the polling: each new one loads the CA bundle again.
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, "a replica exited at start"
                try:
                    if client.get(f"{self.base}/readyz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise AssertionError("a replica did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """Several replicas need PostgreSQL (SQLite serves one process): these tests use it alone."""
    from app import migrate

    migrate.upgrade(postgres_url)
    return postgres_url


@pytest.fixture
async def api(database_url: str, cloud: Cloud, clock: FakeClock) -> AsyncIterator[Api]:
    """The service in the test's own loop, without a worker: the replicas do the work."""
    from app.main import create_app
    from tests.conftest import clean_database, make_settings

    await clean_database(database_url)
    settings = make_settings(database_url, worker_enabled=False, **cloud.settings())
    app = create_app(settings, clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield Api(client, app)


@contextlib.contextmanager
def running(*replicas: Replica) -> Iterator[list[Replica]]:
    try:
        for r in replicas:
            r.wait_ready()
        yield list(replicas)
    finally:
        for r in replicas:
            r.stop()


@pytest.fixture
def replicas(database_url: str, cloud: Cloud, api: Api) -> Iterator[list[Replica]]:
    with running(Replica(database_url, cloud), Replica(database_url, cloud)) as started:
        yield started


async def _count(database_url: str, stmt: Any) -> int:
    engine = create_engine(database_url)
    try:
        async with session_scope(sessionmaker(engine)) as session:
            return int((await session.execute(stmt)).scalar_one())
    finally:
        await engine.dispose()


async def _setup(
    api: Api, cloud: Cloud, database_url: str, *, wait_initial: bool = True
) -> tuple[dict[str, Any], dict[str, str]]:
    tenant = cloud.tenant(users=5, groups=0, seed=3)
    pbx, h = await api.new_pbx()
    await connect(api, cloud, tenant, h)
    resp = await api.client.put("/api/v1/integration/user-sync", json={"enabled": True}, headers=h)
    assert resp.status_code == 200
    if wait_initial:
        done = (
            select(func.count())
            .select_from(SyncRun)
            .where(SyncRun.pbx_id == pbx["id"], SyncRun.status.in_(("succeeded", "partial")))
        )

        async def initial_done() -> bool:
            return await _count(database_url, done) >= 1

        await _wait(initial_done, 30, "the initial run did not finish")
    return pbx, h


async def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def test_a_schedule_fire_queues_one_run(
    api: Api, cloud: Cloud, database_url: str, tmp_path: Path
) -> None:
    # Connected and synced once by the test's own worker; then a daily schedule at 06:00 UTC.
    tenant = cloud.tenant(users=5, groups=0, seed=3)
    pbx, h = await api.new_pbx()
    await connect(api, cloud, tenant, h)
    resp = await api.client.put("/api/v1/integration/user-sync", json={"enabled": True}, headers=h)
    assert resp.status_code == 200
    assert await api.app.state.worker.run_once() == resp.json()["initial_run_id"]
    resp = await api.client.put(
        "/api/v1/integration/schedule", json={"frequency": "daily", "time": "06:00"}, headers=h
    )
    assert resp.status_code == 200
    fire_at = datetime.fromisoformat(resp.json()["next_scheduled_sync_at"])
    assert (fire_at.hour, fire_at.minute) == (6, 0)
    # Two real processes whose schedule clocks start 3 s before that fire: each fires it.
    start = (fire_at - timedelta(seconds=3)).isoformat()
    pair = [
        Replica(
            database_url,
            cloud,
            tmp_path / f"r{i}.log",
            SCHEDULE_CLOCK_START=start,
            LOG_LEVEL="DEBUG",
        )
        for i in range(2)
    ]
    scheduled = (
        select(func.count())
        .select_from(SyncRun)
        .where(SyncRun.pbx_id == pbx["id"], SyncRun.trigger == "schedule")
    )
    line = f"scheduled sync of PBX {pbx['id']} at {fire_at.isoformat()}"
    with running(*pair):

        async def both_fired() -> bool:
            return all(r.logged(line) for r in pair)

        await _wait(both_fired, 30, "the replicas' timers did not fire")
        assert await _count(database_url, scheduled) == 1
        assert sum(r.logged(f"{line}: claimed elsewhere") for r in pair) == 1
    runs = (await api.client.get("/api/v1/sync-runs", headers=h)).json()["items"]
    assert [r["trigger"] for r in runs] == ["schedule", "initial"]


async def test_notifications_posted_to_either_replica_count_once(
    replicas: list[Replica], api: Api, cloud: Cloud, database_url: str
) -> None:
    pbx, _ = await _setup(api, cloud, database_url)
    engine = create_engine(database_url)
    async with session_scope(sessionmaker(engine)) as session:
        session.add(
            GraphSubscription(
                id="sub-test",
                pbx_id=pbx["id"],
                resource="users",
                change_type="updated,deleted",
                client_state_hash=client_state_hash("the-state"),
                expires_at=utcnow() + timedelta(days=1),
            )
        )
    await engine.dispose()
    async with httpx.AsyncClient() as client:
        for i in range(40):
            target = replicas[i % 2]
            item = {
                "subscriptionId": "sub-test",
                "clientState": "the-state",
                "changeType": "updated",
                "resource": f"Users/{i}",
            }
            resp = await client.post(f"{target.base}/webhooks/graph", json={"value": [item]})
            assert resp.status_code == 202
    pending = select(func.coalesce(func.sum(PendingChanges.count), 0)).where(
        PendingChanges.pbx_id == pbx["id"]
    )

    unprocessed = (
        select(func.count())
        .select_from(NotificationEvent)
        .where(NotificationEvent.processed_at.is_(None))
    )

    async def all_processed() -> bool:
        return await _count(database_url, unprocessed) == 0

    # Once every event is marked processed, nothing is left to count twice.
    await _wait(all_processed, 15, "the notifications were not counted")
    assert await _count(database_url, pending) == 40
    assert await _count(database_url, select(func.count()).select_from(NotificationEvent)) == 40


async def test_a_killed_replica_s_run_is_taken_over(
    replicas: list[Replica], api: Api, cloud: Cloud, database_url: str
) -> None:
    pbx, h = await _setup(api, cloud, database_url, wait_initial=False)
    # Slow Graph down so that the run is still going when its process dies.
    cloud.control.post(
        "/faults", json={"action": "latency", "latency_ms": 1500, "path": r"^/v1\.0/users"}
    ).raise_for_status()
    try:
        running = select(SyncRun).where(SyncRun.pbx_id == pbx["id"], SyncRun.status == "running")
        engine = create_engine(database_url)
        maker = sessionmaker(engine)
        owner = None
        deadline = time.monotonic() + 20
        while owner is None:
            assert time.monotonic() < deadline, "no replica started the run"
            async with session_scope(maker) as session:
                run = (await session.execute(running)).scalar_one_or_none()
            if run is not None and run.locked_by:
                owner = run
            await asyncio.sleep(0.05)
        victim = next(r for r in replicas if f":{r.proc.pid}:" in owner.locked_by)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        cloud.control.delete("/faults").raise_for_status()

        async def taken_over() -> bool:
            async with session_scope(maker) as session:
                retry = (
                    await session.execute(select(SyncRun).where(SyncRun.retry_of == owner.id))
                ).scalar_one_or_none()
                dead = await session.get(SyncRun, owner.id)
            return bool(
                dead
                and dead.status == "interrupted"
                and retry
                and retry.status in ("succeeded", "partial")
            )

        await _wait(taken_over, 30, "the run was not taken over")
        await engine.dispose()
    finally:
        cloud.control.delete("/faults")
    extensions = (
        await api.client.get("/api/v1/extensions", params={"managed_by": "entra"}, headers=h)
    ).json()["items"]
    assert len(extensions) >= 4


async def test_two_processes_run_concurrently_fairly_one_per_pbx(
    api: Api, cloud: Cloud, database_url: str
) -> None:
    """Six PBXes' initial runs wait (no worker yet), plus a dry run of the first PBX; two
    processes with two slots each then take the four that waited longest at once, never two
    of one PBX, and every run exactly once."""
    pbx_ids = []
    for i in range(6):
        tenant = cloud.tenant(users=3, groups=0, seed=20 + i)
        pbx, h = await api.new_pbx()
        await connect(api, cloud, tenant, h)
        resp = await api.client.put(
            "/api/v1/integration/user-sync", json={"enabled": True}, headers=h
        )
        assert resp.status_code == 200
        pbx_ids.append(pbx["id"])
        if i == 0:
            first_h = h
    dry = await api.client.post("/api/v1/integration/sync", json={"dry_run": True}, headers=first_h)
    assert dry.status_code == 202
    # Every run reads Graph slowly: they overlap, and the order they start in shows.
    cloud.control.post(
        "/faults", json={"action": "latency", "latency_ms": 600, "path": r"^/v1\.0/users"}
    ).raise_for_status()
    started = [
        Replica(database_url, cloud, WORKER_CONCURRENCY="2"),
        Replica(database_url, cloud, WORKER_CONCURRENCY="2"),
    ]
    engine = create_engine(database_url)
    maker = sessionmaker(engine)
    try:
        for r in started:
            r.wait_ready()
        every = select(SyncRun).where(SyncRun.pbx_id.in_(pbx_ids))

        async def all_done() -> bool:
            async with session_scope(maker) as session:
                rows = list((await session.execute(every)).scalars())
            return len(rows) == 7 and all(r.status in ("succeeded", "partial") for r in rows)

        await _wait(all_done, 60, "the runs did not all finish")
        async with session_scope(maker) as session:
            rows = list((await session.execute(every)).scalars())
    finally:
        cloud.control.delete("/faults")
        for r in started:
            r.stop()
        await engine.dispose()
    assert all(r.retry_of is None for r in rows)  # none lost, none run twice
    by_queue = sorted(rows, key=lambda r: (r.queued_at, r.id))
    by_start = sorted(rows, key=lambda r: r.started_at)
    # The four slots went to the four runs that had waited longest.
    assert {r.id for r in by_start[:4]} == {r.id for r in by_queue[:4]}
    # Four at once: each of the first four started before any run finished.
    first_finish = min(r.finished_at for r in rows)
    assert all(r.started_at < first_finish for r in by_start[:4])
    # Never two runs of one PBX at the same time (the dry run waited for the initial one).
    for pbx_id in pbx_ids:
        mine = sorted((r for r in rows if r.pbx_id == pbx_id), key=lambda r: r.started_at)
        for a, b in itertools.pairwise(mine):
            assert a.finished_at <= b.started_at
    assert len({r.pbx_id for r in rows if r.dry_run}) == 1
