"""API shapes of the integration and its rule sections."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.return_urls import check_allowed
from app.schema_types import Id

Status = Literal["not_configured", "awaiting_consent", "connected", "disabled", "error"]
GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)
NumberProperty = Literal[
    "businessPhones",
    "mobilePhone",
    "employeeId",
    "extensionAttribute1",
    "extensionAttribute2",
    "extensionAttribute3",
    "extensionAttribute4",
    "extensionAttribute5",
    "extensionAttribute6",
    "extensionAttribute7",
    "extensionAttribute8",
    "extensionAttribute9",
    "extensionAttribute10",
    "extensionAttribute11",
    "extensionAttribute12",
    "extensionAttribute13",
    "extensionAttribute14",
    "extensionAttribute15",
]


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.match(r"^https?://[^\s/]+", value) or len(value) > 2000:
        raise ValueError("must be an absolute http(s) URL")
    return value


UserType = Literal["member", "guest"]
DeleteWhen = Literal["disabled", "deleted"]
GroupType = Literal["security", "microsoft365"]


def _members() -> list[UserType]:
    return ["member"]


def _delete_when() -> list[DeleteWhen]:
    return ["disabled", "deleted"]


def _group_types() -> list[GroupType]:
    return ["security", "microsoft365"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntegrationPut(_Strict):
    client_id: str = Field(pattern=GUID, description="Application (client) ID")
    tenant_id: str = Field(pattern=GUID, description="Directory (tenant) ID")
    client_secret: str = Field(min_length=1, max_length=1024, description="Write-only")
    return_url: str | None = Field(default=None, description="Where the browser goes after consent")

    _url = field_validator("return_url")(_http_url)


class ClientSecretIn(_Strict):
    client_secret: str = Field(min_length=1, max_length=1024)


class CleanupChoice(_Strict):
    delete_extensions: bool = False
    delete_extension_groups: bool = False
    delete_phonebooks: bool = False


class Schedule(_Strict):
    frequency: Literal["daily", "weekly"] = "daily"
    days: list[Weekday] = Field(default_factory=list)
    time: str = Field(default="00:30", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")

    @model_validator(mode="after")
    def _days(self) -> Schedule:
        if self.frequency == "weekly" and not self.days:
            raise ValueError("a weekly schedule needs at least one day")
        if self.frequency == "daily" and self.days:
            raise ValueError("days are for weekly schedules only")
        self.days = sorted(set(self.days), key=WEEKDAYS.index)
        return self


class UserRange(_Strict):
    mode: Literal["all", "user_types", "groups"] = "all"
    user_types: list[UserType] = Field(default_factory=_members)
    group_ids: list[Id] = Field(default_factory=list, max_length=500)


class NumberRule(_Strict):
    mode: Literal["auto", "property"] = "auto"
    start: str = Field(default="1000", pattern=r"^[0-9]{1,12}$")
    property: NumberProperty = "businessPhones"


class UserSyncRules(_Strict):
    enabled: bool = False
    range: UserRange = Field(default_factory=UserRange)
    auto_delete_out_of_range: bool = True
    number: NumberRule = Field(default_factory=NumberRule)
    delete_when: list[DeleteWhen] = Field(default_factory=_delete_when)
    associate_by_email: bool = False
    send_welcome_email: bool = False


class GroupRange(_Strict):
    mode: Literal["all", "types", "groups"] = "all"
    types: list[GroupType] = Field(default_factory=_group_types)
    group_ids: list[Id] = Field(default_factory=list, max_length=500)


class GroupSyncRules(_Strict):
    enabled: bool = False
    range: GroupRange = Field(default_factory=GroupRange)
    auto_delete_out_of_range: bool = True


class ContactsRange(_Strict):
    mode: Literal["all", "groups"] = "all"
    group_ids: list[str] = Field(default_factory=list, max_length=500)


class PersonalContacts(_Strict):
    enabled: bool = False
    range: ContactsRange = Field(default_factory=ContactsRange)


class SharedMailbox(_Strict):
    mailbox_id: Id
    # None: the mailbox's display name.
    phonebook_name: str | None = Field(default=None, min_length=1, max_length=200)


class SharedContacts(_Strict):
    enabled: bool = False
    mode: Literal["all", "specific"] = "all"
    mailboxes: list[SharedMailbox] = Field(default_factory=list, max_length=100)


class ContactsSyncRules(_Strict):
    enabled: bool = False
    personal: PersonalContacts = Field(default_factory=PersonalContacts)
    shared: SharedContacts = Field(default_factory=SharedContacts)


class PresenceSyncRules(_Strict):
    enabled: bool = False


class SsoRules(_Strict):
    enabled: bool = False
    allowed_return_urls: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Where Linkus clients may receive their sign-in: absolute https URLs, http "
        "only on a loopback host, or a custom scheme (linkus://sso); matched by scheme, host, "
        "port and path prefix",
    )

    @field_validator("allowed_return_urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        problems = []
        for i, url in enumerate(value):
            try:
                check_allowed(url)
            except ValueError as exc:
                problems.append(f"[{i}] {url[:100]!r}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return list(dict.fromkeys(value))


class DeletionGuard(_Strict):
    enabled: bool = True
    max_deletions: int = Field(default=500, ge=0)
    max_percent: float | None = Field(default=None, gt=0, le=100)


SECTION_MODELS: dict[str, type[BaseModel]] = {
    "user_sync": UserSyncRules,
    "group_sync": GroupSyncRules,
    "contacts_sync": ContactsSyncRules,
    "presence_sync": PresenceSyncRules,
    "sso": SsoRules,
    "deletion_guard": DeletionGuard,
}


class LastError(BaseModel):
    code: str
    message: str
    at: datetime


class Warning_(BaseModel):
    code: str
    message: str


class IntegrationOut(BaseModel):
    status: Status
    redirect_uri: str
    sso_redirect_uri: str
    client_id: str | None
    tenant_id: str | None
    client_secret_hint: str | None
    client_secret_expires_at: datetime | None
    authorized_account: str | None
    connected_at: datetime | None
    last_error: LastError | None
    schedule: Schedule
    user_sync: dict[str, Any]
    group_sync: dict[str, Any]
    contacts_sync: dict[str, Any]
    presence_sync: dict[str, Any]
    sso: dict[str, Any]
    deletion_guard: dict[str, Any]
    directory_summary: dict[str, Any] | None
    warnings: list[Warning_]
    held_run_id: str | None
    last_sync_run: dict[str, Any] | None
    next_scheduled_sync_at: datetime | None


class AuthorizationUrl(BaseModel):
    status: Status
    authorization_url: str


class DisableResult(BaseModel):
    status: Status
    cleanup_run_id: str | None


class EnableResult(BaseModel):
    status: Status
    resync_run_id: str | None


class DirectoryGroup(BaseModel):
    id: str
    display_name: str | None
    type: Literal["security", "microsoft365", "distribution", "other"]
    mail: str | None


class DirectoryGroupsPage(BaseModel):
    items: list[DirectoryGroup]
    next_cursor: str | None


class SharedMailboxOut(BaseModel):
    id: str
    display_name: str | None
    mail: str | None


class SharedMailboxPage(BaseModel):
    items: list[SharedMailboxOut]
    next_cursor: str | None
