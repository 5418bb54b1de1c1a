"""extensions: index on (pbx_id, length(number), number) for the auto-number scan of one user

Revision ID: 0006_explain
Revises: 0005_presence
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_explain"
down_revision: str | None = "0005_presence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_extensions_pbx_number_length",
        "extensions",
        ["pbx_id", sa.text("length(number)"), "number"],
    )


def downgrade() -> None:
    op.drop_index("ix_extensions_pbx_number_length", table_name="extensions")
