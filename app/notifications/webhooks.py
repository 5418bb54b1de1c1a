"""The Graph webhook: answer the validation handshake, accept notifications durably, fast.

Each item's clientState is checked against its subscription's (hashes compared in constant time);
items of unknown subscriptions or with a wrong clientState are dropped. Accepted items are written
first and answered 202; counting and queueing happen after, from the database (any replica).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.db import utcnow
from app.notifications import repository as repo

log = logging.getLogger("pbx_entra.webhooks")


def client_state_hash(client_state: str) -> str:
    return hashlib.sha256(client_state.encode()).hexdigest()


async def accept(session: AsyncSession, items: list[dict[str, Any]], *, lifecycle: bool) -> int:
    """Record the genuine items; returns how many were accepted."""
    subs = await repo.subscriptions_by_ids(
        session, (str(i.get("subscriptionId", "")) for i in items)
    )
    now = utcnow()
    rows = []
    for item in items:
        sub = subs.get(str(item.get("subscriptionId", "")))
        given = item.get("clientState")
        if sub is None or not isinstance(given, str):
            metrics.notifications_received.labels(
                "unknown_subscription" if sub is None else "no_client_state"
            ).inc()
            continue
        if not hmac.compare_digest(client_state_hash(given), sub.client_state_hash):
            metrics.notifications_received.labels("client_state_mismatch").inc()
            log.warning(
                "dropped a notification with a wrong clientState for subscription %s", sub.id
            )
            continue
        metrics.notifications_received.labels("accepted").inc()
        rows.append(
            {
                "pbx_id": sub.pbx_id,
                "subscription_id": sub.id,
                "change_type": str(item.get("changeType") or ("lifecycle" if lifecycle else "")),
                "resource": str(item.get("resource") or sub.resource)[:2000],
                "lifecycle_event": str(item["lifecycleEvent"])
                if lifecycle and item.get("lifecycleEvent")
                else None,
                "received_at": now,
                "processed_at": None,
            }
        )
    await repo.add_events(session, rows)
    return len(rows)
