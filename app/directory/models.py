"""The PBX directory: extensions, extension groups, phonebooks, contacts and presence.

Every synced object carries `managed_by` ("pbx" | "entra" | "entra_frozen"), the Entra object id it
follows (`entra_id`) and, once released, the id it used to follow (`former_entra_id`), so a later
connection re-adopts it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, IdMixin, TimestampMixin

MANAGED_BY = ("pbx", "entra", "entra_frozen")


class ManagedMixin:
    managed_by: Mapped[str] = mapped_column(String(16), default="pbx", index=True)
    entra_id: Mapped[str | None] = mapped_column(String(64), default=None)
    former_entra_id: Mapped[str | None] = mapped_column(String(64), default=None)


class Extension(IdMixin, TimestampMixin, ManagedMixin, Base):
    __tablename__ = "extensions"
    __table_args__ = (
        UniqueConstraint("pbx_id", "number"),
        UniqueConstraint("pbx_id", "email_key"),
        UniqueConstraint("pbx_id", "entra_id"),
        Index("ix_extensions_pbx_former_entra_id", "pbx_id", "former_entra_id"),
        # The auto-number scan of one user's plan: numbers of one length, in order.
        Index("ix_extensions_pbx_number_length", "pbx_id", text("length(number)"), "number"),
    )

    pbx_id: Mapped[str] = mapped_column(ForeignKey("pbxes.id", ondelete="CASCADE"), index=True)
    number: Mapped[str] = mapped_column(String(16))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    # Lower-cased email: uniqueness and association are case-insensitive.
    email_key: Mapped[str | None] = mapped_column(String(320))
    mobile: Mapped[str | None] = mapped_column(String(64))
    job_title: Mapped[str | None] = mapped_column(String(200))
    welcome_email_status: Mapped[str | None] = mapped_column(String(16), default=None)
    welcome_email_at: Mapped[datetime | None] = mapped_column(default=None)
    # Why the welcome email could not be sent (the mail server's answer), once it gave up.
    welcome_email_error: Mapped[str | None] = mapped_column(Text, default=None)


class ExtensionGroup(IdMixin, TimestampMixin, ManagedMixin, Base):
    __tablename__ = "extension_groups"
    __table_args__ = (UniqueConstraint("pbx_id", "name"), UniqueConstraint("pbx_id", "entra_id"))

    pbx_id: Mapped[str] = mapped_column(ForeignKey("pbxes.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))


class ExtensionGroupMember(Base):
    __tablename__ = "extension_group_members"

    group_id: Mapped[str] = mapped_column(
        ForeignKey("extension_groups.id", ondelete="CASCADE"), primary_key=True
    )
    extension_id: Mapped[str] = mapped_column(
        ForeignKey("extensions.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Phonebook(IdMixin, TimestampMixin, ManagedMixin, Base):
    """A company phonebook; synced ones follow one shared mailbox (`entra_id` = mailbox id)."""

    __tablename__ = "phonebooks"
    __table_args__ = (UniqueConstraint("pbx_id", "name"), UniqueConstraint("pbx_id", "entra_id"))

    pbx_id: Mapped[str] = mapped_column(ForeignKey("pbxes.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    visible_to_all: Mapped[bool] = mapped_column(Boolean, default=False)


class PhonebookVisibility(Base):
    """Contact Visibility Permission: one row per extension or extension group allowed to see it."""

    __tablename__ = "phonebook_visibility"
    __table_args__ = (UniqueConstraint("phonebook_id", "extension_id", "extension_group_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    phonebook_id: Mapped[str] = mapped_column(
        ForeignKey("phonebooks.id", ondelete="CASCADE"), index=True
    )
    extension_id: Mapped[str | None] = mapped_column(
        ForeignKey("extensions.id", ondelete="CASCADE"), index=True
    )
    extension_group_id: Mapped[str | None] = mapped_column(
        ForeignKey("extension_groups.id", ondelete="CASCADE"), index=True
    )


class Contact(IdMixin, TimestampMixin, ManagedMixin, Base):
    """A company phonebook contact (phonebook_id) or a personal contact of one extension.

    Synced ones follow one Outlook contact (`entra_id` = its Exchange item id, `change_key` its
    version). Numbers are kept as Outlook gives them; the `*_key` columns hold them normalised
    (digits and a leading +) for lookup."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("phonebook_id", "entra_id"),
        UniqueConstraint("extension_id", "entra_id"),
        Index("ix_contacts_pbx_mobile_key", "pbx_id", "mobile_key"),
        Index("ix_contacts_pbx_home_key", "pbx_id", "home_key"),
        Index("ix_contacts_pbx_business_key", "pbx_id", "business_key"),
    )

    # Exchange item ids are longer than directory object ids.
    entra_id: Mapped[str | None] = mapped_column(String(255), default=None)
    former_entra_id: Mapped[str | None] = mapped_column(String(255), default=None)

    pbx_id: Mapped[str] = mapped_column(ForeignKey("pbxes.id", ondelete="CASCADE"), index=True)
    phonebook_id: Mapped[str | None] = mapped_column(
        ForeignKey("phonebooks.id", ondelete="CASCADE"), index=True
    )
    extension_id: Mapped[str | None] = mapped_column(
        ForeignKey("extensions.id", ondelete="CASCADE"), index=True
    )
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    mobile_phone: Mapped[str | None] = mapped_column(String(64))
    home_phone: Mapped[str | None] = mapped_column(String(64))
    business_phone: Mapped[str | None] = mapped_column(String(64))
    change_key: Mapped[str | None] = mapped_column(String(255), default=None)
    mobile_key: Mapped[str | None] = mapped_column(String(32), default=None)
    home_key: Mapped[str | None] = mapped_column(String(32), default=None)
    business_key: Mapped[str | None] = mapped_column(String(32), default=None)


class ExtensionPresence(Base):
    __tablename__ = "extension_presence"

    extension_id: Mapped[str] = mapped_column(
        ForeignKey("extensions.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(32), default="available")
    source: Mapped[str] = mapped_column(String(16), default="manual")
    teams_availability: Mapped[str | None] = mapped_column(String(32), default=None)
    teams_activity: Mapped[str | None] = mapped_column(String(64), default=None)
    # When Teams last reported a different availability or activity (the busiest users are the
    # ones the presence subscription covers).
    teams_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime]


class TeamsPresenceSetting(Base):
    """Per-extension Teams presence synchronization (enabled by the user or the admin)."""

    __tablename__ = "teams_presence_settings"

    extension_id: Mapped[str] = mapped_column(
        ForeignKey("extensions.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    mapping: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]
