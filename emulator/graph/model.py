"""Graph's JSON view of the emulator's objects (property names, default property sets, which
properties filter and sort) and per-tenant indexes that keep big listings fast.

Property sets: https://learn.microsoft.com/en-us/graph/api/resources/user,
https://learn.microsoft.com/en-us/graph/api/resources/group,
https://learn.microsoft.com/en-us/graph/api/resources/contact,
https://learn.microsoft.com/en-us/graph/api/resources/contactfolder. Which properties support which
`$filter` operators and `$orderby`: https://learn.microsoft.com/en-us/graph/aad-advanced-queries.
"""

from __future__ import annotations

import base64
import hashlib
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from emulator.graph.odata import Resource
from emulator.state import Contact, ContactFolder, Group, Tenant, User

EXTENSION_ATTRIBUTES = tuple(f"extensionAttribute{i}" for i in range(1, 16))
USER_TYPE = "#microsoft.graph.user"
GROUP_TYPE = "#microsoft.graph.group"


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _extension_attributes(user: User) -> dict[str, str | None]:
    values = user.extension_attributes
    return {name: values.get(name) for name in EXTENSION_ATTRIBUTES}


def _mail_nickname(address: str | None) -> str | None:
    return address.split("@", 1)[0] if address else None


EQ = frozenset({"eq", "in"})
EQ_START = frozenset({"eq", "in", "startswith"})
EQ_START_END = frozenset({"eq", "in", "startswith", "endswith"})
ANY = frozenset({"any"})

USER = Resource.from_expressions(
    {
        "id": "o.id",
        "businessPhones": "list(o.business_phones)",
        "displayName": "o.display_name",
        "givenName": "o.given_name",
        "jobTitle": "o.job_title",
        "mail": "o.mail",
        "mobilePhone": "o.mobile_phone",
        "officeLocation": "None",
        "preferredLanguage": "None",
        "surname": "o.surname",
        "userPrincipalName": "o.user_principal_name",
        "accountEnabled": "o.account_enabled",
        "userType": "o.user_type",
        "department": "o.department",
        "employeeId": "o.employee_id",
        "mailNickname": "_nickname(o.user_principal_name)",
        "onPremisesExtensionAttributes": "_extension_attributes(o)",
        "proxyAddresses": "[f'SMTP:{o.mail}'] if o.mail else []",
        "otherMails": "[]",
        "deletedDateTime": "_iso(o.deleted_at)",
    },
    {"_nickname": _mail_nickname, "_extension_attributes": _extension_attributes, "_iso": iso},
    name="User",
    type_name="microsoft.graph.user",
    # user-list.md: "By default, only a limited set of properties are returned (businessPhones,
    # displayName, givenName, id, jobTitle, mail, mobilePhone, officeLocation, preferredLanguage,
    # surname, and userPrincipalName)".
    default_select=(
        "businessPhones",
        "displayName",
        "givenName",
        "jobTitle",
        "mail",
        "mobilePhone",
        "officeLocation",
        "preferredLanguage",
        "surname",
        "userPrincipalName",
        "id",
    ),
    filterable={
        "id": EQ,
        "displayName": EQ_START,
        "givenName": EQ_START,
        "surname": EQ_START,
        "mail": EQ_START_END,
        "userPrincipalName": EQ_START_END,
        "mailNickname": EQ_START,
        "userType": EQ,
        "accountEnabled": EQ,
        "jobTitle": EQ_START,
        "department": EQ_START,
        "employeeId": EQ_START,
        "mobilePhone": EQ_START,
        "onPremisesExtensionAttributes": EQ,
        "businessPhones": ANY,
        "proxyAddresses": ANY,
        "otherMails": ANY,
    },
    sortable=frozenset({"displayName", "userPrincipalName"}),
    searchable=frozenset(
        {"displayName", "givenName", "surname", "mail", "userPrincipalName", "mailNickname"}
    ),
    single_only=frozenset(
        {
            "aboutMe",
            "birthday",
            "hireDate",
            "interests",
            "mySite",
            "pastProjects",
            "preferredName",
            "responsibilities",
            "schools",
            "skills",
            "mailboxSettings",
        }
    ),
)


def _group_nickname(group: Group) -> str:
    if group.mail:
        return group.mail.split("@", 1)[0]
    return "".join(ch for ch in group.display_name if ch.isalnum()) or group.id[:8]


