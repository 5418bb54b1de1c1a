"""Outlook contacts and the delegated-access rule: shared folder, not shared, shared mailbox."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from emulator import mutations
from emulator.graph import settings
from emulator.state import ContactFolder, User
from emulator.testing import RunningEmulator
from tests.emulator.graph_support import World, make_world, page_all

ACCESS_DENIED = {
    "code": "ErrorAccessDenied",
    "message": "Access is denied. Check credentials and try again.",
}


@dataclass
class Mailboxes:
    world: World
    owner: User  # a colleague with a default folder, one folder shared with the admin, one not
    default: ContactFolder
    shared: ContactFolder
    private: ContactFolder
    desk: User  # a shared mailbox the admin is a member of
    desk_folder: ContactFolder
    stranger: User  # a colleague who was given nothing

    def admin_token(self, *scopes: str) -> str:
        return self.world.token(self.world.admin, scopes=set(scopes) or {"Contacts.Read.Shared"})


@pytest.fixture
def mailboxes(emulator: RunningEmulator) -> Mailboxes:
    world = make_world(emulator)
    tenant = world.tenant
    owner = world.user("colleague", displayName="Garth Fort")
    default = mutations.default_folder(tenant, owner.id)
    for i in range(3):
        mutations.create_contact(tenant, default.id, {"displayName": f"Default {i}"})
    shared = mutations.create_folder(tenant, owner.id, "Customers")
    mutations.share_folder(tenant, shared.id, world.admin.id)
    for i in range(25):
        mutations.create_contact(
            tenant,
            shared.id,
            {
                "givenName": f"Pavel{i:02d}",
                "surname": "Bansky",
                "displayName": f"Pavel{i:02d} Bansky",
                "emailAddresses": [{"address": f"pavel{i}@contoso.com", "name": "Pavel Bansky"}],
                "businessPhones": ["+1 732 555 0102"],
            },
        )
    private = mutations.create_folder(tenant, owner.id, "Private")
    mutations.create_contact(tenant, private.id, {"displayName": "Secret"})
    desk = world.user(
        "salesdesk", displayName="Sales Desk", userPurpose="shared", accountEnabled=False
    )
    mutations.add_mailbox_member(tenant, desk.id, world.admin.id)
    desk_folder = mutations.default_folder(tenant, desk.id)
    mutations.create_contact(tenant, desk_folder.id, {"displayName": "Supplier"})
    stranger = world.user("stranger")
    return Mailboxes(world, owner, default, shared, private, desk, desk_folder, stranger)


def test_app_only_reads_every_mailbox(mailboxes: Mailboxes) -> None:
    world = mailboxes.world
    assert len(page_all(world, f"/users/{mailboxes.owner.id}/contacts")) == 3
    assert (
        len(
            page_all(
                world, f"/users/{mailboxes.owner.id}/contactFolders/{mailboxes.private.id}/contacts"
            )
        )
        == 1
    )
    folders = page_all(world, f"/users/{mailboxes.owner.id}/contactFolders")
    # user-list-contactfolders.md: the folders in the default Contacts folder.
    assert {f["displayName"] for f in folders} == {"Customers", "Private"}
    assert {f["parentFolderId"] for f in folders} == {mailboxes.default.id}


def test_app_without_contacts_read_is_denied(mailboxes: Mailboxes) -> None:
    world = mailboxes.world
    response = world.get(
        f"/users/{mailboxes.owner.id}/contacts", token=world.token(roles={"User.Read.All"})
    )
    assert response.status_code == 403
    assert response.json()["error"] | {"innerError": None} == {**ACCESS_DENIED, "innerError": None}


def test_a_folder_shared_with_the_signed_in_user_is_readable(mailboxes: Mailboxes) -> None:
    world = mailboxes.world
    token = mailboxes.admin_token()
    url = f"/users/{mailboxes.owner.id}/contactFolders/{mailboxes.shared.id}/contacts"
    contacts = page_all(world, url, token=token)
    assert len(contacts) == 25
    first = contacts[0]
    assert first["@odata.etag"].startswith('W/"')
    assert first["parentFolderId"] == mailboxes.shared.id
    assert first["emailAddresses"] == [{"address": "pavel0@contoso.com", "name": "Pavel Bansky"}]
    # Only the shared folder is listed for the admin.
    folders = page_all(world, f"/users/{mailboxes.owner.id}/contactFolders", token=token)
    assert [f["id"] for f in folders] == [mailboxes.shared.id]


@pytest.mark.parametrize("which", ["private", "default"])
def test_a_folder_not_shared_is_access_denied(mailboxes: Mailboxes, which: str) -> None:
    world = mailboxes.world
    token = mailboxes.admin_token()
    if which == "private":
        url = f"/users/{mailboxes.owner.id}/contactFolders/{mailboxes.private.id}/contacts"
    else:
        url = f"/users/{mailboxes.owner.id}/contacts"
    response = world.get(url, token=token)
    assert response.status_code == 403
    assert response.json()["error"] | {"innerError": None} == {**ACCESS_DENIED, "innerError": None}


def test_a_member_of_the_shared_mailbox_reads_it(mailboxes: Mailboxes) -> None:
    world = mailboxes.world
    contacts = page_all(
        world, f"/users/{mailboxes.desk.id}/contacts", token=mailboxes.admin_token()
    )
    assert [c["displayName"] for c in contacts] == ["Supplier"]
    response = world.get(
        f"/users/{mailboxes.desk.id}/contacts",
        token=world.token(mailboxes.stranger, scopes={"Contacts.Read.Shared"}),
    )
    assert response.status_code == 403


def test_shared_access_needs_the_shared_permission(mailboxes: Mailboxes) -> None:
    # outlook-get-shared-contacts-folders.md: shared folders need Contacts.Read.Shared.
    world = mailboxes.world
    token = mailboxes.admin_token("Contacts.Read")
    url = f"/users/{mailboxes.owner.id}/contactFolders/{mailboxes.shared.id}/contacts"
    assert world.get(url, token=token).status_code == 403
    own = world.get("/me/contacts", token=token)
    assert own.status_code == 200


def test_nobody_else_gets_in(mailboxes: Mailboxes) -> None:
    world = mailboxes.world
    token = world.token(mailboxes.stranger, scopes={"Contacts.Read.Shared"})
    for url in (
        f"/users/{mailboxes.owner.id}/contacts",
        f"/users/{mailboxes.owner.id}/contactFolders",
        f"/users/{mailboxes.owner.id}/contactFolders/{mailboxes.shared.id}/contacts",
    ):
        response = world.get(url, token=token)
        assert response.status_code == 403, url
        assert response.json()["error"]["code"] == "ErrorAccessDenied"


def test_contacts_page_by_10_with_skip_and_honour_select_and_top(mailboxes: Mailboxes) -> None:
    world = mailboxes.world
    url = f"/users/{mailboxes.owner.id}/contactFolders/{mailboxes.shared.id}/contacts"
    body = world.get(url).json()
    assert len(body["value"]) == 10
    assert body["@odata.nextLink"].endswith("$skip=10")
    body = world.get(url + "?$top=20&$select=displayName,businessPhones").json()
    assert len(body["value"]) == 20
    assert "$top=20" in body["@odata.nextLink"] and "$skip=20" in body["@odata.nextLink"]
    assert set(body["value"][0]) == {"@odata.etag", "id", "displayName", "businessPhones"}
    last = world.get(body["@odata.nextLink"]).json()
    assert len(last["value"]) == 5 and "@odata.nextLink" not in last


def test_unknown_or_mailboxless_users(mailboxes: Mailboxes) -> None:
    world = mailboxes.world
    response = world.get("/users/no-such-user/contacts")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ErrorInvalidUser"
    nomail = world.user("nomail", mail=None)
    mutations.update_user(world.tenant, nomail.id, {"mail": None})
    response = world.get(f"/users/{nomail.id}/contacts")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "MailboxNotEnabledForRESTAPI"
    response = world.get(f"/users/{mailboxes.owner.id}/contactFolders/AAMkNOPE=/contacts")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ErrorItemNotFound"


def test_contacts_delta(mailboxes: Mailboxes) -> None:
    world = mailboxes.world
    tenant = world.tenant
    url = f"/users/{mailboxes.owner.id}/contactFolders/{mailboxes.private.id}/contacts/delta"
    body = world.get(url).json()
    assert [c["displayName"] for c in body["value"]] == ["Secret"]
    secret_id = body["value"][0]["id"]
    added = mutations.create_contact(tenant, mailboxes.private.id, {"displayName": "Added"})
    mutations.delete_contact(tenant, mailboxes.private.id, secret_id)
    body = world.get(body["@odata.deltaLink"]).json()
    assert {c["id"]: c.get("@removed") for c in body["value"]} == {
        added.id: None,
        secret_id: {"reason": "deleted"},
    }


def test_mailbox_settings_of_a_shared_mailbox_answer_both_ways(mailboxes: Mailboxes) -> None:
    """A member reads the shared mailbox's userPurpose by default; with the tenant knob off the
    same delegated read is 403 ErrorAccessDenied (as many real tenants answer), while the owner's
    own settings and app-only reads still work."""
    world = mailboxes.world
    token = world.token(world.admin, scopes={"MailboxSettings.Read"})
    url = f"/users/{mailboxes.desk.id}/mailboxSettings/userPurpose"
    answer = world.get(url, token=token)
    assert answer.status_code == 200 and answer.json()["value"] == "shared"
    settings.set_mailbox_settings_for_members(world.tenant, False)
    refused = world.get(url, token=token)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "ErrorAccessDenied"
    assert world.get("/me/mailboxSettings/userPurpose", token=token).status_code == 200
    assert world.get(url).json()["value"] == "shared"  # app-only
    settings.set_mailbox_settings_for_members(world.tenant, True)
    assert world.get(url, token=token).status_code == 200


def test_the_well_known_contacts_folder_and_a_refused_shared_delta(mailboxes: Mailboxes) -> None:
    world = mailboxes.world
    mutations.share_folder(world.tenant, mailboxes.default.id, world.admin.id)
    token = mailboxes.admin_token()
    base = f"/users/{mailboxes.owner.id}/contactFolders/contacts/contacts"
    listed = page_all(world, base + "?$top=999", token=token)
    assert {c["parentFolderId"] for c in listed} == {mailboxes.default.id}
    assert len(listed) == 3
    delta = world.get(base + "/delta", token=token)
    assert delta.status_code == 200 and len(delta.json()["value"]) == 3
    settings.set_shared_contacts_delta(world.tenant, False)
    refused = world.get(base + "/delta", token=token)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "ErrorAccessDenied"
    assert world.get(base, token=token).status_code == 200  # plain reads still work
    # The owner's own delta is not affected.
    own = world.get(
        "/me/contactFolders/contacts/contacts/delta",
        token=world.token(mailboxes.owner, scopes={"Contacts.Read"}),
    )
    assert own.status_code == 200


def test_a_moved_contact_gets_a_new_id_in_the_other_folder(mailboxes: Mailboxes) -> None:
    world = mailboxes.world
    tenant = world.tenant
    url = f"/users/{mailboxes.owner.id}/contactFolders/{mailboxes.private.id}/contacts/delta"
    first = world.get(url).json()
    moving = first["value"][0]["id"]
    moved = mutations.move_contact(tenant, moving, mailboxes.shared.id)
    assert moved.id != moving and moved.id in mailboxes.shared.contacts
    body = world.get(first["@odata.deltaLink"]).json()
    assert body["value"] == [{"id": moving, "@removed": {"reason": "deleted"}}]
