"""Executing one run: per scope fetch → plan → guard → apply (one transaction) → report."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, TypeVar

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app import metrics
from app.db import session_scope, utcnow
from app.directory import repository as directory_repo
from app.directory.models import Extension, ExtensionGroup, ExtensionGroupMember
from app.graph.auth import TokenError
from app.graph.client import GraphClient
from app.graph.errors import GraphError
from app.integration import repository as integ_repo
from app.integration.models import SyncRule
from app.integration.schemas import DeletionGuard, GroupSyncRules, UserSyncRules
from app.integration.tokens import graph_for
from app.runtime import Runtime
from app.sync import repository as repo
from app.sync.apply_groups import apply_groups
from app.sync.apply_users import apply_users
from app.sync.fetch_groups import DELTA_RESOURCE as GROUPS_DELTA
from app.sync.fetch_groups import NESTING_RESOURCE, GroupFetch, fetch_groups, groups_of_users
from app.sync.fetch_users import GROUP_LINK_PREFIX, Progress, fetch_users
from app.sync.groups_model import PbxGroup
from app.sync.guard import over_bounds
from app.sync.models import SyncFailure, SyncRun
from app.sync.plan_groups import GroupPlan, GroupRules, plan_groups
from app.sync.plan_users import UserPlan, UserRules, plan_users
from app.sync.users_model import PbxExtension
from app.tenants.models import Pbx

log = logging.getLogger("pbx_entra.sync")
MAX_REPORTED_FAILURES = 1000
# New synced users up to this many have their groups looked up one by one (transitiveMemberOf);
# more, and the group run lists every group again.
USER_LOOKUP_MAX = 50


class FetchResult(Protocol):
    warnings: list[dict[str, str]]


F = TypeVar("F", bound=FetchResult)


class ScopeFailed(Exception):
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


def user_rules(config: dict[str, Any]) -> UserRules:
    cfg = UserSyncRules.model_validate(config)
    return UserRules(
        range_mode=cfg.range.mode,
        user_types=frozenset(cfg.range.user_types),
        group_ids=frozenset(cfg.range.group_ids),
        auto_delete_out_of_range=cfg.auto_delete_out_of_range,
        number_mode=cfg.number.mode,
        number_start=cfg.number.start,
        number_property=cfg.number.property,
        delete_when=frozenset(cfg.delete_when),
        associate_by_email=cfg.associate_by_email,
        send_welcome_email=cfg.send_welcome_email,
    )


def group_rules(config: dict[str, Any]) -> GroupRules:
    cfg = GroupSyncRules.model_validate(config)
    return GroupRules(
        range_mode=cfg.range.mode,
        types=frozenset(cfg.range.types),
        group_ids=frozenset(cfg.range.group_ids),
        auto_delete_out_of_range=cfg.auto_delete_out_of_range,
    )


async def current_groups(session: AsyncSession, pbx_id: str) -> list[PbxGroup]:
    rows = (
        await session.execute(
            select(
                ExtensionGroup.id,
                ExtensionGroup.name,
                ExtensionGroup.managed_by,
                ExtensionGroup.entra_id,
                ExtensionGroup.former_entra_id,
            ).where(ExtensionGroup.pbx_id == pbx_id)
        )
    ).all()
    members: dict[str, set[str]] = {row[0]: set() for row in rows}
    stmt = (
        select(ExtensionGroupMember.group_id, ExtensionGroupMember.extension_id)
        .join(ExtensionGroup, ExtensionGroup.id == ExtensionGroupMember.group_id)
        .where(ExtensionGroup.pbx_id == pbx_id)
    )
    for group_id, ext_id in await session.execute(stmt):
        members[group_id].add(ext_id)
    return [PbxGroup(*row, member_ids=frozenset(members[row[0]])) for row in rows]


async def synced_extension_map(session: AsyncSession, pbx_id: str) -> dict[str, str]:
    """Entra user id -> extension id of the synced extensions (frozen ones too: a paused user
    sync keeps its people in their groups)."""
    stmt = select(Extension.entra_id, Extension.id).where(
        Extension.pbx_id == pbx_id,
        Extension.managed_by.in_(("entra", "entra_frozen")),
        Extension.entra_id.is_not(None),
    )
    return {str(entra_id): ext_id for entra_id, ext_id in await session.execute(stmt)}


async def current_extensions(session: AsyncSession, pbx_id: str) -> list[PbxExtension]:
    names = [f.name for f in fields(PbxExtension)]
    cols = [getattr(Extension, name) for name in names]
    rows = await session.execute(select(*cols).where(Extension.pbx_id == pbx_id))
    return [PbxExtension(**dict(zip(names, row, strict=True))) for row in rows]


async def touched_extensions(
    session: AsyncSession, pbx_id: str, entra_ids: set[str], email_keys: set[str]
) -> list[PbxExtension]:
    """The extensions that follow, followed, or share an address with these users."""
    names = [f.name for f in fields(PbxExtension)]
    cols = [getattr(Extension, name) for name in names]
    found: dict[str, PbxExtension] = {}
    for column, values in (
        (Extension.entra_id, entra_ids),
        (Extension.former_entra_id, entra_ids),
        (Extension.email_key, email_keys),
    ):
        ordered = sorted(values)
        for i in range(0, len(ordered), 500):
            stmt = select(*cols).where(Extension.pbx_id == pbx_id, column.in_(ordered[i : i + 500]))
            for row in await session.execute(stmt):
                ext = PbxExtension(**dict(zip(names, row, strict=True)))
                found[ext.id] = ext
    return list(found.values())


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


class RunExecutor:
    def __init__(self, runtime: Runtime, run: SyncRun, graph: GraphClient | None = None) -> None:
        self.runtime = runtime
        self.run_id = run.id
        self.pbx_id = run.pbx_id
        self.trigger = run.trigger
        self.dry_run = run.dry_run
        self.scopes = list(run.scopes)
        self.plan_payload = dict(run.plan or {})
        self.graph = graph or graph_for(runtime, run.pbx_id)
        self.report = Report()
        self.timings: dict[str, float] = {}
        # Users that became synced extensions in this run, and whether any stopped being one:
        # the groups' memberships follow in the same run.
        self.new_synced_users: set[str] = set()
        self.users_changed = False

    async def execute(self) -> str:
        started = time.perf_counter()
        if self.trigger == "cleanup":
            from app.sync.cleanup import run_cleanup

            await run_cleanup(self)
        else:
            scopes = list(self.scopes)
            for scope in scopes:
                try:
                    if scope == "users":
                        if self.trigger != "on_demand":
                            await self.sync_users()
                        # Users provisioned on demand: their own plans, in this run.
                        from app.sync.provision import run_on_demand

                        await run_on_demand(self)
                        if (
                            self.users_changed
                            and "groups" not in scopes
                            and await self._group_sync_active()
                        ):
                            scopes.append("groups")
                            await self._add_scope("groups")
                    elif scope == "groups":
                        await self.sync_groups()
                    else:
                        self.report.warnings.append(
                            {
                                "scope": scope,
                                "source_id": None,
                                "code": "scope_not_available",
                                "message": f"{scope} sync is not available yet.",
                            }
                        )
                except ScopeFailed as exc:
                    self.report.failed_scopes.append(scope)
                    self.report.error = {"scope": scope, "code": exc.code, "message": exc.message}
        status = self._status()
        await self._finish(status)
        self.timings["total"] = time.perf_counter() - started
        metrics.sync_runs.labels(self.trigger, status).inc()
        return status

    def _status(self) -> str:
        if self.report.failed_scopes:
            return "failed"
        if self.report.held:
            return "held"
        if self.report.failures:
            return "partial"
        return "succeeded"

    async def _finish(self, status: str) -> None:
        async with session_scope(self.runtime.sessionmaker) as session:
            run = await repo.get(session, self.run_id, for_update=True)
            if run is None:
                return
            run.status = status
            run.finished_at = utcnow()
            run.counts = self.report.counts
            run.failures = self.report.failures[:MAX_REPORTED_FAILURES]
            run.warnings = self.report.warnings
            run.held = self.report.held
            run.error = self.report.error
            run.graph_requests = self.graph.stats.requests
            stats = self.graph.stats
            if stats.requests:
                self.report.counts["graph"] = {
                    "requests": stats.requests,
                    "throttled": stats.throttled,
                    "retries": stats.retries,
                    "waited_seconds": round(stats.waited, 3),
                }
                run.counts = self.report.counts
            run.progress = {
                "phase": "done",
                "done": run.progress.get("done", 0),
                "total": run.progress.get("total"),
            }
            if self.report.plan is not None:
                run.plan = {**(run.plan or {}), **self.report.plan}
            run.locked_by = None
            run.locked_until = None

    async def _worth_retrying(
        self, session: AsyncSession, failed: dict[str, SyncFailure], max_extensions: int
    ) -> set[str]:
        """Failed users whose obstacle is on the PBX side and is gone now: re-read them by id.
        (Failures that only Entra can fix come back through the delta round anyway.)"""
        if not failed:
            return set()
        numbers = await directory_repo.numbers_in_use(session, self.pbx_id)
        emails = await directory_repo.email_keys_in_use(session, self.pbx_id)
        free_seats = max_extensions - len(numbers)
        retry = set()
        for entra_id in sorted(failed):
            f = failed[entra_id]
            if f.code == "capacity_exceeded" and free_seats > 0:
                free_seats -= 1
                retry.add(entra_id)
            elif (
                f.code == "extension_number_taken" and f.conflict and f.conflict not in numbers
            ) or (f.code == "email_taken" and f.conflict and f.conflict not in emails):
                retry.add(entra_id)
        return retry

    async def _section(
        self, session: AsyncSession, name: str, scope: str
    ) -> tuple[SyncRule, dict[str, Any]] | None:
        """The section's rule and the deletion guard, or None (and a warning) when it is off."""
        rules_rows = await integ_repo.rules(session, self.pbx_id)
        rule = rules_rows.get(name)
        if rule is None or rule.state != "active":
            self.report.warnings.append(
                {
                    "scope": scope,
                    "source_id": None,
                    "code": "section_not_active",
                    "message": f"{scope.title()} sync is not active.",
                }
            )
            return None
        guard = DeletionGuard.model_validate(
            rules_rows["deletion_guard"].config if "deletion_guard" in rules_rows else {}
        ).model_dump()
        return rule, guard

    async def _fetch(
        self, scope: str, read: Callable[[Progress], Awaitable[F]], *, timing: str = "fetch"
    ) -> F:
        """The fetch phase of a scope: progress written as it goes, Graph and token failures
        turned into the scope's failure (nothing of it is applied), warnings reported."""
        await set_progress(self.runtime, self.run_id, scope, 0, None)
        started = time.perf_counter()
        progress = ProgressWriter(self.runtime, self.run_id, scope)
        try:
            fetched = await read(progress.report)
        except GraphError as exc:
            raise ScopeFailed("graph_error", f"{exc.status} {exc.code}: {exc.message}") from None
        except TokenError as exc:
            raise ScopeFailed("token_error", f"{exc.code}: {exc.message}") from None
        finally:
            await progress.close()
        self.timings[timing] = time.perf_counter() - started
        self.report.warnings += [{"scope": scope, "source_id": None, **w} for w in fetched.warnings]
        return fetched

    # Users --------------------------------------------------------------------------------

    async def sync_users(self) -> None:
        async with session_scope(self.runtime.sessionmaker) as session:
            section = await self._section(session, "user_sync", "users")
            if section is None:
                return
            rule, guard = section
            rules = user_rules(rule.config)
            delta_link = await repo.delta_link(session, self.pbx_id, "users")
            failed = await repo.failures(session, self.pbx_id, "users")
            pbx = await session.get(Pbx, self.pbx_id)
            assert pbx is not None
            max_extensions = pbx.max_extensions
            full = (
                rule.needs_full_sync or self.trigger in ("initial", "resync") or delta_link is None
            )
            managed_ids: set[str] = set()
            retry: set[str] = set()
            group_links: dict[str, str] = {}
            if not full:
                if rules.range_mode == "groups":
                    managed_ids = await directory_repo.synced_entra_ids(session, self.pbx_id)
                    group_links = await repo.delta_links(session, self.pbx_id, GROUP_LINK_PREFIX)
                retry = await self._worth_retrying(session, failed, max_extensions)
        fetched = await self._fetch(
            "users",
            lambda progress: fetch_users(
                self.graph,
                rules,
                delta_link=delta_link,
                full=full,
                retry_ids=retry,
                managed_ids=managed_ids,
                progress=progress,
                group_links=group_links,
                failed_ids=set(failed),
            ),
        )
        seen = len(fetched.input.users) + len(fetched.input.removed)
        await set_progress(self.runtime, self.run_id, "applying", seen, seen)

        async with session_scope(self.runtime.sessionmaker) as session:
            t1 = time.perf_counter()
            if fetched.full:
                current = await current_extensions(session, self.pbx_id)
                numbers, seats = None, None
                synced = sum(1 for e in current if e.managed_by == "entra")
            else:
                # An incremental run reads only the extensions its users touch.
                ids = set(fetched.input.users) | set(fetched.input.removed)
                emails = {(u.mail or u.upn or "").lower() for u in fetched.input.users.values()} - {
                    ""
                }
                current = await touched_extensions(session, self.pbx_id, ids, emails)
                numbers = await directory_repo.numbers_in_use(session, self.pbx_id)
                seats = len(numbers)
                synced = await directory_repo.count_synced(session, self.pbx_id)
            plan = plan_users(
                fetched.input,
                current,
                rules,
                max_extensions,
                numbers_in_use=numbers,
                seats_used=seats,
            )
            self.timings["plan"] = time.perf_counter() - t1
            hold = over_bounds(len(plan.deletes), synced, guard)
            if hold:
                # Held deletions keep their numbers, seats and addresses until approved.
                plan = plan_users(
                    fetched.input,
                    current,
                    rules,
                    max_extensions,
                    free_deleted=False,
                    numbers_in_use=numbers,
                    seats_used=seats,
                )
            self._report_users(plan, hold)
            if self.dry_run:
                self.report.plan = {**(self.report.plan or {}), "users": _plan_summary(plan)}
                return
            t2 = time.perf_counter()
            created = await apply_users(
                session,
                pbx_id=self.pbx_id,
                run_id=self.run_id,
                plan=plan,
                apply_deletes=not hold,
                send_welcome=rules.send_welcome_email,
                mail_configured=self.runtime.settings.smtp_url is not None,
                known_failures=set(failed),
            )
            if hold:
                await self._hold(session)
            self.new_synced_users = {c.entra_id for c in plan.creates} | {
                u.entra_id for u in plan.updates if u.associate
            }
            self.users_changed = bool(
                self.new_synced_users or plan.releases or (plan.deletes and not hold)
            )
            if fetched.delta_link:
                await repo.save_delta_link(session, self.pbx_id, "users", fetched.delta_link)
            if fetched.replace_group_links or rules.range_mode != "groups":
                await repo.drop_delta_links(session, self.pbx_id, GROUP_LINK_PREFIX)
            for resource, link in fetched.group_links.items():
                await repo.save_delta_link(session, self.pbx_id, resource, link)
            rule_row = await session.get(SyncRule, (self.pbx_id, "user_sync"))
            if rule_row is not None:
                # Held deletions are not in the next delta round: list everything next time.
                rule_row.needs_full_sync = hold
            self.timings["apply"] = time.perf_counter() - t2
        for action, n in (
            ("create", created),
            ("update", len(plan.updates)),
            ("delete", 0 if hold else len(plan.deletes)),
        ):
            if n:
                metrics.sync_objects.labels("users", action).inc(n)
        if created and rules.send_welcome_email:
            from app.sync.mail import send_pending

            await send_pending(self.runtime, self.pbx_id)

    def _report_users(self, plan: UserPlan, hold: bool) -> None:
        counts = plan.counts()
        if hold:
            counts["deleted"] = 0
        self.report.counts["users"] = counts
        self.report.failures += [
            {
                "scope": "users",
                "source_id": f.entra_id,
                "display_name": f.display_name,
                "code": f.code,
                "message": f.message,
            }
            for f in plan.failures
        ]
        if hold:
            self.report.held = {
                "extensions": [
                    {
                        "id": r.ext.id,
                        "number": r.ext.number,
                        "entra_id": r.ext.entra_id,
                        "reason": r.reason,
                    }
                    for r in plan.deletes
                ],
                "extension_groups": [],
                "contacts": 0,
            }

    async def _hold(self, session: AsyncSession) -> None:
        """Deletions wait for approval; a newer held run replaces (cancels) an older one."""
        integ = await integ_repo.get(session, self.pbx_id, for_update=True)
        if integ is None:
            return
        if integ.held_run_id and integ.held_run_id != self.run_id:
            older = await repo.get(session, integ.held_run_id, for_update=True)
            if older is not None and older.status == "held":
                older.status = "cancelled"
        integ.held_run_id = self.run_id

    # Groups -------------------------------------------------------------------------------

    async def _group_sync_active(self) -> bool:
        async with session_scope(self.runtime.sessionmaker) as session:
            rule = (await integ_repo.rules(session, self.pbx_id)).get("group_sync")
            return rule is not None and rule.state == "active"

    async def _add_scope(self, scope: str) -> None:
        async with session_scope(self.runtime.sessionmaker) as session:
            run = await repo.get(session, self.run_id, for_update=True)
            if run is not None and scope not in run.scopes:
                run.scopes = [*run.scopes, scope]

    async def sync_groups(self) -> None:
        async with session_scope(self.runtime.sessionmaker) as session:
            section = await self._section(session, "group_sync", "groups")
            if section is None:
                return
            rule, guard = section
            rules = group_rules(rule.config)
            delta_link = await repo.delta_link(session, self.pbx_id, GROUPS_DELTA)
            nesting_text = await repo.delta_link(session, self.pbx_id, NESTING_RESOURCE)
            failed = await repo.failures(session, self.pbx_id, "groups")
            pbx = await session.get(Pbx, self.pbx_id)
            assert pbx is not None
            max_groups = pbx.max_extension_groups
            current = await current_groups(session, self.pbx_id)
        synced_ids = {g.entra_id for g in current if g.managed_by == "entra" and g.entra_id}
        # Groups that failed for want of a seat are listed again once a seat is free.
        seat_freed = len(current) < max_groups and any(
            f.code == "group_limit_reached" for f in failed.values()
        )
        full = (
            rule.needs_full_sync
            or self.trigger in ("initial", "resync")
            or delta_link is None
            or nesting_text is None
            or seat_freed
            or len(self.new_synced_users) > USER_LOOKUP_MAX
        )
        nesting: dict[str, list[str]] = json.loads(nesting_text) if nesting_text else {}

        async def read(progress: Progress) -> GroupFetch:
            expand: set[str] = set()
            if not full and self.new_synced_users:
                expand = await groups_of_users(self.graph, self.new_synced_users) & synced_ids
            return await fetch_groups(
                self.graph,
                rules,
                delta_link=delta_link,
                full=full,
                synced_ids=synced_ids,
                nesting=nesting,
                expand_ids=expand,
                progress=progress,
            )

        fetched = await self._fetch("groups", read, timing="groups_fetch")
        seen = len(fetched.input.groups) + len(fetched.input.removed)
        await set_progress(self.runtime, self.run_id, "applying", seen, seen)

        async with session_scope(self.runtime.sessionmaker) as session:
            t1 = time.perf_counter()
            # Read again inside the apply's transaction: the user scope may have just changed
            # the extensions (deleted ones left their groups with them).
            current = await current_groups(session, self.pbx_id)
            extensions = await synced_extension_map(session, self.pbx_id)
            plan = plan_groups(fetched.input, current, extensions, rules, max_groups)
            synced = sum(1 for g in current if g.managed_by == "entra")
            hold = over_bounds(len(plan.deletes), synced, guard)
            if hold:
                # Held deletions keep their seats and names until approved.
                plan = plan_groups(
                    fetched.input, current, extensions, rules, max_groups, free_deleted=False
                )
            self.timings["groups_plan"] = time.perf_counter() - t1
            self._report_groups(plan, hold)
            if self.dry_run:
                self.report.plan = {**(self.report.plan or {}), "groups": _group_summary(plan)}
                return
            t2 = time.perf_counter()
            await apply_groups(
                session,
                pbx_id=self.pbx_id,
                run_id=self.run_id,
                plan=plan,
                apply_deletes=not hold,
                known_failures=set(failed),
            )
            if hold:
                await self._hold(session)
            if fetched.delta_link:
                await repo.save_delta_link(session, self.pbx_id, GROUPS_DELTA, fetched.delta_link)
                await repo.save_delta_link(
                    session,
                    self.pbx_id,
                    NESTING_RESOURCE,
                    json.dumps(fetched.nesting, sort_keys=True, separators=(",", ":")),
                )
            rule_row = await session.get(SyncRule, (self.pbx_id, "group_sync"))
            if rule_row is not None:
                # Held deletions are not in the next delta round: list everything next time.
                rule_row.needs_full_sync = hold
            self.timings["groups_apply"] = time.perf_counter() - t2
        for action, n in (
            ("create", len(plan.creates)),
            ("update", len(plan.updates) + len(plan.releases)),
            ("delete", 0 if hold else len(plan.deletes)),
        ):
            if n:
                metrics.sync_objects.labels("groups", action).inc(n)

    def _report_groups(self, plan: GroupPlan, hold: bool) -> None:
        counts = plan.counts()
        if hold:
            counts["deleted"] = 0
        self.report.counts["groups"] = counts
        self.report.failures += [
            {
                "scope": "groups",
                "source_id": f.entra_id,
                "display_name": f.display_name,
                "code": f.code,
                "message": f.message,
            }
            for f in plan.failures
        ]
        self.report.warnings += [
            {"scope": "groups", "source_id": w.entra_id, "code": w.code, "message": w.message}
            for w in plan.warnings
        ]
        if hold:
            held = self.report.held or {"extensions": [], "extension_groups": [], "contacts": 0}
            held["extension_groups"] = [
                {
                    "id": r.group.id,
                    "name": r.group.name,
                    "entra_id": r.group.entra_id,
                    "reason": r.reason,
                }
                for r in plan.deletes
            ]
            self.report.held = held


