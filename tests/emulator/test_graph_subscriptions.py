"""Subscriptions against a real local HTTPS receiver: the validation handshake, the documented
refusals, change notifications with clientState, presence rules and lifecycle events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from emulator import mutations, tokens
from emulator.app import EmulatorOptions
from emulator.graph import subscriptions
from emulator.graph.http import GraphError, GraphRequest
from emulator.testing import RunningEmulator
from tests.emulator.graph_support import Receiver, World, make_world, run_receiver, wait_for

VALIDATION_FAILED = (
    "Subscription validation request failed. Notification endpoint must respond with 200 OK to "
    "validation request."
)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    with run_receiver(tmp_path_factory.mktemp("receiver")) as running:
        yield running


@pytest.fixture
def world(emulator: RunningEmulator, receiver: Receiver) -> Iterator[World]:
    receiver.reset()
    defaults = subscriptions.configure(emulator.state)
    subscriptions.configure(
        emulator.state, notification_ca=str(receiver.ca_path), batch_window=0.05, retry_delays=[]
    )
    created = make_world(emulator)
    yield created
    the_hub = subscriptions.hub(emulator.state)
    for entry in list(the_hub.entries.values()):
        if entry.subscription.tenant_id == created.tenant.id:
            the_hub.entries.pop(entry.id, None)
    subscriptions.configure(
        emulator.state,
        **{k: v for k, v in defaults.items() if k != "notification_ca"},
        notification_ca=None,
    )


def in_minutes(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def subscribe(world: World, receiver: Receiver, token: str | None = None, **body: Any) -> Any:
    payload = {
        "changeType": "updated,deleted",
        "notificationUrl": receiver.url("/notify"),
        "resource": "users",
        "expirationDateTime": in_minutes(60),
        "clientState": "SecretClientState",
    }
    payload.update(body)
    return world.post("/subscriptions", token=token, json=payload)


# --- creation and the handshake -----------------------------------------------------------------


def test_create_validates_the_notification_url_then_answers_201(
    world: World, receiver: Receiver
) -> None:
    response = subscribe(world, receiver, lifecycleNotificationUrl=receiver.url("/lifecycle"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#subscriptions/$entity")
    assert body["resource"] == "users"
    assert body["changeType"] == "updated,deleted"
    assert body["clientState"] == "SecretClientState"
    assert body["applicationId"] == world.app.app_id
    assert body["latestSupportedTlsVersion"] == "v1_2"
    # Both URLs got a validation POST with a plain-text token that needs URL-decoding.
    paths = [v[0] for v in receiver.validations]
    assert paths == ["/notify", "/lifecycle"]
    for _, token, content_type in receiver.validations:
        assert " " in token and ":" in token
        assert content_type.startswith("text/plain")


@pytest.mark.parametrize("mode", ["wrong", "json", "error"])
def test_a_failed_handshake_fails_the_create(world: World, receiver: Receiver, mode: str) -> None:
    receiver.mode = mode
    response = subscribe(world, receiver)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == VALIDATION_FAILED
    assert subscriptions.list_subscriptions(world.state, world.tenant.id) == []


def test_a_handshake_slower_than_the_limit_fails(
    world: World, receiver: Receiver, emulator: RunningEmulator
) -> None:
    subscriptions.configure(emulator.state, validation_timeout=0.3)
    receiver.mode, receiver.delay = "slow", 1.0
    response = subscribe(world, receiver)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == VALIDATION_FAILED


def test_an_untrusted_receiver_certificate_fails_the_handshake(
    world: World, receiver: Receiver, emulator: RunningEmulator
) -> None:
    subscriptions.configure(emulator.state, notification_ca=str(emulator.ca_path))
    response = subscribe(world, receiver)
    assert response.status_code == 400


def test_http_notification_urls_are_refused(world: World, receiver: Receiver) -> None:
    response = subscribe(world, receiver, notificationUrl="http://127.0.0.1:9/notify")
    assert response.status_code == 400
    assert "HTTPS" in response.json()["error"]["message"]
    response = subscribe(world, receiver, lifecycleNotificationUrl="http://127.0.0.1:9/lifecycle")
    assert response.status_code == 400
    assert receiver.validations == []


@pytest.mark.parametrize(
    ("resource", "change_type", "maximum", "delegated"),
    [
        ("users", "updated", 41_760, False),
        ("groups", "updated", 41_760, False),
        ("me/contacts", "created,updated,deleted", 10_080, True),
        ("communications/presences/{admin}", "updated", 60, True),
    ],
)
def test_expiration_maximum_per_resource(
    world: World, receiver: Receiver, resource: str, change_type: str, maximum: int, delegated: bool
) -> None:
    token = (
        world.token(world.admin, scopes={"Contacts.Read", "Presence.Read.All"})
        if delegated
        else None
    )
    resource = resource.format(admin=world.admin.id)
    response = subscribe(
        world,
        receiver,
        token=token,
        resource=resource,
        changeType=change_type,
        expirationDateTime=in_minutes(maximum + 1),
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        f"Subscription expiration can only be {maximum} minutes in the future."
    )
    response = subscribe(
        world,
        receiver,
        token=token,
        resource=resource,
        changeType=change_type,
        expirationDateTime=in_minutes(maximum - 1),
    )
    assert response.status_code == 201, response.text


def test_other_refusals(world: World, receiver: Receiver) -> None:
    # Users and groups notify "updated" and "deleted" only (subscription resource type).
    assert subscribe(world, receiver, changeType="created").status_code == 400
    assert subscribe(world, receiver, expirationDateTime=in_minutes(-5)).status_code == 400
    assert subscribe(world, receiver, resource="me/events").status_code == 400
    assert subscribe(world, receiver, clientState="x" * 256).status_code == 400
    response = subscribe(world, receiver, token=world.token(roles={"Contacts.Read"}))
    assert response.status_code == 403


# --- reading, renewing, deleting -----------------------------------------------------------------


def test_read_renew_reauthorize_delete(world: World, receiver: Receiver) -> None:
    created = subscribe(world, receiver).json()
    sub_id = created["id"]
    listed = world.get("/subscriptions").json()["value"]
    # subscription-list.md: "the clientState property value is not returned".
    assert [(s["id"], s["clientState"]) for s in listed] == [(sub_id, None)]
    assert world.get(f"/subscriptions/{sub_id}").json()["clientState"] == "SecretClientState"
    new_expiry = in_minutes(120)
    with world.client(world.token()) as client:
        response = client.patch(f"/subscriptions/{sub_id}", json={"expirationDateTime": new_expiry})
        assert response.status_code == 200
        assert response.json()["expirationDateTime"][:19] == new_expiry[:19]
        too_long = client.patch(
            f"/subscriptions/{sub_id}", json={"expirationDateTime": in_minutes(50_000)}
        )
        assert too_long.status_code == 400
        assert client.post(f"/subscriptions/{sub_id}/reauthorize").status_code == 204
        assert client.delete(f"/subscriptions/{sub_id}").status_code == 204
        assert client.get(f"/subscriptions/{sub_id}").status_code == 404
    # Another app can't see the subscriptions of this one.
    other = mutations.register_app(world.tenant, "Other app")
    other_token = tokens.issue_access_token(
        world.state, world.tenant, other, None, set(), set(other.app_roles)
    )
    assert world.get("/subscriptions", token=other_token).json()["value"] == []


# --- change notifications ------------------------------------------------------------------------


def test_changes_are_posted_with_client_state_in_batches(world: World, receiver: Receiver) -> None:
    user = world.user("watched")
    gone = world.user("gone")
    sub = subscribe(world, receiver).json()
    mutations.update_user(world.tenant, user.id, {"jobTitle": "Engineer"})
    mutations.soft_delete_user(world.tenant, user.id)
    mutations.hard_delete_user(world.tenant, gone.id)
    items = wait_for(lambda: len(receiver.notifications()) >= 3 and receiver.notifications())
    assert len(receiver.posts) == 1  # changes within the batch window share one POST
    by_change = [(i["changeType"], i["resourceData"]["id"]) for i in items]
    assert by_change == [("updated", user.id), ("updated", user.id), ("deleted", gone.id)]
    first = items[0]
    assert first["subscriptionId"] == sub["id"]
    assert first["clientState"] == "SecretClientState"
    assert first["tenantId"] == world.tenant.id
    assert first["resource"] == f"Users/{user.id}"
    assert first["resourceData"]["@odata.type"] == "#Microsoft.Graph.User"
    assert first["resourceData"]["@odata.id"] == f"Users/{user.id}"
    assert first["subscriptionExpirationDateTime"] == sub["expirationDateTime"]


def test_only_the_subscribed_change_types_and_objects(world: World, receiver: Receiver) -> None:
    watched, other = world.user("one"), world.user("two")
    subscribe(world, receiver, resource=f"users/{watched.id}", changeType="deleted")
    mutations.update_user(world.tenant, watched.id, {"jobTitle": "x"})
    mutations.hard_delete_user(world.tenant, other.id)
    mutations.hard_delete_user(world.tenant, watched.id)
    items = wait_for(lambda: receiver.notifications())
    assert [(i["changeType"], i["resourceData"]["id"]) for i in items] == [("deleted", watched.id)]


def test_group_membership_changes_notify_the_group(world: World, receiver: Receiver) -> None:
    user = world.user("joiner")
    group = world.group("Joined")
    subscribe(world, receiver, resource="groups", changeType="updated")
    mutations.add_member(world.tenant, group.id, user.id)
    [item] = wait_for(lambda: receiver.notifications())
    assert item["resource"] == f"Groups/{group.id}"
    assert item["resourceData"]["members@delta"] == [{"id": user.id}]


def test_contact_subscriptions_are_for_the_own_mailbox(world: World, receiver: Receiver) -> None:
    colleague = world.user("colleague")
    token = world.token(world.admin, scopes={"Contacts.Read"})
    response = subscribe(
        world,
        receiver,
        token=token,
        resource=f"users/{colleague.id}/contacts",
        changeType="created",
    )
    assert response.status_code == 403
    response = subscribe(world, receiver, token=token, resource="me/contacts", changeType="created")
    assert response.status_code == 201
    folder = mutations.default_folder(world.tenant, world.admin.id)
    contact = mutations.create_contact(world.tenant, folder.id, {"displayName": "New friend"})
    [item] = wait_for(lambda: receiver.notifications())
    assert item["changeType"] == "created"
    assert item["resourceData"]["id"] == contact.id
    assert item["resource"] == f"Users/{world.admin.id}/Contacts/{contact.id}"


# --- presence -------------------------------------------------------------------------------------


def test_presence_subscriptions_are_delegated_one_per_user_and_carry_only_the_id(
    world: World, receiver: Receiver
) -> None:
    colleague = world.user("teams")
    token = world.token(world.admin, scopes={"Presence.Read.All"})
    resource = f"/communications/presences?$filter=id in ('{colleague.id}','{world.admin.id}')"
    # Application permissions are not supported for presence.
    response = subscribe(world, receiver, resource=resource, changeType="updated")
    assert response.status_code == 403
    response = subscribe(world, receiver, token=token, resource=resource, changeType="updated")
    assert response.status_code == 201, response.text
    # A second presence subscription for the same signed-in user and app is refused.
    again = subscribe(
        world,
        receiver,
        token=token,
        resource=f"communications/presences/{colleague.id}",
        changeType="updated",
    )
    assert again.status_code == 409
    assert "A subscripton already exists" in again.json()["error"]["message"]
    # Another signed-in user may have one.
    other_token = world.token(colleague, scopes={"Presence.Read.All"})
    other = subscribe(
        world,
        receiver,
        token=other_token,
        resource=f"communications/presences/{world.admin.id}",
        changeType="updated",
    )
    assert other.status_code == 201
    receiver.posts.clear()
    mutations.set_presence(world.tenant, colleague.id, "Busy", "InACall")
    items = wait_for(lambda: receiver.notifications())
    assert len(items) == 1
    item = items[0]
    assert item["resource"] == f"communications/presences/{colleague.id}"
    # changenotifications-for-presence.md, basic notification: only the id.
    assert item["resourceData"] == {
        "@odata.id": f"users/{colleague.id}/presence",
        "@odata.type": "#microsoft.graph.presence",
        "id": colleague.id,
    }


def test_presence_subscriptions_cover_at_most_650_users(world: World, receiver: Receiver) -> None:
    token = world.token(world.admin, scopes={"Presence.Read.All"})
    ids = ",".join(f"'{i:08d}-0000-0000-0000-000000000000'" for i in range(651))
    response = subscribe(
        world,
        receiver,
        token=token,
        resource=f"/communications/presences?$filter=id in ({ids})",
        changeType="updated",
    )
    assert response.status_code == 400


# --- lifecycle ------------------------------------------------------------------------------------


def test_reauthorization_required_pauses_delivery_until_reauthorized(
    world: World, receiver: Receiver, emulator: RunningEmulator
) -> None:
    subscriptions.configure(emulator.state, reauthorization_grace=0)
    user = world.user("paused")
    sub = subscribe(world, receiver, lifecycleNotificationUrl=receiver.url("/lifecycle")).json()
    assert subscriptions.trigger_lifecycle_event(
        emulator.state, sub["id"], "reauthorizationRequired"
    )
    [event] = wait_for(lambda: receiver.notifications("/lifecycle"))
    assert event == {
        "subscriptionId": sub["id"],
        "subscriptionExpirationDateTime": sub["expirationDateTime"],
        "tenantId": world.tenant.id,
        "clientState": "SecretClientState",
        "lifecycleEvent": "reauthorizationRequired",
    }
    mutations.update_user(world.tenant, user.id, {"jobTitle": "lost"})
    assert world.post(f"/subscriptions/{sub['id']}/reauthorize").status_code == 204
    mutations.update_user(world.tenant, user.id, {"jobTitle": "found"})
    items = wait_for(lambda: receiver.notifications())
    assert len(items) == 1  # the change made while paused was not delivered


def test_subscription_removed_and_time_based_reauthorization(
    world: World, receiver: Receiver, emulator: RunningEmulator
) -> None:
    sub = subscribe(world, receiver, lifecycleNotificationUrl=receiver.url("/lifecycle")).json()
    assert subscriptions.trigger_lifecycle_event(emulator.state, sub["id"], "subscriptionRemoved")
    [event] = wait_for(lambda: receiver.notifications("/lifecycle"))
    assert event["lifecycleEvent"] == "subscriptionRemoved"
    assert world.get(f"/subscriptions/{sub['id']}").status_code == 404
    # A subscription that is about to expire gets reauthorizationRequired.
    subscriptions.configure(emulator.state, reauthorization_lead=3600, tick=0.05)
    receiver.posts.clear()
    soon = subscribe(world, receiver, lifecycleNotificationUrl=receiver.url("/lifecycle")).json()
    events = wait_for(lambda: receiver.notifications("/lifecycle"))
    assert [(e["subscriptionId"], e["lifecycleEvent"]) for e in events] == [
        (soon["id"], "reauthorizationRequired")
    ]


def test_expired_subscriptions_stop_delivering(
    world: World, receiver: Receiver, emulator: RunningEmulator
) -> None:
    user = world.user("late")
    sub = subscribe(world, receiver).json()
    assert subscriptions.expire_subscription(emulator.state, sub["id"])
    mutations.update_user(world.tenant, user.id, {"jobTitle": "unseen"})
    assert world.get(f"/subscriptions/{sub['id']}").status_code == 404
    assert subscriptions.list_subscriptions(emulator.state, world.tenant.id) == []
    with pytest.raises(AssertionError):
        wait_for(lambda: receiver.notifications(), timeout=0.3)


def test_allow_http_notifications_relaxes_the_https_rule(emulator: RunningEmulator) -> None:
    def request(allow: bool) -> GraphRequest:
        return GraphRequest(
            state=emulator.state,
            options=EmulatorOptions(allow_http_notifications=allow),
            method="POST",
            path="/subscriptions",
            raw_query="",
            headers={},
            body=b"",
            base="https://127.0.0.1/v1.0",
        )

    url = "http://127.0.0.1:8000/webhooks/graph"
    with pytest.raises(GraphError):
        subscriptions._check_url(request(False), "notificationUrl", url)
    assert subscriptions._check_url(request(True), "notificationUrl", url) == url
