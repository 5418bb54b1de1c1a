"""Migration 0003_sso: the codes table, and stored return URLs saved before validation."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from sqlalchemy import bindparam, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import JSONType
from app.migrate import alembic_config
from tests.conftest import PG_ADMIN_URL

URLS = [
    "https://pbx.example.com/linkus/",
    "javascript:alert(1)",
    "http://evil.net/",
    "linkus://sso",
]


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _seed(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO pbxes (id, name, timezone, max_extensions, max_extension_groups, "
                "created_at, updated_at) VALUES ('p1', 'p1', 'UTC', 10, 10, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO sync_rules (pbx_id, section, state, config, needs_full_sync, "
                "updated_at) VALUES ('p1', 'sso', 'active', :c, false, CURRENT_TIMESTAMP)"
            ).bindparams(bindparam("c", type_=JSONType)),
            {"c": {"enabled": True, "allowed_return_urls": URLS}},
        )
    await engine.dispose()


async def _read(url: str) -> tuple[Any, int]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT config FROM sync_rules"))).scalar_one()
        codes = (await conn.execute(text("SELECT count(*) FROM sso_codes"))).scalar_one()
    await engine.dispose()
    return (json.loads(stored) if isinstance(stored, str) else stored), int(codes)


def _check(url: str) -> None:
    cfg = alembic_config(url)
    command.upgrade(cfg, "0001")
    asyncio.run(_seed(url))
    command.upgrade(cfg, "head")
    stored, codes = asyncio.run(_read(url))
    assert stored == {"enabled": True, "allowed_return_urls": [URLS[0], URLS[3]]}
    assert codes == 0


def test_unsafe_stored_return_urls_are_dropped_sqlite(tmp_path: Path) -> None:
    _check(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")


@pytest.mark.postgres
def test_unsafe_stored_return_urls_are_dropped_postgresql() -> None:
    name = f"pbx_entra_sso_mig_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_plain(PG_ADMIN_URL))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        _check(make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
