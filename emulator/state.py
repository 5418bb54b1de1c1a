"""In-memory state of the emulated Microsoft cloud: tenants, apps, directory, mail, presence.

Every mutation goes through `Tenant` methods so that the delta log and the change-notification
hooks see it. The Graph routes read from here; the control API writes through here.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Secret:
    key_id: str
    value: str
    display_name: str
    end_date_time: datetime
    start_date_time: datetime = field(default_factory=utcnow)

    @property
    def hint(self) -> str:
        return self.value[:3]


@dataclass
class App:
    """An app registration (and its service principal, folded together)."""

    app_id: str
    tenant_id: str
    display_name: str
    redirect_uris: list[str] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)
    # Delegated scopes the tenant admin has consented to (grows with each consent).
    consented_scopes: set[str] = field(default_factory=set)
    # Application permissions (app roles of Microsoft Graph) granted with admin consent: these
    # are the `roles` of client-credentials tokens.
    app_roles: set[str] = field(default_factory=set)
    # Delegated scopes each user consented to for themselves (user id -> scopes).
    user_consents: dict[str, set[str]] = field(default_factory=dict)
    # Object id of the app's service principal in this tenant (the `oid` of app-only tokens).
    service_principal_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(slots=True)
class User:
    id: str
    display_name: str | None
    user_principal_name: str
    given_name: str | None = None
    surname: str | None = None
    mail: str | None = None
    user_type: Literal["Member", "Guest"] = "Member"
    account_enabled: bool = True
    mobile_phone: str | None = None
    business_phones: list[str] = field(default_factory=list)
    job_title: str | None = None
    department: str | None = None
    employee_id: str | None = None
    # "extensionAttribute1".."extensionAttribute15" (onPremisesExtensionAttributes)
    extension_attributes: dict[str, str | None] = field(default_factory=dict)
    user_purpose: Literal["user", "shared", "room", "equipment", "linked", "others"] = "user"
    password: str = "Passw0rd!"  # for the sign-in page
    deleted_at: datetime | None = None  # soft-deleted (restorable 30 days)
    # Ids of users who are members of this (shared) mailbox: they may read its contacts.
    mailbox_members: set[str] = field(default_factory=set)
    version: int = 0  # change sequence number of the last change (delta)
    # Holds a directory role that may grant tenant-wide (admin) consent, e.g. Global Administrator.
    is_admin: bool = False
    # Refresh tokens issued before this instant are revoked (revokeSignInSessions).
    sessions_valid_after: datetime | None = None


@dataclass(slots=True)
class Group:
    id: str
    display_name: str
    mail: str | None = None
    mail_enabled: bool = False
    security_enabled: bool = True
    group_types: list[str] = field(default_factory=list)  # ["Unified"] for Microsoft 365 groups
    description: str | None = None
    member_ids: set[str] = field(default_factory=set)  # user ids and group ids (nesting)
    deleted_at: datetime | None = None
    version: int = 0


@dataclass(slots=True)
class Contact:
    id: str
    given_name: str | None = None
    surname: str | None = None
    display_name: str | None = None
    company_name: str | None = None
    email_addresses: list[dict[str, str]] = field(default_factory=list)  # [{"name","address"}]
    mobile_phone: str | None = None
    home_phones: list[str] = field(default_factory=list)
    business_phones: list[str] = field(default_factory=list)
    last_modified: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class ContactFolder:
    id: str
    owner_id: str
    display_name: str
    # The default "Contacts" folder of a mailbox (is_default) serves /users/{id}/contacts.
    is_default: bool = False
    shared_with: set[str] = field(default_factory=set)  # user ids granted read access
    contacts: dict[str, Contact] = field(default_factory=dict)


@dataclass(slots=True)
class Presence:
    availability: str = "PresenceUnknown"
    activity: str = "PresenceUnknown"


@dataclass
class Subscription:
    id: str
    tenant_id: str
    app_id: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_notification_url: str | None
    client_state: str | None
    expiration_date_time: datetime
    signed_in_user_id: str | None = None  # delegated subscriptions (presence)
    include_resource_data: bool = False


@dataclass(slots=True)
class ChangeEvent:
    """One entry of a tenant's change log: what delta queries and notifications are built from."""

    seq: int
    kind: Literal["user", "group", "membership", "contact", "presence"]
    object_id: str
    change_type: Literal["created", "updated", "deleted"]
    # For memberships: the group in object_id, the member here, and whether it was added.
    member_id: str | None = None
    added: bool | None = None
    # For soft versus hard deletion of users and groups ("changed" = soft, "deleted" = hard).
    removed_reason: Literal["changed", "deleted"] | None = None
    at: datetime = field(default_factory=utcnow)
    # For contacts: the mailbox (user id) and the contact folder the contact is in.
    owner_id: str | None = None
    folder_id: str | None = None
    # For updates: the Graph (camelCase) names of the properties that changed, when known. Delta
    # queries use them for `Prefer: return=minimal` and to skip changes outside `$select`.
    properties: tuple[str, ...] | None = None


