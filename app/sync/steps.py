"""The steps every scope shares: fetch with progress, the guard, the report of a scope."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import session_scope
from app.graph.auth import TokenError
from app.graph.errors import GraphError
from app.runs.models import SyncRun
from app.runtime import Runtime
from app.sync.fetch_users import Progress
from app.sync.guard import over_bounds

MAX_REPORTED_FAILURES = 1000


class FetchResult(Protocol):
    warnings: list[dict[str, str]]


F = TypeVar("F", bound=FetchResult)


class ScopeFailed(Exception):
    """Nothing of the scope is applied: the run ends `failed` with this code."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass
class Report:
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    held: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    failed_scopes: list[str] = field(default_factory=list)
    # Scopes that ran to the end: their outstanding failures are the run's.
    done_scopes: list[str] = field(default_factory=list)

    def warn(self, scope: str, code: str, message: str, source_id: str | None = None) -> None:
        self.warnings.append(
            {"scope": scope, "source_id": source_id, "code": code, "message": message}
        )

    def hold(self, key: str, items: list[dict[str, Any]]) -> None:
        held = self.held or {"extensions": [], "extension_groups": [], "contacts": 0}
        held[key] = items
        self.held = held


class ProgressWriter:
    """Progress goes to the database without holding up the fetch: one write in flight at a
    time, always of the latest count, on a connection of its own (autocommit)."""

    def __init__(self, runtime: Runtime, run_id: str, phase: str) -> None:
        self.runtime = runtime
        self.run_id = run_id
        self.phase = phase
        self.latest = 0
        self.written = 0
        self.task: asyncio.Task[None] | None = None
        self.conn: AsyncConnection | None = None
        self.stmt = update(SyncRun).where(SyncRun.id == run_id)

    async def report(self, done: int) -> None:
        self.latest = done
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._write())

    async def _write(self) -> None:
        if self.conn is None:
            engine = self.runtime.sessionmaker.kw["bind"]
            self.conn = await engine.connect()
            await self.conn.execution_options(isolation_level="AUTOCOMMIT")
        while self.written != self.latest:
            value = self.latest
            progress = {"phase": self.phase, "done": value, "total": None}
            await self.conn.execute(self.stmt.values(progress=progress))
            self.written = value

    async def close(self) -> None:
        if self.task is not None:
            await self.task
        if self.conn is not None:
            await self.conn.close()


async def set_progress(
    runtime: Runtime, run_id: str, phase: str, done: int, total: int | None
) -> None:
    async with session_scope(runtime.sessionmaker) as session:
        await session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id)
            .values(progress={"phase": phase, "done": done, "total": total})
        )


async def fetch(
    runtime: Runtime,
    run_id: str,
    report: Report,
    timings: dict[str, float],
    scope: str,
    read: Callable[[Progress], Awaitable[F]],
    *,
    timing: str,
) -> F:
    """The fetch step: progress written as it goes, Graph and token failures turned into the
    scope's failure (nothing of it is applied), warnings reported."""
    await set_progress(runtime, run_id, scope, 0, None)
    started = time.perf_counter()
    progress = ProgressWriter(runtime, run_id, scope)
    try:
        fetched = await read(progress.report)
    except GraphError as exc:
        raise ScopeFailed("graph_error", f"{exc.status} {exc.code}: {exc.message}") from None
    except TokenError as exc:
        raise ScopeFailed("token_error", f"{exc.code}: {exc.message}") from None
    finally:
        await progress.close()
    timings[timing] = time.perf_counter() - started
    report.warnings += [{"scope": scope, "source_id": None, **w} for w in fetched.warnings]
    return fetched


def guard(
    scope: str,
    deletions: set[str],
    synced: int,
    bounds: dict[str, Any],
    approved: set[str] | None,
) -> bool:
    """Whether the plan's deletions are held. An approved run deletes what was held, and only
    that: when the deletions grew since, the scope fails with `plan_stale`."""
    if approved is not None:
        grown = deletions - approved
        if grown:
            raise ScopeFailed(
                "plan_stale",
                f"{len(grown)} more {scope} would be deleted now than were held and approved; "
                "nothing was deleted: run a new sync.",
            )
        return False
    return over_bounds(len(deletions), synced, bounds)


def failure_rows(scope: str, failures: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "scope": scope,
            "source_id": f.entra_id,
            "display_name": f.display_name,
            "code": f.code,
            "message": f.message,
        }
        for f in failures
    ]
