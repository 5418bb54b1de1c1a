"""Reading Outlook contacts with the authorization account's delegated token.

Each source is one mailbox's default Contacts folder (the well-known folder `contacts`): a synced
user's, shared with the authorization account, or a shared mailbox's, which that account is a
member of. Folders are read through `$batch`, 20 a request: a folder's contacts delta where Graph
answers it, else (400/403/404/501: Graph documents shared folders, `Contacts.Read.Shared`, for
plain reads only) a full listing with `$select` and `$top`, which the planner compares by id and
`changeKey`. An expired delta (410) starts that folder over. Each folder has one request in flight
at a time and each mailbox one folder, within Outlook's 4 concurrent requests per mailbox;
throttled sub-requests wait out their `Retry-After` (GraphClient.batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.graph.client import GraphClient
from app.graph.errors import GraphError
from app.integration.schemas import ContactsSyncRules
from app.sync.plan_contacts import FolderRead, Mailbox, OutlookContact

SELECT = (
    "id,changeKey,displayName,givenName,surname,companyName,emailAddresses,"
    "mobilePhone,homePhones,businessPhones"
)
DELTA_REFUSED = {400, 403, 404, 501}
LINK_PREFIX = "contacts:"
# Stored instead of a delta link when a folder's delta was refused: list it in full next time.
LIST_MARK = "list"
# Stored for a folder that could not be read (not shared): next time one plain read tries it
# (a delta request would be refused the same way and need the listing after it anyway).
DENIED_MARK = "denied"
BATCH_SIZE = 20
PARALLEL_BATCHES = 3

Progress = Callable[[int], Awaitable[None]]


def link_resource(owner_id: str) -> str:
    return f"{LINK_PREFIX}{owner_id}"


def delta_url(owner_id: str) -> str:
    return f"/users/{owner_id}/contactFolders/contacts/contacts/delta?$select={SELECT}"


def list_url(owner_id: str) -> str:
    return f"/users/{owner_id}/contacts?$select={SELECT}&$top=999"


@dataclass
class FolderOutcome:
    """`status`: ok (read), denied (403: not shared, or not a member), missing (no mailbox)."""

    status: str
    read: FolderRead | None = None
    link: str | None = None
    error_code: str = ""


@dataclass
class _Folder:
    owner_id: str
    url: str
    mode: str  # delta | list
    read: FolderRead
    restarts: int = 0
    # Read by listing only because it was not readable last time: try its delta next time.
    retry_delta: bool = False


@dataclass
class ContactsFetch:
    input_personal: dict[str, FolderRead] = field(default_factory=dict)
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    folders: int = 0


def _relative(graph: GraphClient, url: str) -> str:
    base = graph.base_url
    return url[len(base) :] if url.startswith(base) else url


def _error(status: int, body: Any) -> GraphError:
    err = body.get("error", {}) if isinstance(body, dict) else {}
    return GraphError(status, str(err.get("code", "")), str(err.get("message", "")))


async def _batch(graph: GraphClient, requests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Sub-requests 20 a `$batch`, a few `$batch` calls at once."""
    gate = asyncio.Semaphore(PARALLEL_BATCHES)
    results: dict[str, dict[str, Any]] = {}

    async def one(chunk: list[dict[str, Any]]) -> None:
        async with gate:
            results.update(await graph.batch(chunk))

    async with asyncio.TaskGroup() as tg:
        for start in range(0, len(requests), BATCH_SIZE):
            tg.create_task(one(requests[start : start + BATCH_SIZE]))
    return results


def _take_page(folder: _Folder, body: dict[str, Any]) -> None:
    for item in body.get("value", []):
        cid = str(item.get("id", ""))
        if not cid:
            continue
        if "@removed" in item:
            folder.read.contacts.pop(cid, None)
            folder.read.removed.add(cid)
        else:
            folder.read.removed.discard(cid)
            folder.read.contacts[cid] = OutlookContact.from_graph(item)


