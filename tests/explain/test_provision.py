"""Provision on demand: one user's plan applied now, as a queued on_demand run."""

from __future__ import annotations

from typing import Any

import httpx

from tests.cloud import Cloud
from tests.conftest import Api
from tests.sync.helpers import Scenario
from tests.sync.test_user_rules import new_user, small


async def provision(s: Scenario, user: str) -> httpx.Response:
    return await s.api.client.post(
        "/api/v1/integration/user-sync/provision", json={"user": user}, headers=s.h
    )


async def changes(s: Scenario, run_id: str) -> list[tuple[str, str | None]]:
    resp = await s.api.client.get(f"/api/v1/sync-runs/{run_id}/changes", headers=s.h)
    return [(c["action"], c["entra_id"]) for c in resp.json()["items"]]


async def runs(s: Scenario) -> list[dict[str, Any]]:
    resp = await s.api.client.get("/api/v1/sync-runs", headers=s.h)
    return list(resp.json()["items"])


async def test_provision_creates_one_user_in_an_on_demand_run(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    uid = new_user(s, "pia")
    other = new_user(s, "ole")
    resp = await provision(s, f"pia@{s.tenant.domain}")
    assert resp.status_code == 202, resp.text
    run = resp.json()
    assert (
        run["trigger"] == "on_demand" and run["scopes"] == ["users"] and run["status"] == "queued"
    )
    s.cloud.clear_requests()
    [done] = await s.run_worker()
    assert done["id"] == run["id"] and done["status"] == "succeeded"
    assert done["users"]["created"] == 1
    synced = await s.synced()
    assert uid in synced and other not in synced  # only that user
    assert await changes(s, run["id"]) == [("create", uid)]
    assert (await runs(s))[0]["id"] == run["id"]
    # One read by id: no listing, no delta round.
    paths = [r["path"] for r in s.cloud.requests("/v1.0/")]
    assert [p for p in paths if "/users" in p] == [f"/v1.0/users/{uid}"]


async def test_provision_folds_into_the_waiting_run(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    a, b = new_user(s, "ada"), new_user(s, "ben")
    first = await provision(s, a)
    assert first.status_code == 202
    second = await provision(s, b)
    assert second.status_code == 200 and second.json()["id"] == first.json()["id"]
    # Update Now folds in too: the run becomes a whole sync that still covers both users.
    now = await s.api.client.post("/api/v1/integration/sync", json={}, headers=s.h)
    assert now.status_code == 200 and now.json()["id"] == first.json()["id"]
    assert now.json()["trigger"] == "manual"
    [done] = await s.run_worker()
    assert done["users"]["created"] == 2
    assert {a, b} <= set(await s.synced())
    assert sorted(await changes(s, done["id"])) == sorted([("create", a), ("create", b)])


async def test_provision_deletes_without_the_guard(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    uid = new_user(s, "del")
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    await s.put_rules("deletion-guard", {"enabled": True, "max_deletions": 0})
    s.control("DELETE", f"/users/{uid}")
    resp = await provision(s, uid)
    assert resp.status_code == 202, resp.text
    [done] = await s.run_worker()
    assert done["status"] == "succeeded" and done["held"] is None
    assert done["users"]["deleted"] == 1
    assert uid not in await s.synced()
    assert await changes(s, done["id"]) == [("delete", uid)]
    # Nothing refers to the user any more.
    assert (await provision(s, uid)).json()["code"] == "user_not_found"


async def test_provision_refusals(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    uid = new_user(s, "ref")
    missing = await provision(s, f"nobody@{s.tenant.domain}")
    assert missing.status_code == 404 and missing.json()["code"] == "user_not_found"
    await s.api.client.post(
        "/api/v1/integration/user-sync/pause", json={"delete_extensions": False}, headers=s.h
    )
    paused = await provision(s, uid)
    assert paused.status_code == 409 and paused.json()["code"] == "sync_paused"
    await s.api.client.post("/api/v1/integration/user-sync/resume", headers=s.h)
    await s.api.client.post(
        "/api/v1/integration/disable", json={"delete_extensions": False}, headers=s.h
    )
    disabled = await provision(s, uid)
    assert disabled.status_code == 409 and disabled.json()["code"] == "integration_disabled"
    await s.api.client.post("/api/v1/integration/enable", headers=s.h)
    await s.run_worker()
    doomed = [new_user(s, f"d{i}") for i in range(2)]
    await s.sync()
    await s.put_rules("deletion-guard", {"enabled": True, "max_deletions": 1})
    for d in doomed:
        s.control("DELETE", f"/users/{d}")
    held = await s.sync()
    assert held["status"] == "held"
    blocked = await provision(s, doomed[0])
    assert blocked.status_code == 409 and blocked.json()["code"] == "run_held"
    assert not [r for r in await runs(s) if r["trigger"] == "on_demand"]


async def test_a_reaped_on_demand_run_keeps_its_users_on_retry(sync_api: Api, cloud: Cloud) -> None:
    from datetime import timedelta

    from app.db import session_scope
    from app.runs import repository as runs_repo
    from app.sync.worker import Worker

    s = await small(sync_api, cloud)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    uid = new_user(s, "pia")
    other = new_user(s, "ole")
    resp = await provision(s, uid)
    assert resp.status_code == 202, resp.text
    runtime = s.api.app.state.runtime
    # A worker claims the on-demand run and dies: its lease is over at once.
    async with session_scope(runtime.sessionmaker) as session:
        claimed = await runs_repo.claim_next(session, "dead-worker", timedelta(seconds=-1))
    assert claimed is not None and claimed.id == resp.json()["id"]
    assert await Worker(runtime, name="survivor").reap() == 1
    [retry] = await s.run_worker()
    assert retry["retry_of"] == claimed.id and retry["trigger"] == "on_demand"
    assert retry["status"] == "succeeded", retry
    assert await changes(s, retry["id"]) == [("create", uid)]
    synced = await s.synced()
    assert uid in synced and other not in synced