def _group_summary(plan: GroupPlan) -> dict[str, Any]:
    return {
        "creates": [
            {"entra_id": c.entra_id, "name": c.name, "member_ids": list(c.member_ids)}
            for c in plan.creates
        ],
        "updates": [
            {
                "extension_group_id": u.group.id,
                "entra_id": u.entra_id,
                "adopt": u.adopt,
                "name": [u.group.name, u.name] if u.name is not None else None,
                "members_added": list(u.added),
                "members_removed": list(u.removed),
            }
            for u in plan.updates
        ],
        "deletes": [
            {"extension_group_id": r.group.id, "entra_id": r.group.entra_id, "reason": r.reason}
            for r in plan.deletes
        ],
        "releases": [
            {"extension_group_id": r.group.id, "entra_id": r.group.entra_id, "reason": r.reason}
            for r in plan.releases
        ],
    }


def _plan_summary(plan: UserPlan) -> dict[str, Any]:
    return {
        "creates": [
            {
                "entra_id": c.entra_id,
                "number": c.number,
                "display_name": c.display_name,
                "email": c.email,
            }
            for c in plan.creates
        ],
        "updates": [
            {
                "extension_id": u.ext.id,
                "entra_id": u.entra_id,
                "associate": u.associate,
                "fields": {k: list(v) for k, v in u.fields.items()},
            }
            for u in plan.updates
        ],
        "deletes": [
            {"extension_id": r.ext.id, "entra_id": r.ext.entra_id, "reason": r.reason}
            for r in plan.deletes
        ],
        "releases": [
            {"extension_id": r.ext.id, "entra_id": r.ext.entra_id, "reason": r.reason}
            for r in plan.releases
        ],
    }
