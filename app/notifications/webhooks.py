"""The Graph webhook: answer the validation handshake, accept notifications durably, fast.

Each item's clientState is checked against its subscription's (hashes compared in constant time);
items of unknown subscriptions or with a wrong clientState are dropped. Accepted items are written
first and answered 202; counting and queueing happen after, from the database (any replica).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import metrics
from app.clock import Clock
from app.notifications import repository as repo

log = logging.getLogger("pbx_entra.webhooks")


def client_state_hash(client_state: str) -> str:
    return hashlib.sha256(client_state.encode()).hexdigest()


class Inbox:
    """Accepted notifications go to the database in group commits: the rows of requests that
    arrive while a write is in flight share the next transaction, and each request is answered
    once its own rows are committed (durable before 202, one commit for many requests)."""

    CACHE_SECONDS = 10.0

    def __init__(self, maker: async_sessionmaker[AsyncSession], clock: Clock | None = None) -> None:
        self.maker = maker
        self.clock = clock or Clock()
        self.waiting: list[tuple[list[dict[str, Any]], asyncio.Future[int]]] = []
        self.writer: asyncio.Task[None] | None = None
        # subscription id -> (PBX id, clientState hash, monotonic time read)
        self.subscriptions: dict[str, tuple[str, str, float]] = {}

    async def _lookup(self, ids: set[str]) -> dict[str, tuple[str, str]]:
        now = self.clock.monotonic()
        found = {
            i: (hit[0], hit[1])
            for i in ids
            if (hit := self.subscriptions.get(i)) is not None and now - hit[2] < self.CACHE_SECONDS
        }
        missing = ids - found.keys()
        if missing:
            async with self.maker() as session:
                for sub in (await repo.subscriptions_by_ids(session, missing)).values():
                    self.subscriptions[sub.id] = (sub.pbx_id, sub.client_state_hash, now)
                    found[sub.id] = (sub.pbx_id, sub.client_state_hash)
        return found

    async def accept(self, items: list[dict[str, Any]], *, lifecycle: bool) -> int:
        """Record the genuine items; returns how many were accepted."""
        subs = await self._lookup({str(i.get("subscriptionId", "")) for i in items})
        now = self.clock.now()
        rows = []
        for item in items:
            sub_id = str(item.get("subscriptionId", ""))
            sub = subs.get(sub_id)
            given = item.get("clientState")
            if sub is None or not isinstance(given, str):
                outcome = "unknown_subscription" if sub is None else "no_client_state"
                metrics.notifications_received.labels(outcome).inc()
                continue
            if not hmac.compare_digest(client_state_hash(given), sub[1]):
                metrics.notifications_received.labels("client_state_mismatch").inc()
                log.warning("dropped a notification with a wrong clientState for %s", sub_id)
                continue
            metrics.notifications_received.labels("accepted").inc()
            event = item.get("lifecycleEvent") if lifecycle else None
            rows.append(
                {
                    "pbx_id": sub[0],
                    "subscription_id": sub_id,
                    "change_type": str(
                        item.get("changeType") or ("lifecycle" if lifecycle else "")
                    ),
                    "resource": str(item.get("resource") or "")[:2000],
                    "lifecycle_event": str(event) if event else None,
                    "received_at": now,
                    "processed_at": None,
                }
            )
        if not rows:
            return 0
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting.append((rows, done))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._write())
        return await done

    async def _write(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            try:
                async with self.maker() as session:
                    await repo.add_events(session, [row for rows, _ in batch for row in rows])
                    await session.commit()
            except IntegrityError:
                # A subscription (or its PBX) went away meanwhile: write request by request.
                self.subscriptions.clear()
                for rows, done in batch:
                    try:
                        async with self.maker() as session:
                            await repo.add_events(session, rows)
                            await session.commit()
                    except IntegrityError:
                        done.set_result(0)
                    else:
                        done.set_result(len(rows))
                continue
            except Exception as exc:
                for _, done in batch:
                    done.set_exception(exc)
                continue
            for rows, done in batch:
                done.set_result(len(rows))
