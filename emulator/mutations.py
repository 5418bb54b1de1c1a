"""Writes to the emulated directory, each recorded in the tenant's change log.

The control API and the generator write through here, so Graph delta queries and change
notifications see every change. Soft deletion follows
https://learn.microsoft.com/en-us/graph/api/resources/directory (deleted items are restorable for 30
days) and delta's `@removed` reasons, https://learn.microsoft.com/en-us/graph/delta-query-overview
("`changed`: the item was deleted and can be restored from deletedItems; `deleted`: the item was
deleted and cannot be restored").
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from emulator.state import (
    App,
    Contact,
    ContactFolder,
    EmulatorState,
    Group,
    Presence,
    Secret,
    Tenant,
    User,
    new_id,
    utcnow,
)


class MutationError(Exception):
    """A write that cannot be done: `status` and Graph-like `code` for the control API."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _not_found(kind: str, object_id: str) -> MutationError:
    return MutationError(
        404, "Request_ResourceNotFound", f"Resource '{object_id}' does not exist ({kind})."
    )


# --- property names ---------------------------------------------------------------------------

USER_FIELDS = {
    "id": "id",
    "displayName": "display_name",
    "userPrincipalName": "user_principal_name",
    "givenName": "given_name",
    "surname": "surname",
    "mail": "mail",
    "userType": "user_type",
    "accountEnabled": "account_enabled",
    "mobilePhone": "mobile_phone",
    "businessPhones": "business_phones",
    "jobTitle": "job_title",
    "department": "department",
    "employeeId": "employee_id",
    "userPurpose": "user_purpose",
    "isAdmin": "is_admin",
}
GROUP_FIELDS = {
    "id": "id",
    "displayName": "display_name",
    "description": "description",
    "mail": "mail",
    "mailEnabled": "mail_enabled",
    "securityEnabled": "security_enabled",
    "groupTypes": "group_types",
}
CONTACT_FIELDS = {
    "id": "id",
    "givenName": "given_name",
    "surname": "surname",
    "displayName": "display_name",
    "companyName": "company_name",
    "emailAddresses": "email_addresses",
    "mobilePhone": "mobile_phone",
    "homePhones": "home_phones",
    "businessPhones": "business_phones",
}
EXTENSION_ATTRIBUTES = tuple(f"extensionAttribute{i}" for i in range(1, 16))
USER_PURPOSES = ("user", "shared", "room", "equipment", "linked", "others")
AVAILABILITIES = (
    "Available",
    "AvailableIdle",
    "Away",
    "BeRightBack",
    "Busy",
    "BusyIdle",
    "DoNotDisturb",
    "Offline",
    "PresenceUnknown",
)


def _iso(value: Any) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def user_to_json(user: User) -> dict[str, Any]:
    body: dict[str, Any] = {camel: getattr(user, snake) for camel, snake in USER_FIELDS.items()}
    body["businessPhones"] = list(user.business_phones)
    body["onPremisesExtensionAttributes"] = {
        name: user.extension_attributes.get(name) for name in EXTENSION_ATTRIBUTES
    }
    body["deletedDateTime"] = _iso(user.deleted_at)
    body["mailboxMembers"] = sorted(user.mailbox_members)
    return body


def group_to_json(group: Group) -> dict[str, Any]:
    body: dict[str, Any] = {camel: getattr(group, snake) for camel, snake in GROUP_FIELDS.items()}
    body["groupTypes"] = list(group.group_types)
    body["deletedDateTime"] = _iso(group.deleted_at)
    body["members"] = sorted(group.member_ids)
    return body


def contact_to_json(contact: Contact) -> dict[str, Any]:
    body: dict[str, Any] = {
        camel: getattr(contact, snake) for camel, snake in CONTACT_FIELDS.items()
    }
    body["lastModifiedDateTime"] = _iso(contact.last_modified)
    return body


def folder_to_json(folder: ContactFolder) -> dict[str, Any]:
    return {
        "id": folder.id,
        "ownerId": folder.owner_id,
        "displayName": folder.display_name,
        "isDefault": folder.is_default,
        "sharedWith": sorted(folder.shared_with),
        "contacts": len(folder.contacts),
    }


