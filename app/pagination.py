"""Cursor pagination: `?limit=&cursor=` → `{items, next_cursor}` ordered by (key, id)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar, cast

from fastapi import Query, Request
from pydantic import BaseModel
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from app.errors import ProblemError

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class PageParams(BaseModel):
    limit: int
    cursor: str | None
    # The route a cursor belongs to and the key that signs it (a cursor works on its route only).
    route: str = ""
    signing_key: bytes = b""


def cursor_key(secret_key: str) -> bytes:
    """The HMAC key of cursors, derived from SECRET_KEY (never the key itself)."""
    return hmac.new(secret_key.encode(), b"pbx-entra pagination cursor v1", hashlib.sha256).digest()


def page_params(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size (max 1000)")] = 100,
    cursor: Annotated[
        str | None,
        Query(max_length=1000, description="From a previous page's next_cursor, on the same route"),
    ] = None,
) -> PageParams:
    route = request.scope.get("route")
    settings = request.app.state.settings
    return PageParams(
        limit=limit,
        cursor=cursor,
        route=getattr(route, "path", request.url.path),
        signing_key=cursor_key(settings.effective_secret_key),
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(params: PageParams, payload: bytes) -> bytes:
    return hmac.new(params.signing_key, payload, hashlib.sha256).digest()[:16]


def _json_value(value: Any) -> Any:
    return {"dt": value.isoformat()} if isinstance(value, datetime) else value


def encode_cursor(params: PageParams, key: Any, row_id: Any) -> str:
    payload = json.dumps([params.route, _json_value(key), _json_value(row_id)]).encode()
    return f"{_b64(payload)}.{_b64(_sign(params, payload))}"


def _typed(value: Any, expected: type) -> Any:
    """The JSON value as the column's type, or ValueError."""
    if expected is datetime:
        if not (isinstance(value, dict) and set(value) == {"dt"} and isinstance(value["dt"], str)):
            raise ValueError("not a timestamp")
        parsed = datetime.fromisoformat(value["dt"])
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        return parsed
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**63:
            raise ValueError("not an integer")
        return value
    if expected is str:
        if not isinstance(value, str) or "\x00" in value or len(value) > 400:
            raise ValueError("not a string")
        return value
    raise ValueError("unsupported key type")


def decode_cursor(
    params: PageParams, cursor: str, key_type: type, id_type: type
) -> tuple[Any, Any]:
    """The (key, id) position of a cursor this route issued; 400 `invalid_cursor` otherwise."""
    try:
        payload_text, _, signature = cursor.partition(".")
        payload = _unb64(payload_text)
        if not hmac.compare_digest(_unb64(signature), _sign(params, payload)):
            raise ValueError("bad signature")
        route, key, row_id = json.loads(payload)
        if route != params.route:
            raise ValueError("another route's cursor")
        return _typed(key, key_type), _typed(row_id, id_type)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ProblemError(
            "The cursor is not one this API returned for this list.",
            status=400,
            code="invalid_cursor",
            title="Invalid cursor",
        ) from None


def _python_type(col: InstrumentedAttribute[Any]) -> type:
    return cast(type, col.type.python_type)


def paginate(
    stmt: Select[Any],
    key_col: InstrumentedAttribute[Any],
    id_col: InstrumentedAttribute[Any],
    params: PageParams,
    *,
    descending: bool = False,
) -> Select[Any]:
    """Add keyset ordering, the cursor's position and limit+1 (to know if a next page exists)."""
    if params.cursor:
        key, row_id = decode_cursor(
            params, params.cursor, _python_type(key_col), _python_type(id_col)
        )
        if descending:
            stmt = stmt.where(or_(key_col < key, and_(key_col == key, id_col < row_id)))
        else:
            stmt = stmt.where(or_(key_col > key, and_(key_col == key, id_col > row_id)))
    if descending:
        return stmt.order_by(key_col.desc(), id_col.desc()).limit(params.limit + 1)
    return stmt.order_by(key_col, id_col).limit(params.limit + 1)


def next_cursor(rows: list[Any], params: PageParams, key: str) -> tuple[list[Any], str | None]:
    if len(rows) <= params.limit:
        return rows, None
    rows = rows[: params.limit]
    last = rows[-1]
    return rows, encode_cursor(params, getattr(last, key), last.id)