GROUP = Resource.from_expressions(
    {
        "id": "o.id",
        "deletedDateTime": "_iso(o.deleted_at)",
        "description": "o.description",
        "displayName": "o.display_name",
        "groupTypes": "list(o.group_types)",
        "mail": "o.mail",
        "mailEnabled": "o.mail_enabled",
        "mailNickname": "_nickname(o)",
        "proxyAddresses": "[f'SMTP:{o.mail}'] if o.mail else []",
        "securityEnabled": "o.security_enabled",
        "visibility": "'Private' if 'Unified' in o.group_types else None",
    },
    {"_nickname": _group_nickname, "_iso": iso},
    name="Group",
    type_name="microsoft.graph.group",
    # group-list.md returns the group's properties by default.
    default_select=(
        "id",
        "deletedDateTime",
        "description",
        "displayName",
        "groupTypes",
        "mail",
        "mailEnabled",
        "mailNickname",
        "proxyAddresses",
        "securityEnabled",
        "visibility",
    ),
    filterable={
        "id": EQ,
        "displayName": EQ_START,
        "description": EQ_START,
        "mail": EQ_START_END,
        "mailNickname": EQ_START,
        "mailEnabled": EQ,
        "securityEnabled": EQ,
        "groupTypes": ANY,
        "proxyAddresses": ANY,
    },
    sortable=frozenset({"displayName"}),
    searchable=frozenset({"displayName", "description", "mail", "mailNickname"}),
)


def etag(contact: Contact) -> str:
    digest = hashlib.sha1(  # noqa: S324 - a change key, not a secret
        f"{contact.id}:{contact.last_modified.isoformat()}".encode()
    ).digest()
    return base64.b64encode(digest[:12]).decode()


# Contacts are (folder, contact) pairs: parentFolderId comes from the folder.
CONTACT = Resource(
    name="Contact",
    type_name="microsoft.graph.contact",
    getters={
        "id": lambda fc: fc[1].id,
        "createdDateTime": lambda fc: iso(fc[1].last_modified),
        "lastModifiedDateTime": lambda fc: iso(fc[1].last_modified),
        "changeKey": lambda fc: etag(fc[1]),
        "categories": lambda fc: [],
        "parentFolderId": lambda fc: fc[0].id,
        "displayName": lambda fc: fc[1].display_name,
        "givenName": lambda fc: fc[1].given_name,
        "surname": lambda fc: fc[1].surname,
        "companyName": lambda fc: fc[1].company_name,
        "emailAddresses": lambda fc: [dict(e) for e in fc[1].email_addresses],
        "mobilePhone": lambda fc: fc[1].mobile_phone,
        "homePhones": lambda fc: list(fc[1].home_phones),
        "businessPhones": lambda fc: list(fc[1].business_phones),
    },
    default_select=(
        "id",
        "createdDateTime",
        "lastModifiedDateTime",
        "changeKey",
        "categories",
        "parentFolderId",
        "displayName",
        "givenName",
        "surname",
        "companyName",
        "emailAddresses",
        "mobilePhone",
        "homePhones",
        "businessPhones",
    ),
    filterable={
        "displayName": EQ_START,
        "givenName": EQ_START,
        "surname": EQ_START,
        "companyName": EQ_START,
    },
    sortable=frozenset({"displayName", "givenName", "surname"}),
    unknown_property_code="RequestBroker--ParseUri",
)

FOLDER = Resource(
    name="ContactFolder",
    type_name="microsoft.graph.contactFolder",
    getters={
        "id": lambda f: f.id,
        "displayName": lambda f: f.display_name,
        "parentFolderId": lambda f: f.extra_parent_id,
    },
    default_select=("id", "displayName", "parentFolderId"),
    filterable={"displayName": EQ_START},
    unknown_property_code="RequestBroker--ParseUri",
)


class FolderView:
    """A contact folder with the id of its parent (the mailbox's default Contacts folder)."""

    __slots__ = ("display_name", "extra_parent_id", "folder", "id")

    def __init__(self, folder: ContactFolder, parent_id: str | None) -> None:
        self.folder = folder
        self.id = folder.id
        self.display_name = folder.display_name
        self.extra_parent_id = parent_id


# --- directory object helpers ----------------------------------------------------------------


def odata_type(tenant: Tenant, object_id: str) -> str:
    return GROUP_TYPE if object_id in tenant.groups else USER_TYPE


