"""The fault matrix against a real service process on PostgreSQL: each fault ends the run as the
contract says, deletes nothing, and the next run converges. Every case asserts rows."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app.db import create_engine, session_scope, sessionmaker
from app.runs.models import SyncChange, SyncRun
from tests.cloud import Cloud, EntraTenant, connect
from tests.conftest import Api
from tests.reliability.proxy import CuttableProxy
from tests.replicas.test_two_processes import Replica

pytestmark = pytest.mark.postgres


class Case:
    """One PBX connected to its own tenant, driven through the API; a replica does the runs."""

    def __init__(self, api: Api, cloud: Cloud, database_url: str) -> None:
        self.api = api
        self.cloud = cloud
        self.database_url = database_url
        self.tenant: EntraTenant
        self.pbx: dict[str, Any]
        self.h: dict[str, str]

    async def start(
        self, users: int, token_lifetime: int | None = None, **rules: Any
    ) -> dict[str, Any]:
        self.tenant = self.cloud.tenant(users=users, groups=0, seed=11)
        if token_lifetime is not None:
            self.cloud.configure(self.tenant, access_token_lifetime=token_lifetime)
        self.pbx, self.h = await self.api.new_pbx(max_extensions=users + 10)
        await connect(self.api, self.cloud, self.tenant, self.h)
        resp = await self.api.client.put(
            "/api/v1/integration/user-sync", json={"enabled": True, **rules}, headers=self.h
        )
        assert resp.status_code == 200, resp.text
        [initial] = await self.wait_runs(1)
        return initial

    async def runs(self) -> list[SyncRun]:
        engine = create_engine(self.database_url)
        try:
            async with session_scope(sessionmaker(engine)) as session:
                stmt = select(SyncRun).where(SyncRun.pbx_id == self.pbx["id"])
                return sorted((await session.execute(stmt)).scalars(), key=lambda r: r.queued_at)
        finally:
            await engine.dispose()

    async def wait_runs(self, n: int, timeout: float = 60) -> list[dict[str, Any]]:
        """The first n runs of this PBX once all of them have finished."""
        deadline = time.monotonic() + timeout
        while True:
            runs = await self.runs()
            if len(runs) >= n and all(r.finished_at is not None for r in runs[:n]):
                return [await self.run(r.id) for r in runs[:n]]
            assert time.monotonic() < deadline, [(r.trigger, r.status) for r in runs]
            await asyncio.sleep(0.2)

    async def run(self, run_id: str) -> dict[str, Any]:
        resp = await self.api.client.get(f"/api/v1/sync-runs/{run_id}", headers=self.h)
        body: dict[str, Any] = resp.json()
        return body

    async def update_now(self) -> str:
        resp = await self.api.client.post("/api/v1/integration/sync", json={}, headers=self.h)
        if resp.status_code != 202:
            state = (await self.api.client.get("/api/v1/integration", headers=self.h)).json()
            raise AssertionError((resp.text, state["status"], state["last_error"]))
        return str(resp.json()["id"])

    async def extensions(self) -> dict[str, dict[str, Any]]:
        items: dict[str, dict[str, Any]] = {}
        cursor = None
        while True:
            query = {"limit": 1000, "managed_by": "entra", **({"cursor": cursor} if cursor else {})}
            page = (
                await self.api.client.get("/api/v1/extensions", params=query, headers=self.h)
            ).json()
            items |= {e["entra_user_id"]: e for e in page["items"]}
            if not (cursor := page["next_cursor"]):
                return items

    def control(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.cloud.control.request(method, f"/tenants/{self.tenant.tenant_id}{path}", **kw)
        assert resp.status_code < 400, resp.text
        return resp.json() if resp.content else None

    def fault(self, **spec: Any) -> None:
        resp = self.cloud.control.post("/faults", json={"tenant_id": self.tenant.tenant_id, **spec})
        assert resp.status_code == 201, resp.text


@pytest.fixture
def service(database_url: str, cloud: Cloud, api: Api, tmp_path: Any) -> Iterator[Replica]:
    replica = Replica(database_url, cloud, log=tmp_path / "replica.log")
    try:
        replica.wait_ready()
        yield replica
    finally:
        replica.stop()
        cloud.control.delete("/faults")


@pytest.fixture
def case(api: Api, cloud: Cloud, database_url: str) -> Case:
    return Case(api, cloud, database_url)


async def test_a_429_storm_is_waited_out(service: Replica, case: Case) -> None:
    case.tenant = case.cloud.tenant(users=40, groups=0, seed=12)
    case.pbx, case.h = await case.api.new_pbx()
    await connect(case.api, case.cloud, case.tenant, case.h)
    case.fault(action="throttle", path=r"^/v1\.0/users", retry_after=1, count=3)
    resp = await case.api.client.put(
        "/api/v1/integration/user-sync", json={"enabled": True}, headers=case.h
    )
    assert resp.status_code == 200
    [run] = await case.wait_runs(1)
    assert run["status"] in ("succeeded", "partial"), run
    assert run["graph"]["throttled"] == 3 and run["graph"]["waited_seconds"] >= 3
    assert len(await case.extensions()) == run["users"]["created"] > 30


@pytest.mark.parametrize("action", ["error", "drop"])
async def test_a_fault_midway_through_paging_deletes_nothing(
    service: Replica, case: Case, action: str
) -> None:
    initial = await case.start(users=2500, delete_when=["deleted"])
    before = await case.extensions()
    assert len(before) == initial["users"]["created"] > 2000
    gone = sorted(before)[:5]
    for uid in gone:
        case.control("DELETE", f"/users/{uid}")
    case.control("POST", "/expire-delta-tokens")  # the next run lists every page
    # Pages of 999 users: the third page fails for good (a 503, or the connection dropped).
    spec = {"status": 503} if action == "error" else {}
    case.fault(action=action, path=r"^/v1\.0/users$", after=2, **spec)
    failing = await case.update_now()
    _, failed = await case.wait_runs(2)
    assert failed["id"] == failing and failed["status"] == "failed", failed
    assert failed["error"]["scope"] == "users"
    assert await case.extensions() == before
    case.cloud.control.delete("/faults").raise_for_status()
    await case.update_now()
    *_, converged = await case.wait_runs(3)
    # The generated tenant holds a few users that can't sync (no name, a shared address).
    assert converged["status"] == initial["status"], converged
    assert converged["users"]["deleted"] == 5
    after = await case.extensions()
    # The deleted users' extensions went, and only those (a user whose address clashed with a
    # deleted one's may have got an extension now).
    assert not set(after) & set(gone) and set(before) - set(gone) <= set(after)


async def test_revoked_consent_turns_the_status_to_error_and_deletes_nothing(
    service: Replica, case: Case, database_url: str, cloud: Cloud
) -> None:
    # Access tokens of a minute: MSAL redeems the refresh token for the next run.
    await case.start(users=30, token_lifetime=60, delete_when=["deleted", "disabled"])
    before = await case.extensions()
    for uid in sorted(before)[:3]:
        case.control("DELETE", f"/users/{uid}")
    # The run is queued while the consent still stands; then the consent is revoked and the
    # next process to work for the PBX (holding no token in memory) takes the run.
    service.stop()
    await case.update_now()
    case.control("POST", f"/apps/{case.tenant.client_id}/revoke-consent")
    fresh = Replica(database_url, cloud)
    try:
        fresh.wait_ready()
        _, run = await case.wait_runs(2)
    finally:
        fresh.stop()
    assert run["status"] == "failed", run
    integration = (await case.api.client.get("/api/v1/integration", headers=case.h)).json()
    assert integration["status"] == "error"
    assert integration["last_error"]["code"]
    assert await case.extensions() == before


async def test_expired_delta_tokens_fall_back_to_a_full_listing(
    service: Replica, case: Case
) -> None:
    initial = await case.start(users=30)
    before = await case.extensions()
    created = case.control(
        "POST",
        "/users",
        json={
            "userPrincipalName": f"late@{case.tenant.domain}",
            "displayName": "Late Comer",
            "givenName": "Late",
            "surname": "Comer",
            "mail": f"late@{case.tenant.domain}",
            "accountEnabled": True,
            "userType": "Member",
        },
    )
    case.control("POST", "/expire-delta-tokens")
    await case.update_now()
    _, run = await case.wait_runs(2)
    assert run["status"] == initial["status"], run
    assert any(w["code"] == "delta_token_expired" for w in run["warnings"])
    after = await case.extensions()
    assert set(after) == set(before) | {created["id"]}


async def _changes(database_url: str, run_id: str) -> int:
    engine = create_engine(database_url)
    try:
        async with session_scope(sessionmaker(engine)) as session:
            stmt = select(func.count()).select_from(SyncChange)
            stmt = stmt.where(SyncChange.run_id == run_id)
            return int((await session.execute(stmt)).scalar_one())
    finally:
        await engine.dispose()


async def test_a_process_killed_during_apply_leaves_no_half_applied_scope(
    api: Api, cloud: Cloud, database_url: str, case: Case
) -> None:
    url = make_url(database_url)
    with CuttableProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        victim = Replica(proxied, cloud)
        survivor: Replica | None = None
        try:
            victim.wait_ready()
            case.tenant = cloud.tenant(users=3000, groups=0, seed=13)
            case.pbx, case.h = await api.new_pbx(max_extensions=4000)
            await connect(api, cloud, case.tenant, case.h)
            resp = await api.client.put(
                "/api/v1/integration/user-sync", json={"enabled": True}, headers=case.h
            )
            assert resp.status_code == 200
            deadline = time.monotonic() + 60
            while True:
                runs = await case.runs()
                phase = runs[0].progress.get("phase") if runs else None
                if phase == "applying":
                    break
                assert runs[0].finished_at is None if runs else True, "the run ended first"
                assert time.monotonic() < deadline, "the run never reached its apply"
                await asyncio.sleep(0.01)
            # Slow the database down so that the process dies with the apply under way.
            proxy.delay = 0.05
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(timeout=10)
            proxy.delay = 0.0
            survivor = Replica(database_url, cloud, WORKER_LEASE_SECONDS="3")
            survivor.wait_ready()
            dead, retry = await case.wait_runs(2, timeout=90)
        finally:
            victim.stop()
            if survivor is not None:
                survivor.stop()
    assert dead["status"] == "interrupted", dead
    assert retry["retry_of"] == dead["id"] and retry["status"] in ("succeeded", "partial")
    synced = await case.extensions()
    killed_changes = await _changes(database_url, dead["id"])
    # All or nothing: the killed apply committed nothing, so the retry created every extension.
    assert killed_changes == 0
    assert retry["users"]["created"] == len(synced) > 2500


async def test_the_emulator_killed_mid_fetch_fails_the_run_and_deletes_nothing(
    database_url: str, tmp_path: Any
) -> None:
    from app.main import create_app
    from emulator.faults import clear_faults
    from emulator.testing import run_emulator
    from tests.conftest import clean_database, make_settings

    await clean_database(database_url)
    # A cloud of this test's own, so that killing it leaves the shared one alone.
    first = run_emulator(tmp_path)
    emulator = first.__enter__()
    cloud = Cloud(emulator)
    port = int(emulator.base_url.rsplit(":", 1)[1])
    app = create_app(make_settings(database_url, worker_enabled=False, **cloud.settings()))
    replica = Replica(database_url, cloud)
    restarted = None
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test"
            ) as client,
        ):
            replica.wait_ready()
            case = Case(Api(client, app), cloud, database_url)
            initial = await case.start(users=200, delete_when=["deleted"])
            before = await case.extensions()
            gone = sorted(before)[:5]
            for uid in gone:
                case.control("DELETE", f"/users/{uid}")
            case.control("POST", "/expire-delta-tokens")
            case.fault(action="latency", latency_ms=800, path=r"^/v1\.0/users$")
            cloud.clear_requests()
            failing = await case.update_now()
            deadline = time.monotonic() + 30
            while not cloud.requests("/v1.0/users"):
                assert time.monotonic() < deadline, "the run never read Graph"
                await asyncio.sleep(0.05)
            first.kill()
            _, failed = await case.wait_runs(2)
            assert failed["id"] == failing and failed["status"] == "failed", failed
            assert failed["error"]["scope"] == "users"
            assert await case.extensions() == before
            integration = (await client.get("/api/v1/integration", headers=case.h)).json()
            assert integration["status"] == "connected"  # an outage is not a credential error
            # The same cloud comes back on the same address: the next run converges.
            clear_faults(emulator.state)
            restarted = run_emulator(tmp_path, port=port, state=emulator.state)
            restarted.__enter__()
            await case.update_now()
            *_, converged = await case.wait_runs(3)
            assert converged["status"] == initial["status"], converged
            assert converged["users"]["deleted"] == 5
            after = set(await case.extensions())
            assert not after & set(gone) and set(before) - set(gone) <= after
    finally:
        replica.stop()
        cloud.control.close()
        if restarted is not None:
            restarted.__exit__(None, None, None)
        first.__exit__(None, None, None)
