"""/users/delta and /groups/delta: rounds, removals, members@delta, replays, expiry, resync."""

from __future__ import annotations

from typing import Any

import pytest

from emulator import mutations
from emulator.graph import settings
from emulator.testing import RunningEmulator
from tests.emulator.graph_support import World, make_world

SYNC_STATE_NOT_FOUND = (
    "The sync state generation is not found. The delta token is expired and data must be "
    "synchronized again."
)


@pytest.fixture
def world(emulator: RunningEmulator) -> World:
    return make_world(emulator)


def delta_round(world: World, url: str, **kwargs: Any) -> tuple[list[dict[str, Any]], str, int]:
    """Follow nextLinks until the deltaLink; return (items, deltaLink, pages)."""
    items: list[dict[str, Any]] = []
    pages = 0
    with world.client(world.token()) as client:
        next_url = url
        while True:
            response = client.get(next_url, **kwargs)
            assert response.status_code == 200, response.text
            body = response.json()
            pages += 1
            items.extend(body["value"])
            assert ("@odata.nextLink" in body) != ("@odata.deltaLink" in body)
            if "@odata.deltaLink" in body:
                return items, body["@odata.deltaLink"], pages
            next_url = body["@odata.nextLink"]
            # The token carries the query options: the link holds nothing else.
            assert next_url.split("?", 1)[1].startswith("$skiptoken=")


def live_user_ids(world: World) -> set[str]:
    return {u.id for u in world.tenant.users.values() if u.deleted_at is None}


def test_first_round_pages_through_everything_and_ends_with_a_delta_link(world: World) -> None:
    for i in range(12):
        world.user(f"d{i:02d}")
    items, delta_link, pages = delta_round(
        world, "/users/delta?$select=displayName,jobTitle&$top=5"
    )
    assert pages == 3
    assert {i["id"] for i in items} == live_user_ids(world)
    # user-delta.md: the selected properties, and "The id property is always returned".
    assert all(set(i) == {"displayName", "jobTitle", "id"} for i in items)
    assert "$deltatoken=" in delta_link
    assert delta_link.split("?", 1)[1].startswith("$deltatoken=")


def test_no_changes_is_just_a_delta_link(world: World) -> None:
    _, delta_link, _ = delta_round(world, "/users/delta")
    body = world.get(delta_link).json()
    assert body["value"] == []
    assert "@odata.deltaLink" in body and "@odata.nextLink" not in body


def test_changes_adds_updates_soft_and_hard_deletes(world: World) -> None:
    keep = world.user("keep")
    soft = world.user("soft")
    hard = world.user("hard")
    _, delta_link, _ = delta_round(world, "/users/delta?$select=displayName,mail")
    created = world.user("newcomer", displayName="New Comer")
    mutations.update_user(world.tenant, keep.id, {"displayName": "Kept Renamed"})
    mutations.soft_delete_user(world.tenant, soft.id)
    mutations.hard_delete_user(world.tenant, hard.id)
    items, next_delta, _ = delta_round(world, delta_link)
    by_id = {i["id"]: i for i in items}
    assert by_id[created.id] == {"displayName": "New Comer", "mail": created.mail, "id": created.id}
    assert by_id[keep.id]["displayName"] == "Kept Renamed"
    # delta-query-overview.md: "changed" = restorable from deletedItems, "deleted" = gone.
    assert by_id[soft.id] == {"id": soft.id, "@removed": {"reason": "changed"}}
    assert by_id[hard.id] == {"id": hard.id, "@removed": {"reason": "deleted"}}
    assert len(items) == 4
    # The next round starts after these changes.
    assert world.get(next_delta).json()["value"] == []


def test_restore_brings_a_soft_deleted_user_back(world: World) -> None:
    user = world.user("phoenix")
    mutations.soft_delete_user(world.tenant, user.id)
    items, delta_link, _ = delta_round(world, "/users/delta")
    assert user.id not in {i["id"] for i in items}
    mutations.restore_user(world.tenant, user.id)
    items, _, _ = delta_round(world, delta_link)
    assert [i["id"] for i in items] == [user.id]
    assert "@removed" not in items[0]


def test_a_change_round_pages_too(world: World) -> None:
    _, delta_link, _ = delta_round(world, "/users/delta?$top=2")
    new = [world.user(f"batch{i}").id for i in range(5)]
    items, _, pages = delta_round(world, delta_link)
    assert pages == 3
    assert [i["id"] for i in items] == new


def test_groups_delta_tracks_members(world: World) -> None:
    u1, u2, u3 = world.user("g1"), world.user("g2"), world.user("g3")
    group = world.group("Team", members=[u1.id, u2.id])
    items, delta_link, _ = delta_round(world, "/groups/delta?$select=displayName,members")
    [entry] = [i for i in items if i["id"] == group.id]
    # group-delta.md, response 1.
    assert entry["members@delta"] == sorted(
        [
            {"@odata.type": "#microsoft.graph.user", "id": u1.id},
            {"@odata.type": "#microsoft.graph.user", "id": u2.id},
        ],
        key=lambda m: m["id"],
    )
    mutations.add_member(world.tenant, group.id, u3.id)
    mutations.remove_member(world.tenant, group.id, u1.id)
    items, _, _ = delta_round(world, delta_link)
    [entry] = items
    assert entry["id"] == group.id
    assert sorted(entry["members@delta"], key=lambda m: m["id"]) == sorted(
        [
            {"@odata.type": "#microsoft.graph.user", "id": u3.id},
            {
                "@odata.type": "#microsoft.graph.user",
                "id": u1.id,
                "@removed": {"reason": "deleted"},
            },
        ],
        key=lambda m: m["id"],
    )