def _user_changes(data: Mapping[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for camel, value in data.items():
        if camel in USER_FIELDS:
            changes[USER_FIELDS[camel]] = value
        elif camel == "onPremisesExtensionAttributes":
            if not isinstance(value, Mapping) or set(value) - set(EXTENSION_ATTRIBUTES):
                raise MutationError(
                    400, "Request_BadRequest", "Invalid onPremisesExtensionAttributes."
                )
            changes["extension_attributes"] = dict(value)
        elif camel == "passwordProfile" and isinstance(value, Mapping) and value.get("password"):
            changes["password"] = str(value["password"])
        elif camel == "password":
            changes["password"] = str(value)
        elif camel in ("mailNickname", "@odata.type", "deletedDateTime", "mailboxMembers"):
            continue  # accepted from Graph payloads, not modelled or read-only
        else:
            raise MutationError(
                400,
                "Request_BadRequest",
                f"Property '{camel}' does not exist on type 'microsoft.graph.user'.",
            )
    if "user_type" in changes and changes["user_type"] not in ("Member", "Guest"):
        raise MutationError(400, "Request_BadRequest", "userType must be Member or Guest.")
    if "user_purpose" in changes and changes["user_purpose"] not in USER_PURPOSES:
        raise MutationError(400, "Request_BadRequest", "Invalid userPurpose.")
    if "business_phones" in changes:
        changes["business_phones"] = list(changes["business_phones"] or [])
    return changes


def _group_changes(data: Mapping[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for camel, value in data.items():
        if camel in GROUP_FIELDS:
            changes[GROUP_FIELDS[camel]] = value
        elif camel in (
            "mailNickname",
            "members",
            "members@odata.bind",
            "owners@odata.bind",
            "@odata.type",
            "deletedDateTime",
            "visibility",
        ):
            continue
        else:
            raise MutationError(
                400,
                "Request_BadRequest",
                f"Property '{camel}' does not exist on type 'microsoft.graph.group'.",
            )
    if "group_types" in changes:
        changes["group_types"] = list(changes["group_types"] or [])
    return changes


def _contact_changes(data: Mapping[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for camel, value in data.items():
        if camel in CONTACT_FIELDS:
            changes[CONTACT_FIELDS[camel]] = value
        elif camel in ("@odata.type", "@odata.etag", "lastModifiedDateTime", "parentFolderId"):
            continue
        else:
            raise MutationError(
                400,
                "ErrorInvalidProperty",
                f"Property '{camel}' does not exist on type 'microsoft.graph.contact'.",
            )
    for name in ("home_phones", "business_phones", "email_addresses"):
        if name in changes:
            changes[name] = list(changes[name] or [])
    return changes


# --- tenants and apps -------------------------------------------------------------------------


def create_tenant(
    state: EmulatorState,
    display_name: str,
    domain: str,
    tenant_id: str | None = None,
    users: int = 0,
    groups: int = 0,
    seed: int = 1,
    admin_password: str | None = None,
) -> Tenant:
    """A tenant with its admin (`admin@<domain>`) and, with `users`/`groups`, generated data."""
    from emulator.generator import generate

    tenant_id = tenant_id or new_id()
    with state.lock:
        if tenant_id in state.tenants:
            raise MutationError(409, "Conflict", f"Tenant '{tenant_id}' already exists.")
        tenant = Tenant(id=tenant_id, display_name=display_name, domain=domain.lower())
        generate(tenant, users=users, groups=groups, seed=seed, admin_password=admin_password)
        state.tenants[tenant_id] = tenant
    return tenant


def admin_user(tenant: Tenant) -> User | None:
    return tenant.find_user(f"admin@{tenant.domain}")


def delete_tenant(state: EmulatorState, tenant_id: str) -> None:
    with state.lock:
        if state.tenants.pop(tenant_id, None) is None:
            raise _not_found("tenant", tenant_id)


# Application permissions granted to an app registered without an explicit list: what the
# service reads (https://learn.microsoft.com/en-us/graph/permissions-reference).
DEFAULT_APP_ROLES = frozenset(
    {
        "User.Read.All",
        "Group.Read.All",
        "GroupMember.Read.All",
        "Contacts.Read",
        "MailboxSettings.Read",
        "Presence.Read.All",
        "Organization.Read.All",
    }
)


def register_app(
    tenant: Tenant,
    display_name: str,
    redirect_uris: Iterable[str] = (),
    app_id: str | None = None,
    app_roles: Iterable[str] | None = None,
) -> App:
    app_id = app_id or new_id()
    if app_id in tenant.apps:
        raise MutationError(409, "Conflict", f"App '{app_id}' already exists.")
    app = App(
        app_id=app_id,
        tenant_id=tenant.id,
        display_name=display_name,
        redirect_uris=list(redirect_uris),
        app_roles=set(DEFAULT_APP_ROLES if app_roles is None else app_roles),
    )
    tenant.apps[app_id] = app
    return app


def add_secret(
    app: App,
    value: str | None = None,
    expires_in_days: float = 365,
    display_name: str = "secret",
) -> Secret:
    """A client secret; like Entra's, the value is 40 characters starting with a 3-character hint
    followed by `Q~` (https://learn.microsoft.com/en-us/graph/api/application-addpassword)."""
    if value is None:
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.~"
        value = (
            secrets.token_urlsafe(3)[:3]
            + "8Q~"
            + "".join(secrets.choice(alphabet) for _ in range(34))
        )
    now = utcnow()
    secret = Secret(
        key_id=str(uuid.uuid4()),
        value=value,
        display_name=display_name,
        start_date_time=now,
        end_date_time=now + timedelta(days=expires_in_days),
    )
    app.secrets.append(secret)
    return secret


def expire_secret(app: App, key_id: str) -> Secret:
    for secret in app.secrets:
        if secret.key_id == key_id:
            secret.end_date_time = utcnow() - timedelta(seconds=1)
            return secret
    raise _not_found("secret", key_id)


def remove_secret(app: App, key_id: str) -> None:
    before = len(app.secrets)
    app.secrets[:] = [s for s in app.secrets if s.key_id != key_id]
    if len(app.secrets) == before:
        raise _not_found("secret", key_id)


def revoke_consent(tenant: Tenant, app: App) -> None:
    """Remove every delegated permission grant of the app: its refresh tokens then fail with
    AADSTS65001 (consent no longer exists) until someone consents again."""
    app.consented_scopes.clear()
    app.user_consents.clear()


# --- users ------------------------------------------------------------------------------------


def get_user(tenant: Tenant, user_id: str) -> User:
    user = tenant.find_user(user_id)
    if user is None:
        raise _not_found("user", user_id)
    return user


def _check_upn_free(tenant: Tenant, upn: str, exclude: str | None = None) -> None:
    existing = tenant.find_user(upn)
    if existing is not None and existing.id != exclude:
        raise MutationError(
            400,
            "Request_BadRequest",
            "Another object with the same value for property userPrincipalName already exists.",
        )


def create_user(tenant: Tenant, data: Mapping[str, Any]) -> User:
    """Create a user from a Graph-style (camelCase) payload."""
    changes = _user_changes(data)
    upn = changes.get("user_principal_name")
    if not upn or "@" not in str(upn):
        raise MutationError(
            400, "Request_BadRequest", "Property userPrincipalName is required and must be valid."
        )
    _check_upn_free(tenant, upn)
    user_id = changes.pop("id", None) or new_id()
    if user_id in tenant.users or user_id in tenant.groups:
        raise MutationError(409, "Conflict", f"Object '{user_id}' already exists.")
    changes.setdefault("display_name", None)
    user = User(id=user_id, **changes)
    tenant.users[user.id] = user
    tenant.record(kind="user", object_id=user.id, change_type="created")
    return user


def update_user(tenant: Tenant, user_id: str, data: Mapping[str, Any]) -> User:
    user = get_user(tenant, user_id)
    changes = _user_changes(data)
    changes.pop("id", None)
    if "user_principal_name" in changes:
        _check_upn_free(tenant, changes["user_principal_name"], exclude=user.id)
    for name, value in changes.items():
        if name == "extension_attributes":
            merged = {**user.extension_attributes, **value}
            user.extension_attributes = {k: v for k, v in merged.items() if v is not None}
        else:
            setattr(user, name, value)
    tenant.record(kind="user", object_id=user.id, change_type="updated")
    return user


def disable_user(tenant: Tenant, user_id: str) -> User:
    return update_user(tenant, user_id, {"accountEnabled": False})


def enable_user(tenant: Tenant, user_id: str) -> User:
    return update_user(tenant, user_id, {"accountEnabled": True})


def soft_delete_user(tenant: Tenant, user_id: str) -> User:
    """Move a user to deleted items (restorable for 30 days): delta reports `changed`."""
    user = get_user(tenant, user_id)
    if user.deleted_at is not None:
        raise _not_found("user", user_id)
    user.deleted_at = utcnow()
    revoke_sessions(tenant, user.id)
    tenant.record(kind="user", object_id=user.id, change_type="deleted", removed_reason="changed")
    return user


def restore_user(tenant: Tenant, user_id: str) -> User:
    user = get_user(tenant, user_id)
    if user.deleted_at is None:
        raise MutationError(400, "Request_BadRequest", "The user is not deleted.")
    user.deleted_at = None
    tenant.record(kind="user", object_id=user.id, change_type="updated")
    return user


def hard_delete_user(tenant: Tenant, user_id: str) -> None:
    """Delete a user for good: delta reports `deleted`; memberships and mailbox data go too."""
    user = get_user(tenant, user_id)
    for group in tenant.groups.values():
        if user.id in group.member_ids:
            group.member_ids.discard(user.id)
            tenant.record(
                kind="membership",
                object_id=group.id,
                change_type="updated",
                member_id=user.id,
                added=False,
            )
    for folder_id in [f.id for f in tenant.contact_folders.values() if f.owner_id == user.id]:
        del tenant.contact_folders[folder_id]
    for folder in tenant.contact_folders.values():
        folder.shared_with.discard(user.id)
    for other in tenant.users.values():
        other.mailbox_members.discard(user.id)
    tenant.presence.pop(user.id, None)
    revoke_sessions(tenant, user.id)
    del tenant.users[user.id]
    tenant.record(kind="user", object_id=user.id, change_type="deleted", removed_reason="deleted")


def revoke_sessions(tenant: Tenant, user_id: str) -> User:
    """Invalidate the user's refresh tokens, like revokeSignInSessions
    (https://learn.microsoft.com/en-us/graph/api/user-revokesigninsessions)."""
    user = get_user(tenant, user_id)
    user.sessions_valid_after = utcnow()
    for grant in tenant.refresh_tokens.values():
        if grant.user_id == user.id:
            grant.revoked = True
    return user


# --- groups -----------------------------------------------------------------------------------


def get_group(tenant: Tenant, group_id: str) -> Group:
    group = tenant.groups.get(group_id)
    if group is None:
        raise _not_found("group", group_id)
    return group


def _member_ids_from(data: Mapping[str, Any]) -> list[str]:
    ids = [str(m) for m in data.get("members") or []]
    # "members@odata.bind": ["https://graph.microsoft.com/v1.0/directoryObjects/{id}", ...]
    ids += [str(ref).rstrip("/").rsplit("/", 1)[-1] for ref in data.get("members@odata.bind") or []]
    return ids


def create_group(tenant: Tenant, data: Mapping[str, Any]) -> Group:
    changes = _group_changes(data)
    if not changes.get("display_name"):
        raise MutationError(400, "Request_BadRequest", "Property displayName is required.")
    group_id = changes.pop("id", None) or new_id()
    if group_id in tenant.groups or group_id in tenant.users:
        raise MutationError(409, "Conflict", f"Object '{group_id}' already exists.")
    member_ids = _member_ids_from(data)
    for member_id in member_ids:
        _check_member(tenant, group_id, member_id)
    group = Group(id=group_id, **changes)
    tenant.groups[group.id] = group
    tenant.record(kind="group", object_id=group.id, change_type="created")
    for member_id in member_ids:
        add_member(tenant, group.id, member_id)
    return group


def update_group(tenant: Tenant, group_id: str, data: Mapping[str, Any]) -> Group:
    group = get_group(tenant, group_id)
    changes = _group_changes(data)
    changes.pop("id", None)
    for name, value in changes.items():
        setattr(group, name, value)
    tenant.record(kind="group", object_id=group.id, change_type="updated")
    return group


def delete_group(tenant: Tenant, group_id: str, permanent: bool | None = None) -> None:
    """Delete a group. Microsoft 365 groups go to deleted items (restorable, delta `changed`);
    security and distribution groups are deleted for good (delta `deleted`), as in
    https://learn.microsoft.com/en-us/graph/api/group-delete."""
    group = get_group(tenant, group_id)
    if permanent is None:
        permanent = "Unified" not in group.group_types or group.deleted_at is not None
    if permanent:
        del tenant.groups[group.id]
        for other in tenant.groups.values():
            if group.id in other.member_ids:
                other.member_ids.discard(group.id)
                tenant.record(
                    kind="membership",
                    object_id=other.id,
                    change_type="updated",
                    member_id=group.id,
                    added=False,
                )
        tenant.record(
            kind="group", object_id=group.id, change_type="deleted", removed_reason="deleted"
        )
    else:
        group.deleted_at = utcnow()
        tenant.record(
            kind="group", object_id=group.id, change_type="deleted", removed_reason="changed"
        )


def restore_group(tenant: Tenant, group_id: str) -> Group:
    group = get_group(tenant, group_id)
    if group.deleted_at is None:
        raise MutationError(400, "Request_BadRequest", "The group is not deleted.")
    group.deleted_at = None
    tenant.record(kind="group", object_id=group.id, change_type="updated")
    return group


def _check_member(tenant: Tenant, group_id: str, member_id: str) -> None:
    if member_id not in tenant.users and member_id not in tenant.groups:
        raise _not_found("directoryObject", member_id)
    if member_id == group_id or group_id in _transitive_group_ids(tenant, member_id):
        raise MutationError(
            400, "Request_BadRequest", "A group cannot be a member of itself (cycle)."
        )


def _transitive_group_ids(tenant: Tenant, group_id: str) -> set[str]:
    """Ids of the groups nested (at any depth) in `group_id`."""
    seen: set[str] = set()
    pending = [group_id]
    while pending:
        group = tenant.groups.get(pending.pop())
        if group is None:
            continue
        for member_id in group.member_ids:
            if member_id in tenant.groups and member_id not in seen:
                seen.add(member_id)
                pending.append(member_id)
    return seen


def add_member(tenant: Tenant, group_id: str, member_id: str) -> None:
    """Add a user or a group to a group; adding an existing member is a 400, as in Graph
    (https://learn.microsoft.com/en-us/graph/api/group-post-members: "One or more added object
    references already exist for the following modified properties: 'members'")."""
    group = get_group(tenant, group_id)
    _check_member(tenant, group.id, member_id)
    if member_id in group.member_ids:
        raise MutationError(
            400,
            "Request_BadRequest",
            "One or more added object references already exist for the following modified "
            "properties: 'members'.",
        )
    group.member_ids.add(member_id)
    tenant.record(
        kind="membership",
        object_id=group.id,
        change_type="updated",
        member_id=member_id,
        added=True,
    )


def remove_member(tenant: Tenant, group_id: str, member_id: str) -> None:
    group = get_group(tenant, group_id)
    if member_id not in group.member_ids:
        raise _not_found("member", member_id)
    group.member_ids.discard(member_id)
    tenant.record(
        kind="membership",
        object_id=group.id,
        change_type="updated",
        member_id=member_id,
        added=False,
    )


# --- mailboxes and contacts -------------------------------------------------------------------


def add_mailbox_member(tenant: Tenant, mailbox_id: str, user_id: str) -> None:
    """Give `user_id` full access to the (shared) mailbox `mailbox_id`."""
    mailbox = get_user(tenant, mailbox_id)
    member = get_user(tenant, user_id)
    mailbox.mailbox_members.add(member.id)


def remove_mailbox_member(tenant: Tenant, mailbox_id: str, user_id: str) -> None:
    mailbox = get_user(tenant, mailbox_id)
    if user_id not in mailbox.mailbox_members:
        raise _not_found("mailbox member", user_id)
    mailbox.mailbox_members.discard(user_id)


def get_folder(tenant: Tenant, folder_id: str) -> ContactFolder:
    folder = tenant.contact_folders.get(folder_id)
    if folder is None:
        raise MutationError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return folder


def default_folder(tenant: Tenant, owner_id: str) -> ContactFolder:
    """The mailbox's default "Contacts" folder (made on first use)."""
    owner = get_user(tenant, owner_id)
    for folder in tenant.contact_folders.values():
        if folder.owner_id == owner.id and folder.is_default:
            return folder
    folder = ContactFolder(
        id=_mail_id(), owner_id=owner.id, display_name="Contacts", is_default=True
    )
    tenant.contact_folders[folder.id] = folder
    return folder


def _mail_id() -> str:
    # Exchange ids are long base64 strings, e.g. "AAMkAGI2THVSAAA=": opaque to clients.
    return "AAMk" + secrets.token_urlsafe(48).replace("-", "A").replace("_", "B") + "="


def create_folder(tenant: Tenant, owner_id: str, display_name: str) -> ContactFolder:
    owner = get_user(tenant, owner_id)
    if not display_name:
        raise MutationError(400, "ErrorInvalidRequest", "displayName is required.")
    folder = ContactFolder(id=_mail_id(), owner_id=owner.id, display_name=display_name)
    tenant.contact_folders[folder.id] = folder
    return folder


def delete_folder(tenant: Tenant, folder_id: str) -> None:
    folder = get_folder(tenant, folder_id)
    if folder.is_default:
        raise MutationError(
            400, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted."
        )
    for contact_id in list(folder.contacts):
        delete_contact(tenant, folder.id, contact_id)
    del tenant.contact_folders[folder.id]


def share_folder(tenant: Tenant, folder_id: str, user_id: str, shared: bool = True) -> None:
    """Grant (or withdraw) `user_id` read access to a contact folder."""
    folder = get_folder(tenant, folder_id)
    user = get_user(tenant, user_id)
    if shared:
        folder.shared_with.add(user.id)
    else:
        folder.shared_with.discard(user.id)


def create_contact(tenant: Tenant, folder_id: str, data: Mapping[str, Any]) -> Contact:
    folder = get_folder(tenant, folder_id)
    changes = _contact_changes(data)
    changes.pop("id", None)
    contact = Contact(id=_mail_id(), **changes)
    folder.contacts[contact.id] = contact
    tenant.record(
        kind="contact",
        object_id=contact.id,
        change_type="created",
        owner_id=folder.owner_id,
        folder_id=folder.id,
    )
    return contact


def find_contact(tenant: Tenant, contact_id: str) -> tuple[ContactFolder, Contact]:
    for folder in tenant.contact_folders.values():
        contact = folder.contacts.get(contact_id)
        if contact is not None:
            return folder, contact
    raise MutationError(
        404, "ErrorItemNotFound", "The specified object was not found in the store."
    )


def update_contact(tenant: Tenant, contact_id: str, data: Mapping[str, Any]) -> Contact:
    folder, contact = find_contact(tenant, contact_id)
    changes = _contact_changes(data)
    changes.pop("id", None)
    for name, value in changes.items():
        setattr(contact, name, value)
    contact.last_modified = utcnow()
    tenant.record(
        kind="contact",
        object_id=contact.id,
        change_type="updated",
        owner_id=folder.owner_id,
        folder_id=folder.id,
    )
    return contact


def move_contact(tenant: Tenant, contact_id: str, folder_id: str) -> Contact:
    """Move a contact to another folder (of any mailbox). Exchange gives the moved item a new
    id (https://learn.microsoft.com/en-us/graph/api/resources/contact: ids change on a move): the
    source folder's delta reports a deletion, the target's a creation."""
    source, contact = find_contact(tenant, contact_id)
    target = get_folder(tenant, folder_id)
    if target.id == source.id:
        return contact
    del source.contacts[contact.id]
    tenant.record(
        kind="contact",
        object_id=contact.id,
        change_type="deleted",
        owner_id=source.owner_id,
        folder_id=source.id,
    )
    contact.id = _mail_id()
    contact.last_modified = utcnow()
    target.contacts[contact.id] = contact
    tenant.record(
        kind="contact",
        object_id=contact.id,
        change_type="created",
        owner_id=target.owner_id,
        folder_id=target.id,
    )
    return contact


def delete_contact(tenant: Tenant, folder_id: str | None, contact_id: str) -> None:
    if folder_id is None:
        folder, _ = find_contact(tenant, contact_id)
    else:
        folder = get_folder(tenant, folder_id)
    if folder.contacts.pop(contact_id, None) is None:
        raise MutationError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    tenant.record(
        kind="contact",
        object_id=contact_id,
        change_type="deleted",
        owner_id=folder.owner_id,
        folder_id=folder.id,
    )


# --- presence and delta -----------------------------------------------------------------------


def set_presence(tenant: Tenant, user_id: str, availability: str, activity: str | None) -> Presence:
    """Set a user's Teams presence (availability values from
    https://learn.microsoft.com/en-us/graph/api/resources/presence)."""
    user = get_user(tenant, user_id)
    if availability not in AVAILABILITIES:
        raise MutationError(
            400, "BadRequest", f"availability must be one of {', '.join(AVAILABILITIES)}."
        )
    presence = Presence(availability=availability, activity=activity or availability)
    tenant.presence[user.id] = presence
    tenant.record(kind="presence", object_id=user.id, change_type="updated")
    return presence


def expire_delta_tokens(tenant: Tenant) -> int:
    """Make every delta token issued so far invalid (the next delta call must resync)."""
    tenant.min_valid_delta_seq = tenant.seq + 1
    return tenant.min_valid_delta_seq
