"""The contacts scope's read: who is in range (synced users, chosen or all shared mailboxes),
and their default Contacts folders (contact_folders.read_folders)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from app.graph.client import GraphClient
from app.graph.errors import GraphError
from app.integration.schemas import ContactsSyncRules
from app.sync.contact_folders import (
    LINK_PREFIX,
    FolderOutcome,
    Progress,
    graph_error,
    link_resource,
    read_folders,
)
from app.sync.plan_contacts import FolderRead, Mailbox

__all__ = ["LINK_PREFIX", "MAILBOX_DENIED", "Fetched", "fetch", "link_resource"]


async def transitive_user_ids(graph: GraphClient, group_id: str) -> set[str] | None:
    """The users in a group, nested groups included; None when the group no longer exists."""
    found: set[str] = set()
    url = f"/groups/{group_id}/transitiveMembers/microsoft.graph.user"
    try:
        async for page in graph.pages(url, {"$select": "id", "$top": "999"}):
            found.update(str(u["id"]) for u in page.items if u.get("id"))
    except GraphError as exc:
        if exc.status == 404:
            return None
        raise
    return found


@dataclass
class MailboxCandidates:
    """Mailboxes to read: id → (phonebook name, sure). `sure`: a chosen mailbox, or one Graph
    says is shared; otherwise a disabled account with mail whose settings could not be read."""

    found: dict[str, tuple[str, bool]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)


# Graph's `in` operator takes up to 15 values: one sub-request looks up 15 chosen mailboxes.
LOOKUP_IDS = 15


def lookup_url(mailbox_id: str) -> str:
    return f"/users/{mailbox_id}?$select=id,displayName,mail"


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def lookup_urls(mailbox_ids: list[str]) -> list[str]:
    """The chosen mailboxes, 15 a request: `/users?$filter=id in (...)`."""
    urls = []
    for start in range(0, len(mailbox_ids), LOOKUP_IDS):
        chunk = mailbox_ids[start : start + LOOKUP_IDS]
        clause = quote(f"id in ({','.join(_quoted(m) for m in chunk)})", safe="(),'")
        urls.append(f"/users?$filter={clause}&$select=id,displayName,mail&$top={LOOKUP_IDS}")
    return urls


async def looked_up(
    graph: GraphClient, mailbox_ids: list[str], answers: list[tuple[int, Any]]
) -> dict[str, tuple[int, Any]]:
    """Mailbox id → (status, body) of its own lookup, from the answers of `lookup_urls`. A group
    Graph refused (400: an id it could not have issued makes the whole filter invalid) is looked
    up one id at a time."""
    found: dict[str, tuple[int, Any]] = {}
    one_by_one: list[str] = []
    for start, (status, body) in zip(range(0, len(mailbox_ids), LOOKUP_IDS), answers, strict=True):
        chunk = mailbox_ids[start : start + LOOKUP_IDS]
        if status == 400:
            one_by_one += chunk
            continue
        if status != 200 or not isinstance(body, dict):
            raise graph_error(status, body)
        users = {str(u.get("id")): u for u in body.get("value", []) if isinstance(u, dict)}
        for mid in chunk:
            found[mid] = (200, users[mid]) if mid in users else (404, None)
    if one_by_one:
        each = await graph.get_each([lookup_url(m) for m in one_by_one])
        found.update(zip(one_by_one, each, strict=True))
    return found


def chosen_mailboxes(
    chosen: dict[str, str | None], answers: dict[str, tuple[int, Any]]
) -> MailboxCandidates:
    """`chosen`: mailbox id → its phonebook name (None: the mailbox's display name); `answers`:
    mailbox id → (status, body) of its lookup."""
    result = MailboxCandidates()
    for mid in sorted(chosen):
        status, body = answers[mid]
        if status == 200 and isinstance(body, dict):
            name = chosen[mid] or body.get("displayName") or body.get("mail") or mid
            result.found[mid] = (str(name), True)
        elif status in (400, 404):  # 400: not an id Entra could have issued
            result.gone.add(mid)
        else:
            raise graph_error(status, body)
    return result


async def all_mailboxes(graph: GraphClient, names: dict[str, str | None]) -> MailboxCandidates:
    """Every shared mailbox: disabled accounts with mail whose `userPurpose` is `shared`. When
    Graph refuses the delegated read of a mailbox's settings (403 ErrorAccessDenied, as many
    tenants answer), the account stays a candidate: it counts when its contacts are readable."""
    result = MailboxCandidates()
    candidates: dict[str, str] = {}
    params = {
        "$select": "id,displayName,mail",
        "$filter": "accountEnabled eq false",
        "$top": "999",
    }
    async for page in graph.pages("/users", params):
        for user in page.items:
            if user.get("mail") and user.get("id"):
                candidates[str(user["id"])] = str(user.get("displayName") or user["mail"])
    ids = sorted(candidates)
    answers = await graph.get_each([f"/users/{uid}/mailboxSettings/userPurpose" for uid in ids])
    for uid, (status, body) in zip(ids, answers, strict=True):
        name = names.get(uid) or candidates[uid]
        if status == 200 and isinstance(body, dict):
            if body.get("value") == "shared":
                result.found[uid] = (name, True)
        elif status == 403:
            result.found[uid] = (name, False)
        elif status != 404:  # 404: no mailbox behind the account
            raise graph_error(status, body)
    return result


# The scope's read: who is in range, which mailboxes, and their folders. -----------------------

MAILBOX_DENIED = "mailbox_access_denied"


@dataclass
class Fetched:
    personal: dict[str, FolderRead] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    all_full: bool = True


def _warn(fetched: Fetched, source: str | None, code: str, message: str) -> None:
    fetched.warnings.append({"source_id": source, "code": code, "message": message})


async def _personal_range(
    graph: GraphClient, cfg: ContactsSyncRules, synced: dict[str, str], fetched: Fetched
) -> dict[str, str]:
    """Entra user id → extension id of the users whose personal contacts are synced."""
    range_ = cfg.personal.range
    if range_.mode != "groups":
        return dict(synced)
    chosen: dict[str, str] = {}
    for group_id in sorted(set(range_.group_ids)):
        members = await transitive_user_ids(graph, group_id)
        if members is None:
            _warn(fetched, group_id, "group_not_found", "The chosen group no longer exists.")
            continue
        beyond = members - set(synced)
        if beyond:
            _warn(
                fetched,
                group_id,
                "contacts_range_beyond_user_sync",
                f"{len(beyond)} member(s) of this group are not synced users: their contacts "
                "are not synced (widen the user sync range to include them).",
            )
        chosen.update({uid: synced[uid] for uid in members if uid in synced})
    return chosen


def _take_personal(
    fetched: Fetched, users: dict[str, str], outcomes: dict[str, FolderOutcome]
) -> None:
    for uid in sorted(users):
        outcome = outcomes[uid]
        if outcome.link:
            fetched.links[link_resource(uid)] = outcome.link
        if outcome.status == "ok" and outcome.read is not None:
            fetched.personal[uid] = outcome.read
            fetched.all_full &= outcome.read.full
            continue
        _warn(
            fetched,
            uid,
            "contacts_not_shared",
            "This user has not shared the Contacts folder with the authorization account."
            if outcome.status == "denied"
            else "This user has no mailbox whose contacts can be read.",
        )


def _take_mailboxes(
    fetched: Fetched,
    candidates: MailboxCandidates,
    outcomes: dict[str, FolderOutcome],
    specific: bool,
) -> None:
    for mid in sorted(candidates.found):
        name, sure = candidates.found[mid]
        outcome = outcomes[mid]
        if outcome.link:  # for one not readable: a plain read tries it next time
            fetched.links[link_resource(mid)] = outcome.link
        if outcome.status == "ok" and outcome.read is not None:
            fetched.mailboxes[mid] = Mailbox(mid, name, outcome.read)
            fetched.all_full &= outcome.read.full
            continue
        if sure:
            message = (
                f"The authorization account can't read the shared mailbox {name!r}: add it as "
                "a member of the mailbox."
            )
        else:
            # Graph would not say whether this disabled account is a shared mailbox.
            message = (
                f"The contacts of {name!r} can't be read: if it is a shared mailbox, add the "
                "authorization account as a member of it."
            )
        fetched.mailboxes[mid] = Mailbox(mid, name, None)  # kept as it is
        if specific:
            fetched.failures.append(
                {"entra_id": mid, "code": MAILBOX_DENIED, "message": message, "name": name}
            )
        else:
            _warn(fetched, mid, MAILBOX_DENIED, message)


async def fetch(
    graph: GraphClient,
    cfg: ContactsSyncRules,
    *,
    synced: dict[str, str],
    links: dict[str, str],
    synced_books: set[str],
    full: bool,
    progress: Progress,
) -> Fetched:
    """Chosen mailboxes are looked up in the same `$batch` posts as the first round of folder
    reads (their folders are read meanwhile; a mailbox that is gone has its read ignored)."""
    fetched = Fetched()
    if cfg.personal.enabled:
        fetched.users = await _personal_range(graph, cfg, synced, fetched)
    names = {m.mailbox_id: m.phonebook_name for m in cfg.shared.mailboxes}
    specific = cfg.shared.enabled and cfg.shared.mode != "all"
    candidates = MailboxCandidates()
    if cfg.shared.enabled and not specific:
        candidates = await all_mailboxes(graph, names)
    chosen = sorted(names) if specific else []
    owners = {o: links.get(link_resource(o)) for o in (*fetched.users, *candidates.found, *chosen)}
    outcomes, looked = await read_folders(
        graph, owners, full=full, progress=progress, lookups=lookup_urls(chosen)
    )
    if specific:
        candidates = chosen_mailboxes(names, await looked_up(graph, chosen, looked))
        for mid in sorted(candidates.gone):
            _warn(fetched, mid, "mailbox_not_found", "The chosen shared mailbox no longer exists.")
    _take_personal(fetched, fetched.users, outcomes)
    _take_mailboxes(fetched, candidates, outcomes, specific)
    return fetched