async def read_folders(
    graph: GraphClient,
    owners: dict[str, str | None],
    *,
    full: bool,
    progress: Progress | None = None,
) -> dict[str, FolderOutcome]:
    """Read the default Contacts folder of each owner. `owners`: owner id → its stored delta
    link (or LIST_MARK, or None). With `full`, stored links are ignored."""
    pending: dict[str, _Folder] = {}
    for owner_id, link in owners.items():
        if full or link is None:
            pending[owner_id] = _Folder(
                owner_id, delta_url(owner_id), "delta", FolderRead(owner_id, True)
            )
        elif link in (LIST_MARK, DENIED_MARK):
            folder = _Folder(owner_id, list_url(owner_id), "list", FolderRead(owner_id, True))
            folder.retry_delta = link == DENIED_MARK
            pending[owner_id] = folder
        else:
            pending[owner_id] = _Folder(owner_id, link, "delta", FolderRead(owner_id, False))
    outcomes: dict[str, FolderOutcome] = {}
    while pending:
        order = sorted(pending)
        requests = [
            {"id": str(i), "method": "GET", "url": _relative(graph, pending[o].url)}
            for i, o in enumerate(order)
        ]
        answers = await _batch(graph, requests)
        following: dict[str, _Folder] = {}
        for i, owner_id in enumerate(order):
            folder = pending[owner_id]
            answer = answers.get(str(i), {})
            status = int(answer.get("status", 0))
            body = answer.get("body")
            if status == 200 and isinstance(body, dict):
                _take_page(folder, body)
                next_link = body.get("@odata.nextLink")
                if next_link:
                    folder.url = str(next_link)
                    following[owner_id] = folder
                    continue
                if folder.mode == "delta":
                    link = body.get("@odata.deltaLink")
                else:
                    link = None if folder.retry_delta else LIST_MARK
                outcomes[owner_id] = FolderOutcome("ok", folder.read, str(link) if link else None)
            elif folder.mode == "delta" and status == 410 and folder.restarts < 2:
                folder.restarts += 1
                folder.url = delta_url(owner_id)
                folder.read = FolderRead(owner_id, True)
                following[owner_id] = folder
            elif folder.mode == "delta" and status in DELTA_REFUSED:
                folder.mode = "list"
                folder.url = list_url(owner_id)
                folder.read = FolderRead(owner_id, True)
                following[owner_id] = folder
            elif status == 403:
                outcomes[owner_id] = FolderOutcome(
                    "denied", link=DENIED_MARK, error_code=_error(status, body).code
                )
            elif status == 404:
                outcomes[owner_id] = FolderOutcome(
                    "missing", link=DENIED_MARK, error_code=_error(status, body).code
                )
            else:
                raise _error(status, body)
        pending = following
        if progress is not None:
            await progress(len(outcomes))
    return outcomes


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


async def chosen_mailboxes(graph: GraphClient, chosen: dict[str, str | None]) -> MailboxCandidates:
    """`chosen`: mailbox id → its phonebook name (None: the mailbox's display name)."""
    result = MailboxCandidates()
    ids = sorted(chosen)
    answers = await graph.get_each([f"/users/{mid}?$select=id,displayName,mail" for mid in ids])
    for mid, (status, body) in zip(ids, answers, strict=True):
        if status == 200 and isinstance(body, dict):
            name = chosen[mid] or body.get("displayName") or body.get("mail") or mid
            result.found[mid] = (str(name), True)
        elif status in (400, 404):  # 400: not an id Entra could have issued
            result.gone.add(mid)
        else:
            raise _error(status, body)
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
            raise _error(status, body)
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


async def _mailbox_range(
    graph: GraphClient, cfg: ContactsSyncRules, fetched: Fetched
) -> MailboxCandidates:
    names: dict[str, str | None] = {m.mailbox_id: m.phonebook_name for m in cfg.shared.mailboxes}
    if cfg.shared.mode == "all":
        return await all_mailboxes(graph, names)
    found = await chosen_mailboxes(graph, dict(names))
    for mid in sorted(found.gone):
        _warn(fetched, mid, "mailbox_not_found", "The chosen shared mailbox no longer exists.")
    return found


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
    fetched = Fetched()
    if cfg.personal.enabled:
        fetched.users = await _personal_range(graph, cfg, synced, fetched)
    candidates = MailboxCandidates()
    if cfg.shared.enabled:
        candidates = await _mailbox_range(graph, cfg, fetched)
    owners = {uid: links.get(link_resource(uid)) for uid in fetched.users}
    owners.update({mid: links.get(link_resource(mid)) for mid in candidates.found})
    outcomes = await read_folders(graph, owners, full=full, progress=progress)
    for uid in sorted(fetched.users):
        outcome = outcomes[uid]
        if outcome.status == "ok" and outcome.read is not None:
            fetched.personal[uid] = outcome.read
            fetched.all_full &= outcome.read.full
            if outcome.link:
                fetched.links[link_resource(uid)] = outcome.link
        else:
            if outcome.link:
                fetched.links[link_resource(uid)] = outcome.link
            _warn(
                fetched,
                uid,
                "contacts_not_shared",
                "This user has not shared the Contacts folder with the authorization account."
                if outcome.status == "denied"
                else "This user has no mailbox whose contacts can be read.",
            )
    specific = cfg.shared.mode == "specific"
    for mid in sorted(candidates.found):
        name, sure = candidates.found[mid]
        outcome = outcomes[mid]
        if outcome.status == "ok" and outcome.read is not None:
            fetched.mailboxes[mid] = Mailbox(mid, name, outcome.read)
            fetched.all_full &= outcome.read.full
            if outcome.link:
                fetched.links[link_resource(mid)] = outcome.link
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
    return fetched
