"""The seat lock of a PBX (held by a sync's apply, or a manual create, until its commit) excludes
every other seat holder, but never holds up an insert that only names the PBX: a webhook's
events, a sign-in's state. PostgreSQL only: SQLite has one writer at a time by design."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.db import utcnow
from app.notifications import repository as notifications_repo
from app.tenants import repository as tenants_repo
from tests.conftest import Api


@pytest.fixture
def database_url(postgres_url: str) -> str:
    from app import migrate

    migrate.upgrade(postgres_url)
    return postgres_url


async def test_the_seat_lock_leaves_inserts_naming_the_pbx_alone(api: Api) -> None:
    pbx, _ = await api.new_pbx()
    maker = api.app.state.sessionmaker
    event = {
        "pbx_id": pbx["id"],
        "subscription_id": "sub",
        "change_type": "updated",
        "resource": "Users/1",
        "lifecycle_event": None,
        "received_at": utcnow(),
        "processed_at": None,
    }
    async with maker() as holder:
        await tenants_repo.lock_seats(holder, pbx["id"])
        async with maker() as webhook:
            await webhook.execute(text("SET LOCAL lock_timeout = '2s'"))
            await notifications_repo.add_events(webhook, [event])
            await webhook.commit()
        async with maker() as other:
            await other.execute(text("SET LOCAL lock_timeout = '200ms'"))
            with pytest.raises(DBAPIError, match="lock timeout"):
                await tenants_repo.lock_seats(other, pbx["id"])
        await holder.rollback()
    async with maker() as check:
        count = await check.scalar(text("SELECT count(*) FROM notification_events"))
    assert count == 1
