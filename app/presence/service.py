"""One PBX's presence upkeep: the stop conditions, the subscription's users, polling, catch-up,
and applying Teams readings to extensions.

Reads are always bulk (`getPresencesByUserId`, 650 ids a request): a step collects every user
it must read (catch-up, polled users, users just enabled, a rebuilt subscription's users) and
reads them together.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.db import session_scope
from app.graph.auth import TokenError
from app.graph.client import MAX_PRESENCE_IDS
from app.graph.errors import GraphError
from app.integration.tokens import graph_for
from app.presence import repository as repo
from app.presence import subscription
from app.presence.apply import decide, reading_of
from app.presence.repository import Follower
from app.runtime import Runtime

log = logging.getLogger("pbx_entra.presence")
# Graph refused the subscription: everyone is polled, and creation is tried again this often.
RETRY_CREATE = timedelta(minutes=5)
_USER_IN_RESOURCE = re.compile(r"presences(?:/|\(')([^/')?]+)", re.IGNORECASE)


@dataclass
class Outcome:
    """What one step did (for logs, tests and the bench)."""

    read: int = 0
    changed: int = 0
    subscribed: int = 0
    polled: int = 0
    actions: list[str] = field(default_factory=list)


def choose(followers: list[Follower]) -> list[str]:
    """The users the subscription covers: those whose Teams presence changed most recently."""

    def key(f: Follower) -> tuple[float, str]:
        at = f.teams_changed_at
        return (-(at.timestamp()) if at is not None else float("inf"), f.entra_id)

    return sorted(f.entra_id for f in sorted(followers, key=key)[:MAX_PRESENCE_IDS])


def user_of(resource: str) -> str | None:
    match = _USER_IN_RESOURCE.search(resource)
    return match.group(1) if match else None


async def apply(
    runtime: Runtime,
    pbx_id: str,
    items: list[dict[str, Any]],
    now: datetime,
    snapshot: list[Follower] | None = None,
) -> int:
    """Apply Teams readings to the PBX's following extensions; returns how many changed.

    Each extension's row is read again in the writing transaction, so a manual change made
    meanwhile is judged against (and kept unless Teams moved); a long read may pass the
    followers it was made for instead."""
    if not items:
        return 0
    async with session_scope(runtime.sessionmaker) as session:
        by_id = (
            {f.entra_id: f for f in snapshot}
            if snapshot is not None
            else {
                f.entra_id: f
                for f in await repo.followers(session, pbx_id, [str(i.get("id")) for i in items])
            }
        )
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for n, item in enumerate(items):
            if n % 1000 == 999:
                await asyncio.sleep(0)  # long lists: let the webhook and the API in
            follower = by_id.get(str(item.get("id")))
            if follower is None:
                continue
            row = decide(follower.current, reading_of(item), follower.mapping, now)
            if row is None:
                continue
            row["extension_id"] = follower.extension_id
            (inserts if follower.current is None else updates).append(row)
        await repo.write_presence(session, inserts, updates)
    return len(inserts) + len(updates)


async def read_and_apply(
    runtime: Runtime,
    pbx_id: str,
    entra_ids: set[str],
    now: datetime,
    snapshot: list[Follower] | None = None,
) -> tuple[int, int]:
    """One bulk read of these users (650 a request) and its application: (read, changed)."""
    if not entra_ids:
        return 0, 0
    items = await graph_for(runtime, pbx_id).presences(sorted(entra_ids))
    return len(items), await apply(runtime, pbx_id, items, now, snapshot)


async def stop(runtime: Runtime, pbx_id: str, connected: bool, keep_state: bool) -> None:
    """Presence is off for the PBX: delete its subscription, poll no more, catch up on return."""
    async with session_scope(runtime.sessionmaker) as session:
        held = await repo.presence_subscriptions(session, pbx_id)
        state = await repo.state(session, pbx_id)
        known = {s.id for s in held} | ({state.subscription_id} if state.subscription_id else set())
    for sub_id in sorted(known):
        if connected:
            await subscription.delete(runtime, pbx_id, sub_id)
    async with session_scope(runtime.sessionmaker) as session:
        for sub_id in known:
            await repo.forget_subscription(session, sub_id)
        state = await repo.state(session, pbx_id)
        state.subscription_id = None
        state.subscribed_ids = []
        state.expires_at = None
        state.retry_create_at = None
        state.last_poll_at = None
        state.catchup_needed = True
    if not keep_state:
        async with session_scope(runtime.sessionmaker) as session:
            await repo.drop_state(session, pbx_id)


async def _rebuild(
    runtime: Runtime, pbx_id: str, old: str | None, chosen: list[str], now: datetime, out: Outcome
) -> tuple[str | None, list[str], datetime | None, datetime | None]:
    """Delete the old subscription, create one for `chosen`: (id, ids, expires, retry_at).

    Refused: nobody is subscribed (all polled) and creation is retried after RETRY_CREATE."""
    if old is not None:
        await subscription.delete(runtime, pbx_id, old)
        async with session_scope(runtime.sessionmaker) as session:
            await repo.forget_subscription(session, old)
        out.actions.append("deleted")
    if not chosen:
        return None, [], None, None
    try:
        row = await subscription.create(runtime, pbx_id, chosen)
    except (GraphError, TokenError) as exc:
        log.warning("presence subscription of PBX %s refused: %s; polling instead", pbx_id, exc)
        out.actions.append("refused")
        return None, [], None, now + RETRY_CREATE
    async with session_scope(runtime.sessionmaker) as session:
        await repo.add_subscription(session, row)
    out.actions.append("created")
    return row.id, chosen, row.expires_at, None


async def step(
    runtime: Runtime,
    pbx_id: str,
    owner: str,
    now: datetime,
    *,
    lease: timedelta,
    poll_every: timedelta,
    memo: dict[str, Any] | None = None,
) -> Outcome | None:
    """One visit of a PBX by the process `owner`; None when another process looks after it.

    `memo` keeps each PBX's followers fingerprint between visits: a visit with nothing due and
    no follower changed reads no follower list (10,000 rows every tick would starve the
    webhook)."""
    out = Outcome()
    memo = {} if memo is None else memo
    async with session_scope(runtime.sessionmaker) as session:
        cond = await repo.conditions(session, pbx_id)
        taken = await repo.take_lease(session, pbx_id, owner, now, now + lease)
        if taken is None:
            return None
        state = await repo.state(session, pbx_id)
        if taken:
            state.catchup_needed = True  # started, or took over from a process that stopped
        sub_id, subscribed = state.subscription_id, list(state.subscribed_ids or [])
        expires, retry_at = state.expires_at, state.retry_create_at
        catchup, last_poll = state.catchup_needed, state.last_poll_at
        followers: list[Follower] = []
        if cond.active:
            print_ = await repo.fingerprint(session, pbx_id)
            due = (
                catchup
                or print_ != memo.get(pbx_id)
                or (
                    print_[0] > len(subscribed)
                    and (last_poll is None or now - last_poll >= poll_every)
                )
                or (
                    sub_id is not None
                    and (expires is None or expires - now < subscription.RENEW_BEFORE)
                )
                or (sub_id is None and (retry_at is None or now >= retry_at))
            )
            if not due:
                out.subscribed, out.polled = len(subscribed), print_[0] - len(subscribed)
                return out
            followers = await repo.followers(session, pbx_id)
    if not cond.active:
        if sub_id is not None or not catchup or cond.presence_sync != "active":
            await stop(
                runtime, pbx_id, cond.integration == "connected", cond.presence_sync == "active"
            )
            out.actions.append("stopped")
        return out
    ids = {f.entra_id for f in followers}
    chosen = choose(followers)
    reads: set[str] = set()
    rebuild = False
    if sub_id is not None:
        if set(subscribed) - ids:
            rebuild = True  # users disabled the feature or left the sync
        elif len(subscribed) < len(chosen):
            rebuild = True  # users enabled it and there is room
        elif expires is None or expires - now < subscription.RENEW_BEFORE:
            if chosen != sorted(subscribed):
                rebuild = True  # re-chosen at renewal
            else:
                try:
                    expires = await subscription.renew(runtime, pbx_id, sub_id)
                    out.actions.append("renewed")
                except (GraphError, TokenError) as exc:
                    log.warning("renewing presence subscription %s failed: %s", sub_id, exc)
                    rebuild, catchup = True, True
    elif chosen and (retry_at is None or now >= retry_at):
        rebuild = True
    if rebuild:
        sub_id, subscribed, expires, retry_at = await _rebuild(
            runtime, pbx_id, sub_id, chosen, now, out
        )
        reads |= set(subscribed)  # the one bulk read that closes the gap
    subscribed_set = set(subscribed) & ids
    polled = ids - subscribed_set
    fresh = {
        f.entra_id for f in followers if f.current is None or f.current.teams_availability is None
    }
    poll_due = last_poll is None or now - last_poll >= poll_every
    if catchup:
        reads |= ids
        out.actions.append("catch-up")
    else:
        reads |= fresh
        if polled and poll_due:
            reads |= polled
    if catchup or (polled and poll_due):
        last_poll = now
    read_ok = True
    try:
        # A long read is applied against this visit's snapshot (one follower list, not two).
        snapshot = followers if len(reads) > 500 else None
        out.read, out.changed = await read_and_apply(runtime, pbx_id, reads, now, snapshot)
    except (GraphError, TokenError) as exc:
        log.warning("reading presence of PBX %s failed: %s", pbx_id, exc)
        read_ok = False
    out.subscribed, out.polled = len(subscribed_set), len(polled)
    async with session_scope(runtime.sessionmaker) as session:
        state = await repo.state(session, pbx_id)
        state.subscription_id, state.subscribed_ids = sub_id, list(subscribed)
        state.expires_at, state.retry_create_at = expires, retry_at
        if read_ok:
            state.last_poll_at = last_poll
            state.catchup_needed = False
        else:
            state.catchup_needed = True
    if read_ok:
        memo[pbx_id] = print_
    return out


async def on_notifications(
    runtime: Runtime, pbx_id: str, changed: set[str], lifecycle: list[str], now: datetime
) -> tuple[int, int]:
    """Changes told by the subscription: read those users in bulk and apply. Lifecycle events
    leave work for the PBX's next step (renewal, rebuild, catch-up)."""
    if lifecycle:
        async with session_scope(runtime.sessionmaker) as session:
            state = await repo.state(session, pbx_id)
            state.catchup_needed = True
            if "subscriptionRemoved" in lifecycle and state.subscription_id:
                await repo.forget_subscription(session, state.subscription_id)
                state.subscription_id, state.subscribed_ids, state.expires_at = None, [], None
            elif "reauthorizationRequired" in lifecycle:
                state.expires_at = now  # renewing reauthorizes
    # The subscription covers followers only; one who stopped following meanwhile is read but
    # not applied.
    return await read_and_apply(runtime, pbx_id, changed, now)
