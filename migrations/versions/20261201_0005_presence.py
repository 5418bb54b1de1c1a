"""presence: Teams activity and change time per extension, the presence loop's state per PBX

Revision ID: 0005_presence
Revises: 0004_contacts
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import app.db

revision: str = "0005_presence"
down_revision: str | None = "0004_contacts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("extension_presence", schema=None) as batch_op:
        batch_op.add_column(sa.Column("teams_activity", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("teams_changed_at", app.db.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "presence_state",
        sa.Column("pbx_id", sa.String(length=36), nullable=False),
        sa.Column("subscription_id", sa.String(length=64), nullable=True),
        sa.Column(
            "subscribed_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("expires_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("retry_create_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_poll_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("catchup_needed", sa.Boolean(), nullable=False),
        sa.Column("locked_by", sa.String(length=120), nullable=True),
        sa.Column("locked_until", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["pbx_id"],
            ["pbxes.id"],
            name=op.f("fk_presence_state_pbx_id_pbxes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pbx_id", name=op.f("pk_presence_state")),
    )


def downgrade() -> None:
    op.drop_table("presence_state")
    with op.batch_alter_table("extension_presence", schema=None) as batch_op:
        batch_op.drop_column("teams_changed_at")
        batch_op.drop_column("teams_activity")
