"""runs: failure display names, outbox retry times, welcome email errors

Revision ID: 0002_runs
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0002_runs"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sync_failures", sa.Column("display_name", sa.String(length=400), nullable=True))
    op.add_column(
        "outbox", sa.Column("next_attempt_at", app.db.UTCDateTime(timezone=True), nullable=True)
    )
    op.add_column("extensions", sa.Column("welcome_email_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("extensions") as batch_op:
        batch_op.drop_column("welcome_email_error")
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.drop_column("next_attempt_at")
    with op.batch_alter_table("sync_failures") as batch_op:
        batch_op.drop_column("display_name")
