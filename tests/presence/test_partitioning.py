"""More enabled users than one presence subscription covers (650): the most recently changed
are subscribed, the others polled in bulk; the choice is made again at each renewal."""

from __future__ import annotations

import math

from app.db import session_scope
from app.directory import service as directory
from app.directory.schemas import TeamsPresence
from app.tenants.models import Pbx
from tests.presence.helpers import PresenceWorld, subscribed_ids


async def test_650_subscribed_the_rest_polled_and_rechosen_at_renewal(
    served_many: PresenceWorld,
) -> None:
    w = served_many
    users = await w.synced_users()
    n = len(users)
    assert n > 650
    await w.presence_sync(True)
    async with session_scope(w.runtime.sessionmaker) as session:
        pbx = await session.get(Pbx, w.s.pbx["id"])
        assert pbx is not None
        for ext in users.values():
            await directory.put_teams_presence(session, pbx, ext["id"], TeamsPresence(enabled=True))
    w.clear()
    outcome = await w.tick()
    assert outcome.actions == ["created", "catch-up"]
    assert (outcome.subscribed, outcome.polled) == (650, n - 650)
    [sub] = w.graph_subscriptions()
    covered = subscribed_ids(sub)
    assert len(covered) == 650 and covered <= set(users)
    # The catch-up: every enabled user in ceil(n / 650) bulk requests.
    reads = w.reads()
    assert len(reads) == math.ceil(n / 650) and all(len(r) <= 650 for r in reads)
    assert sorted(i for r in reads for i in r) == sorted(users)
    polled = sorted(set(users) - covered)
    # A polling round reads just the users beyond the subscription, in one request. Three of
    # them go Busy (three whose generated presence was something else, so Teams really changed).
    changing = [
        uid for uid in polled if (await w.presence(users[uid]))["teams_availability"] != "Busy"
    ][:3]
    assert len(changing) == 3
    for uid in changing:
        w.teams(uid, "Busy", "InACall")
    w.clear()
    await w.tick(after=30)
    assert [sorted(r) for r in w.reads()] == [polled]
    for uid in changing:
        assert (await w.presence(users[uid]))["status"] == "do_not_disturb"
    # At renewal the busiest users are chosen again: those three changed last, so they are in.
    w.clear()
    outcome = await w.tick(after=36 * 60)
    assert outcome.actions == ["deleted", "created"]
    [again] = w.graph_subscriptions()
    now_covered = subscribed_ids(again)
    assert set(changing) <= now_covered and len(now_covered) == 650
    assert [m for m, _ in w.subscription_calls()] == ["DELETE", "POST"]
    # One bulk read of the new subscription's users plus the polling round: ceil(n/650) requests.
    reads = w.reads()
    assert len(reads) <= math.ceil(n / 650) and set(now_covered) <= {i for r in reads for i in r}
