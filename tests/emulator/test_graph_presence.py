"""Teams presence: single reads, /me, getPresencesByUserId and its 650-id limit."""

from __future__ import annotations

import uuid

import httpx
import pytest

from emulator import mutations
from emulator.testing import RunningEmulator
from tests.emulator.graph_support import World, make_world


@pytest.fixture
def world(emulator: RunningEmulator) -> World:
    return make_world(emulator)


def test_presence_of_a_user(world: World) -> None:
    user = world.user("presenter")
    mutations.set_presence(world.tenant, user.id, "DoNotDisturb", "Presenting")
    # presence-get.md, example 2.
    body = world.get(f"/users/{user.id}/presence").json()
    assert {k: body[k] for k in ("id", "availability", "activity")} == {
        "id": user.id,
        "availability": "DoNotDisturb",
        "activity": "Presenting",
    }
    assert body["@odata.context"].endswith(f"users('{user.id}')/presence/$entity")
    assert world.get("/users/nobody/presence").status_code == 404


def test_me_presence_with_presence_read(world: World) -> None:
    other = world.user("other")
    mutations.set_presence(world.tenant, world.admin.id, "Available", "Available")
    token = world.token(world.admin, scopes={"Presence.Read"})
    body = world.get("/me/presence", token=token).json()
    assert (body["availability"], body["activity"]) == ("Available", "Available")
    # Someone else's presence needs Presence.Read.All.
    response = world.get(f"/users/{other.id}/presence", token=token)
    assert response.status_code == 403
    all_token = world.token(world.admin, scopes={"Presence.Read.All"})
    assert world.get(f"/users/{other.id}/presence", token=all_token).json()["availability"] == (
        "PresenceUnknown"
    )


def test_get_presences_by_user_id(world: World) -> None:
    busy, away = world.user("busy"), world.user("away")
    mutations.set_presence(world.tenant, busy.id, "Busy", "InAMeeting")
    mutations.set_presence(world.tenant, away.id, "Away", "Away")
    token = world.token(world.admin, scopes={"Presence.Read.All"})
    # cloudcommunications-getpresencesbyuserid.md's example.
    response = world.post(
        "/communications/getPresencesByUserId", token=token, json={"ids": [busy.id, away.id]}
    )
    assert response.status_code == 200
    assert response.json()["value"] == [
        {"id": busy.id, "availability": "Busy", "activity": "InAMeeting"},
        {"id": away.id, "availability": "Away", "activity": "Away"},
    ]


def test_at_most_650_ids(world: World) -> None:
    token = world.token(world.admin, scopes={"Presence.Read.All"})
    ids = [str(uuid.uuid4()) for _ in range(651)]
    response = world.post("/communications/getPresencesByUserId", token=token, json={"ids": ids})
    assert response.status_code == 400
    response = world.post(
        "/communications/getPresencesByUserId", token=token, json={"ids": ids[:650]}
    )
    assert response.status_code == 200
    response = world.post("/communications/getPresencesByUserId", token=token, json={"ids": []})
    assert response.status_code == 400


def test_presence_needs_presence_permission(world: World) -> None:
    token = world.token(world.admin, scopes={"User.Read"})
    response = world.post(
        "/communications/getPresencesByUserId", token=token, json={"ids": [world.admin.id]}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "Authorization_RequestDenied"


def test_bulk_reads_are_recorded_with_their_ids(world: World, control: httpx.Client) -> None:
    """The control API lists each getPresencesByUserId request with the ids it asked for."""
    busy, away = world.user("busy2"), world.user("away2")
    token = world.token(world.admin, scopes={"Presence.Read.All"})
    control.delete("/presence/reads").raise_for_status()
    world.post("/communications/getPresencesByUserId", token=token, json={"ids": [busy.id]})
    world.post(
        "/communications/getPresencesByUserId", token=token, json={"ids": [busy.id, away.id]}
    )
    reads = control.get("/presence/reads", params={"tenant_id": world.tenant.id}).json()
    assert reads["value"] == [
        {"tenant_id": world.tenant.id, "ids": [busy.id]},
        {"tenant_id": world.tenant.id, "ids": [busy.id, away.id]},
    ]
    assert control.get("/presence/reads", params={"tenant_id": "other"}).json()["value"] == []
    control.delete("/presence/reads").raise_for_status()
    assert control.get("/presence/reads").json()["value"] == []
