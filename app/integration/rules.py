"""The rule sections (user sync, group sync, contacts, presence, SSO, deletion guard)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.directory.models import Extension, ExtensionGroup, Phonebook
from app.errors import Conflict, Unprocessable
from app.graph.auth import TokenError
from app.graph.errors import GraphError
from app.integration import repository as repo
from app.integration.models import SyncRule
from app.integration.schemas import SECTION_MODELS
from app.integration.service import refuse_if_disabled
from app.integration.tokens import graph_for
from app.runtime import Runtime
from app.sync import repository as sync_repo
from app.sync import runs
from app.sync.models import SyncFailure, SyncRun
from app.tenants.models import Pbx

# Sections that are run scopes, with the directory kind they own and the pause flag's name.
SCOPED: dict[str, tuple[str, str, Any, str]] = {
    "user_sync": ("users", "extensions", Extension, "delete_extensions"),
    "group_sync": ("groups", "extension_groups", ExtensionGroup, "delete_extension_groups"),
    "contacts_sync": ("contacts", "phonebooks", Phonebook, "delete_contacts"),
}


async def _rule(session: AsyncSession, pbx_id: str, section: str) -> SyncRule | None:
    return (await repo.rules(session, pbx_id)).get(section)


async def _summary(session: AsyncSession, pbx_id: str, section: str) -> dict[str, Any] | None:
    if section not in SCOPED:
        return None
    scope, _, model, _ = SCOPED[section]
    synced = (
        await session.execute(
            select(func.count())
            .select_from(model)
            .where(model.pbx_id == pbx_id, model.managed_by != "pbx")
        )
    ).scalar_one()
    failed = (
        await session.execute(
            select(func.count())
            .select_from(SyncFailure)
            .where(SyncFailure.pbx_id == pbx_id, SyncFailure.scope == scope)
        )
    ).scalar_one()
    last = (
        await session.execute(
            select(SyncRun.id)
            .where(
                SyncRun.pbx_id == pbx_id,
                SyncRun.dry_run.is_(False),
                SyncRun.finished_at.is_not(None),
            )
            .order_by(SyncRun.finished_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    return {"synced": int(synced), "failed": int(failed), "last_run_id": last}


async def _group_names(runtime: Runtime, pbx_id: str, ids: list[str]) -> list[dict[str, Any]]:
    """Chosen groups with their display names; `missing` when Entra no longer has them."""
    if not ids:
        return []
    try:
        answers = await graph_for(runtime, pbx_id).get_each(
            [f"/groups/{gid}?$select=id,displayName" for gid in ids]
        )
    except (GraphError, TokenError):
        return [{"id": gid, "display_name": None, "missing": None} for gid in ids]
    return [
        {
            "id": gid,
            "display_name": body.get("displayName")
            if status == 200 and isinstance(body, dict)
            else None,
            "missing": True if status == 404 else (False if status == 200 else None),
        }
        for gid, (status, body) in zip(ids, answers, strict=True)
    ]


async def _mailbox_names(
    runtime: Runtime, pbx_id: str, mailboxes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Chosen shared mailboxes with their display names; `missing` when Entra no longer has
    them (None when Graph could not be asked)."""
    if not mailboxes:
        return []
    ids = [str(m["mailbox_id"]) for m in mailboxes]
    try:
        answers = await graph_for(runtime, pbx_id).get_each(
            [f"/users/{mid}?$select=id,displayName" for mid in ids]
        )
    except (GraphError, TokenError):
        return [{**m, "display_name": None, "missing": None} for m in mailboxes]
    return [
        {
            **m,
            "display_name": body.get("displayName")
            if status == 200 and isinstance(body, dict)
            else None,
            "missing": True if status == 404 else (False if status == 200 else None),
        }
        for m, (status, body) in zip(mailboxes, answers, strict=True)
    ]


async def get_section(
    session: AsyncSession, runtime: Runtime, pbx: Pbx, section: str
) -> dict[str, Any]:
    rule = await _rule(session, pbx.id, section)
    model: type[BaseModel] = SECTION_MODELS[section]
    body = model.model_validate(rule.config).model_dump() if rule else model().model_dump()
    if section != "deletion_guard":
        body["state"] = rule.state if rule else "off"
    summary = await _summary(session, pbx.id, section)
    if summary is not None:
        body["summary"] = summary
    integ = await repo.get(session, pbx.id)
    range_ = body.get("range")
    if (
        isinstance(range_, dict)
        and range_.get("group_ids")
        and integ is not None
        and integ.status == "connected"
    ):
        range_["groups"] = await _group_names(runtime, pbx.id, list(range_["group_ids"]))
    if section == "contacts_sync" and integ is not None and integ.status == "connected":
        personal_range = body["personal"]["range"]
        if personal_range.get("group_ids"):
            personal_range["groups"] = await _group_names(
                runtime, pbx.id, list(personal_range["group_ids"])
            )
        body["shared"]["mailboxes"] = await _mailbox_names(
            runtime, pbx.id, list(body["shared"]["mailboxes"])
        )
    return body


