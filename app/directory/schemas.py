"""API shapes of the PBX directory."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.schema_types import IdList

ManagedBy = Literal["pbx", "entra", "entra_frozen"]
PresenceStatus = Literal[
    "available", "away", "business_trip", "do_not_disturb", "lunch_break", "off_work"
]
TEAMS_AVAILABILITIES = (
    "Available",
    "AvailableIdle",
    "Away",
    "BeRightBack",
    "Busy",
    "BusyIdle",
    "DoNotDisturb",
    "Offline",
)
DEFAULT_TEAMS_MAPPING: dict[str, PresenceStatus] = {
    "Available": "available",
    "AvailableIdle": "available",
    "Away": "away",
    "BeRightBack": "away",
    "Busy": "do_not_disturb",
    "BusyIdle": "do_not_disturb",
    "DoNotDisturb": "do_not_disturb",
    "Offline": "off_work",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
NUMBER_PATTERN = r"^[0-9]{1,12}$"


def _email(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    value = value.strip()
    if not _EMAIL.match(value) or len(value) > 320:
        raise ValueError("not an email address")
    return value


class _Person(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    email: str | None = None
    mobile: str | None = Field(default=None, max_length=64, pattern=r"^[0-9+()\-. x]*$")
    job_title: str | None = Field(default=None, max_length=200)

    _email = field_validator("email")(_email)


class ExtensionCreate(_Person):
    number: str = Field(pattern=NUMBER_PATTERN, description="1 to 12 digits")

    @model_validator(mode="after")
    def _named(self) -> ExtensionCreate:
        if not (self.first_name or self.last_name):
            raise ValueError("first_name or last_name is required")
        return self


class ExtensionUpdate(_Person):
    number: str | None = Field(default=None, pattern=NUMBER_PATTERN)


class WelcomeEmail(BaseModel):
    status: Literal["sent", "failed", "not_sent", "no_address", "pending"]
    at: datetime | None
    error: str | None = Field(default=None, description="Why it failed (the mail server's answer)")


class PresenceOut(BaseModel):
    status: PresenceStatus
    source: Literal["manual", "teams"]
    teams_availability: str | None
    teams_activity: str | None = None
    updated_at: datetime | None


class PresenceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: PresenceStatus


class ExtensionOut(BaseModel):
    id: str
    number: str
    first_name: str | None
    last_name: str | None
    email: str | None
    mobile: str | None
    job_title: str | None
    managed_by: ManagedBy
    entra_user_id: str | None
    former_entra_id: str | None
    presence: PresenceOut
    welcome_email: WelcomeEmail | None
    created_at: datetime
    updated_at: datetime


class ExtensionGroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    member_ids: IdList = Field(default_factory=list)


class ExtensionGroupUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    member_ids: IdList | None = None


class ExtensionGroupOut(BaseModel):
    id: str
    name: str
    member_ids: list[str]
    managed_by: ManagedBy
    entra_group_id: str | None
    former_entra_id: str | None
    created_at: datetime
    updated_at: datetime


class Visibility(BaseModel):
    model_config = ConfigDict(extra="forbid")

    all: bool = False
    extension_ids: IdList = Field(default_factory=list)
    extension_group_ids: IdList = Field(default_factory=list)


class PhonebookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)


class PhonebookOut(BaseModel):
    id: str
    name: str
    managed_by: ManagedBy
    mailbox_id: str | None
    visible_to: Visibility


class ContactCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    company: str | None = Field(default=None, max_length=200)
    email: str | None = None
    mobile_phone: str | None = Field(default=None, max_length=64)
    home_phone: str | None = Field(default=None, max_length=64)
    business_phone: str | None = Field(default=None, max_length=64)

    _email = field_validator("email")(_email)

    @model_validator(mode="after")
    def _complete(self) -> ContactCreate:
        # The same completeness rule synced Outlook contacts follow.
        if not (self.first_name or self.last_name):
            raise ValueError("first_name or last_name is required")
        if not (self.mobile_phone or self.home_phone or self.business_phone):
            raise ValueError("mobile_phone, home_phone or business_phone is required")
        return self


class ContactOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    first_name: str | None
    last_name: str | None
    company: str | None
    email: str | None
    mobile_phone: str | None
    home_phone: str | None
    business_phone: str | None
    managed_by: ManagedBy


class TeamsPresence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    mapping: dict[str, PresenceStatus] = Field(default_factory=lambda: dict(DEFAULT_TEAMS_MAPPING))

    @field_validator("mapping")
    @classmethod
    def _known(cls, value: dict[str, PresenceStatus]) -> dict[str, PresenceStatus]:
        unknown = sorted(set(value) - set(TEAMS_AVAILABILITIES))
        if unknown:
            raise ValueError(f"unknown Teams availability: {', '.join(unknown)}")
        return {**DEFAULT_TEAMS_MAPPING, **value}
