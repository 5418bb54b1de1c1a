"""Sync runs, their change log, per-object failures, delta links and the welcome-email outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, IdMixin, utcnow

ACTIVE_STATUSES = ("queued", "running")
# The delta_links row holding the groups nested in each in-range group (JSON).
GROUP_NESTING = "groups:nesting"


class SyncRun(IdMixin, Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        # One queued real run and one running run per PBX: a second trigger finds the first.
        Index(
            "uq_sync_runs_one_queued",
            "pbx_id",
            unique=True,
            postgresql_where=text("status = 'queued' AND dry_run = false AND trigger <> 'cleanup'"),
            sqlite_where=text("status = 'queued' AND dry_run = 0 AND trigger <> 'cleanup'"),
        ),
        Index(
            "uq_sync_runs_one_running",
            "pbx_id",
            unique=True,
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
        Index("ix_sync_runs_pbx_queued_at", "pbx_id", "queued_at"),
        Index("ix_sync_runs_status", "status"),
    )

    pbx_id: Mapped[str] = mapped_column(ForeignKey("pbxes.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(String(16))
    retry_of: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    # Idempotency of scheduled fires across replicas: (pbx, 'schedule', fire time).
    idempotency_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    failures: Mapped[list[Any]] = mapped_column(default=list)
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    held: Mapped[dict[str, Any] | None]
    plan: Mapped[dict[str, Any] | None]
    error: Mapped[dict[str, Any] | None]
    graph_requests: Mapped[int] = mapped_column(Integer, default=0)
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Lease of the worker that claimed the run, renewed by its heartbeat.
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_until: Mapped[datetime | None]


class SyncChange(Base):
    """One object changed by a run (kept 90 days)."""

    __tablename__ = "sync_changes"
    __table_args__ = (Index("ix_sync_changes_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"))
    pbx_id: Mapped[str] = mapped_column(ForeignKey("pbxes.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # create | update | delete | release | freeze
    object_type: Mapped[str] = mapped_column(String(24))
    object_id: Mapped[str] = mapped_column(String(36))
    entra_id: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(400))
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class SyncFailure(Base):
    """An Entra object that failed to sync: re-read by id on every later run."""

    __tablename__ = "sync_failures"

    pbx_id: Mapped[str] = mapped_column(
        ForeignKey("pbxes.id", ondelete="CASCADE"), primary_key=True
    )
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    entra_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    code: Mapped[str] = mapped_column(String(48))
    message: Mapped[str] = mapped_column(Text)
    display_name: Mapped[str | None] = mapped_column(String(400))
    # The number or email address that was taken: a retry is worth it once it is free.
    conflict: Mapped[str | None] = mapped_column(String(320))
    run_id: Mapped[str | None] = mapped_column(String(36))
    # Since when the object has been failing (kept while it keeps failing, whatever the code).
    failed_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeltaLink(Base):
    """Where a scope's next incremental run starts: the last deltaLink of a Graph resource
    (`users`, `users:groups:N`, `groups`) and the state that must move with it (`groups:nesting`,
    the groups nested in each in-range group, as JSON). Saved only after the apply committed."""

    __tablename__ = "delta_links"

    pbx_id: Mapped[str] = mapped_column(
        ForeignKey("pbxes.id", ondelete="CASCADE"), primary_key=True
    )
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    link: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Outbox(IdMixin, Base):
    """Side effects outside the database (welcome emails), written in the apply transaction."""

    __tablename__ = "outbox"

    pbx_id: Mapped[str] = mapped_column(ForeignKey("pbxes.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    extension_id: Mapped[str | None] = mapped_column(
        ForeignKey("extensions.id", ondelete="CASCADE"), index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Not before this time (retries back off); None: at once.
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
