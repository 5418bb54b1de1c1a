"""Why is this user (not) synced: one user's plan, step by step, made by the sync's own planner.

One Graph read for the user (plus its transitive groups when the range is by group), indexed
lookups on the PBX (by Entra id, former id, email, number; a count for the seats), then
`plan_users` for that user alone with a `Trace` of its verdicts. Nothing is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.directory import repository as directory_repo
from app.directory.models import Extension
from app.errors import Conflict, NotFound
from app.graph.client import GraphClient
from app.graph.errors import GraphError
from app.integration import repository as integ_repo
from app.integration.models import Integration, SyncRule
from app.runs import repository as repo
from app.sync.plan_users import (
    SYNCED_FIELDS,
    NumberSet,
    Trace,
    UserInput,
    UserPlan,
    UserRules,
    desired_fields,
    parse_number,
    plan_users,
)
from app.sync.rules import user_rules
from app.sync.schemas import (
    ExplainFailure,
    ExplainOutcome,
    ExplainStep,
    ExplainUser,
    UserExplainOut,
)
from app.sync.users_model import EntraUser, PbxExtension, user_select

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
PAGE_SIZE = 999


@dataclass
class Subject:
    """The one user as Entra knows it (or not), and the range groups it belongs to."""

    query: str
    entra_id: str | None
    user: EntraUser | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    # Range "groups": id -> display name of every group the user is in (transitively).
    groups: dict[str, str] | None = None


class NumberView:
    """The numbers in use as one user's plan asks about them: the auto-number candidates below
    the first free one (all in use), and the numbers looked up one by one. A question about any
    other number is a mistake of the caller, and says so."""

    def __init__(self, start: str, first_free: str | None, known: dict[str, bool]) -> None:
        self.start = int(start)
        self.width = len(start)
        self.first_free = first_free
        self.known = dict(known)

    def _candidate_below_free(self, number: str) -> bool:
        if self.first_free is None or not number.isdigit():
            return False
        n = int(number)
        return self.start <= n < int(self.first_free) and str(n).zfill(self.width) == number

    def __contains__(self, number: object) -> bool:
        assert isinstance(number, str)
        if number in self.known:
            return self.known[number]
        if number == self.first_free:
            return False
        if self._candidate_below_free(number):
            return True
        raise LookupError(f"number {number} was not looked up")

    def first_candidate_not_known_taken(self, n: int) -> int:
        """Where the auto-number scan from candidate `n` can go on: every candidate from the
        start below the first free one is taken."""
        if self.first_free is not None and self.start <= n < int(self.first_free):
            return int(self.first_free)
        return n

    def add(self, number: str) -> None:
        self.known[number] = True

    def discard(self, number: str) -> None:
        self.known[number] = False

    def copy(self) -> NumberView:
        return NumberView(str(self.start).zfill(self.width), self.first_free, self.known)


# Graph ---------------------------------------------------------------------------------------


def _number_property(rules: UserRules) -> str | None:
    return rules.number_property if rules.number_mode == "property" else None


async def read_user_by_id(
    graph: GraphClient, rules: UserRules, user_id: str
) -> tuple[EntraUser, dict[str, Any]] | None:
    select = user_select(rules.number_mode, rules.number_property)
    try:
        body = await graph.get(f"users/{user_id}", {"$select": select})
    except GraphError as exc:
        if exc.status in (400, 404):
            return None
        raise
    return EntraUser.from_graph(body, _number_property(rules)), body


async def _read_by_name(
    graph: GraphClient, rules: UserRules, query: str
) -> tuple[EntraUser, dict[str, Any]] | None:
    """By userPrincipalName or mail, in one request (a UPN match wins)."""
    select = user_select(rules.number_mode, rules.number_property)
    quoted = query.replace("'", "''")
    body = await graph.get(
        "users",
        {
            "$filter": f"userPrincipalName eq '{quoted}' or mail eq '{quoted}'",
            "$select": select,
            "$top": "5",
        },
    )
    items: list[dict[str, Any]] = body.get("value", [])
    if not items:
        return None
    items.sort(key=lambda i: str(i.get("userPrincipalName") or "").lower() != query.lower())
    return EntraUser.from_graph(items[0], _number_property(rules)), items[0]


async def user_groups(graph: GraphClient, user_id: str) -> dict[str, str]:
    """Every group the user belongs to, directly or through nesting: id -> display name."""
    found: dict[str, str] = {}
    async for page in graph.pages(
        f"users/{user_id}/transitiveMemberOf/microsoft.graph.group",
        {"$select": "id,displayName", "$top": str(PAGE_SIZE)},
    ):
        for item in page.items:
            found[item["id"]] = str(item.get("displayName") or item["id"])
    return found


async def read_subject(
    session: AsyncSession, graph: GraphClient, pbx_id: str, rules: UserRules, query: str
) -> Subject:
    """The user by Entra id, UPN or mail; when Entra has none, the extension that refers to it
    (by Entra id, former id, or the address asked for) says which user it was."""
    query = query.strip()
    found = await (
        read_user_by_id(graph, rules, query)
        if GUID.match(query)
        else _read_by_name(graph, rules, query)
    )
    entra_id = found[0].id if found else (query.lower() if GUID.match(query) else None)
    if found is None and entra_id is None:
        ext = await directory_repo.extension_with_email(session, pbx_id, query.lower())
        linked = ext.entra_id or ext.former_entra_id if ext is not None else None
        if linked:
            entra_id = linked
            found = await read_user_by_id(graph, rules, linked)
    subject = Subject(query, entra_id)
    if found is not None:
        subject.user, subject.raw = found
        subject.entra_id = found[0].id
        if rules.range_mode == "groups":
            subject.groups = await user_groups(graph, found[0].id)
    return subject


# The PBX -------------------------------------------------------------------------------------


def _record(ext: Extension) -> PbxExtension:
    return PbxExtension(
        ext.id,
        ext.number,
        ext.first_name,
        ext.last_name,
        ext.email,
        ext.mobile,
        ext.job_title,
        ext.managed_by,
        ext.entra_id,
        ext.former_entra_id,
    )


@dataclass
class PbxSide:
    current: list[PbxExtension]
    numbers: NumberSet
    seats: int
    # Property numbers: the extension holding the user's number, if any.
    number_holder: Extension | None = None


def _wanted_email_key(user: EntraUser | None) -> str | None:
    if user is None:
        return None
    wanted = desired_fields(user)
    return wanted["email"].lower() if wanted and wanted["email"] else None


async def pbx_side(
    session: AsyncSession, pbx_id: str, rules: UserRules, subject: Subject
) -> PbxSide:
    """What the planner needs of the PBX for this user, by indexed lookups."""
    assert subject.entra_id is not None
    rows = await directory_repo.extensions_touching(
        session, pbx_id, subject.entra_id, _wanted_email_key(subject.user)
    )
    current = [_record(e) for e in rows]
    follows = any(e.managed_by == "entra" and e.entra_id == subject.entra_id for e in current)
    user = subject.user
    if user is None or follows:
        # No new extension is possible: numbers and seats are never asked about.
        return PbxSide(current, NumberView("0", None, {}), len(current))
    if rules.number_mode == "property":
        seats = await directory_repo.count_extensions(session, pbx_id)
        number, _ = parse_number(user.number_value)
        known: dict[str, bool] = {}
        holder = None
        if number is not None:
            holder = await directory_repo.extension_with_number(session, pbx_id, number)
            known[number] = holder is not None
        return PbxSide(current, NumberView(rules.number_start, None, known), seats, holder)
    first, seats = await directory_repo.auto_number_and_seats(session, pbx_id, rules.number_start)
    return PbxSide(current, NumberView(rules.number_start, first, {}), seats)


def plan_one(
    subject: Subject, side: PbxSide, rules: UserRules, max_extensions: int
) -> tuple[UserPlan, Trace]:
    """The sync's planner, for this user alone."""
    assert subject.entra_id is not None
    uid = subject.entra_id
    if subject.user is None:
        inp = UserInput(users={}, removed={uid: "deleted"}, full=False)
    else:
        in_groups = None
        if rules.range_mode == "groups":
            member = bool(set(subject.groups or {}) & rules.group_ids)
            in_groups = frozenset({uid}) if member else frozenset()
        inp = UserInput(users={uid: subject.user}, in_groups=in_groups, full=False)
    trace = Trace([uid])
    plan = plan_users(
        inp,
        side.current,
        rules,
        max_extensions,
        numbers_in_use=side.numbers,
        seats_used=side.seats,
        trace=trace,
    )
    return plan, trace


