"""sso one-time codes; stored allowed return URLs that are not safe are dropped

Revision ID: 0003_sso
Revises: 0002_runs
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db
from app.return_urls import check_allowed

_rules = sa.table(
    "sync_rules",
    sa.column("pbx_id", sa.String()),
    sa.column("section", sa.String()),
    sa.column("config", app.db.JSONType),
)


def _safe(url: object) -> bool:
    try:
        check_allowed(str(url))
    except ValueError:
        return False
    return True


def _drop_unsafe_return_urls() -> None:
    """Saved before they were validated: keep only the URLs the SSO section now accepts, so
    reading the section never fails and no unsafe URL can receive a sign-in."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_rules.c.pbx_id, _rules.c.config).where(_rules.c.section == "sso")
    ).all()
    for pbx_id, config in rows:
        urls = list((config or {}).get("allowed_return_urls") or [])
        kept = [u for u in urls if isinstance(u, str) and _safe(u)]
        if kept != urls:
            conn.execute(
                sa.update(_rules)
                .where(_rules.c.pbx_id == pbx_id, _rules.c.section == "sso")
                .values(config={**config, "allowed_return_urls": kept})
            )


revision: str = "0003_sso"
down_revision: str | None = "0002_runs"
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
    _drop_unsafe_return_urls()


def downgrade() -> None:
    with op.batch_alter_table("sso_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sso_codes_expires_at"))
        batch_op.drop_index(batch_op.f("ix_sso_codes_extension_id"))
        batch_op.drop_index(batch_op.f("ix_sso_codes_pbx_id"))
    op.drop_table("sso_codes")
