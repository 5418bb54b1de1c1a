"""Entra lookups for the portal's pickers: groups, and shared mailboxes."""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import parse_qs, urlparse

from app.errors import ProblemError
from app.graph.client import GraphClient
from app.graph.errors import GraphError
from app.integration.schemas import (
    DirectoryGroup,
    DirectoryGroupsPage,
    SharedMailboxOut,
    SharedMailboxPage,
)

GROUP_FIELDS = "id,displayName,groupTypes,securityEnabled,mailEnabled,mail"
PURPOSE_TTL_SECONDS = 300
# pbx id -> user id -> (userPurpose, monotonic time read)
_purpose_cache: dict[str, dict[str, tuple[str | None, float]]] = {}


def group_type(group: dict[str, Any]) -> str:
    """Graph's flags as the picker's types: Microsoft 365, security (mail-enabled too), distribution."""
    if "Unified" in (group.get("groupTypes") or []):
        return "microsoft365"
    if group.get("securityEnabled"):
        return "security"
    if group.get("mailEnabled"):
        return "distribution"
    return "other"


def _cursor_from(next_link: str | None) -> str | None:
    if not next_link:
        return None
    token = parse_qs(urlparse(next_link).query).get("$skiptoken", [None])[0]
    return base64.urlsafe_b64encode(token.encode()).decode() if token else None


def _skiptoken(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        token = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
        if not token:
            raise ValueError("empty cursor")
        return token
    except (ValueError, UnicodeDecodeError):
        raise ProblemError(
            "The cursor is not one this API returned.", status=400, code="invalid_cursor"
        ) from None


def _quote(text: str) -> str:
    return text.replace("'", "''").replace('"', "")


async def _get(
    graph: GraphClient, path: str, params: dict[str, str], eventual: bool
) -> dict[str, Any]:
    headers = {"ConsistencyLevel": "eventual"} if eventual else None
    try:
        return await graph.get(path, params, headers=headers)
    except GraphError as exc:
        if exc.status == 400 and "skiptoken" in exc.message.lower():
            raise ProblemError(
                "The cursor is no longer valid.", status=400, code="invalid_cursor"
            ) from None
        raise ProblemError(
            f"Microsoft Graph answered {exc.status} {exc.code}: {exc.message}",
            status=502,
            code="graph_error",
        ) from None


async def groups(
    graph: GraphClient, search: str | None, limit: int, cursor: str | None
) -> DirectoryGroupsPage:
    params = {"$select": GROUP_FIELDS, "$top": str(limit)}
    eventual = False
    if search:
        params["$search"] = f'"displayName:{_quote(search)}"'
        params["$orderby"] = "displayName"
        eventual = True
    token = _skiptoken(cursor)
    if token:
        params["$skiptoken"] = token
    body = await _get(graph, "groups", params, eventual)
    items = [
        DirectoryGroup(
            id=g["id"], display_name=g.get("displayName"), type=group_type(g), mail=g.get("mail")
        )
        for g in body.get("value", [])
    ]
    return DirectoryGroupsPage(items=items, next_cursor=_cursor_from(body.get("@odata.nextLink")))


async def shared_mailboxes(
    graph: GraphClient, pbx_id: str, search: str | None, limit: int, cursor: str | None
) -> SharedMailboxPage:
    """Users whose mailbox purpose is `shared`: disabled accounts with mail, checked via $batch."""
    filters = ["accountEnabled eq false"]
    if search:
        filters.append(f"startswith(displayName,'{_quote(search)}')")
    params = {
        "$select": "id,displayName,mail",
        "$filter": " and ".join(filters),
        "$top": str(limit),
    }
    token = _skiptoken(cursor)
    if token:
        params["$skiptoken"] = token
    body = await _get(graph, "users", params, False)
    candidates = [u for u in body.get("value", []) if u.get("mail")]
    purposes = await _purposes(graph, pbx_id, [u["id"] for u in candidates])
    items = [
        SharedMailboxOut(id=u["id"], display_name=u.get("displayName"), mail=u.get("mail"))
        for u in candidates
        if purposes.get(u["id"]) == "shared"
    ]
    return SharedMailboxPage(items=items, next_cursor=_cursor_from(body.get("@odata.nextLink")))


async def _purposes(graph: GraphClient, pbx_id: str, user_ids: list[str]) -> dict[str, str | None]:
    cache = _purpose_cache.setdefault(pbx_id, {})
    now = time.monotonic()
    result = {
        uid: cache[uid][0]
        for uid in user_ids
        if uid in cache and now - cache[uid][1] < PURPOSE_TTL_SECONDS
    }
    missing = [uid for uid in user_ids if uid not in result]
    if missing:
        try:
            answers = await graph.get_each(
                [f"/users/{uid}/mailboxSettings/userPurpose" for uid in missing]
            )
        except GraphError as exc:
            raise ProblemError(
                f"Microsoft Graph answered {exc.status} {exc.code}: {exc.message}",
                status=502,
                code="graph_error",
            ) from None
        for uid, (status, body) in zip(missing, answers, strict=True):
            purpose = body.get("value") if status == 200 and isinstance(body, dict) else None
            cache[uid] = (purpose, now)
            result[uid] = purpose
    return result