ChangeHook = Callable[["Tenant", ChangeEvent], None]


@dataclass
class SigningKey:
    """An RS256 token-signing key of a tenant (`private_key`: a cryptography RSA key)."""

    kid: str
    private_key: Any
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class AuthCode:
    """An authorization code waiting to be redeemed at the token endpoint (single use)."""

    code: str
    client_id: str
    redirect_uri: str
    user_id: str
    scopes: list[str]  # as requested, e.g. ["openid", "https://graph.microsoft.com/User.Read"]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: datetime
    redeemed: bool = False


@dataclass
class RefreshGrant:
    """A refresh token's server-side record: who, which app, which scopes, whether spent."""

    token: str
    client_id: str
    user_id: str
    scopes: list[str]
    issued_at: datetime
    expires_at: datetime
    used: bool = False  # redeemed once already: refresh tokens rotate
    revoked: bool = False


@dataclass
class TenantSettings:
    """Behaviour switches of a tenant's identity platform, set through the control API."""

    # When set, the authorize endpoint signs this UPN in and consents at once (headless tests).
    auto_consent_user: str | None = None
    access_token_lifetime: int = 3600  # seconds
    refresh_token_lifetime: int = 90 * 24 * 3600
    code_lifetime: int = 600


@dataclass
class Tenant:
    id: str
    display_name: str
    domain: str  # e.g. contoso.onmicrosoft.com
    users: dict[str, User] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    apps: dict[str, App] = field(default_factory=dict)
    contact_folders: dict[str, ContactFolder] = field(default_factory=dict)
    presence: dict[str, Presence] = field(default_factory=dict)
    changes: list[ChangeEvent] = field(default_factory=list)
    # Delta tokens issued before this sequence number are expired (forces a full resync).
    min_valid_delta_seq: int = 0
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    hooks: list[ChangeHook] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    settings: TenantSettings = field(default_factory=TenantSettings)
    # Token-signing keys, newest first: [0] signs, the rest are still published in the JWKS.
    signing_keys: list[SigningKey] = field(default_factory=list)
    auth_codes: dict[str, AuthCode] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshGrant] = field(default_factory=dict)

    @property
    def seq(self) -> int:
        return self.changes[-1].seq if self.changes else 0

    def find_user(self, key: str) -> User | None:
        """A user by id or by userPrincipalName (case-insensitive), soft-deleted ones included."""
        user = self.users.get(key)
        if user is not None or "@" not in key:
            return user
        wanted = key.lower()
        return next(
            (u for u in self.users.values() if u.user_principal_name.lower() == wanted), None
        )

    def record(self, **kwargs: Any) -> ChangeEvent:
        event = ChangeEvent(seq=next(self._seq), **kwargs)
        self.changes.append(event)
        if event.kind == "user" and event.object_id in self.users:
            self.users[event.object_id].version = event.seq
        if event.kind in ("group", "membership") and event.object_id in self.groups:
            self.groups[event.object_id].version = event.seq
        for hook in list(self.hooks):
            hook(self, event)
        return event


class EmulatorState:
    """All tenants of one emulator process. Guarded by a lock for the control API's writers."""

    def __init__(self) -> None:
        self.tenants: dict[str, Tenant] = {}
        self.lock = threading.RLock()
        self.extra: dict[str, Any] = {}
        # Scheme, host and port the emulator is reached at, e.g. "https://127.0.0.1:8443": the
        # issuer of its tokens and the base of the endpoints in its OpenID configuration.
        self.base_url: str = "https://127.0.0.1:8443"

    def tenant(self, tenant_id: str) -> Tenant | None:
        return self.tenants.get(tenant_id)
