"""Teams presence: `GET /users/{id}/presence`, `GET /me/presence`,
`GET /communications/presences/{id}` and `POST /communications/getPresencesByUserId`.

Permissions (https://learn.microsoft.com/en-us/graph/api/presence-get and
https://learn.microsoft.com/en-us/graph/api/cloudcommunications-getpresencesbyuserid): delegated
Presence.Read for the signed-in user's own presence, Presence.Read.All for anyone's; application
Presence.Read.All (supported by the current pages). getPresencesByUserId takes "a maximum of 650
user IDs ... per API request".
"""

from __future__ import annotations

from collections import deque
from typing import Any

from emulator.graph.access import require_permission
from emulator.graph.http import (
    GraphError,
    GraphRequest,
    GraphResponse,
    bad_request,
    not_found,
    router,
)
from emulator.state import EmulatorState, Tenant, User

MAX_PRESENCE_IDS = 650
READS_KEPT = 10_000


def _reads(state: EmulatorState) -> deque[dict[str, Any]]:
    found: deque[dict[str, Any]] | None = state.extra.get("presence.reads")
    if found is None:
        found = state.extra.setdefault("presence.reads", deque(maxlen=READS_KEPT))
    return found


def presence_reads(state: EmulatorState, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """The getPresencesByUserId requests answered, oldest first: `{tenant_id, ids}` each (the
    request log keeps no bodies; counting users per bulk request needs them)."""
    with state.lock:
        return [dict(r) for r in _reads(state) if tenant_id is None or r["tenant_id"] == tenant_id]


def clear_presence_reads(state: EmulatorState) -> None:
    with state.lock:
        _reads(state).clear()


def presence_body(tenant: Tenant, user_id: str) -> dict[str, Any]:
    presence = tenant.presence.get(user_id)
    return {
        "id": user_id,
        "availability": presence.availability if presence else "PresenceUnknown",
        "activity": presence.activity if presence else "PresenceUnknown",
    }


@router.route("GET", "/users/{id}/presence", "/me/presence", "/communications/presences/{id}")
async def get_presence(request: GraphRequest) -> GraphResponse:
    caller = request.caller()
    key = request.params.get("id", "me")
    if key.lower() == "me":
        user: User | None = request.me()
    else:
        user = caller.tenant.users.get(key) or (
            caller.tenant.find_user(key) if "@" in key else None
        )
    if user is None or user.deleted_at is not None:
        raise not_found(key)
    own = caller.user is not None and caller.user.id == user.id
    require_permission(
        caller,
        ("Presence.Read", "Presence.Read.All") if own else ("Presence.Read.All",),
        ("Presence.Read.All",),
    )
    body = {"@odata.context": request.context(f"users('{user.id}')/presence/$entity")}
    body.update(presence_body(caller.tenant, user.id))
    return GraphResponse(200, body)


@router.route("POST", "/communications/getPresencesByUserId")
async def get_presences_by_user_id(request: GraphRequest) -> GraphResponse:
    caller = request.caller()
    require_permission(caller, ("Presence.Read.All",), ("Presence.Read.All",))
    payload = request.json()
    ids = payload.get("ids") if isinstance(payload, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise bad_request(
            "The request body must hold 'ids', a non-empty list of user ids.", "BadRequest"
        )
    if len(ids) > MAX_PRESENCE_IDS:
        raise GraphError(
            400,
            "BadRequest",
            f"The number of user ids ({len(ids)}) exceeds the maximum of {MAX_PRESENCE_IDS} "
            "per request.",
        )
    tenant = caller.tenant
    with request.state.lock:
        _reads(request.state).append({"tenant_id": tenant.id, "ids": list(ids)})
    values = [
        presence_body(tenant, user_id)
        for user_id in dict.fromkeys(ids)
        if (user := tenant.users.get(user_id)) is not None and user.deleted_at is None
    ]
    return GraphResponse(
        200,
        {
            "@odata.context": request.context("Collection(microsoft.graph.presence)"),
            "value": values,
        },
    )
