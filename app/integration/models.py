"""The Entra integration of one PBX: configuration, encrypted credentials, rules, consent state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, TimestampMixin

RULE_SECTIONS = (
    "user_sync",
    "group_sync",
    "contacts_sync",
    "presence_sync",
    "sso",
    "deletion_guard",
)


class Integration(TimestampMixin, Base):
    __tablename__ = "integrations"

    pbx_id: Mapped[str] = mapped_column(
        ForeignKey("pbxes.id", ondelete="CASCADE"), primary_key=True
    )
    # not_configured | awaiting_consent | connected | disabled | error
    status: Mapped[str] = mapped_column(String(20), default="not_configured")
    client_id: Mapped[str | None] = mapped_column(String(36))
    tenant_id: Mapped[str | None] = mapped_column(String(36))
    client_secret_enc: Mapped[str | None] = mapped_column(Text)
    client_secret_hint: Mapped[str | None] = mapped_column(String(16))
    client_secret_expires_at: Mapped[datetime | None]
    return_url: Mapped[str | None] = mapped_column(Text)
    authorized_account: Mapped[str | None] = mapped_column(String(320))
    authorized_account_oid: Mapped[str | None] = mapped_column(String(64))
    # MSAL's home_account_id of the authorization account, to find it in the token cache.
    home_account_id: Mapped[str | None] = mapped_column(String(200))
    connected_at: Mapped[datetime | None]
    last_error: Mapped[dict[str, Any] | None]
    directory_summary: Mapped[dict[str, Any] | None]
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    # Schedule in the PBX's timezone; schedule_version lets every replica notice edits.
    schedule_frequency: Mapped[str] = mapped_column(String(8), default="daily")
    schedule_days: Mapped[list[Any]] = mapped_column(default=list)
    schedule_time: Mapped[str] = mapped_column(String(5), default="00:30")
    schedule_version: Mapped[int] = mapped_column(Integer, default=0)
    held_run_id: Mapped[str | None] = mapped_column(String(36))


class TokenCache(Base):
    """MSAL's serialised token cache, encrypted; never written to disk."""

    __tablename__ = "token_caches"

    pbx_id: Mapped[str] = mapped_column(
        ForeignKey("pbxes.id", ondelete="CASCADE"), primary_key=True
    )
    cache_enc: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class SyncRule(Base):
    """One section of the sync rules (user_sync, group_sync, …) as saved through the API."""

    __tablename__ = "sync_rules"

    pbx_id: Mapped[str] = mapped_column(
        ForeignKey("pbxes.id", ondelete="CASCADE"), primary_key=True
    )
    section: Mapped[str] = mapped_column(String(20), primary_key=True)
    # off | active | paused
    state: Mapped[str] = mapped_column(String(8), default="off")
    config: Mapped[dict[str, Any]]
    # Set by a rule change: the next run of the section is a full listing.
    needs_full_sync: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime]


class OAuthState(Base):
    """A single-use `state` of an authorization request (consent or SSO), bound to one PBX."""

    __tablename__ = "oauth_states"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    pbx_id: Mapped[str] = mapped_column(ForeignKey("pbxes.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # consent | sso
    # MSAL's auth code flow (PKCE verifier, nonce, …), encrypted.
    flow_enc: Mapped[str] = mapped_column(Text)
    return_url: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
