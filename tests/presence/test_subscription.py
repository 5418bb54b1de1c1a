"""Teams presence through the presence subscription: Graph notifies the served service over
HTTPS, the loop reads the notified users in bulk; renewal, rebuilds, catch-up, stop conditions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import func, select

from app.db import session_scope
from app.notifications.models import NotificationEvent
from app.notifications.processing import process
from app.presence.models import PresenceState
from tests.presence.helpers import PresenceWorld, subscribed_ids


async def _follow_all(w: PresenceWorld) -> dict[str, dict[str, Any]]:
    users = await w.synced_users()
    await w.presence_sync(True)
    for ext in users.values():
        await w.follow(ext)
    return users


async def _notified(w: PresenceWorld, at_least: int, timeout: float = 10) -> int:
    """Wait for Graph's deliveries to be recorded, then let the loop take them."""
    deadline = time.monotonic() + timeout
    while True:
        async with session_scope(w.runtime.sessionmaker) as session:
            n = (
                await session.execute(
                    select(func.count())
                    .select_from(NotificationEvent)
                    .where(NotificationEvent.processed_at.is_(None))
                )
            ).scalar_one()
        if n >= at_least:
            break
        assert time.monotonic() < deadline, f"only {n} notifications arrived"
        await asyncio.sleep(0.05)
    return await w.loop.notifications()


async def _state(w: PresenceWorld) -> PresenceState:
    async with session_scope(w.runtime.sessionmaker) as session:
        row = await session.get(PresenceState, w.s.pbx["id"])
    assert row is not None
    return row


async def test_a_notified_change_is_read_in_bulk_and_applied(served: PresenceWorld) -> None:
    w = served
    users = await _follow_all(w)
    w.clear()
    outcome = await w.tick()
    assert outcome.actions == ["created", "catch-up"]
    [sub] = w.graph_subscriptions()
    assert subscribed_ids(sub) == set(users) and sub["changeType"] == "updated"
    assert sub["resource"].startswith("/communications/presences?$filter=id in (")
    # Delegated: created with the authorization account's token; one catch-up read after it.
    assert len(w.reads()) == 1 and sorted(w.reads()[0]) == sorted(users)
    listed = (await w.s.api.client.get("/api/v1/integration/subscriptions", headers=w.s.h)).json()[
        "items"
    ]
    assert [x["resource"] for x in listed] == [sub["resource"]]
    a, b = sorted(users)[:2]
    w.clear()
    w.teams(a, "Busy", "InAMeeting")
    w.teams(b, "Away")
    assert await _notified(w, 2) == 2
    # Both changes in one bulk read of just those two users.
    assert [sorted(ids) for ids in w.reads()] == [sorted([a, b])]
    pa = await w.presence(users[a])
    assert (pa["status"], pa["source"], pa["teams_activity"]) == (
        "do_not_disturb",
        "teams",
        "InAMeeting",
    )
    assert (await w.presence(users[b]))["status"] == "away"
    # The run machinery never counted them as directory changes.
    assert await process(w.runtime) == []
    # Subscribed users are not polled.
    w.clear()
    await w.tick(after=30)
    assert w.reads() == []


async def test_renewal_before_expiry_and_a_failed_renewal_rebuilds(served: PresenceWorld) -> None:
    w = served
    users = await _follow_all(w)
    await w.tick()
    [sub] = w.graph_subscriptions()
    w.clear()
    await w.tick(after=20 * 60)  # 35 minutes left: not due
    assert w.subscription_calls() == []
    outcome = await w.tick(after=16 * 60)  # 19 minutes left: renewed in place
    assert outcome.actions == ["renewed"]
    assert w.subscription_calls() == [("PATCH", f"/v1.0/subscriptions/{sub['id']}")]
    assert (await _state(w)).expires_at > w.now
    # Graph lost it: the renewal fails, so it is rebuilt (delete, create) and everyone caught up.
    w.s.cloud.control.post(f"/subscriptions/{sub['id']}/expire").raise_for_status()
    w.clear()
    outcome = await w.tick(after=40 * 60)
    assert outcome.actions == ["deleted", "created", "catch-up"]
    methods = [m for m, _ in w.subscription_calls()]
    assert methods == ["PATCH", "DELETE", "POST"]
    assert len(w.reads()) == 1 and sorted(w.reads()[0]) == sorted(users)
    [again] = w.graph_subscriptions()
    assert again["id"] != sub["id"] and (await _state(w)).subscription_id == again["id"]


async def test_enable_disable_and_leave_rebuild_the_subscription(served: PresenceWorld) -> None:
    w = served
    users = await w.synced_users()
    a, b, c = sorted(users)[:3]
    await w.presence_sync(True)
    await w.follow(users[a])
    await w.follow(users[b])
    await w.tick()
    assert subscribed_ids(w.graph_subscriptions()[0]) == {a, b}
    # A user enables it: delete, create, then one bulk read of the new subscription's users.
    await w.follow(users[c])
    w.clear()
    outcome = await w.tick(after=2)
    assert outcome.actions == ["deleted", "created"]
    assert subscribed_ids(w.graph_subscriptions()[0]) == {a, b, c}
    assert [m for m, _ in w.subscription_calls()] == ["DELETE", "POST"]
    assert [sorted(ids) for ids in w.reads()] == [sorted([a, b, c])]
    # A user disables it.
    await w.follow(users[b], enabled=False)
    await w.tick(after=2)
    assert subscribed_ids(w.graph_subscriptions()[0]) == {a, c}
    # A user leaves the sync (out of range: the extension is deleted).
    w.s.control("PATCH", f"/users/{c}", json={"accountEnabled": False})
    await w.s.put_rules("user-sync", {"enabled": True, "delete_when": ["disabled", "deleted"]})
    await w.s.sync()
    await w.tick(after=2)
    assert subscribed_ids(w.graph_subscriptions()[0]) == {a}
    assert len(w.graph_subscriptions()) == 1