# The answer ----------------------------------------------------------------------------------


def outcome_of(plan: UserPlan, entra_id: str) -> ExplainOutcome:
    for c in plan.creates:
        if c.entra_id == entra_id:
            return ExplainOutcome(
                action="create",
                number=c.number,
                fields={name: [None, getattr(c, name)] for name in SYNCED_FIELDS},
            )
    for u in plan.updates:
        if u.entra_id == entra_id:
            return ExplainOutcome(
                action="update",
                extension_id=u.ext.id,
                number=u.ext.number,
                fields={k: list(v) for k, v in u.fields.items()},
                associate=u.associate,
            )
    for action, removals in (("delete", plan.deletes), ("release", plan.releases)):
        for r in removals:
            if r.ext.entra_id == entra_id:
                return ExplainOutcome(action=action, extension_id=r.ext.id, number=r.ext.number)
    for f in plan.failures:
        if f.entra_id == entra_id:
            return ExplainOutcome(action="fail", code=f.code)
    return ExplainOutcome(action="nothing")


def section_step(integ: Integration, rule: SyncRule | None, what: str = "User sync") -> ExplainStep:
    """Whether a run of the section could happen now (the first step of every explanation)."""
    if integ.status == "disabled":
        return ExplainStep(
            step="section",
            ok=False,
            detail="The integration is disabled: no sync runs.",
            code="integration_disabled",
        )
    if rule is None or rule.state == "off":
        return ExplainStep(
            step="section", ok=False, detail=f"{what} is off.", code="section_not_active"
        )
    if rule.state == "paused":
        return ExplainStep(
            step="section", ok=False, detail=f"{what} is paused.", code="sync_paused"
        )
    if integ.held_run_id:
        return ExplainStep(
            step="section",
            ok=False,
            detail=f"Run {integ.held_run_id} holds deletions awaiting approval or rejection.",
            code="run_held",
        )
    return ExplainStep(step="section", ok=True, detail=f"{what} is active.")


