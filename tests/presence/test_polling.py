"""Teams presence followed by polling (Graph refuses the subscription: the base URL is http):
the mapping, per-user enablement, PresenceUnknown, manual changes, the stop conditions."""

from __future__ import annotations

from tests.presence.helpers import PresenceWorld


async def test_default_and_custom_mapping_for_enabled_users_only(world: PresenceWorld) -> None:
    users = await world.synced_users()
    a, b, c = sorted(users)[:3]
    await world.presence_sync(True)
    await world.follow(users[a])
    await world.follow(users[b], Busy="lunch_break", Away="business_trip")
    await world.follow(users[c], enabled=False)
    for uid in (a, b, c):
        world.teams(uid, "Busy", "InACall")
    world.clear()
    outcome = await world.tick()
    assert "refused" in outcome.actions  # http notification URL: polled instead
    # One bulk read for the followers, nobody else asked about.
    assert [sorted(ids) for ids in world.reads()] == [sorted([a, b])]
    pa, pb, pc = [await world.presence(users[u]) for u in (a, b, c)]
    assert (pa["status"], pa["source"], pa["teams_availability"], pa["teams_activity"]) == (
        "do_not_disturb",
        "teams",
        "Busy",
        "InACall",
    )
    assert pa["updated_at"] is not None
    assert (pb["status"], pb["source"]) == ("lunch_break", "teams")
    assert (pc["status"], pc["source"], pc["teams_availability"]) == ("available", "manual", None)
    # The custom mapping keeps the defaults for the availabilities it does not name.
    world.teams(b, "Away")
    world.teams(a, "Offline")
    await world.tick(after=30)
    assert (await world.presence(users[b]))["status"] == "business_trip"
    assert (await world.presence(users[a]))["status"] == "off_work"
    # A changed mapping applies to a Teams-set status at the next reading.
    await world.follow(users[a], Offline="away")
    await world.tick(after=30)
    assert (await world.presence(users[a]))["status"] == "away"


async def test_manual_change_kept_until_teams_changes_and_unknown_never_applies(
    world: PresenceWorld,
) -> None:
    users = await world.synced_users()
    uid = sorted(users)[0]
    ext = users[uid]
    await world.presence_sync(True)
    await world.follow(ext)
    world.teams(uid, "Available")
    await world.tick()
    assert (await world.presence(ext))["status"] == "available"
    await world.manual(ext, "lunch_break")
    await world.tick(after=30)  # Teams unchanged: the manual status stays
    got = await world.presence(ext)
    assert (got["status"], got["source"], got["teams_availability"]) == (
        "lunch_break",
        "manual",
        "Available",
    )
    world.teams(uid, "PresenceUnknown")
    await world.tick(after=30)
    got = await world.presence(ext)
    assert (got["status"], got["source"]) == ("lunch_break", "manual")
    assert got["teams_availability"] == "PresenceUnknown"
    world.teams(uid, "DoNotDisturb", "Presenting")
    await world.tick(after=30)
    got = await world.presence(ext)
    assert (got["status"], got["source"], got["teams_activity"]) == (
        "do_not_disturb",
        "teams",
        "Presenting",
    )
    # Unknown after a Teams-set status changes nothing either, and nothing is written to Teams.
    before = got["updated_at"]
    world.teams(uid, "PresenceUnknown")
    world.clear()
    await world.tick(after=30)
    got = await world.presence(ext)
    assert (got["status"], got["updated_at"]) == ("do_not_disturb", before)
    calls = [
        (r["method"], r["path"])
        for r in world.s.cloud.requests()
        if "presence" in r["path"].lower() and r["tenant_id"] == world.s.tid
    ]
    assert calls == [("POST", "/v1.0/communications/getPresencesByUserId")]


async def test_polling_every_30_seconds_in_bulk(world: PresenceWorld) -> None:
    users = await world.synced_users()
    await world.presence_sync(True)
    for ext in users.values():
        await world.follow(ext)
    world.clear()
    await world.tick()
    assert len(world.reads()) == 1  # the first reading of everyone
    await world.tick(after=10)
    await world.tick(after=10)
    assert len(world.reads()) == 1  # not due yet
    await world.tick(after=10)
    reads = world.reads()
    assert len(reads) == 2 and sorted(reads[1]) == sorted(users)


async def test_disabling_a_user_or_presence_sync_stops_following(world: PresenceWorld) -> None:
    users = await world.synced_users()
    a, b = sorted(users)[:2]
    await world.presence_sync(True)
    await world.follow(users[a])
    await world.follow(users[b])
    await world.tick()
    await world.follow(users[b], enabled=False)
    world.teams(a, "Away")
    world.teams(b, "Away")
    world.clear()
    await world.tick(after=30)
    assert world.reads() == [[a]]
    assert (await world.presence(users[b]))["status"] != "away"
    # Presence sync off: no more reads; on again: everyone enabled is caught up at once.
    await world.presence_sync(False)
    world.clear()
    await world.tick(after=30)
    await world.tick(after=30)
    assert world.reads() == []
    world.teams(a, "Busy")
    await world.presence_sync(True)
    await world.tick(after=1)
    assert world.reads() == [[a]]
    assert (await world.presence(users[a]))["status"] == "do_not_disturb"


async def test_pause_disable_and_disconnect_stop_polling(world: PresenceWorld) -> None:
    users = await world.synced_users()
    uid = sorted(users)[0]
    await world.presence_sync(True)
    await world.follow(users[uid])
    await world.tick()
    client, h = world.s.api.client, world.s.h
    # Pausing user sync (extensions kept, frozen) stops following; resuming catches up.
    assert (
        await client.post("/api/v1/integration/user-sync/pause", json={}, headers=h)
    ).status_code == 200
    world.clear()
    await world.tick(after=30)
    assert world.reads() == []
    assert (await client.post("/api/v1/integration/user-sync/resume", headers=h)).status_code == 200
    await world.s.run_worker()
    world.teams(uid, "Away")
    await world.tick(after=1)
    assert world.reads() == [[uid]] and (await world.presence(users[uid]))["status"] == "away"
    # Disabling the integration stops it; enabling again catches up.
    assert (await client.post("/api/v1/integration/disable", json={}, headers=h)).status_code == 200
    world.clear()
    await world.tick(after=30)
    assert world.reads() == []
    world.teams(uid, "Busy")
    assert (await client.post("/api/v1/integration/enable", headers=h)).status_code in (200, 202)
    await world.s.run_worker()
    await world.tick(after=1)
    assert world.reads() == [[uid]]
    assert (await world.presence(users[uid]))["status"] == "do_not_disturb"
    # Disconnecting ends it for good (the extension is released; its Teams settings removed).
    assert (
        await client.post("/api/v1/integration/disconnect", json={}, headers=h)
    ).status_code == 200
    world.clear()
    await world.tick(after=30)
    assert world.reads() == []
