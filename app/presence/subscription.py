"""The PBX's presence subscription at Graph: create, renew, delete.

Presence subscriptions are delegated-only (the authorization account's token), last at most 60
minutes, cover at most 650 users through `/communications/presences?$filter=id in (...)`, and
Graph allows one per signed-in user and application: a new one needs the old one deleted first.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from app.db import utcnow
from app.graph.auth import TokenError
from app.graph.client import MAX_PRESENCE_IDS
from app.graph.errors import GraphError
from app.integration.tokens import graph_for
from app.notifications.models import GraphSubscription
from app.notifications.repository import PRESENCE_RESOURCE
from app.notifications.webhooks import client_state_hash
from app.runtime import Runtime

log = logging.getLogger("pbx_entra.presence")
# Graph's maximum is 60 minutes; ask for less, so a clock a little ahead is never refused.
LIFETIME = timedelta(minutes=55)
# Renew well before Graph's reauthorizationRequired warning (15 minutes before expiry).
RENEW_BEFORE = timedelta(minutes=20)


def resource_for(entra_ids: list[str]) -> str:
    assert 0 < len(entra_ids) <= MAX_PRESENCE_IDS
    quoted = ",".join(f"'{i}'" for i in entra_ids)
    return f"{PRESENCE_RESOURCE}?$filter=id in ({quoted})"


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def create(runtime: Runtime, pbx_id: str, entra_ids: list[str]) -> GraphSubscription:
    """Create the subscription; a 409 (one already exists for the account, e.g. left by a
    process that died) deletes the stale one and tries once more. Raises GraphError/TokenError.

    Expiry times are reckoned on the wall clock: Graph checks them against its own."""
    graph = graph_for(runtime, pbx_id)
    base = runtime.settings.public_base_url
    resource = resource_for(entra_ids)
    for attempt in (1, 2):
        client_state = secrets.token_urlsafe(32)
        expires = utcnow() + LIFETIME
        try:
            body = await graph.request(
                "POST",
                "subscriptions",
                json_body={
                    "changeType": "updated",
                    "notificationUrl": f"{base}/webhooks/graph",
                    "lifecycleNotificationUrl": f"{base}/webhooks/graph/lifecycle",
                    "resource": resource,
                    "expirationDateTime": _iso(expires),
                    "clientState": client_state,
                },
            )
        except GraphError as exc:
            if exc.status != 409 or attempt == 2:
                raise
            await delete_stale(runtime, pbx_id)
            continue
        return GraphSubscription(
            id=str(body["id"]),
            pbx_id=pbx_id,
            resource=resource,
            change_type="updated",
            client_state_hash=client_state_hash(client_state),
            expires_at=expires,
            status="active",
        )
    raise AssertionError("unreachable")


async def delete_stale(runtime: Runtime, pbx_id: str) -> None:
    """Delete every presence subscription this app holds for the account at Graph."""
    graph = graph_for(runtime, pbx_id)
    held = await graph.get("subscriptions")
    for sub in held.get("value", []):
        if str(sub.get("resource", "")).lstrip("/").lower().startswith("communications/presences"):
            await delete(runtime, pbx_id, str(sub["id"]))


async def renew(runtime: Runtime, pbx_id: str, subscription_id: str) -> datetime:
    """Extend the subscription (a renewal also reauthorizes it); raises GraphError/TokenError."""
    expires = utcnow() + LIFETIME
    await graph_for(runtime, pbx_id).request(
        "PATCH", f"subscriptions/{subscription_id}", json_body={"expirationDateTime": _iso(expires)}
    )
    return expires


async def delete(runtime: Runtime, pbx_id: str, subscription_id: str) -> None:
    """Best effort: a subscription Graph no longer has is gone already."""
    try:
        await graph_for(runtime, pbx_id).request("DELETE", f"subscriptions/{subscription_id}")
    except (GraphError, TokenError) as exc:
        log.info("deleting presence subscription %s at Graph: %s", subscription_id, exc)
