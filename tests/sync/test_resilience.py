"""What goes wrong: throttling, faults mid-paging, expired delta tokens, crashes, dead workers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message
from sqlalchemy import select

from app.db import session_scope, utcnow
from app.runs import queue as runs_queue
from app.runs import repository as runs_repo
from app.runs.models import Outbox
from app.runs.outbox import send_pending
from app.sync.worker import Worker
from tests.cloud import Cloud
from tests.conftest import Api
from tests.sync.helpers import Scenario, scenario
from tests.sync.test_user_rules import new_user


def fault(s: Scenario, **spec: Any) -> None:
    resp = s.cloud.control.post("/faults", json={"tenant_id": s.tid, **spec})
    assert resp.status_code == 201, resp.text


@pytest.fixture(autouse=True)
def _clear_faults(cloud: Cloud) -> Any:
    yield
    cloud.control.delete("/faults")


async def test_throttling_is_honoured_and_counted(sync_api: Api, cloud: Cloud) -> None:
    s = await scenario(sync_api, cloud, users=30, groups=2, seed=9)
    fault(s, action="throttle", path=r"^/v1\.0/users$", retry_after=1, count=2)
    await s.put_rules("user-sync", {"enabled": True})
    [run] = await s.run_worker()
    assert run["status"] in ("succeeded", "partial")
    assert run["graph"]["throttled"] == 2 and run["graph"]["waited_seconds"] >= 2
    assert len(await s.synced()) == run["users"]["created"] > 0
    mine = [r for r in s.cloud.requests("/v1.0/users") if r.get("tenant_id") == s.tid]
    throttled = [r for r in mine if r["status"] == 429]
    assert len(throttled) == 2


async def test_failure_midway_through_paging_changes_nothing(sync_api: Api, cloud: Cloud) -> None:
    s = await scenario(sync_api, cloud, users=0, groups=0, seed=1)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    before = await s.extensions()
    for i in range(6):
        new_user(s, f"page{i}")
    # A full listing in pages of one user: the third page answers 503 for good.
    await s.api.client.put(
        "/api/v1/integration/user-sync",
        json={"enabled": True, "delete_when": ["deleted"]},
        headers=s.h,
    )
    from app.sync import fetch_users

    original = fetch_users.PAGE_SIZE
    fetch_users.PAGE_SIZE = 1
    try:
        fault(s, action="error", status=503, path=r"^/v1\.0/users$", after=2)
        run = await s.sync()
    finally:
        fetch_users.PAGE_SIZE = original
    assert run["status"] == "failed" and run["error"]["scope"] == "users"
    assert "503" in run["error"]["message"]
    assert await s.extensions() == before
    cloud.control.delete("/faults")
    rerun = await s.sync()
    assert rerun["users"]["created"] == 6


async def test_expired_delta_token_forces_a_full_listing(sync_api: Api, cloud: Cloud) -> None:
    s = await scenario(sync_api, cloud, users=5, groups=0, seed=2)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    uid = new_user(s, "late")
    s.control("POST", "/expire-delta-tokens")
    s.cloud.clear_requests()
    run = await s.sync()
    assert any(w["code"] == "delta_token_expired" for w in run["warnings"])
    assert uid in await s.synced()
    paths = [r["path"] for r in s.cloud.requests("/v1.0/users")]
    assert "/v1.0/users/delta" in paths and "/v1.0/users" in paths


async def test_crash_during_apply_leaves_no_half_state(
    sync_api: Api, cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await scenario(sync_api, cloud, users=12, groups=0, seed=4)
    await s.put_rules("user-sync", {"enabled": True})

    async def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("power cut")

    # The delta link is saved last in the apply transaction: failing there rolls back the rest.
    monkeypatch.setattr(runs_repo, "save_delta_link", boom)
    [run] = await s.run_worker()
    assert run["status"] == "failed" and run["error"]["code"] == "internal_error"
    assert await s.extensions() == []
    changes = (await s.api.client.get(f"/api/v1/sync-runs/{run['id']}/changes", headers=s.h)).json()
    assert changes["items"] == []
    monkeypatch.undo()
    again = await s.sync()
    assert again["users"]["created"] == len(await s.synced()) > 0


async def test_a_dead_worker_run_is_interrupted_and_retried(sync_api: Api, cloud: Cloud) -> None:
    s = await scenario(sync_api, cloud, users=3, groups=0, seed=6)
    await s.put_rules("user-sync", {"enabled": True})
    runtime = s.api.app.state.runtime
    # A worker claims the run and dies before its first heartbeat.
    async with session_scope(runtime.sessionmaker) as session:
        claimed = await runs_repo.claim_next(session, "dead-worker", timedelta(seconds=60))
    assert claimed is not None
    survivor = Worker(runtime, name="survivor")
    assert await survivor.reap() == 0  # the lease still holds
    # Its lease runs out (set in the past rather than waited for).
    async with session_scope(runtime.sessionmaker) as session:
        row = await runs_repo.get(session, claimed.id, for_update=True)
        assert row is not None and row.locked_until is not None
        row.locked_until = row.locked_until - timedelta(seconds=61)
    assert await survivor.reap() == 1
    dead = await s.run(claimed.id)
    assert dead["status"] == "interrupted" and dead["error"]["code"] == "worker_lost"
    [retry] = await s.run_worker()
    assert retry["retry_of"] == claimed.id and retry["status"] in ("succeeded", "partial")
    assert retry["trigger"] == "initial" and len(await s.synced()) > 0


async def test_one_runs_and_one_waits_and_triggers_fold(sync_api: Api, cloud: Cloud) -> None:
    s = await scenario(sync_api, cloud, users=2, groups=0, seed=8)
    await s.put_rules("user-sync", {"enabled": True})
    first = await s.api.client.post("/api/v1/integration/sync", json={}, headers=s.h)
    assert (
        first.status_code == 200 and first.json()["trigger"] == "initial"
    )  # folded into the initial run
    queued = (await s.api.client.get("/api/v1/sync-runs", headers=s.h)).json()["items"]
    assert len(queued) == 1
    cancel = await s.api.client.post(f"/api/v1/sync-runs/{queued[0]['id']}/cancel", headers=s.h)
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    again = await s.api.client.post(f"/api/v1/sync-runs/{queued[0]['id']}/cancel", headers=s.h)
    assert again.status_code == 409
    fresh = await s.api.client.post(
        "/api/v1/integration/sync", json={"scopes": ["users"]}, headers=s.h
    )
    assert fresh.status_code == 202 and fresh.json()["status"] == "queued"
    bad = await s.api.client.post(
        "/api/v1/integration/sync", json={"scopes": ["printers"]}, headers=s.h
    )
    assert bad.status_code == 422
    missing = await s.api.client.get("/api/v1/sync-runs/nope", headers=s.h)
    assert missing.status_code == 404


async def test_progress_events_stream_until_the_run_ends(sync_api: Api, cloud: Cloud) -> None:
    s = await scenario(sync_api, cloud, users=5, groups=0, seed=3)
    saved = await s.put_rules("user-sync", {"enabled": True})
    run_id = saved["initial_run_id"]
    worker_task = asyncio.create_task(s.run_worker())
    events: list[str] = []
    async with s.api.client.stream(
        "GET", f"/api/v1/sync-runs/{run_id}/events", headers=s.h
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for line in resp.aiter_lines():
            if line.startswith("event:"):
                events.append(line.split(":", 1)[1].strip())
            if events and events[-1] == "done":
                break
    await worker_task
    assert events[-1] == "done"


async def test_welcome_emails_sent_once_after_commit(
    app_factory: Any, cloud: Cloud, database_url: str
) -> None:
    from tests.conftest import clean_database

    await clean_database(database_url)
    received: list[Any] = []

    class Inbox(Message):
        def handle_message(self, message: Any) -> None:
            received.append(message)

    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        api = await app_factory(
            worker_enabled=False,
            smtp_url=f"smtp://127.0.0.1:{port}",
            mail_from="pbx@example.com",
            **cloud.settings(),
        )
        s = await scenario(api, cloud, users=0, groups=0, seed=1)
        with_mail = new_user(s, "wendy")
        without = new_user(
            s, "walt", mail=None, userPrincipalName=f"walt_x.com#EXT#@{s.tenant.domain}"
        )
        await s.put_rules(
            "user-sync", {"enabled": True, "send_welcome_email": True, "range": {"mode": "all"}}
        )
        await s.run_worker()
        synced = await s.synced()
        assert synced[with_mail]["welcome_email"]["status"] == "sent"
        assert synced[without]["welcome_email"]["status"] == "no_address"
        to = sorted(m["To"] for m in received)
        assert f"wendy@{s.tenant.domain}" in to
        count = len(received)
        await s.sync()  # nothing new: nothing sent again
        assert len(received) == count
        resend = await s.api.client.post(
            f"/api/v1/extensions/{synced[with_mail]['id']}/welcome-email", headers=s.h
        )
        # Queued; the outbox sends it once the request committed.
        assert resend.status_code == 200 and resend.json()["welcome_email"]["status"] == "pending"
        assert await send_pending(s.api.app.state.runtime) == 1
        assert len(received) == count + 1
        assert (await s.synced())[with_mail]["welcome_email"]["status"] == "sent"
    finally:
        controller.stop()


async def test_welcome_email_resend_rules(cloud_api: Api) -> None:
    _, h = await cloud_api.new_pbx()
    ext = (
        await cloud_api.client.post(
            "/api/v1/extensions",
            json={"number": "1", "first_name": "A", "email": "a@x.com"},
            headers=h,
        )
    ).json()
    no_mail = (
        await cloud_api.client.post(
            "/api/v1/extensions", json={"number": "2", "first_name": "B"}, headers=h
        )
    ).json()
    resp = await cloud_api.client.post(f"/api/v1/extensions/{ext['id']}/welcome-email", headers=h)
    assert resp.status_code == 409 and resp.json()["code"] == "mail_not_configured"
    resp = await cloud_api.client.post(
        f"/api/v1/extensions/{no_mail['id']}/welcome-email", headers=h
    )
    assert resp.status_code == 409 and resp.json()["code"] == "no_email_address"


async def test_unreachable_mail_server_marks_the_email_failed_after_retries(
    app_factory: Any, cloud: Cloud, database_url: str
) -> None:
    from app.runs.outbox import send_pending
    from tests.conftest import clean_database, free_port

    await clean_database(database_url)
    api = await app_factory(
        worker_enabled=False, smtp_url=f"smtp://127.0.0.1:{free_port()}", **cloud.settings()
    )
    s = await scenario(api, cloud, users=0, groups=0, seed=1)
    uid = new_user(s, "mona")
    await s.put_rules("user-sync", {"enabled": True, "send_welcome_email": True})
    [run] = await s.run_worker()
    assert run["status"] in ("succeeded", "partial")  # mail trouble never fails a run
    assert (await s.synced())[uid]["welcome_email"]["status"] == "pending"
    runtime = api.app.state.runtime
    # Retried with backoff (the clock handed in, no waiting): not yet due, then due again.
    start = utcnow()
    assert await send_pending(runtime, now=start) == 0
    async with session_scope(runtime.sessionmaker) as session:
        ext_id = (await s.synced())[uid]["id"]
        [row] = (
            (await session.execute(select(Outbox).where(Outbox.extension_id == ext_id)))
            .scalars()
            .all()
        )
        assert row.status == "pending" and row.attempts >= 1 and row.next_attempt_at is not None
        attempts, due = row.attempts, row.next_attempt_at
    assert await send_pending(runtime, now=due - timedelta(seconds=1)) == 0
    async with session_scope(runtime.sessionmaker) as session:
        assert (await session.get(Outbox, row.id)).attempts == attempts  # not due: not tried
    assert (await s.synced())[uid]["welcome_email"]["status"] == "pending"
    # Past the give-up time: failed, with the mail server's answer.
    later = start + timedelta(seconds=runtime.settings.welcome_email_give_up_seconds + 1)
    assert await send_pending(runtime, now=later) == 0
    mail = (await s.synced())[uid]["welcome_email"]
    assert mail["status"] == "failed" and "onnect" in (mail["error"] or "")
    async with session_scope(runtime.sessionmaker) as session:
        failed = await session.get(Outbox, row.id)
        assert failed.status == "failed" and failed.last_error == mail["error"]


async def test_run_history_is_newest_first_and_paginated(sync_api: Api, cloud: Cloud) -> None:
    s = await scenario(sync_api, cloud, users=0, groups=0, seed=1)
    await s.put_rules("user-sync", {"enabled": True})
    made = [r["id"] for r in await s.run_worker()]
    for _ in range(3):
        made.append((await s.sync())["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await s.api.client.get("/api/v1/sync-runs", params=params, headers=s.h)).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(made))
    integ = (await s.api.client.get("/api/v1/integration", headers=s.h)).json()
    assert integ["last_sync_run"]["id"] == made[-1]


async def test_change_log_is_kept_90_days(sync_api: Api, cloud: Cloud) -> None:
    from sqlalchemy import func, select, update

    from app.db import utcnow
    from app.runs.models import SyncChange

    s = await scenario(sync_api, cloud, users=3, groups=0, seed=5)
    await s.put_rules("user-sync", {"enabled": True})
    [run] = await s.run_worker()
    runtime = s.api.app.state.runtime
    async with session_scope(runtime.sessionmaker) as session:
        ids = list(
            (
                await session.execute(select(SyncChange.id).where(SyncChange.run_id == run["id"]))
            ).scalars()
        )
        assert len(ids) >= 2
        old = utcnow() - timedelta(days=91)
        await session.execute(
            update(SyncChange).where(SyncChange.id == ids[0]).values(created_at=old)
        )
    async with session_scope(runtime.sessionmaker) as session:
        assert await runs_queue.purge(session) == 1
    async with session_scope(runtime.sessionmaker) as session:
        left = (await session.execute(select(func.count()).select_from(SyncChange))).scalar_one()
    assert left == len(ids) - 1


async def test_a_taken_number_is_retried_once_it_is_free(sync_api: Api, cloud: Cloud) -> None:
    s = await scenario(sync_api, cloud, users=0, groups=0, seed=1)
    uid = new_user(s, "nora", businessPhones=["+1 425 555 0100 x321"])
    manual = (
        await s.api.client.post(
            "/api/v1/extensions", json={"number": "321", "first_name": "Desk"}, headers=s.h
        )
    ).json()
    await s.put_rules(
        "user-sync", {"enabled": True, "number": {"mode": "property", "property": "businessPhones"}}
    )
    [run] = await s.run_worker()
    assert {f["source_id"]: f["code"] for f in run["failures"]}[uid] == "extension_number_taken"
    # Nothing frees the number: the next run does not even re-read the user.
    s.cloud.clear_requests()
    quiet = await s.sync()
    assert quiet["graph_requests"] <= 2 and uid not in await s.synced()
    await s.api.client.delete(f"/api/v1/extensions/{manual['id']}", headers=s.h)
    s.cloud.clear_requests()
    again = await s.sync()
    assert again["users"]["created"] == 1 and (await s.synced())[uid]["number"] == "321"
    assert any(r["path"].endswith("/$batch") for r in s.cloud.requests("/v1.0/"))


async def test_every_run_lists_the_failures_still_outstanding(sync_api: Api, cloud: Cloud) -> None:
    """7 users, 3 cannot get their number; one number is freed: the next (incremental) run
    still lists the other two, which it did not read again, and stays partial."""
    s = await scenario(sync_api, cloud, users=0, groups=0, seed=1)
    uids = [new_user(s, f"p{i}", businessPhones=[f"+1 425 555 0100 x{400 + i}"]) for i in range(7)]
    desks = []
    for i in range(3):
        desk = await s.api.client.post(
            "/api/v1/extensions", json={"number": f"{400 + i}", "first_name": "Desk"}, headers=s.h
        )
        desks.append(desk.json())
    await s.put_rules(
        "user-sync", {"enabled": True, "number": {"mode": "property", "property": "businessPhones"}}
    )
    [first] = await s.run_worker()
    assert first["status"] == "partial"
    failing = {f["source_id"]: f for f in first["failures"]}
    assert set(failing) == set(uids[:3])
    assert all(f["first_failed_at"] for f in failing.values())
    await s.api.client.delete(f"/api/v1/extensions/{desks[0]['id']}", headers=s.h)
    again = await s.sync()
    assert again["users"]["created"] == 1 and uids[0] in await s.synced()
    # Not re-read, still failing: listed, with the time they first failed, and partial.
    assert again["status"] == "partial"
    still = {f["source_id"]: f for f in again["failures"]}
    assert set(still) == set(uids[1:3])
    for uid in uids[1:3]:
        assert still[uid]["first_failed_at"] == failing[uid]["first_failed_at"]
        assert still[uid]["code"] == "extension_number_taken" and still[uid]["display_name"]
    assert again["users"]["failed"] == 2
    summary = (await s.api.client.get("/api/v1/integration/user-sync", headers=s.h)).json()
    assert summary["summary"]["failed"] == 2 == len(again["failures"])
