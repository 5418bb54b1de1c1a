"""The auto-number scan of one user's plan (indexed lookups) finds the number the whole-tenant
planner's scan over every number in use finds, and counts the seats."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from app.db import new_id, session_scope, table_of, utcnow
from app.directory.models import Extension
from app.directory.repository import auto_number_and_seats
from app.sync.plan_users import _Numbers
from tests.conftest import Api

NUMBERS = st.sets(
    st.one_of(
        st.integers(990, 1030).map(str),  # around the start, holes and all
        st.integers(9990, 10010).map(str),  # across a change of length
        st.integers(90, 110).map(lambda n: str(n).zfill(4)),  # zero-padded
        st.integers(0, 10**7).map(str),
    ),
    max_size=40,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(numbers=NUMBERS, start=st.sampled_from(["1000", "0100", "9995", "10"]), dense=st.booleans())
async def test_scan_matches_the_planner(
    api: Api, numbers: set[str], start: str, dense: bool
) -> None:
    if dense:
        # A long run from the start: the case the counts are there for.
        numbers |= {str(n).zfill(len(start)) for n in range(int(start), int(start) + 300)}
    maker = api.app.state.runtime.sessionmaker
    pbx, _ = await api.new_pbx()
    now = utcnow()
    async with session_scope(maker) as session:
        await session.execute(delete(Extension).where(Extension.pbx_id == pbx["id"]))
        rows = [
            {
                "id": new_id(),
                "pbx_id": pbx["id"],
                "number": n,
                "managed_by": "pbx",
                "created_at": now,
                "updated_at": now,
            }
            for n in sorted(numbers)
        ]
        if rows:
            await session.execute(insert(table_of(Extension)), rows)
    async with session_scope(maker) as session:
        found, seats = await auto_number_and_seats(session, pbx["id"], start)
    assert seats == len(numbers)
    assert found == _Numbers(set(numbers), start).take_auto()
