"""Per-PBX state of the presence loop: the subscription's users, the polling clock, the lease."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class PresenceState(Base):
    __tablename__ = "presence_state"

    pbx_id: Mapped[str] = mapped_column(
        ForeignKey("pbxes.id", ondelete="CASCADE"), primary_key=True
    )
    # The presence subscription (its row is in graph_subscriptions) and the Entra ids it covers.
    subscription_id: Mapped[str | None] = mapped_column(String(64), default=None)
    subscribed_ids: Mapped[list[Any]] = mapped_column(default=list)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # Graph refused to create the subscription: everyone is polled until this time, then retried.
    retry_create_at: Mapped[datetime | None] = mapped_column(default=None)
    last_poll_at: Mapped[datetime | None] = mapped_column(default=None)
    # Every enabled user is read in bulk at the next step (start, gap, failed renewal, enable).
    catchup_needed: Mapped[bool] = mapped_column(Boolean, default=True)
    # One process at a time looks after a PBX's subscription and polling.
    locked_by: Mapped[str | None] = mapped_column(String(120), default=None)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
