"""The database connection is lost during a run: the service recovers by itself, nothing is
deleted, and the change reaches the PBX without anyone acting (a real service process talks to
PostgreSQL through a proxy that cuts every connection)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app.db import create_engine, session_scope, sessionmaker
from app.runs.models import SyncRun
from tests.cloud import Cloud
from tests.conftest import Api
from tests.reliability.proxy import CuttableProxy
from tests.replicas.test_two_processes import Replica, _setup

pytestmark = pytest.mark.postgres


async def _runs(database_url: str, pbx_id: str) -> list[SyncRun]:
    engine = create_engine(database_url)
    try:
        async with session_scope(sessionmaker(engine)) as session:
            stmt = select(SyncRun).where(SyncRun.pbx_id == pbx_id).order_by(SyncRun.queued_at)
            return list((await session.execute(stmt)).scalars())
    finally:
        await engine.dispose()


async def _eventually(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def test_connections_cut_during_a_run_recover_without_manual_action(
    api: Api, cloud: Cloud, database_url: str
) -> None:
    url = make_url(database_url)
    with CuttableProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        replica = Replica(proxied, cloud, WORKER_LEASE_SECONDS="3")
        try:
            replica.wait_ready()
            pbx, h = await _setup(api, cloud, database_url)
            before = (
                await api.client.get("/api/v1/extensions", params={"limit": 1000}, headers=h)
            ).json()["items"]
            synced = [e for e in before if e["managed_by"] == "entra"]
            assert synced
            integration = await api.client.get("/api/v1/integration", headers=h)
            tid = integration.json()["tenant_id"]
            for ext in synced:
                cloud.control.patch(
                    f"/tenants/{tid}/users/{ext['entra_user_id']}", json={"jobTitle": "Moved"}
                ).raise_for_status()
            # Graph slowed down: the run is still fetching when the database goes away.
            cloud.control.post(
                "/faults", json={"action": "latency", "latency_ms": 1500, "path": r"^/v1\.0/users"}
            ).raise_for_status()
            resp = await api.client.post("/api/v1/integration/sync", json={}, headers=h)
            assert resp.status_code == 202, resp.text
            cut_run = resp.json()["id"]

            async def running() -> bool:
                runs = {r.id: r for r in await _runs(database_url, pbx["id"])}
                return runs[cut_run].status == "running"

            await _eventually(running, 20, "the replica did not start the run")
            proxy.refuse(True)
            assert proxy.cut() > 0
            await asyncio.sleep(2)  # the database stays away for a while
            proxy.refuse(False)
            cloud.control.delete("/faults").raise_for_status()

            async def converged() -> list[dict[str, Any]] | None:
                items = (
                    await api.client.get(
                        "/api/v1/extensions", params={"managed_by": "entra"}, headers=h
                    )
                ).json()["items"]
                if all(e["job_title"] == "Moved" for e in items):
                    return list(items)
                return None

            after = await _eventually(converged, 60, "the change never reached the PBX")
            # Nothing was deleted on the way, and the service is healthy again.
            assert {e["id"] for e in after} == {e["id"] for e in synced}
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"{replica.base}/readyz")).status_code == 200
            runs = {r.id: r for r in await _runs(database_url, pbx["id"])}
            # The run that lost its database either finished once it was back or was reaped
            # as interrupted and taken over by a retry that succeeded.
            cut = runs[cut_run]
            if cut.status == "interrupted":
                retries = [r for r in runs.values() if r.retry_of == cut_run]
                assert [r.status for r in retries] == ["succeeded"]
            else:
                assert cut.status == "succeeded", (cut.status, cut.error)
            count = select(func.count()).select_from(SyncRun).where(SyncRun.status == "running")
            engine = create_engine(database_url)
            async with session_scope(sessionmaker(engine)) as session:
                assert (await session.execute(count)).scalar_one() == 0
            await engine.dispose()
        finally:
            replica.stop()
