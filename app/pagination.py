"""Cursor pagination: `?limit=&cursor=` → `{items, next_cursor}` ordered by (key, id)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
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


def page_params(
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size (max 1000)")] = 100,
    cursor: Annotated[str | None, Query(description="From a previous page's next_cursor")] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


def encode_cursor(key: Any, row_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([key, row_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key, row_id = json.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(row_id, str):
            raise ValueError
        if isinstance(key, dict) and set(key) == {"dt"}:
            key = datetime.fromisoformat(key["dt"])
        return key, row_id
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ProblemError(
            "The cursor is not one this API returned.", status=400, code="invalid_cursor"
        ) from None


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
        key, row_id = decode_cursor(params.cursor)
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
    value = getattr(last, key)
    if isinstance(value, datetime):
        value = {"dt": value.isoformat()}
    return rows, encode_cursor(value, last.id)
