"""Graph change notifications end to end: the emulator delivers to the service over HTTPS.

Two instances of the service share the database, as two replicas would: one is served over HTTPS
(Graph posts to it), the other, in the test's event loop, does the worker's part.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.clock import FakeClock
from app.config import Settings
from app.db import session_scope, utcnow
from app.main import create_app
from app.notifications import processing, subscriptions
from app.notifications.models import GraphSubscription, NotificationEvent, PendingChanges
from tests.cloud import Cloud, EntraTenant, connect
from tests.conftest import SECRET_KEY, Api, ServedApp, free_port
from tests.sync.helpers import Scenario, scenario
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
    request: pytest.FixtureRequest,
    app_factory: Any,
    database_url: str,
    cloud: Cloud,
    service_tls: dict[str, str],
    clock: FakeClock,
) -> AsyncIterator[Served]:
    """Small change triggers (3 events, 600 s) unless parametrised with "defaults"."""
    from tests.conftest import clean_database

    await clean_database(database_url)
    port = free_port()
    public = f"https://127.0.0.1:{port}"
    triggers = (
        {}
        if getattr(request, "param", None) == "defaults"
        else {
            "change_batch_size": 3,
            "change_delay_seconds": 600,
        }
    )
    overrides = dict(public_base_url=public, **triggers, **cloud.settings())
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
    await subscriptions.maintain(sv.s.api.app.state.runtime)
    page = (await sv.s.api.client.get("/api/v1/integration/subscriptions", headers=sv.s.h)).json()
    assert page["next_cursor"] is None
    return list(page["items"])


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
    await subscriptions.maintain(s.api.app.state.runtime)
    now_subs = (await s.api.client.get("/api/v1/integration/subscriptions", headers=s.h)).json()[
        "items"
    ]
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
    assert (await s.api.client.get("/api/v1/integration/subscriptions", headers=s.h)).json() == {
        "items": [],
        "next_cursor": None,
    }
    assert s.cloud.control.get("/subscriptions", params={"tenant_id": s.tid}).json()["value"] == []


@pytest.mark.parametrize("served", ["defaults"], indirect=True)
async def test_change_trigger_defaults_ten_events_or_600_seconds(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = served.s
    fields = Settings.model_fields
    assert fields["change_batch_size"].default == 10
    assert fields["change_delay_seconds"].default == 600
    settings = served.runtime.settings
    assert (settings.change_batch_size, settings.change_delay_seconds) == (10, 600)
    await _subscribed(served)
    # Nine changes wait; the tenth queues a run at once.
    ids = [new_user(s, f"d{i}") for i in range(9)]
    await served.wait_events(9)
    assert await processing.process(served.runtime) == []
    ids.append(new_user(s, "d9"))
    await served.wait_events(10)
    assert len(await processing.process(served.runtime)) == 1
    [run] = await s.run_worker()
    assert run["trigger"] == "changes" and run["users"]["created"] == 10
    assert set(ids) <= set(await s.synced())

    # One change waits 600 s after it arrived (the runtime's clock stands in for waiting).
    s.control("PATCH", f"/users/{ids[0]}", json={"jobTitle": "Later"})
    await served.wait_events(11)
    runtime = served.runtime
    assert await processing.process(runtime) == []
    runtime.clock.advance(595)
    assert await processing.process(runtime) == []
    runtime.clock.advance(6)
    assert len(await processing.process(runtime)) == 1
    [run] = await s.run_worker()
    assert run["trigger"] == "changes" and (await s.synced())[ids[0]]["job_title"] == "Later"


async def test_subscriptions_are_renewed_before_they_expire(served: Served) -> None:
    s = served.s
    subs = await _subscribed(served)
    users_sub = next(x for x in subs if x["resource"] == "users")
    soon = utcnow() + timedelta(days=1)  # inside the 3 days before expiry: due for renewal
    async with session_scope(served.runtime.sessionmaker) as session:
        row = await session.get(GraphSubscription, users_sub["id"])
        assert row is not None
        row.expires_at = soon
    s.cloud.clear_requests()
    await subscriptions.maintain(served.runtime)
    patches = [r for r in s.cloud.requests("/v1.0/subscriptions") if r["method"] == "PATCH"]
    assert [r["path"] for r in patches] == [f"/v1.0/subscriptions/{users_sub['id']}"]
    assert not [r for r in s.cloud.requests("/v1.0/subscriptions") if r["method"] == "POST"]
    async with session_scope(served.runtime.sessionmaker) as session:
        row = await session.get(GraphSubscription, users_sub["id"])
        assert row is not None and row.renewed_at is not None
        assert row.expires_at - utcnow() > timedelta(days=28)
        renewed_until = row.expires_at
    held = s.cloud.control.get("/subscriptions", params={"tenant_id": s.tid}).json()["value"]
    at_graph = next(x for x in held if x["id"] == users_sub["id"])
    graph_expiry = datetime.fromisoformat(at_graph["expirationDateTime"].replace("Z", "+00:00"))
    assert abs(graph_expiry - renewed_until) < timedelta(seconds=2)
    now_subs = (await s.api.client.get("/api/v1/integration/subscriptions", headers=s.h)).json()
    assert {x["id"] for x in now_subs["items"]} == {x["id"] for x in subs}
    assert await s.run_worker() == []  # a renewal leaves no gap: no resync


async def test_disconnect_deletes_the_subscriptions(served: Served) -> None:
    s = served.s
    subs = await _subscribed(served)
    assert len(subs) == 2
    s.cloud.clear_requests()
    resp = await s.api.client.post("/api/v1/integration/disconnect", json={}, headers=s.h)
    assert resp.status_code == 200 and resp.json()["status"] == "not_configured"
    deletes = [
        r["path"] for r in s.cloud.requests("/v1.0/subscriptions") if r["method"] == "DELETE"
    ]
    assert sorted(deletes) == sorted(f"/v1.0/subscriptions/{x['id']}" for x in subs)
    assert s.cloud.control.get("/subscriptions", params={"tenant_id": s.tid}).json()["value"] == []
    async with session_scope(served.runtime.sessionmaker) as session:
        left = (
            await session.execute(select(func.count()).select_from(GraphSubscription))
        ).scalar_one()
    assert left == 0


async def test_http_base_url_shows_notifications_unavailable(sync_api: Api, cloud: Cloud) -> None:
    from tests.sync.helpers import scenario

    s = await scenario(sync_api, cloud, users=0, groups=0, seed=1)
    await s.put_rules("user-sync", {"enabled": True})
    await subscriptions.maintain(s.api.app.state.runtime)
    body = (await s.api.client.get("/api/v1/integration", headers=s.h)).json()
    [warning] = [w for w in body["warnings"] if w["code"] == "notifications_unavailable"]
    assert "schedule" in warning["message"]
    assert (await s.api.client.get("/api/v1/integration/subscriptions", headers=s.h)).json() == {
        "items": [],
        "next_cursor": None,
    }


async def _metric(api: Api, name: str, labels: str) -> float:
    text = (await api.client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}}"):
            return float(line.split()[-1])
    return 0.0


async def test_only_events_that_can_concern_the_pbx_count(sync_api: Api, cloud: Cloud) -> None:
    from tests.sync.test_group_sync import new_group
    from tests.sync.test_user_rules import new_user

    s = await scenario(sync_api, cloud, users=0, groups=0, seed=3)
    inside = new_user(s, "inside")
    outside = new_user(s, "outside")
    sales = new_group(s, "Sales", members=[inside])
    other = new_group(s, "Other", members=[outside])
    await s.put_rules(
        "user-sync", {"enabled": True, "range": {"mode": "groups", "group_ids": [sales]}}
    )
    await s.run_worker()
    assert set(await s.synced()) == {inside}
    runtime = s.api.app.state.runtime
    dropped_users = await _metric(s.api, "pbx_entra_change_events_dropped_total", 'kind="users"')
    dropped_groups = await _metric(s.api, "pbx_entra_change_events_dropped_total", 'kind="groups"')
    async with session_scope(runtime.sessionmaker) as session:
        for resource in (
            f"Users/{inside}",  # synced: counts
            f"Users/{outside}",  # neither synced, failing nor able to enter a group range
            f"Groups/{sales}",  # named by the user range: counts
            f"Groups/{other}",  # not synced, not in any range
        ):
            session.add(
                NotificationEvent(
                    pbx_id=s.pbx["id"],
                    subscription_id="sub",
                    change_type="updated",
                    resource=resource,
                    received_at=utcnow(),
                )
            )
    await processing.process(runtime)
    async with session_scope(runtime.sessionmaker) as session:
        pending = await session.get(PendingChanges, s.pbx["id"])
        assert pending is not None and pending.count == 2
    assert (
        await _metric(s.api, "pbx_entra_change_events_dropped_total", 'kind="users"')
        == dropped_users + 1
    )
    assert (
        await _metric(s.api, "pbx_entra_change_events_dropped_total", 'kind="groups"')
        == dropped_groups + 1
    )
