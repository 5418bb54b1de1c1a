"""API shapes of sync runs and their change log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Scope = Literal["users", "groups", "contacts"]


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scopes: list[Scope] | None = Field(default=None, min_length=1)
    dry_run: bool = False


class RunOut(BaseModel):
    id: str
    trigger: str
    retry_of: str | None
    status: str
    dry_run: bool
    scopes: list[str]
    progress: dict[str, Any]
    users: dict[str, int] | None
    groups: dict[str, int] | None
    contacts: dict[str, int] | None
    graph: dict[str, float] | None = Field(
        default=None, description="Graph requests made, throttled, retried, and seconds waited"
    )
    failures: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    held: dict[str, Any] | None
    plan: dict[str, Any] | None = Field(default=None, description="Dry runs: what would change")
    error: dict[str, Any] | None
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    graph_requests: int


class ChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    action: Literal["create", "update", "delete", "release", "freeze"]
    object_type: str
    object_id: str
    entra_id: str | None
    display_name: str | None
    fields: dict[str, Any]
    created_at: datetime


class ExplainStep(BaseModel):
    step: str = Field(
        description="found | section | range | user_type | groups | enabled | name | "
        "existing_extension | email | capacity | number | delete_rules (group explain: found | "
        "section | type | range | existing_group | limit | name | members)"
    )
    ok: bool
    detail: str
    code: str | None = None


class ExplainUser(BaseModel):
    id: str | None
    user_principal_name: str | None
    display_name: str | None
    account_enabled: bool | None
    user_type: str | None
    found: bool = Field(description="False when Entra has no such user (deleted)")


class ExplainOutcome(BaseModel):
    action: Literal["create", "update", "delete", "release", "nothing", "fail"]
    code: str | None = None
    extension_id: str | None = None
    number: str | None = None
    fields: dict[str, list[Any]] = Field(default_factory=dict)
    associate: bool = False
    planned: str | None = Field(
        default=None,
        description="When the section, the integration or a held run blocks it: the action a "
        "sync would take without that block",
    )


class ExplainFailure(BaseModel):
    code: str
    message: str
    first_failed_at: datetime


class UserExplainOut(BaseModel):
    user: ExplainUser
    steps: list[ExplainStep]
    outcome: ExplainOutcome
    outstanding_failure: ExplainFailure | None
    as_of_now: list[str] = Field(
        default_factory=list,
        description="Verdicts that hold as of now: other new users of the same run may take "
        "the number or the seat first",
    )


class ProvisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(
        min_length=1, max_length=400, description="Entra id, userPrincipalName or mail"
    )


class ExplainGroup(BaseModel):
    id: str | None
    display_name: str | None
    type: str | None
    found: bool


class GroupMembers(BaseModel):
    with_extension: int
    skipped: int
    with_extension_first: list[str] = Field(description="The first few, by name")
    skipped_first: list[str] = Field(description="The first few, by name")


class GroupOutcome(BaseModel):
    action: Literal["create", "update", "delete", "release", "nothing", "fail"]
    code: str | None = None
    extension_group_id: str | None = None
    name: str | None = None
    members_added: int = 0
    members_removed: int = 0
    planned: str | None = None


class GroupExplainOut(BaseModel):
    group: ExplainGroup
    steps: list[ExplainStep]
    members: GroupMembers | None
    outcome: GroupOutcome
    outstanding_failure: ExplainFailure | None
