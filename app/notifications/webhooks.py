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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import metrics
from app.clock import Clock
from app.notifications import repository as repo

log = logging.getLogger("pbx_entra.webhooks")


# One POST carries at most this many notifications, nested at most this deep.
MAX_ITEMS = 1000
MAX_DEPTH = 32


class NotificationItem(BaseModel):
    """The fields of a notification that are used, bounded by the columns that keep them.
    An item that does not fit is dropped before it is queued for the write."""

    model_config = ConfigDict(extra="ignore", strict=True)

    subscriptionId: str = Field(min_length=1, max_length=64)
    clientState: str | None = Field(default=None, max_length=255)
    changeType: str | None = Field(default=None, max_length=32)
    resource: str | None = None
    lifecycleEvent: str | None = Field(default=None, max_length=48)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("NUL characters are not allowed")
        return value


def parse_item(item: Any) -> NotificationItem | None:
    if not isinstance(item, dict):
        return None
    try:
        return NotificationItem.model_validate(item)
    except ValidationError:
        return None


def depth_within(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether parsed JSON nests no deeper than `limit` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return False
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return True


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

    async def accept(self, items: list[Any], *, lifecycle: bool) -> int:
        """Record the genuine items; returns how many were accepted."""
        valid = []
        for item in items:
            parsed = parse_item(item)
            if parsed is None:
                metrics.notifications_received.labels("invalid").inc()
            else:
                valid.append(parsed)
        subs = await self._lookup({i.subscriptionId for i in valid})
        now = self.clock.now()
        rows = []
        for item in valid:
            sub = subs.get(item.subscriptionId)
            if sub is None or item.clientState is None:
                outcome = "unknown_subscription" if sub is None else "no_client_state"
                metrics.notifications_received.labels(outcome).inc()
                continue
            if not hmac.compare_digest(client_state_hash(item.clientState), sub[1]):
                metrics.notifications_received.labels("client_state_mismatch").inc()
                log.warning(
                    "dropped a notification with a wrong clientState for %s", item.subscriptionId
                )
                continue
            metrics.notifications_received.labels("accepted").inc()
            event = item.lifecycleEvent if lifecycle else None
            rows.append(
                {
                    "pbx_id": sub[0],
                    "subscription_id": item.subscriptionId,
                    "change_type": item.changeType or ("lifecycle" if lifecycle else ""),
                    "resource": (item.resource or "")[:2000],
                    "lifecycle_event": event or None,
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

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        async with self.maker() as session:
            await repo.add_events(session, rows)
            await session.commit()

    async def _write(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            try:
                await self._insert([row for rows, _ in batch for row in rows])
            except Exception:
                # Write request by request: a row the database refuses (its subscription or PBX
                # went away meanwhile) loses only its own request's items.
                self.subscriptions.clear()
                for rows, done in batch:
                    try:
                        await self._insert(rows)
                    except (IntegrityError, DataError) as exc:
                        log.warning("dropped notifications the database refused: %s", exc.code)
                        done.set_result(0)
                    except Exception as exc:
                        done.set_exception(exc)
                    else:
                        done.set_result(len(rows))
                continue
            for rows, done in batch:
                done.set_result(len(rows))
