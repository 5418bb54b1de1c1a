"""Engine, sessions and the declarative base shared by every domain's tables.

A session commits once, at the end of its unit of work (`session_scope`); whatever must happen
only once the data is stored (waking the worker for a queued run) is an after-commit hook
(`after_commit`), dropped when the transaction rolls back instead.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, DateTime, MetaData, String, Table, event, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

log = logging.getLogger("pbx_entra.db")
_HOOKS = "after_commit_hooks"
WAKEUPS = "wakeups"
T = TypeVar("T", str, int)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both databases (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType}


def rowcount(result: Any) -> int:
    """Rows an UPDATE or DELETE touched (a CursorResult's rowcount)."""
    return int(getattr(result, "rowcount", 0) or 0)


# Ids per IN (...) list: far under the drivers' argument limits (PostgreSQL: 32,767).
IN_CHUNK = 1000


def chunked(values: Iterable[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    """Sorted distinct values in lists of at most `size`, one set-based query each."""
    ordered = sorted(set(values))
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


async def try_advisory_lock(session: AsyncSession, key: str) -> bool:
    """Take the lock `key` for the rest of the session's transaction unless another transaction
    holds it. PostgreSQL: an advisory lock, which locks no row, so the holder may wait on Graph
    while other transactions update the rows it read. SQLite serves one process: always True
    (the caller keeps its own in-process guard)."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    taken = await session.execute(
        text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
    )
    return bool(taken.scalar())


def table_of(model: type[Base]) -> Table:
    """The Core table of a mapped class: bulk inserts through it take the executemany path."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class IdMixin:
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(database_url: str, **kwargs: Any) -> AsyncEngine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            from pathlib import Path

            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


class Wakeup:
    """A doorbell shared by the sessions of one sessionmaker: rung after a commit that queued
    work, waited on by the loop that does it (other processes poll)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ring(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> bool:
        """True when rung within `seconds`; clears the bell either way."""
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._event.clear()


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info={WAKEUPS: {}})


def wakeup_of(maker: async_sessionmaker[AsyncSession], name: str) -> Wakeup:
    """The doorbell `name` ("runs", "outbox") of the sessions of this sessionmaker."""
    info: dict[str, Any] = maker.kw.setdefault("info", {})
    bells: dict[str, Wakeup] = info.setdefault(WAKEUPS, {})
    return bells.setdefault(name, Wakeup())


def after_commit(session: AsyncSession | Session, hook: Callable[[], None]) -> None:
    """Call `hook` once the session's transaction has committed (never if it rolls back)."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    hooks: list[Callable[[], None]] = sync.info.setdefault(_HOOKS, [])
    if hook not in hooks:
        hooks.append(hook)


def ring_after_commit(session: AsyncSession, name: str) -> None:
    """Ring the doorbell `name` once the session's transaction has committed."""
    bells: dict[str, Wakeup] = session.info.setdefault(WAKEUPS, {})
    after_commit(session, bells.setdefault(name, Wakeup()).ring)


@event.listens_for(Session, "after_commit")
def _run_hooks(session: Session) -> None:
    for hook in session.info.pop(_HOOKS, []):
        try:
            hook()
        except Exception:  # a hook must not undo a commit that happened
            log.exception("after-commit hook failed")


@event.listens_for(Session, "after_soft_rollback")
def _drop_hooks(session: Session, previous_transaction: Any) -> None:
    # The outermost transaction rolled back (a savepoint's rollback keeps the hooks).
    if not previous_transaction.nested and previous_transaction.parent is None:
        session.info.pop(_HOOKS, None)


@asynccontextmanager
async def session_scope(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: committed once at the end, rolled back on any error."""
    async with maker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
