"""Graph subscriptions for `users` and `groups`: created when a sync section is on, renewed well
before they expire, re-created when Graph forgot them, deleted on disable and disconnect.

Any gap in notifications (a subscription re-created, a failed renewal) queues a `resync` run:
`missed` lifecycle events exist only for Outlook resources, so nothing else would tell.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import delete

from app.db import session_scope, try_advisory_lock, utcnow
from app.graph.auth import TokenError
from app.graph.errors import GraphError
from app.integration import repository as integ_repo
from app.integration.models import Integration
from app.integration.tokens import graph_for
from app.integration.triggers import queue_active
from app.notifications import repository as repo
from app.notifications.models import GraphSubscription
from app.notifications.webhooks import client_state_hash
from app.runs.scopes import DIRECTORY_SECTIONS
from app.runtime import Runtime

log = logging.getLogger("pbx_entra.subscriptions")
RESOURCES = ("users", "groups")
# Graph's maximum for users and groups is 41,760 minutes (29 days); stay a little below it.
LIFETIME = timedelta(minutes=41_760) - timedelta(minutes=30)
RENEW_BEFORE = timedelta(days=3)
WARNING = "notifications_unavailable"


def _warn(integ: Integration, message: str | None) -> None:
    kept = [w for w in integ.warnings or [] if w.get("code") != WARNING]
    if message:
        kept.append({"code": WARNING, "message": message})
    integ.warnings = kept


async def _active_scopes(session: Any, pbx_id: str) -> set[str]:
    return await integ_repo.active_scopes(session, pbx_id, DIRECTORY_SECTIONS)


async def _create(runtime: Runtime, pbx_id: str, resource: str) -> tuple[str, str, Any]:
    base = runtime.settings.public_base_url
    client_state = secrets.token_urlsafe(32)
    expires = utcnow() + LIFETIME
    body = await graph_for(runtime, pbx_id).request(
        "POST",
        "subscriptions",
        json_body={
            "changeType": "updated,deleted",
            "notificationUrl": f"{base}/webhooks/graph",
            "lifecycleNotificationUrl": f"{base}/webhooks/graph/lifecycle",
            "resource": resource,
            "expirationDateTime": expires.isoformat().replace("+00:00", "Z"),
            "clientState": client_state,
        },
    )
    return str(body["id"]), client_state, expires


async def ensure(runtime: Runtime, pbx_id: str) -> int:
    """Create the missing subscriptions, renew those due; returns how many were (re)created.

    One task at a time looks after a PBX's subscriptions (an in-process guard, and an advisory
    lock across replicas: whoever finds it taken passes), so two replicas never create the same
    subscription twice. No row is locked while Graph is called: a token refresh that fails for
    good records the error on the integration row meanwhile."""
    key = f"subscriptions:{pbx_id}"
    if key in runtime.busy:
        return 0
    runtime.busy.add(key)
    try:
        created, gap = await _upkeep(runtime, pbx_id, key)
    finally:
        runtime.busy.discard(key)
    if gap:
        await queue_resync(runtime, pbx_id)
    return created


async def _upkeep(runtime: Runtime, pbx_id: str, key: str) -> tuple[int, bool]:
    """(subscriptions (re)created, whether notifications may have been missed). The writes
    are flushed at the commit, after every Graph call."""
    created = 0
    gap = False
    async with session_scope(runtime.sessionmaker) as session:
        if not await try_advisory_lock(session, key):
            return 0, False
        integ = await integ_repo.get(session, pbx_id)
        if integ is None or integ.status != "connected":
            return 0, False
        # Users and groups both: group membership decides a group-range user sync, too.
        wanted = set(RESOURCES) if await _active_scopes(session, pbx_id) else set()
        held = {s.resource: s for s in await repo.subscriptions_of(session, pbx_id)}
        graph = graph_for(runtime, pbx_id)
        for resource in sorted(wanted):
            sub = held.get(resource)
            now = utcnow()
            if sub is not None and sub.expires_at - now > RENEW_BEFORE:
                continue
            if sub is not None and sub.expires_at > now:
                expires = now + LIFETIME
                try:
                    await graph.request(
                        "PATCH",
                        f"subscriptions/{sub.id}",
                        json_body={
                            "expirationDateTime": expires.isoformat().replace("+00:00", "Z")
                        },
                    )
                except GraphError as exc:
                    if exc.status != 404:
                        log.warning("renewing subscription %s failed: %s", sub.id, exc)
                        continue
                    gap = True  # Graph no longer has it: re-create below
                except TokenError:
                    break
                else:
                    sub.expires_at = expires
                    sub.renewed_at = utcnow()
                    continue
            elif sub is not None:
                gap = True  # expired: notifications may have been missed
            try:
                sub_id, client_state, expires = await _create(runtime, pbx_id, resource)
            except GraphError as exc:
                _warn(
                    integ,
                    f"Microsoft Graph refused change notifications ({exc.code}: {exc.message}); "
                    "syncs run on the schedule and Update Now only.",
                )
                break
            except TokenError:
                break
            if sub is not None:
                await session.delete(sub)
            session.add(
                GraphSubscription(
                    id=sub_id,
                    pbx_id=pbx_id,
                    resource=resource,
                    change_type="updated,deleted",
                    client_state_hash=client_state_hash(client_state),
                    expires_at=expires,
                    status="active",
                )
            )
            _warn(integ, None)
            created += 1
    return created, gap


async def queue_resync(runtime: Runtime, pbx_id: str) -> None:
    async with session_scope(runtime.sessionmaker) as session:
        await queue_active(session, pbx_id, "resync", sections=DIRECTORY_SECTIONS)


async def reauthorize(runtime: Runtime, pbx_id: str, subscription_id: str) -> None:
    try:
        await graph_for(runtime, pbx_id).request(
            "POST", f"subscriptions/{subscription_id}/reauthorize"
        )
    except GraphError as exc:
        log.warning(
            "reauthorizing subscription %s failed: %s; re-creating it", subscription_id, exc
        )
        await forget(runtime, subscription_id)
        await ensure(runtime, pbx_id)
        await queue_resync(runtime, pbx_id)


async def forget(runtime: Runtime, subscription_id: str) -> None:
    async with session_scope(runtime.sessionmaker) as session:
        await session.execute(
            delete(GraphSubscription).where(GraphSubscription.id == subscription_id)
        )


async def remove_all(runtime: Runtime, pbx_id: str) -> None:
    """Delete the PBX's subscriptions at Graph (best effort) and here."""
    async with session_scope(runtime.sessionmaker) as session:
        held = await repo.subscriptions_of(session, pbx_id)
    for sub in held:
        try:
            await graph_for(runtime, pbx_id).request("DELETE", f"subscriptions/{sub.id}")
        except (GraphError, TokenError) as exc:
            log.info("deleting subscription %s at Graph: %s", sub.id, exc)
    async with session_scope(runtime.sessionmaker) as session:
        await session.execute(delete(GraphSubscription).where(GraphSubscription.pbx_id == pbx_id))


async def maintain(runtime: Runtime) -> None:
    """Every connected PBX with user or group sync on holds live Graph subscriptions."""
    async with session_scope(runtime.sessionmaker) as session:
        pbx_ids = await integ_repo.connected_pbx_ids(session)
    for pbx_id in pbx_ids:
        try:
            await ensure(runtime, pbx_id)
        except Exception:
            log.exception("subscriptions of PBX %s", pbx_id)
