"""A sync run and the API share one PBX's seats: manual extensions created while the sync applies
never push the PBX over its limit, on both databases."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from app.db import session_scope
from app.directory.models import Extension
from tests.cloud import Cloud
from tests.conftest import Api
from tests.sync.test_user_rules import new_user, small

SEATS = 6


async def test_sync_and_manual_creates_share_the_seats(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    for n in range(SEATS):
        new_user(s, f"seat{n}")
    await s.api.client.patch(
        f"/api/v1/pbxes/{s.pbx['id']}", json={"max_extensions": SEATS}, headers=s.api.operator
    )
    await s.put_rules("user-sync", {"enabled": True})
    manual_statuses: list[int] = []

    async def manual(n: int) -> None:
        # Keep creating while the run goes on, so some creates meet its apply.
        for attempt in range(6):
            resp = await s.api.client.post(
                "/api/v1/extensions",
                json={"number": str(9000 + n * 10 + attempt), "first_name": f"Manual {n}"},
                headers=s.h,
            )
            manual_statuses.append(resp.status_code)
            await asyncio.sleep(0)

    runs, *_ = await asyncio.gather(s.run_worker(), *(manual(n) for n in range(4)))
    async with session_scope(s.api.app.state.sessionmaker) as session:
        stored = (
            await session.execute(
                select(func.count()).select_from(Extension).where(Extension.pbx_id == s.pbx["id"])
            )
        ).scalar_one()
    assert stored <= SEATS, (stored, manual_statuses, runs[0]["users"])
    created = manual_statuses.count(201) + (runs[0]["users"] or {}).get("created", 0)
    assert created == stored == SEATS
    assert set(manual_statuses) <= {201, 409}