def test_membership_changes_are_invisible_without_members_in_select(world: World) -> None:
    user = world.user("quiet")
    group = world.group("Quiet Team")
    items, delta_link, _ = delta_round(world, "/groups/delta?$select=displayName")
    assert all("members@delta" not in i for i in items)
    mutations.add_member(world.tenant, group.id, user.id)
    items, _, _ = delta_round(world, delta_link)
    assert items == []


def test_group_removals(world: World) -> None:
    m365 = world.group("M365", groupTypes=["Unified"], mailEnabled=True, securityEnabled=False)
    security = world.group("Security")
    _, delta_link, _ = delta_round(world, "/groups/delta")
    mutations.delete_group(world.tenant, m365.id)  # restorable
    mutations.delete_group(world.tenant, security.id)  # gone
    items, _, _ = delta_round(world, delta_link)
    assert {i["id"]: i.get("@removed") for i in items} == {
        m365.id: {"reason": "changed"},
        security.id: {"reason": "deleted"},
    }


def test_replays_are_deterministic_and_controllable(world: World) -> None:
    for i in range(6):
        world.user(f"r{i}")
    settings.set_delta_replay_rate(world.tenant, 1.0)
    items, delta_link, _ = delta_round(world, "/users/delta?$top=4")
    ids = [i["id"] for i in items]
    assert set(ids) == live_user_ids(world)
    assert len(ids) == 2 * len(live_user_ids(world))
    changed = world.user("late")
    items, _, _ = delta_round(world, delta_link)
    assert [i["id"] for i in items] == [changed.id, changed.id]
    settings.set_delta_replay_rate(world.tenant, 0.5)
    first, _, _ = delta_round(world, "/users/delta")
    second, _, _ = delta_round(world, "/users/delta")
    assert [i["id"] for i in first] == [i["id"] for i in second]
    settings.set_delta_replay_rate(world.tenant, 0.0)
    items, _, _ = delta_round(world, "/users/delta")
    assert len(items) == len({i["id"] for i in items})


def test_expired_token_answers_sync_state_not_found(world: World) -> None:
    _, delta_link, _ = delta_round(world, "/users/delta")
    mutations.expire_delta_tokens(world.tenant)
    response = world.get(delta_link)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "syncStateNotFound"
    assert response.json()["error"]["message"] == SYNC_STATE_NOT_FOUND
    # A full resync works and gives a valid link again.
    _, fresh_link, _ = delta_round(world, "/users/delta")
    assert world.get(fresh_link).status_code == 200


def test_synchronization_reset_answers_410_with_location(world: World) -> None:
    _, delta_link, _ = delta_round(world, "/users/delta?$select=displayName")
    settings.force_delta_resync(world.tenant)
    response = world.get(delta_link)
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "resyncRequired"
    location = response.headers["location"]
    assert location.endswith("/v1.0/users/delta?$deltatoken=")
    items, new_link, _ = delta_round(world, location)
    assert {i["id"] for i in items} == live_user_ids(world)
    assert world.get(new_link).status_code == 200


def test_altered_token_is_refused(world: World) -> None:
    _, delta_link, _ = delta_round(world, "/users/delta")
    response = world.get(delta_link[:-3] + "xyz")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "syncStateNotFound"


def test_delta_token_latest_starts_from_now(world: World) -> None:
    world.user("before")
    body = world.get("/users/delta?$deltatoken=latest").json()
    assert body["value"] == []
    after = world.user("after")
    items, _, _ = delta_round(world, body["@odata.deltaLink"])
    assert [i["id"] for i in items] == [after.id]


def test_filter_by_ids_only(world: World) -> None:
    a, b, _ = world.user("fa"), world.user("fb"), world.user("fc")
    # user-delta.md: "$filter=id+eq+{value}" joined with or.
    items, delta_link, _ = delta_round(
        world, f"/users/delta?$filter=id eq '{a.id}' or id eq '{b.id}'"
    )
    assert {i["id"] for i in items} == {a.id, b.id}
    mutations.update_user(world.tenant, b.id, {"jobTitle": "Boss"})
    world.user("fd")
    items, _, _ = delta_round(world, delta_link)
    assert [i["id"] for i in items] == [b.id]
    response = world.get("/users/delta?$filter=userType eq 'Guest'")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "Request_UnsupportedQuery"


def test_delta_needs_read_permission(world: World) -> None:
    response = world.get("/users/delta", token=world.token(roles={"Contacts.Read"}))
    assert response.status_code == 403
    response = world.get("/groups/delta", token=world.token(roles={"User.Read.All"}))
    assert response.status_code == 403


def test_minimal_responses_and_changes_outside_select(world: World) -> None:
    user = world.user("minimal", displayName="Before", jobTitle="Clerk")
    quiet = world.user("outside")
    _, delta_link, _ = delta_round(world, "/users/delta?$select=displayName,jobTitle,mobilePhone")
    # Changes that name their properties (ChangeEvent.properties).
    user.display_name = "After"
    world.tenant.record(
        kind="user", object_id=user.id, change_type="updated", properties=("displayName",)
    )
    quiet.department = "Finance"
    world.tenant.record(
        kind="user", object_id=quiet.id, change_type="updated", properties=("department",)
    )
    # user-delta.md, example 3: with Prefer: return=minimal only the changed properties (and id).
    items, _, _ = delta_round(world, delta_link, headers={"Prefer": "return=minimal"})
    assert items == [{"displayName": "After", "id": user.id}]
    # Example 2 (default): all the selected properties; a change outside $select is not reported.
    items, _, _ = delta_round(world, delta_link)
    assert items == [
        {"displayName": "After", "jobTitle": "Clerk", "mobilePhone": None, "id": user.id}
    ]