def live_user(tenant: Tenant, key: str) -> User | None:
    """A user by id or userPrincipalName that is not soft-deleted."""
    user = tenant.users.get(key)
    if user is None and "@" in key:
        user = tenant.find_user(key)
    if user is None or user.deleted_at is not None:
        return None
    return user


def live_group(tenant: Tenant, key: str) -> Group | None:
    group = tenant.groups.get(key)
    if group is None or group.deleted_at is not None:
        return None
    return group


def transitive_members(tenant: Tenant, group: Group) -> list[str]:
    """Every user and group nested in `group` at any depth (each once, cycles are safe)."""
    seen: set[str] = set()
    pending = [group.id]
    visited_groups = {group.id}
    while pending:
        current = tenant.groups.get(pending.pop())
        if current is None:
            continue
        for member_id in current.member_ids:
            nested = tenant.groups.get(member_id)
            if nested is not None and nested.deleted_at is not None:
                continue
            user = tenant.users.get(member_id)
            if user is not None and user.deleted_at is not None:
                continue
            if member_id not in seen:
                seen.add(member_id)
            if nested is not None and member_id not in visited_groups:
                visited_groups.add(member_id)
                pending.append(member_id)
    return sorted(seen)


def direct_member_of(tenant: Tenant, object_id: str) -> list[str]:
    return sorted(
        g.id for g in tenant.groups.values() if g.deleted_at is None and object_id in g.member_ids
    )


def transitive_member_of(tenant: Tenant, object_id: str) -> list[str]:
    parents: dict[str, list[str]] = {}
    for group in tenant.groups.values():
        if group.deleted_at is not None:
            continue
        for member_id in group.member_ids:
            parents.setdefault(member_id, []).append(group.id)
    seen: set[str] = set()
    pending = [object_id]
    while pending:
        for parent in parents.get(pending.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                pending.append(parent)
    seen.discard(object_id)
    return sorted(seen)


# --- cached indexes --------------------------------------------------------------------------
# Listing 100,000 users page by page must not sort per request: the sorted id list is kept per
# tenant and rebuilt only when the directory changed (its size or the change log moved on).


def _stamp(tenant: Tenant, kind: str) -> tuple[int, int]:
    objects = tenant.users if kind == "users" else tenant.groups
    return (len(objects), tenant.seq)


def sorted_ids(tenant: Tenant, kind: str) -> list[str]:
    cache: dict[str, tuple[tuple[int, int], list[str]]] = tenant.extra.setdefault(
        "graph.sorted_ids", {}
    )
    stamp = _stamp(tenant, kind)
    hit = cache.get(kind)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    objects = tenant.users if kind == "users" else tenant.groups
    ids = sorted(objects)
    cache[kind] = (stamp, ids)
    return ids


def ordered_ids(tenant: Tenant, kind: str, resource: Resource, prop: str, desc: bool) -> list[str]:
    cache: dict[tuple[str, str, bool], tuple[tuple[int, int], list[str]]] = tenant.extra.setdefault(
        "graph.ordered_ids", {}
    )
    stamp = _stamp(tenant, kind)
    hit = cache.get((kind, prop, desc))
    if hit is not None and hit[0] == stamp:
        return hit[1]
    objects = tenant.users if kind == "users" else tenant.groups
    getter = resource.getters[prop]

    def key(object_id: str) -> tuple[bool, str, str]:
        value = getter(objects[object_id])
        return (value is None, (value or "").casefold(), object_id)

    ids = sorted(objects, key=key)
    if desc:
        nulls = [i for i in ids if getter(objects[i]) is None]
        ids = [i for i in reversed(ids) if getter(objects[i]) is not None] + nulls
    cache[(kind, prop, desc)] = (stamp, ids)
    return ids


class ResultCache:
    """A few recent materialised result lists (ordered or searched queries), per tenant."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self.items: OrderedDict[tuple[Any, ...], list[str]] = OrderedDict()

    def get(self, key: tuple[Any, ...], build: Callable[[], list[str]]) -> list[str]:
        hit = self.items.get(key)
        if hit is not None:
            self.items.move_to_end(key)
            return hit
        value = build()
        self.items[key] = value
        if len(self.items) > self.size:
            self.items.popitem(last=False)
        return value


def result_cache(tenant: Tenant) -> ResultCache:
    cache = tenant.extra.get("graph.results")
    if cache is None:
        cache = tenant.extra.setdefault("graph.results", ResultCache())
    return cache  # type: ignore[no-any-return]


def position_after(ids: list[str], last: str) -> int:
    return bisect_right(ids, last)
