"""Executing one run: its rules read once, then each scope's module in turn (fetch → plan →
guard → apply → report, see `steps`), then the run's report.

A scope is one module with `SCOPE`, `SECTION` and `async def run(executor)`: adding one (contacts)
is that module and one entry in SCOPE_MODULES.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.db import session_scope, utcnow
from app.graph.client import GraphClient
from app.integration import repository as integ_repo
from app.integration.models import SyncRule
from app.integration.tokens import graph_for
from app.runs import repository as runs_repo
from app.runs.models import SyncRun
from app.runtime import Runtime
from app.sync import scope_contacts, scope_groups, scope_users, steps
from app.sync.cleanup import run_cleanup
from app.sync.fetch_users import Progress
from app.sync.rules import RunRules, load_rules

ScopeRun = Callable[["RunExecutor"], Awaitable[None]]
SCOPE_MODULES: dict[str, ScopeRun] = {
    scope_users.SCOPE: scope_users.run,
    scope_groups.SCOPE: scope_groups.run,
    scope_contacts.SCOPE: scope_contacts.run,
}
# Failure codes of a scope that are not about its objects (a mailbox, not a contact): listed
# with the run's failures, not counted in the scope's `failed`.
NOT_COUNTED: dict[str, frozenset[str]] = {scope_contacts.SCOPE: scope_contacts.NOT_COUNTED}


class RunExecutor:
    def __init__(self, runtime: Runtime, run: SyncRun, graph: GraphClient | None = None) -> None:
        self.runtime = runtime
        self.run_id = run.id
        self.pbx_id = run.pbx_id
        self.trigger = run.trigger
        self.dry_run = run.dry_run
        self.scopes = list(run.scopes)
        self.plan_payload = dict(run.plan or {})
        held = dict(run.held or {})
        # An approved held run deletes what was held, after planning again.
        self.approved: dict[str, Any] | None = held if held.get("decision") == "approved" else None
        self.graph = graph or graph_for(runtime, run.pbx_id)
        self.report = steps.Report()
        self.timings: dict[str, float] = {}
        self.rules = RunRules(sections={}, guard={}, users=None, groups=None)
        # Users that became synced extensions in this run, and whether any stopped being one:
        # the groups' memberships follow in the same run.
        self.new_synced_users: set[str] = set()
        self.users_changed = False

    # What the scope modules use ---------------------------------------------------------------

    def full(self, rule: SyncRule) -> bool:
        """Whether the scope lists everything (else it follows its delta link)."""
        return rule.needs_full_sync or self.trigger in ("initial", "resync")

    def approved_ids(self, key: str) -> set[str] | None:
        """The ids of the held deletions of this kind that were approved (None: not approved)."""
        if self.approved is None or not self.approved.get(key):
            return None
        return {item["id"] for item in self.approved[key]}

    async def fetch(
        self, scope: str, read: Callable[[Progress], Awaitable[steps.F]], *, timing: str
    ) -> steps.F:
        return await steps.fetch(
            self.runtime, self.run_id, self.report, self.timings, scope, read, timing=timing
        )

    async def hold(self, session: AsyncSession) -> None:
        """Deletions wait for approval; a newer held run replaces (cancels) an older one."""
        integ = await integ_repo.get(session, self.pbx_id, for_update=True)
        if integ is None:
            return
        if integ.held_run_id and integ.held_run_id != self.run_id:
            older = await runs_repo.get(session, integ.held_run_id, for_update=True)
            if older is not None and older.status == "held":
                older.status = "cancelled"
        integ.held_run_id = self.run_id

    async def next_listing(self, session: AsyncSession, section: str, *, full: bool) -> None:
        # Held deletions are not in the next delta round: list everything next time.
        await integ_repo.set_needs_full_sync(session, self.pbx_id, section, full)

    # The run ------------------------------------------------------------------------------

    async def execute(self) -> str:
        started = time.perf_counter()
        if self.trigger == "cleanup":
            await run_cleanup(
                self.runtime,
                self.pbx_id,
                self.run_id,
                list(self.plan_payload.get("cleanup", [])),
                self.report,
            )
        else:
            async with session_scope(self.runtime.sessionmaker) as session:
                self.rules = await load_rules(session, self.pbx_id)
            await self._scopes()
        status = await self._finish()
        self.timings["total"] = time.perf_counter() - started
        metrics.sync_runs.labels(self.trigger, status).inc()
        return status

    async def _scopes(self) -> None:
        scopes = list(self.scopes)
        for scope in scopes:
            module = SCOPE_MODULES.get(scope)
            if module is None:
                self.report.warn(
                    scope, "scope_not_available", f"{scope} sync is not available yet."
                )
                continue
            try:
                await module(self)
            except steps.ScopeFailed as exc:
                self.report.failed_scopes.append(scope)
                self.report.error = {"scope": scope, "code": exc.code, "message": exc.message}
                continue
            self.report.done_scopes.append(scope)
            if (
                scope == scope_users.SCOPE
                and self.users_changed
                and scope_groups.SCOPE not in scopes
                and self.rules.active(scope_groups.SECTION) is not None
            ):
                scopes.append(scope_groups.SCOPE)
                await self._add_scope(scope_groups.SCOPE)

    async def _add_scope(self, scope: str) -> None:
        async with session_scope(self.runtime.sessionmaker) as session:
            run = await runs_repo.get(session, self.run_id, for_update=True)
            if run is not None and scope not in run.scopes:
                run.scopes = [*run.scopes, scope]

    async def _outstanding(self, session: AsyncSession) -> None:
        """A real run reports every failure still outstanding for the scopes it ran, also of
        objects it did not read again, and its counts agree."""
        scopes = self.report.done_scopes + self.report.failed_scopes
        if self.dry_run or self.trigger == "cleanup" or not scopes:
            return
        rows = await runs_repo.outstanding(
            session, self.pbx_id, scopes, steps.MAX_REPORTED_FAILURES
        )
        self.report.failures = [
            {
                "scope": f.scope,
                "source_id": f.entra_id,
                "display_name": f.display_name,
                "code": f.code,
                "message": f.message,
                "first_failed_at": f.failed_at.isoformat(),
            }
            for f in rows
        ]
        for scope in self.report.done_scopes:
            if scope in self.report.counts:
                self.report.counts[scope]["failed"] = await runs_repo.count_failures(
                    session, self.pbx_id, scope, NOT_COUNTED.get(scope, frozenset())
                )

    def _status(self) -> str:
        if self.report.failed_scopes:
            return "failed"
        if self.report.held:
            return "held"
        if self.report.failures:
            return "partial"
        return "succeeded"

    def _held(self) -> dict[str, Any] | None:
        if self.approved is None:
            return self.report.held
        done = {**self.approved}
        for key, scope, name in (
            ("extensions", "users", "deleted"),
            ("extension_groups", "groups", "deleted_groups"),
            ("contacts", "contacts", "deleted_contacts"),
        ):
            if self.approved.get(key) and scope in self.report.done_scopes:
                done[name] = self.report.counts.get(scope, {}).get("deleted", 0)
        return done

    async def _finish(self) -> str:
        async with session_scope(self.runtime.sessionmaker) as session:
            await self._outstanding(session)
            status = self._status()
            run = await runs_repo.get(session, self.run_id, for_update=True)
            if run is None:
                return status
            stats = self.graph.stats
            if stats.requests:
                self.report.counts["graph"] = {
                    "requests": stats.requests,
                    "throttled": stats.throttled,
                    "retries": stats.retries,
                    "waited_seconds": round(stats.waited, 3),
                }
            run.status = status
            run.finished_at = utcnow()
            run.counts = self.report.counts
            run.failures = self.report.failures[: steps.MAX_REPORTED_FAILURES]
            run.warnings = self.report.warnings
            run.held = self._held()
            run.error = self.report.error
            run.graph_requests = stats.requests
            run.progress = {
                "phase": "done",
                "done": run.progress.get("done", 0),
                "total": run.progress.get("total"),
            }
            if self.report.plan is not None:
                run.plan = {**(run.plan or {}), **self.report.plan}
            run.locked_by = None
            run.locked_until = None
        return status