async def put_section(
    session: AsyncSession, runtime: Runtime, pbx: Pbx, section: str, body: BaseModel
) -> tuple[dict[str, Any], str | None]:
    """Save a section; the first save that turns a run section on queues the initial run."""
    integ = await repo.get(session, pbx.id, for_update=True)
    refuse_if_disabled(integ)
    if integ is None or integ.status not in ("connected", "error"):
        raise Conflict(
            "Connect the integration before setting sync rules.", code="integration_not_connected"
        )
    rule = await _rule(session, pbx.id, section)
    config = body.model_dump()
    enabled = bool(config.get("enabled", False))
    if rule is not None and rule.state == "paused":
        raise Conflict(
            "This section is paused: resume it before changing its rules.", code="sync_paused"
        )
    if rule is None:
        rule = SyncRule(
            pbx_id=pbx.id,
            section=section,
            state="off",
            config=config,
            needs_full_sync=True,
            updated_at=utcnow(),
        )
        session.add(rule)
    if section in SCOPED and rule.state == "active" and not enabled:
        raise Unprocessable(
            "Use the pause endpoint to turn an active section off (it asks whether to delete or keep).",
            code="use_pause_endpoint",
        )
    if rule.config != config:
        rule.needs_full_sync = True
    rule.config = config
    rule.updated_at = utcnow()
    run_id = None
    if section != "deletion_guard":
        was = rule.state
        rule.state = "active" if enabled else "off"
        if section in SCOPED and was == "off" and enabled:
            run, _ = await runs.enqueue(session, pbx.id, "initial", [SCOPED[section][0]])
            run_id = run.id
    await session.flush()
    return await get_section(session, runtime, pbx, section), run_id


async def pause(session: AsyncSession, pbx: Pbx, section: str, delete: bool) -> dict[str, Any]:
    integ = await repo.get(session, pbx.id, for_update=True)
    refuse_if_disabled(integ)
    rule = await _rule(session, pbx.id, section)
    if rule is None or rule.state != "active":
        raise Conflict("Only an active section can be paused.", code="section_not_active")
    scope, kind, _, _ = SCOPED[section]
    rule.state = "paused"
    rule.updated_at = utcnow()
    await _drop_scope_from_queue(session, pbx.id, scope)
    await repo.set_managed_by(session, pbx.id, kind, ("entra",), "entra_frozen")
    cleanup_id = None
    if delete:
        run, _ = await runs.enqueue(session, pbx.id, "cleanup", [scope], plan={"cleanup": [kind]})
        cleanup_id = run.id
    await session.flush()
    return {"state": "paused", "cleanup_run_id": cleanup_id}


async def resume(session: AsyncSession, pbx: Pbx, section: str) -> dict[str, Any]:
    integ = await repo.get(session, pbx.id, for_update=True)
    refuse_if_disabled(integ)
    rule = await _rule(session, pbx.id, section)
    if rule is None or rule.state != "paused":
        raise Conflict("Only a paused section can be resumed.", code="section_not_paused")
    scope, kind, _, _ = SCOPED[section]
    rule.state = "active"
    rule.needs_full_sync = True
    rule.updated_at = utcnow()
    await repo.set_managed_by(session, pbx.id, kind, ("entra_frozen",), "entra")
    await sync_repo.drop_delta_links(session, pbx.id, scope)
    run, _ = await runs.enqueue(session, pbx.id, "resync", [scope])
    await session.flush()
    return {"state": "active", "run_id": run.id}


async def _drop_scope_from_queue(session: AsyncSession, pbx_id: str, scope: str) -> None:
    waiting = await runs.queued_run(session, pbx_id)
    if waiting is None or scope not in waiting.scopes:
        return
    rest = [s for s in waiting.scopes if s != scope]
    if rest:
        waiting.scopes = rest
    else:
        waiting.status = "cancelled"
        waiting.finished_at = utcnow()
