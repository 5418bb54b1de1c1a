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
from dataclasses import dataclass
from typing import Any

from app.graph.client import GraphClient
from app.graph.errors import GraphError
from app.sync.plan_contacts import FolderRead, OutlookContact

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


def _relative(graph: GraphClient, url: str) -> str:
    base = graph.base_url
    return url[len(base) :] if url.startswith(base) else url


def graph_error(status: int, body: Any) -> GraphError:
    err = body.get("error", {}) if isinstance(body, dict) else {}
    return GraphError(status, str(err.get("code", "")), str(err.get("message", "")))


Answers = dict[str, dict[str, Any]]


async def _batch(
    graph: GraphClient, requests: list[dict[str, Any]], take: Callable[[Answers], None]
) -> None:
    """Sub-requests 20 a `$batch`, a few `$batch` calls at once. Each call's answers are handed
    to `take` as soon as they arrive, so only a few calls' parsed JSON is alive at a time."""
    gate = asyncio.Semaphore(PARALLEL_BATCHES)

    async def one(chunk: list[dict[str, Any]]) -> None:
        async with gate:
            take(await graph.batch(chunk))

    try:
        async with asyncio.TaskGroup() as tg:
            for start in range(0, len(requests), BATCH_SIZE):
                tg.create_task(one(requests[start : start + BATCH_SIZE]))
    except* GraphError as failed:
        raise failed.exceptions[0] from None


def _take_page(folder: _Folder, body: dict[str, Any], common: dict[str, str]) -> None:
    for item in body.get("value", []):
        cid = str(item.get("id", ""))
        if not cid:
            continue
        if "@removed" in item:
            folder.read.remove(cid)
        else:
            folder.read.put(OutlookContact.from_graph(item, common))


def _start(owner_id: str, link: str | None, full: bool) -> _Folder:
    if full or link is None:
        return _Folder(owner_id, delta_url(owner_id), "delta", FolderRead(owner_id, True))
    if link in (LIST_MARK, DENIED_MARK):
        folder = _Folder(owner_id, list_url(owner_id), "list", FolderRead(owner_id, True))
        folder.retry_delta = link == DENIED_MARK
        return folder
    return _Folder(owner_id, link, "delta", FolderRead(owner_id, False))


def _answer(
    folder: _Folder, answer: dict[str, Any], common: dict[str, str]
) -> FolderOutcome | None:
    """One folder's sub-response: its outcome, or None when the folder reads on (a next page,
    a delta started over, a listing instead of a refused delta)."""
    status = int(answer.get("status", 0))
    body = answer.get("body")
    if status == 200 and isinstance(body, dict):
        _take_page(folder, body, common)
        next_link = body.get("@odata.nextLink")
        if next_link:
            folder.url = str(next_link)
            return None
        if folder.mode == "delta":
            link = body.get("@odata.deltaLink")
        else:
            link = None if folder.retry_delta else LIST_MARK
        return FolderOutcome("ok", folder.read, str(link) if link else None)
    if folder.mode == "delta" and status == 410 and folder.restarts < 2:
        folder.restarts += 1
        folder.url = delta_url(folder.owner_id)
        folder.read = FolderRead(folder.owner_id, True)
        return None
    if folder.mode == "delta" and status in DELTA_REFUSED:
        folder.mode = "list"
        folder.url = list_url(folder.owner_id)
        folder.read = FolderRead(folder.owner_id, True)
        return None
    if status == 403:
        return FolderOutcome("denied", link=DENIED_MARK, error_code=graph_error(status, body).code)
    if status == 404:
        return FolderOutcome("missing", link=DENIED_MARK, error_code=graph_error(status, body).code)
    raise graph_error(status, body)


class _Rounds:
    """The folders still reading, one request each a round; `lookups` (plain GETs) ride in the
    first round's `$batch` posts."""

    def __init__(self, pending: dict[str, _Folder], lookups: list[str]) -> None:
        self.pending = pending
        self.lookups = lookups
        self.looked: dict[int, tuple[int, Any]] = {}
        self.outcomes: dict[str, FolderOutcome] = {}
        self.order: list[str] = []
        self.following: dict[str, _Folder] = {}
        self.rounds = 0
        self.common: dict[str, str] = {}  # names and companies, shared among contacts

    def requests(self, graph: GraphClient) -> list[dict[str, Any]]:
        self.order = sorted(self.pending)
        self.following = {}
        self.rounds += 1
        first = self.lookups if self.rounds == 1 else []
        extra = [{"id": f"u{i}", "method": "GET", "url": url} for i, url in enumerate(first)]
        return extra + [
            {"id": str(i), "method": "GET", "url": _relative(graph, self.pending[o].url)}
            for i, o in enumerate(self.order)
        ]

    def take(self, answers: Answers) -> None:
        for rid in list(answers):
            answer = answers.pop(rid)  # dropped as soon as it is read
            if rid.startswith("u"):
                self.looked[int(rid[1:])] = (int(answer.get("status", 0)), answer.get("body"))
                continue
            owner_id = self.order[int(rid)]
            outcome = _answer(self.pending[owner_id], answer, self.common)
            if outcome is None:
                self.following[owner_id] = self.pending[owner_id]
            else:
                self.outcomes[owner_id] = outcome

    def next_round(self) -> None:
        for owner_id in self.order:
            if owner_id not in self.outcomes and owner_id not in self.following:
                raise graph_error(0, None)  # no answer
        self.pending = self.following


async def read_folders(
    graph: GraphClient,
    owners: dict[str, str | None],
    *,
    full: bool,
    progress: Progress | None = None,
    lookups: list[str] | None = None,
) -> tuple[dict[str, FolderOutcome], list[tuple[int, Any]]]:
    """Read the default Contacts folder of each owner. `owners`: owner id → its stored delta
    link (or LIST_MARK, or None). With `full`, stored links are ignored. `lookups`: relative
    URLs read in the same `$batch` posts as the first round: (status, body) each, in order."""
    rounds = _Rounds(
        {owner_id: _start(owner_id, link, full) for owner_id, link in owners.items()},
        list(lookups or []),
    )
    while rounds.pending or (rounds.lookups and rounds.rounds == 0):
        await _batch(graph, rounds.requests(graph), rounds.take)
        rounds.next_round()
        if progress is not None:
            await progress(len(rounds.outcomes))
    looked = [rounds.looked.get(i, (0, None)) for i in range(len(rounds.lookups))]
    return rounds.outcomes, looked