def _enrich(steps: list[ExplainStep], subject: Subject, side: PbxSide, rules: UserRules) -> None:
    """Names the planner does not know: the range groups, the holder of a number."""
    for step in steps:
        if step.step == "groups" and step.ok and subject.groups is not None:
            names = sorted(subject.groups[g] for g in rules.group_ids if g in subject.groups)
            step.detail = (
                "In range through " + ", ".join(f"group {n!r}" for n in names) + " (transitive)."
            )
        if step.code == "extension_number_taken" and side.number_holder is not None:
            h = side.number_holder
            who = " ".join(filter(None, [h.first_name, h.last_name])) or h.id
            step.detail += f" Extension {h.number} ({who}, managed by {h.managed_by}) has it."


async def connected_integration(session: AsyncSession, pbx_id: str) -> Integration:
    integ = await integ_repo.get(session, pbx_id)
    if integ is None or integ.status not in ("connected", "disabled"):
        raise Conflict("Explain needs a connected integration.", code="integration_not_connected")
    return integ


async def explain_user(
    session: AsyncSession, graph: GraphClient, pbx_id: str, max_extensions: int, query: str
) -> UserExplainOut:
    integ = await connected_integration(session, pbx_id)
    rule = (await integ_repo.rules(session, pbx_id)).get("user_sync")
    rules = user_rules(rule.config if rule is not None else {})
    subject = await read_subject(session, graph, pbx_id, rules, query)
    if subject.entra_id is None:
        raise NotFound(
            f"No user {query!r} in Entra, and no extension refers to it.", code="user_not_found"
        )
    side = await pbx_side(session, pbx_id, rules, subject)
    if subject.user is None and not side.current:
        raise NotFound(
            f"No user {query!r} in Entra, and no extension refers to it.", code="user_not_found"
        )
    plan, trace = plan_one(subject, side, rules, max_extensions)
    steps = [_found_step(subject)]
    section = section_step(integ, rule)
    steps.append(section)
    steps += [
        ExplainStep(step=v.step, ok=v.ok, detail=v.detail, code=v.code)
        for v in trace.steps[subject.entra_id]
    ]
    _enrich(steps, subject, side, rules)
    outcome = outcome_of(plan, subject.entra_id)
    if not section.ok:
        outcome = ExplainOutcome(action="nothing", code=section.code, planned=outcome.action)
    failed = await repo.failure(session, pbx_id, "users", subject.entra_id)
    u = subject.user
    return UserExplainOut(
        user=ExplainUser(
            id=subject.entra_id,
            user_principal_name=u.upn if u else None,
            display_name=u.display_name if u else None,
            account_enabled=u.enabled if u else None,
            user_type=u.user_type if u else None,
            found=u is not None,
        ),
        steps=steps,
        outcome=outcome,
        outstanding_failure=ExplainFailure(
            code=failed.code, message=failed.message, first_failed_at=failed.failed_at
        )
        if failed is not None
        else None,
        as_of_now=[s.step for s in steps if s.step in ("number", "capacity")],
    )


def _found_step(subject: Subject) -> ExplainStep:
    if subject.user is not None:
        name = subject.user.upn or subject.user.display_name or subject.entra_id
        return ExplainStep(step="found", ok=True, detail=f"Found in Entra: {name}.")
    return ExplainStep(
        step="found",
        ok=False,
        detail=f"Entra has no user {subject.entra_id} (deleted); an extension still refers to it.",
        code="user_not_found",
    )
