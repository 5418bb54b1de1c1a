"""Every query on the integration tables (and the cross-domain updates its life cycle makes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import rowcount, utcnow
from app.directory.models import Extension, TeamsPresenceSetting
from app.integration.models import Integration, OAuthState, SyncRule, TokenCache
from app.runs.models import DeltaLink, SyncFailure
from app.runs.scopes import BY_KIND, BY_SECTION, RUN_SECTIONS


async def get(
    session: AsyncSession, pbx_id: str, *, for_update: bool = False, skip_locked: bool = False
) -> Integration | None:
    stmt = select(Integration).where(Integration.pbx_id == pbx_id)
    if for_update:
        # A locked read must see the row as it is now, not as this session first loaded it.
        stmt = stmt.with_for_update(skip_locked=skip_locked).execution_options(
            populate_existing=True
        )
    return (await session.execute(stmt)).scalar_one_or_none()


async def connected_pbx_ids(session: AsyncSession) -> list[str]:
    stmt = select(Integration.pbx_id).where(Integration.status == "connected")
    return list((await session.execute(stmt)).scalars())


async def get_or_create(session: AsyncSession, pbx_id: str) -> Integration:
    row = await get(session, pbx_id, for_update=True)
    if row is None:
        row = Integration(pbx_id=pbx_id, status="not_configured", warnings=[], schedule_days=[])
        session.add(row)
        await session.flush()
    return row


async def rules(session: AsyncSession, pbx_id: str) -> dict[str, SyncRule]:
    stmt = select(SyncRule).where(SyncRule.pbx_id == pbx_id)
    return {r.section: r for r in (await session.execute(stmt)).scalars()}


async def active_scopes(
    session: AsyncSession, pbx_id: str, sections: tuple[str, ...] = RUN_SECTIONS
) -> set[str]:
    """The run scopes of the sections (of those given) that are active."""
    found = await rules(session, pbx_id)
    return {BY_SECTION[s].scope for s in sections if s in found and found[s].state == "active"}


async def set_needs_full_sync(
    session: AsyncSession, pbx_id: str, section: str, value: bool
) -> None:
    rule = await session.get(SyncRule, (pbx_id, section))
    if rule is not None:
        rule.needs_full_sync = value


async def count_synced(session: AsyncSession, pbx_id: str, model: type[Any]) -> int:
    """Objects of a directory table that a sync owns (managed_by entra or entra_frozen)."""
    stmt = (
        select(func.count())
        .select_from(model)
        .where(model.pbx_id == pbx_id, model.managed_by != "pbx")
    )
    return int((await session.execute(stmt)).scalar_one())


async def token_cache(session: AsyncSession, pbx_id: str) -> TokenCache | None:
    return await session.get(TokenCache, pbx_id)


async def save_token_cache(session: AsyncSession, pbx_id: str, cache_enc: str) -> None:
    row = await session.get(TokenCache, pbx_id)
    if row is None:
        session.add(TokenCache(pbx_id=pbx_id, cache_enc=cache_enc, updated_at=utcnow()))
    else:
        row.cache_enc = cache_enc
        row.updated_at = utcnow()
    await session.flush()


async def add_state(
    session: AsyncSession,
    *,
    state_hash: str,
    pbx_id: str,
    purpose: str,
    flow_enc: str,
    return_url: str | None,
    expires_at: datetime,
) -> None:
    session.add(
        OAuthState(
            state_hash=state_hash,
            pbx_id=pbx_id,
            purpose=purpose,
            flow_enc=flow_enc,
            return_url=return_url,
            expires_at=expires_at,
        )
    )
    await session.flush()


async def take_state(session: AsyncSession, state_hash: str) -> OAuthState | None:
    """The state row, locked; the caller marks it used."""
    stmt = select(OAuthState).where(OAuthState.state_hash == state_hash).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def set_managed_by(
    session: AsyncSession, pbx_id: str, kind: str, from_: tuple[str, ...], to: str
) -> int:
    total = 0
    for model in BY_KIND[kind].models:
        result = await session.execute(
            update(model)
            .where(model.pbx_id == pbx_id, model.managed_by.in_(from_))
            .values(managed_by=to)
            .execution_options(synchronize_session=False)
        )
        total += rowcount(result)
    return total


async def release(session: AsyncSession, pbx_id: str, kind: str) -> int:
    """Hand synced objects to the PBX, remembering the Entra id for a later re-adoption."""
    total = 0
    for model in BY_KIND[kind].models:
        result = await session.execute(
            update(model)
            .where(model.pbx_id == pbx_id, model.managed_by.in_(("entra", "entra_frozen")))
            .values(managed_by="pbx", former_entra_id=model.entra_id, entra_id=None)
            .execution_options(synchronize_session=False)
        )
        total += rowcount(result)
    return total


async def forget_integration(session: AsyncSession, pbx_id: str) -> None:
    """Disconnect: config, rules, tokens, delta links and failures go (other domains' rows go
    through the runtime's `integration_forgotten` hooks)."""
    for model in (TokenCache, SyncRule, OAuthState, DeltaLink, SyncFailure):
        await session.execute(delete(model).where(model.pbx_id == pbx_id))
    ext_ids = select(Extension.id).where(Extension.pbx_id == pbx_id)
    await session.execute(
        delete(TeamsPresenceSetting).where(TeamsPresenceSetting.extension_id.in_(ext_ids))
    )
    await session.execute(delete(Integration).where(Integration.pbx_id == pbx_id))
