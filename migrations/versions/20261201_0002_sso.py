"""sso one-time codes

Revision ID: 0002_sso
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0002_sso"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sso_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("pbx_id", sa.String(length=36), nullable=False),
        sa.Column("extension_id", sa.String(length=36), nullable=False),
        sa.Column("entra_oid", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=8), nullable=False),
        sa.Column("expires_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["extension_id"],
            ["extensions.id"],
            name=op.f("fk_sso_codes_extension_id_extensions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pbx_id"], ["pbxes.id"], name=op.f("fk_sso_codes_pbx_id_pbxes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_sso_codes")),
    )
    with op.batch_alter_table("sso_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sso_codes_pbx_id"), ["pbx_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sso_codes_extension_id"), ["extension_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_sso_codes_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sso_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sso_codes_expires_at"))
        batch_op.drop_index(batch_op.f("ix_sso_codes_extension_id"))
        batch_op.drop_index(batch_op.f("ix_sso_codes_pbx_id"))
    op.drop_table("sso_codes")
