"""Server-driven paging as Graph does it for directory collections
(https://learn.microsoft.com/en-us/graph/paging): `$top` sets the page size, each page but the
last carries `@odata.nextLink` — the same URL with every other query option plus an opaque
`$skiptoken` — and `@odata.count`, when asked for, is only on the first page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from emulator.graph.http import GraphRequest, GraphResponse, encode_pairs
from emulator.graph.model import position_after
from emulator.graph.odata import expired_page_token, seal, unseal


@dataclass
class Page:
    items: list[Any]
    next_token: str | None
    count: int | None = None


def next_link(request: GraphRequest, token: str, name: str = "$skiptoken") -> str:
    """The request's own URL with `name` replaced (Graph keeps every other query option)."""
    pairs = [
        (k, v)
        for k, v in parse_qsl(request.raw_query, keep_blank_values=True)
        if k.lower() != name.lower()
    ]
    pairs.append((name, token))
    return f"{request.url(request.path)}?{encode_pairs(pairs)}"


def read_token(request: GraphRequest, kind: str, fingerprint: str) -> dict[str, Any] | None:
    raw = request.query.get("$skiptoken")
    if raw is None:
        return None
    payload = unseal(request.state, raw)
    if payload is None or payload.get("k") != kind or payload.get("q") != fingerprint:
        raise expired_page_token()
    return payload


def page_sorted(
    request: GraphRequest,
    *,
    kind: str,
    fingerprint: str,
    ids: list[str],
    resolve: Callable[[str], Any | None],
    top: int,
    count: bool = False,
) -> Page:
    """Page a sorted id list with a cursor (the last id served): cheap on big directories, and
    stable when objects are added or removed between pages. `resolve` gives the object to
    return, or None to skip the id (filtered out, deleted)."""
    token = read_token(request, kind, fingerprint)
    start = position_after(ids, token["a"]) if token else 0
    items: list[Any] = []
    index = start
    end = len(ids)
    while index < end and len(items) < top:
        obj = resolve(ids[index])
        index += 1
        if obj is not None:
            items.append(obj)
    next_token = None
    if index < end and items:
        next_token = seal(request.state, {"k": kind, "q": fingerprint, "a": ids[index - 1]})
    total = None
    if count and token is None:
        total = len(items) + sum(1 for i in ids[index:] if resolve(i) is not None)
    return Page(items, next_token, total)


def page_list(
    request: GraphRequest,
    *,
    kind: str,
    fingerprint: str,
    objects: list[Any],
    top: int,
    count: bool = False,
) -> Page:
    """Page a materialised list by offset."""
    token = read_token(request, kind, fingerprint)
    offset = int(token["o"]) if token else 0
    items = objects[offset : offset + top]
    end = offset + len(items)
    next_token = None
    if end < len(objects):
        next_token = seal(request.state, {"k": kind, "q": fingerprint, "o": end})
    total = len(objects) if count and token is None else None
    return Page(items, next_token, total)


def collection(request: GraphRequest, context: str, page: Page, values: list[Any]) -> GraphResponse:
    body: dict[str, Any] = {"@odata.context": request.context(context)}
    if page.count is not None:
        body["@odata.count"] = page.count
    if page.next_token is not None:
        body["@odata.nextLink"] = next_link(request, page.next_token)
    body["value"] = values
    return GraphResponse(200, body)