async def test_refused_creation_polls_until_it_succeeds(served: PresenceWorld) -> None:
    w = served
    users = await w.synced_users()
    await w.presence_sync(True)
    uid = sorted(users)[0]
    await w.follow(users[uid])
    w.s.cloud.control.post(
        "/faults",
        json={
            "action": "error",
            "status": 403,
            "path": "/subscriptions$",
            "method": "POST",
            "count": 1,
        },
    ).raise_for_status()
    outcome = await w.tick()
    assert outcome.actions == ["refused", "catch-up"] and w.graph_subscriptions() == []
    w.teams(uid, "Away")
    w.clear()
    await w.tick(after=30)  # polled meanwhile
    assert w.reads() == [[uid]] and (await w.presence(users[uid]))["status"] == "away"
    w.clear()
    outcome = await w.tick(after=5 * 60)  # retried: created, then one bulk read
    assert outcome.actions == ["created"]
    assert [sorted(x) for x in w.reads()] == [[uid]]
    assert subscribed_ids(w.graph_subscriptions()[0]) == {uid}


async def test_catch_up_after_the_service_was_down(served: PresenceWorld) -> None:
    w = served
    users = await _follow_all(w)
    await w.tick()
    await w.loop.release()  # the process ends (its lease is released)
    for uid in users:
        w.teams(uid, "DoNotDisturb")
    await asyncio.sleep(0.3)
    # Nobody took the notifications; a new process catches up everyone in one bulk read.
    async with session_scope(w.runtime.sessionmaker) as session:
        await session.execute(NotificationEvent.__table__.delete())
    w.clear()
    outcome = await w.tick(after=60, loop=w.new_loop("second"))
    assert "catch-up" in outcome.actions
    assert len(w.reads()) == 1 and sorted(w.reads()[0]) == sorted(users)
    for ext in users.values():
        assert (await w.presence(ext))["status"] == "do_not_disturb"
    # Another process does not take over a PBX whose lease is alive.
    assert await w.new_loop("third").tick(w.now) == {}
    # A process that missed its own lease (stalled) catches up too.
    second = w.new_loop("second")
    w.clear()
    outcome = await w.tick(after=3 * 3600, loop=second)
    assert "catch-up" in outcome.actions and len(w.reads()) == 1


async def test_lifecycle_events_renew_or_rebuild(served: PresenceWorld) -> None:
    w = served
    users = await _follow_all(w)
    await w.tick()
    [sub] = w.graph_subscriptions()
    w.s.cloud.control.post(
        f"/subscriptions/{sub['id']}/lifecycle", json={"event": "reauthorizationRequired"}
    ).raise_for_status()
    assert await _notified(w, 1) == 1
    w.clear()
    outcome = await w.tick(after=2)
    assert outcome.actions == ["renewed", "catch-up"]
    assert len(w.reads()) == 1 and sorted(w.reads()[0]) == sorted(users)
    w.s.cloud.control.post(
        f"/subscriptions/{sub['id']}/lifecycle", json={"event": "subscriptionRemoved"}
    ).raise_for_status()
    assert await _notified(w, 1) == 1
    outcome = await w.tick(after=2)
    assert outcome.actions == ["created", "catch-up"]
    [again] = w.graph_subscriptions()
    assert again["id"] != sub["id"]


async def test_stop_conditions_delete_the_subscription(served: PresenceWorld) -> None:
    w = served
    users = await _follow_all(w)
    client, h = w.s.api.client, w.s.h
    await w.tick()
    assert len(w.graph_subscriptions()) == 1
    await w.presence_sync(False)
    await w.tick(after=2)
    assert w.graph_subscriptions() == []
    assert (await client.get("/api/v1/integration/subscriptions", headers=h)).json()["items"] == []
    await w.presence_sync(True)
    w.clear()
    outcome = await w.tick(after=2)
    assert outcome.actions == ["created", "catch-up"] and len(w.reads()) == 1
    assert (
        await client.post("/api/v1/integration/user-sync/pause", json={}, headers=h)
    ).status_code == 200
    await w.tick(after=2)
    assert w.graph_subscriptions() == []
    assert (await client.post("/api/v1/integration/user-sync/resume", headers=h)).status_code == 200
    await w.s.run_worker()
    await w.tick(after=2)
    assert len(w.graph_subscriptions()) == 1
    assert (await client.post("/api/v1/integration/disable", json={}, headers=h)).status_code == 200
    w.clear()
    await w.tick(after=2)
    assert w.graph_subscriptions() == [] and w.reads() == []
    assert (await client.post("/api/v1/integration/enable", headers=h)).status_code in (200, 202)
    await w.s.run_worker()
    await w.tick(after=2)
    assert len(w.graph_subscriptions()) == 1 and len(w.reads()) == 1
    assert (
        await client.post("/api/v1/integration/disconnect", json={}, headers=h)
    ).status_code == 200
    w.clear()
    await w.tick(after=2)
    assert w.graph_subscriptions() == [] and w.reads() == []
    assert len(users) >= 1
