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
