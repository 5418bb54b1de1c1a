"""Claims of scheduled fires: one row per (PBX, fire time), whichever replica inserts it first."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class ScheduleFire(Base):
    __tablename__ = "schedule_fires"

    pbx_id: Mapped[str] = mapped_column(
        ForeignKey("pbxes.id", ondelete="CASCADE"), primary_key=True
    )
    fire_at: Mapped[datetime] = mapped_column(primary_key=True)
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
