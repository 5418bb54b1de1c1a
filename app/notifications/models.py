"""Graph change-notification subscriptions, accepted notifications and pending change counters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class GraphSubscription(Base):
    __tablename__ = "graph_subscriptions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # Graph's subscription id
    pbx_id: Mapped[str] = mapped_column(ForeignKey("pbxes.id", ondelete="CASCADE"), index=True)
    resource: Mapped[str] = mapped_column(Text)
    change_type: Mapped[str] = mapped_column(String(64))
    # clientState is a shared secret: only its hash is kept, compared in constant time.
    client_state_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(24), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    renewed_at: Mapped[datetime | None]


class NotificationEvent(Base):
    """One accepted change notification, written before the webhook answers 202."""

    __tablename__ = "notification_events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    pbx_id: Mapped[str] = mapped_column(ForeignKey("pbxes.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[str] = mapped_column(String(64))
    change_type: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(Text)
    lifecycle_event: Mapped[str | None] = mapped_column(String(48))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(index=True)


class PendingChanges(Base):
    """Relevant change events counted per PBX since the last run's fetch started."""

    __tablename__ = "pending_changes"

    pbx_id: Mapped[str] = mapped_column(
        ForeignKey("pbxes.id", ondelete="CASCADE"), primary_key=True
    )
    count: Mapped[int] = mapped_column(Integer, default=0)
    first_at: Mapped[datetime | None]
