"""Every query of single sign-on: what decides whether a sign-in may proceed, and the one-time codes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.directory.models import Extension
from app.integration.models import Integration, SyncRule
from app.sso.models import SsoCode
from app.tenants.models import Pbx

SYNCED = ("entra", "entra_frozen")
PURGE_ONE_IN = 20


@dataclass
class SsoSetup:
    """A PBX with its integration and SSO section, as one read."""

    pbx: Pbx
    integration: Integration | None
    rule: SyncRule | None

    @property
    def allowed_return_urls(self) -> list[str]:
        config: dict[str, Any] = self.rule.config if self.rule else {}
        return [str(u) for u in config.get("allowed_return_urls") or []]


async def setup(session: AsyncSession, pbx_id: str) -> SsoSetup | None:
    found = await setup_and_extension(session, pbx_id, None)
    return found[0] if found else None


async def setup_and_extension(
    session: AsyncSession, pbx_id: str, ext_id: str | None
) -> tuple[SsoSetup, Extension | None] | None:
    """The PBX's SSO setup and (when `ext_id` is given) that extension of it, in one query."""
    stmt = (
        select(Pbx, Integration, SyncRule, Extension)
        .outerjoin(Integration, Integration.pbx_id == Pbx.id)
        .outerjoin(SyncRule, (SyncRule.pbx_id == Pbx.id) & (SyncRule.section == "sso"))
        .outerjoin(Extension, (Extension.pbx_id == Pbx.id) & (Extension.id == (ext_id or "")))
        .where(Pbx.id == pbx_id)
    )
    row = (await session.execute(stmt)).first()
    if row is None:
        return None
    return SsoSetup(pbx=row[0], integration=row[1], rule=row[2]), row[3]


async def synced_extension_by_oid(session: AsyncSession, pbx_id: str, oid: str) -> Extension | None:
    """The extension following this Entra user, while synced or frozen (paused, disabled)."""
    stmt = select(Extension).where(
        Extension.pbx_id == pbx_id,
        Extension.entra_id == oid,
        Extension.managed_by.in_(SYNCED),
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def add_code(
    session: AsyncSession,
    *,
    code_hash: str,
    pbx_id: str,
    extension_id: str,
    oid: str,
    client: str,
    expires_at: datetime,
    now: datetime,
) -> None:
    # Expired codes of the PBX go now and then as new ones are made: the table stays small.
    if secrets.randbelow(PURGE_ONE_IN) == 0:
        await session.execute(
            delete(SsoCode).where(SsoCode.pbx_id == pbx_id, SsoCode.expires_at < now)
        )
    session.add(
        SsoCode(
            code_hash=code_hash,
            pbx_id=pbx_id,
            extension_id=extension_id,
            entra_oid=oid,
            client=client,
            expires_at=expires_at,
        )
    )
    await session.flush()


async def consume_code(
    session: AsyncSession, code_hash: str, now: datetime, pbx_id: str | None = None
) -> SsoCode | None:
    """Mark the code used if it is unused, not expired (and of `pbx_id` when given): one
    statement, so two racing exchanges can't both win. The row when this call used it."""
    conditions = [
        SsoCode.code_hash == code_hash,
        SsoCode.used_at.is_(None),
        SsoCode.expires_at > now,
    ]
    if pbx_id is not None:
        conditions.append(SsoCode.pbx_id == pbx_id)
    result = await session.execute(
        update(SsoCode)
        .where(*conditions)
        .values(used_at=now)
        .returning(SsoCode)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none()
