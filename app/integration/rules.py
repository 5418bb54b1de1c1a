"""The rule sections (user sync, group sync, contacts, presence, SSO, deletion guard)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.directory import contacts_repository as contacts_repo
from app.errors import Conflict, Unprocessable
from app.graph.auth import TokenError
from app.graph.errors import GraphError
from app.integration import repository as repo
from app.integration.models import SyncRule
from app.integration.schemas import SECTION_MODELS
from app.integration.service import refuse_if_disabled
from app.integration.tokens import graph_for
from app.runs import queue as runs
from app.runs import repository as runs_repo
from app.runs.scopes import BY_SECTION
from app.runtime import Runtime
from app.tenants.models import Pbx

# Sections the service cannot carry out yet: refused on PUT with 422 `not_available` (never
# accepted and then reported as done). The capability that builds one removes it here.
NOT_AVAILABLE: frozenset[str] = frozenset()


async def _rule(session: AsyncSession, pbx_id: str, section: str) -> SyncRule | None:
    return (await repo.rules(session, pbx_id)).get(section)


async def _summary(session: AsyncSession, pbx_id: str, section: str) -> dict[str, Any] | None:
    if section not in BY_SECTION:
        return None
    info = BY_SECTION[section]
    return {
        "synced": await repo.count_synced(session, pbx_id, info.models[0]),
        "failed": await runs_repo.count_failures(session, pbx_id, info.scope),
        "last_run_id": await runs_repo.last_finished_id(session, pbx_id),
    }


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


async def _beyond_user_sync(
    session: AsyncSession, runtime: Runtime, pbx_id: str, group_ids: list[str]
) -> list[dict[str, Any]]:
    """The chosen contacts groups that reach beyond the user-sync range: their members who are
    not synced users get no contacts (the range is never widened). Empty when Graph can't say."""
    synced = set(await contacts_repo.synced_extension_ids_by_user(session, pbx_id))
    graph = graph_for(runtime, pbx_id)
    warnings: list[dict[str, Any]] = []
    for gid in sorted(set(group_ids)):
        members: set[str] = set()
        try:
            async for page in graph.pages(
                f"/groups/{gid}/transitiveMembers/microsoft.graph.user",
                {"$select": "id", "$top": "999"},
            ):
                members.update(str(u["id"]) for u in page.items if u.get("id"))
        except (GraphError, TokenError):
            continue
        beyond = len(members - synced)
        if beyond:
            warnings.append(
                {
                    "code": "contacts_range_beyond_user_sync",
                    "source_id": gid,
                    "message": f"{beyond} member(s) of this group are not synced users: their "
                    "contacts are not synced (widen the user sync range to include them).",
                }
            )
    return warnings


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
            if personal_range.get("mode") == "groups":
                body["warnings"] = await _beyond_user_sync(
                    session, runtime, pbx.id, list(personal_range["group_ids"])
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
    if section in NOT_AVAILABLE and enabled:
        raise Unprocessable(
            f"{section.replace('_', '-')} is not available in this version of the service.",
            code="not_available",
        )
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
    if section in BY_SECTION and rule.state == "active" and not enabled:
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
        if section in BY_SECTION and was == "off" and enabled:
            run, _ = await runs.request_run(session, pbx.id, "initial", [BY_SECTION[section].scope])
            run_id = run.id
    await session.flush()
    return await get_section(session, runtime, pbx, section), run_id


async def pause(session: AsyncSession, pbx: Pbx, section: str, delete: bool) -> dict[str, Any]:
    integ = await repo.get(session, pbx.id, for_update=True)
    refuse_if_disabled(integ)
    rule = await _rule(session, pbx.id, section)
    if rule is None or rule.state != "active":
        raise Conflict("Only an active section can be paused.", code="section_not_active")
    info = BY_SECTION[section]
    rule.state = "paused"
    rule.updated_at = utcnow()
    await runs.drop_scope(session, pbx.id, info.scope)
    await repo.set_managed_by(session, pbx.id, info.kind, ("entra",), "entra_frozen")
    cleanup_id = None
    if delete:
        run, _ = await runs.request_run(
            session, pbx.id, "cleanup", [info.scope], plan={"cleanup": [info.kind]}
        )
        cleanup_id = run.id
    await session.flush()
    return {"state": "paused", "cleanup_run_id": cleanup_id}


async def resume(session: AsyncSession, pbx: Pbx, section: str) -> dict[str, Any]:
    integ = await repo.get(session, pbx.id, for_update=True)
    refuse_if_disabled(integ)
    rule = await _rule(session, pbx.id, section)
    if rule is None or rule.state != "paused":
        raise Conflict("Only a paused section can be resumed.", code="section_not_paused")
    info = BY_SECTION[section]
    rule.state = "active"
    rule.needs_full_sync = True
    rule.updated_at = utcnow()
    await repo.set_managed_by(session, pbx.id, info.kind, ("entra_frozen",), "entra")
    await runs_repo.drop_delta_links(session, pbx.id, info.scope)
    run, _ = await runs.request_run(session, pbx.id, "resync", [info.scope])
    await session.flush()
    return {"state": "active", "run_id": run.id}
