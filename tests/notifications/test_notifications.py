"""Graph change notifications end to end: the emulator delivers to the service over HTTPS.

Two instances of the service share the database, as two replicas would: one is served over HTTPS
(Graph posts to it), the other, in the test's event loop, does the worker's part.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.clock import FakeClock
from app.config import Settings
from app.db import session_scope
from app.main import create_app
from app.notifications import processing
from app.notifications.models import NotificationEvent, PendingChanges
from tests.cloud import Cloud, EntraTenant, connect
from tests.conftest import SECRET_KEY, Api, ServedApp, free_port
from tests.sync.helpers import Scenario
from tests.sync.test_user_rules import new_user


class Served:
    def __init__(self, scenario: Scenario, base_url: str, ca: str) -> None:
        self.s = scenario
        self.base_url = base_url
        self.ca = ca

    @property
    def runtime(self) -> Any:
        return self.s.api.app.state.runtime

    async def events(self) -> int:
        async with session_scope(self.runtime.sessionmaker) as session:
            return int(
                (
                    await session.execute(select(func.count()).select_from(NotificationEvent))
                ).scalar_one()
            )

    async def wait_events(self, at_least: int, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while (n := await self.events()) < at_least:
            assert time.monotonic() < deadline, f"only {n} notifications arrived"
            await asyncio.sleep(0.1)
        return n


@pytest.fixture
async def served(
    app_factory: Any,
    database_url: str,
    cloud: Cloud,
    service_tls: dict[str, str],
    clock: FakeClock,
) -> AsyncIterator[Served]:
    from app.db import create_engine
    from tests.conftest import _truncate

    engine = create_engine(database_url)
    await _truncate(engine)
    await engine.dispose()
    port = free_port()
    public = f"https://127.0.0.1:{port}"
    overrides = dict(
        public_base_url=public, change_batch_size=3, change_delay_seconds=600, **cloud.settings()
    )
    # The emulator trusts the service's private CA, and delivers at once.
    cloud.control.put(
        "/notifications/settings", json={"notification_ca": service_tls["ca"], "batch_window": 0.02}
    ).raise_for_status()
    tenant: EntraTenant = cloud.tenant(users=0, groups=0, seed=1)
    cloud.control.patch(
        f"/tenants/{tenant.tenant_id}/apps/{tenant.client_id}",
        json={"redirect_uris": [f"{public}/integration/callback"]},
    ).raise_for_status()
    driver: Api = await app_factory(worker_enabled=False, **overrides)
    settings = Settings(
        database_url=database_url,
        secret_key=SECRET_KEY,
        worker_enabled=False,
        scheduler_enabled=False,
        **overrides,
    )
    served_app = create_app(settings, clock=clock)
    with ServedApp(served_app, port, tls=(service_tls["cert"], service_tls["key"])):
        pbx, h = await driver.new_pbx()
        await connect(driver, cloud, tenant, h)
        yield Served(Scenario(driver, cloud, tenant, pbx, h), public, service_tls["ca"])
    cloud.control.put("/notifications/settings", json={"notification_ca": None}).raise_for_status()


async def _subscribed(sv: Served) -> list[dict[str, Any]]:
    await sv.s.put_rules("user-sync", {"enabled": True})
    await sv.s.run_worker()
    await sv.s.api.app.state.worker.maintain_subscriptions()
    subs = (await sv.s.api.client.get("/api/v1/integration/subscriptions", headers=sv.s.h)).json()
    return list(subs)


async def test_handshake_and_forged_client_state(served: Served) -> None:
    ctx = ssl.create_default_context(cafile=served.ca)
    async with httpx.AsyncClient(base_url=served.base_url, verify=ctx) as client:
        resp = await client.post(
            "/webhooks/graph",
            params={"validationToken": "Validation: Testing client application reachability 2a9f"},
        )
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
        assert resp.text == "Validation: Testing client application reachability 2a9f"
        subs = await _subscribed(served)
        forged = {
            "value": [
                {
                    "subscriptionId": subs[0]["id"],
                    "clientState": "guessed",
                    "changeType": "updated",
                    "resource": "Users/x",
                }
            ]
        }
        assert (await client.post("/webhooks/graph", json=forged)).status_code == 202
        unknown = {
            "value": [{"subscriptionId": "nope", "clientState": "x", "changeType": "updated"}]
        }
        assert (await client.post("/webhooks/graph", json=unknown)).status_code == 202
        bad = await client.post("/webhooks/graph", content=b"not json")
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_notification"
    assert await served.events() == 0


async def test_subscriptions_are_created_and_ten_changes_queue_a_run(served: Served) -> None:
    s = served.s
    subs = await _subscribed(served)
    assert sorted(x["resource"] for x in subs) == ["groups", "users"]
    held = s.cloud.control.get("/subscriptions", params={"tenant_id": s.tid}).json()["value"]
    assert {x["id"] for x in held} == {x["id"] for x in subs}
    ids = [new_user(s, f"n{i}") for i in range(3)]  # three created users: three notifications
    await served.wait_events(3)
    queued = await processing.process(served.runtime)
    assert len(queued) == 1  # the batch size (3 here) was reached: at once
    [run] = await s.run_worker()
    assert run["trigger"] == "changes" and run["users"]["created"] == 3
    assert set(ids) <= set(await s.synced())
    async with session_scope(served.runtime.sessionmaker) as session:
        pending = await session.get(PendingChanges, s.pbx["id"])
    assert pending is not None and pending.count == 0


async def test_a_single_change_waits_for_the_delay(served: Served) -> None:
    s = served.s
    await _subscribed(served)
    uid = sorted(await s.synced())[0]
    s.control("PATCH", f"/users/{uid}", json={"jobTitle": "Solo"})
    await served.wait_events(1)
    assert await processing.process(served.runtime) == []  # 1 < 3, and the delay has not passed
    served.runtime.clock.advance(590)
    assert await processing.process(served.runtime) == []
    served.runtime.clock.advance(11)  # ten minutes have passed since the event arrived
    assert len(await processing.process(served.runtime)) == 1
    [run] = await s.run_worker()
    assert run["trigger"] == "changes" and (await s.synced())[uid]["job_title"] == "Solo"


async def test_lost_subscription_is_recreated_with_a_resync(served: Served) -> None:
    s = served.s
    subs = await _subscribed(served)
    users_sub = next(x for x in subs if x["resource"] == "users")
    s.cloud.control.post(f"/subscriptions/{users_sub['id']}/expire").raise_for_status()
    # Due for renewal: the renewal finds Graph forgot it, so it is re-created and a resync queued.
    from datetime import timedelta

    from app.db import utcnow
    from app.notifications.models import GraphSubscription

    async with session_scope(served.runtime.sessionmaker) as session:
        row = await session.get(GraphSubscription, users_sub["id"])
        assert row is not None
        row.expires_at = utcnow() + timedelta(hours=1)
    await s.api.app.state.worker.maintain_subscriptions()
    now_subs = (await s.api.client.get("/api/v1/integration/subscriptions", headers=s.h)).json()
    assert users_sub["id"] not in {x["id"] for x in now_subs} and len(now_subs) == 2
    [run] = await s.run_worker()
    assert run["trigger"] == "resync"


async def test_reauthorization_required_is_answered(served: Served) -> None:
    s = served.s
    subs = await _subscribed(served)
    s.cloud.clear_requests()
    s.cloud.control.post(
        f"/subscriptions/{subs[0]['id']}/lifecycle", json={"event": "reauthorizationRequired"}
    ).raise_for_status()
    await served.wait_events(1)
    await processing.process(served.runtime)
    calls = [r for r in s.cloud.requests("/reauthorize") if r["method"] == "POST"]
    assert [c["path"] for c in calls] == [f"/v1.0/subscriptions/{subs[0]['id']}/reauthorize"]


async def test_disable_deletes_the_subscriptions(served: Served) -> None:
    s = served.s
    await _subscribed(served)
    await s.api.client.post("/api/v1/integration/disable", json={}, headers=s.h)
    assert (await s.api.client.get("/api/v1/integration/subscriptions", headers=s.h)).json() == []
    assert s.cloud.control.get("/subscriptions", params={"tenant_id": s.tid}).json()["value"] == []


async def test_http_base_url_shows_notifications_unavailable(sync_api: Api, cloud: Cloud) -> None:
    from tests.sync.helpers import scenario

    s = await scenario(sync_api, cloud, users=0, groups=0, seed=1)
    await s.put_rules("user-sync", {"enabled": True})
    await s.api.app.state.worker.maintain_subscriptions()
    body = (await s.api.client.get("/api/v1/integration", headers=s.h)).json()
    [warning] = [w for w in body["warnings"] if w["code"] == "notifications_unavailable"]
    assert "schedule" in warning["message"]
    assert (await s.api.client.get("/api/v1/integration/subscriptions", headers=s.h)).json() == []
