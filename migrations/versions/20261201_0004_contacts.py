"""Outlook contacts sync: change keys, normalised numbers, room for Exchange item ids

Revision ID: 0004_contacts
Revises: 0003_sso
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_contacts"
down_revision: str | None = "0003_sso"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Exchange item ids (~150 characters) are longer than directory object ids.
WIDENED = (
    ("contacts", "entra_id"),
    ("contacts", "former_entra_id"),
    ("sync_failures", "entra_id"),
    ("sync_changes", "entra_id"),
)
KEYS = ("mobile_key", "home_key", "business_key")


def upgrade() -> None:
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("change_key", sa.String(length=255), nullable=True))
        for key in KEYS:
            batch_op.add_column(sa.Column(key, sa.String(length=32), nullable=True))
            batch_op.create_index(f"ix_contacts_pbx_{key}", ["pbx_id", key], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # SQLite does not enforce VARCHAR lengths.
        for table, column in WIDENED:
            op.alter_column(
                table,
                column,
                type_=sa.String(length=255),
                existing_type=sa.String(length=64),
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column in WIDENED:
            op.alter_column(
                table,
                column,
                type_=sa.String(length=64),
                existing_type=sa.String(length=255),
            )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        for key in KEYS:
            batch_op.drop_index(f"ix_contacts_pbx_{key}")
            batch_op.drop_column(key)
        batch_op.drop_column("change_key")
