"""POST /$batch: routing of each request, limits, dependsOn, per-request throttling."""

from __future__ import annotations

from typing import Any

import pytest

from emulator import faults, mutations
from emulator.app import request_log
from emulator.testing import RunningEmulator
from tests.emulator.graph_support import World, make_world


@pytest.fixture
def world(emulator: RunningEmulator) -> World:
    return make_world(emulator)


def batch(world: World, requests: list[dict[str, Any]], token: str | None = None) -> Any:
    return world.post("/$batch", token=token, json={"requests": requests})


def by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in body["responses"]}


def test_each_request_gets_its_own_status_headers_and_body(world: World) -> None:
    user = world.user("lynne", displayName="Lynne Robbins")
    # json-batching.md's example, with the parts the emulator serves.
    response = batch(
        world,
        [
            {"id": "1", "method": "GET", "url": f"/users/{user.id}/memberOf"},
            {"id": "2", "method": "GET", "url": "/me/planner/tasks"},
            {"id": "3", "method": "DELETE", "url": f"/groups/{user.id}"},
            {
                "id": "5",
                "url": "users?$select=id,displayName,userPrincipalName"
                "&$filter=startswith(displayName,'Lynne')&$count=true",
                "method": "GET",
                "headers": {"ConsistencyLevel": "eventual"},
            },
        ],
    )
    assert response.status_code == 200
    responses = by_id(response.json())
    assert responses["1"]["status"] == 200
    assert responses["1"]["body"]["value"] == []
    assert responses["1"]["headers"]["Content-Type"].startswith("application/json")
    assert responses["2"]["status"] == 400  # not a route of the emulator
    assert responses["3"]["status"] == 405
    assert responses["3"]["body"]["error"]["message"] == (
        "Specified HTTP method is not allowed for the request target."
    )
    five = responses["5"]
    assert five["status"] == 200
    assert five["body"]["@odata.count"] == 1
    assert five["body"]["value"] == [
        {
            "id": user.id,
            "displayName": "Lynne Robbins",
            "userPrincipalName": user.user_principal_name,
        }
    ]


def test_user_purpose_of_many_mailboxes_in_one_batch(world: World) -> None:
    shared = world.user("desk", userPurpose="shared", accountEnabled=False)
    private = world.user("private", userPurpose="shared", accountEnabled=False)
    mutations.add_mailbox_member(world.tenant, shared.id, world.admin.id)
    token = world.token(world.admin, scopes={"MailboxSettings.Read", "User.Read"})
    response = batch(
        world,
        [
            {"id": "a", "method": "GET", "url": f"/users/{shared.id}/mailboxSettings/userPurpose"},
            {"id": "b", "method": "GET", "url": f"/users/{private.id}/mailboxSettings/userPurpose"},
        ],
        token=token,
    )
    responses = by_id(response.json())
    assert responses["a"]["status"] == 200
    assert responses["a"]["body"]["value"] == "shared"
    assert responses["b"]["status"] == 403
    assert responses["b"]["body"]["error"]["code"] == "ErrorAccessDenied"


def test_more_than_20_requests_is_a_400(world: World) -> None:
    requests = [{"id": str(i), "method": "GET", "url": "/organization"} for i in range(21)]
    response = batch(world, requests)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert batch(world, requests[:20]).status_code == 200


def test_malformed_batches_are_refused(world: World) -> None:
    response = batch(
        world,
        [
            {"id": "1", "method": "GET", "url": "/me"},
            {"id": "1", "method": "GET", "url": "/me"},
        ],
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Request Id 1 has to be unique in a batch."
    response = batch(world, [{"id": "1", "method": "POST", "url": "/subscriptions", "body": {}}])
    assert response.status_code == 400  # a body needs a Content-Type header
    assert batch(world, []).status_code == 400
    response = world.post("/$batch", json={"requests": "nope"})
    assert response.status_code == 400
    response = batch(world, [{"id": "1", "method": "GET", "url": "/users", "dependsOn": ["9"]}])
    assert response.status_code == 400


def test_depends_on_orders_requests_and_fails_dependents_with_424(world: World) -> None:
    user = world.user("dep")
    response = batch(
        world,
        [
            {"id": "1", "method": "GET", "url": f"/users/{user.id}"},
            {"id": "2", "dependsOn": ["1"], "method": "GET", "url": "/users/not-a-user"},
            {"id": "4", "dependsOn": ["2"], "method": "GET", "url": "/organization"},
            {"id": "3", "dependsOn": ["1"], "method": "GET", "url": "/organization"},
        ],
    )
    responses = by_id(response.json())
    assert responses["1"]["status"] == 200
    assert responses["2"]["status"] == 404
    assert responses["4"]["status"] == 424
    assert responses["3"]["status"] == 200


def test_each_request_is_throttled_on_its_own(world: World) -> None:
    users = [world.user(f"t{i}") for i in range(4)]
    fault = faults.add_fault(
        world.state,
        {"action": "throttle", "path": r"/v1\.0/users/[^/]+$", "every": 2, "retry_after": 7},
    )
    try:
        response = batch(
            world,
            [{"id": str(i), "method": "GET", "url": f"/users/{u.id}"} for i, u in enumerate(users)],
        )
    finally:
        faults.remove_fault(world.state, fault.id)
    assert response.status_code == 200
    # Every second request is throttled: the batch's requests count one by one.
    assert [r["status"] for r in response.json()["responses"]] == [200, 429, 200, 429]
    throttled = [r for r in response.json()["responses"] if r["status"] == 429]
    for item in throttled:
        assert item["headers"]["Retry-After"] == "7"
        assert item["body"]["error"]["code"] == "TooManyRequests"


def test_sub_requests_are_in_the_request_log(world: World) -> None:
    user = world.user("logged")
    batch(world, [{"id": "x", "method": "GET", "url": f"/users/{user.id}?$select=id"}])
    entries = [
        e
        for e in list(request_log(world.state))
        if e.get("batch") and e["path"] == f"/v1.0/users/{user.id}"
    ]
    assert entries and entries[-1]["status"] == 200
    assert entries[-1]["query"] == "$select=id"
    assert entries[-1]["tenant_id"] == world.tenant.id


def test_batch_needs_a_valid_token_and_sub_requests_their_permissions(world: World) -> None:
    with world.client() as client:
        assert client.post("/$batch", json={"requests": []}).status_code == 401
    token = world.token(roles={"Contacts.Read"})
    response = batch(world, [{"id": "1", "method": "GET", "url": "/users"}], token=token)
    assert response.status_code == 200
    assert by_id(response.json())["1"]["status"] == 403


def test_a_batch_inside_a_batch_is_refused(world: World) -> None:
    response = batch(
        world,
        [
            {
                "id": "1",
                "method": "POST",
                "url": "/$batch",
                "headers": {"Content-Type": "application/json"},
                "body": {"requests": []},
            }
        ],
    )
    assert by_id(response.json())["1"]["status"] == 400
