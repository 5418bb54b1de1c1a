"""One-time codes handed to a Linkus client after a Microsoft sign-in (exchanged once, 60 s)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class SsoCode(Base):
    __tablename__ = "sso_codes"

    # SHA-256 of the code: the code itself is never stored.
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    pbx_id: Mapped[str] = mapped_column(ForeignKey("pbxes.id", ondelete="CASCADE"), index=True)
    extension_id: Mapped[str] = mapped_column(
        ForeignKey("extensions.id", ondelete="CASCADE"), index=True
    )
    # The Entra object id that signed in: the token is bound to it.
    entra_oid: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(8))  # web | desktop | mobile
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]
