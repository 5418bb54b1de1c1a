"""`/users/delta` and `/groups/delta`.

Rules, from https://learn.microsoft.com/en-us/graph/delta-query-overview, user-delta.md and
group-delta.md:
- The first call lists the current objects page by page (`@odata.nextLink` with `$skiptoken`) and
  ends with `@odata.deltaLink` (`$deltatoken`); the tokens are opaque and carry the query options
  of the first call (`$select`, `$filter`), so later links only hold the token.
- A later round returns what changed since its delta link, then a new delta link; no changes is
  just a delta link.
- Created objects come in full; updated ones with the properties of the first call's `$select`
  (by default) or, with `Prefer: return=minimal`, only the changed ones; always with `id`. A change
  to a property outside `$select` does not bring the object back.
- Removed objects are `{"id", "@removed": {"reason": "changed"}}` when soft-deleted (restorable
  from deletedItems) or `"deleted"` when gone for good.
- Group membership is `members@delta`: `[{"@odata.type", "id"}]` for added members and the same
  with `"@removed": {"reason": "deleted"}` for removed ones (group-delta.md; its first example,
  without `$select`, has `members@delta`, so membership is tracked by default and when `members`
  is selected).
- `$filter` is only `id eq '…'` joined with `or` (at most 50 ids); `$deltatoken=latest` gives a
  delta link without data ("sync from now").
- Replays: the same object may come more than once (see `emulator.graph.settings`).
- An expired token (older than `Tenant.min_valid_delta_seq`) answers 400 `syncStateNotFound`,
  "The sync state generation is not found. The delta token is expired and data must be
  synchronized again." (errors.md, code property; and the Microsoft 365 developer blog "Duration of
  change tracking tokens for identity and education resources": directory delta links last seven
  days, then "you will receive a BadRequest response with the error code syncStateNotFound").
- A synchronization reset answers `410 Gone` with a `Location` header holding the initial query
  ("Synchronization reset").
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from emulator.graph.access import require_permission
from emulator.graph.directory import GROUPS_READ, USERS_READ
from emulator.graph.http import GraphError, GraphRequest, GraphResponse, bad_request, router
from emulator.graph.model import GROUP, USER, odata_type, sorted_ids
from emulator.graph.odata import MAX_PAGE_SIZE, Resource, compile_filter, seal, unseal
from emulator.graph.settings import delta_replay_rate, expiry_epoch, replayed, reset_generation
from emulator.state import ChangeEvent, Tenant

DEFAULT_DELTA_PAGE = 100
MAX_FILTER_IDS = 50


def sync_state_not_found() -> GraphError:
    return GraphError(
        400,
        "syncStateNotFound",
        "The sync state generation is not found. The delta token is expired and data must be "
        "synchronized again.",
    )


@router.route("GET", "/users/delta")
async def users_delta(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/user-delta"""
    require_permission(request.caller(), *USERS_READ)
    return _Delta(request, "users").run()


@router.route("GET", "/groups/delta")
async def groups_delta(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/group-delta"""
    require_permission(request.caller(), *GROUPS_READ)
    return _Delta(request, "groups").run()


class _Delta:
    def __init__(self, request: GraphRequest, kind: str) -> None:
        self.request = request
        self.kind = kind
        self.tenant: Tenant = request.tenant
        self.resource: Resource = USER if kind == "users" else GROUP
        self.objects: dict[str, Any] = self.tenant.users if kind == "users" else self.tenant.groups
        self.minimal = "return=minimal" in (request.header("prefer") or "").replace(" ", "").lower()
        self.epoch = expiry_epoch(self.tenant)
        self.reset = reset_generation(self.tenant)

    # -- entry ---------------------------------------------------------------------------------

    def run(self) -> GraphResponse:
        query = self.request.query
        delta_token = query.get("$deltatoken")
        skip_token = query.get("$skiptoken")
        with self.request.state.lock:
            if delta_token and delta_token.lower() == "latest":
                options = self._options()
                return self._respond([], None, {**options, "ph": "d", "s": self.tenant.seq})
            token = delta_token or skip_token
            if not token:
                options = self._options()
                return self._initial({**options, "ph": "i", "s": self.tenant.seq})
            state = unseal(self.request.state, token)
            if state is None or state.get("k") != self.kind:
                raise sync_state_not_found()
            self._check_age(state)
            phase = state.get("ph")
            if phase == "i":
                return self._initial(state)
            if phase == "ir":
                return self._initial_replays(state)
            if phase == "d":
                return self._changes(
                    {**state, "ph": "c", "f": state["s"], "u": self.tenant.seq, "o": 0}
                )
            if phase == "c":
                return self._changes(state)
            raise sync_state_not_found()

    def _options(self) -> dict[str, Any]:
        """The query options of a first call, kept in every later token."""
        request = self.request
        select = None
        raw = request.query.get("$select")
        if raw is not None and raw.strip():
            select = []
            for part in (p.strip() for p in raw.split(",")):
                if not part:
                    continue
                if self.kind == "groups" and part.lower() == "members":
                    select.append("members")
                    continue
                if self.kind == "users" and part.lower() == "manager":
                    continue  # tracked by Graph; the emulator has no managers
                name = self.resource.canonical(part)
                if name is None or name not in self.resource.getters:
                    raise self.resource.unknown(part)
                if name not in select:
                    select.append(name)
        ids = None
        raw_filter = request.query.get("$filter")
        if raw_filter:
            compiled = compile_filter(raw_filter, self.resource)
            if compiled.ids is None:
                # user-delta.md: "The only supported $filter expression is for tracking changes on
                # a specific object: $filter=id+eq+{value}".
                raise GraphError(
                    400,
                    "Request_UnsupportedQuery",
                    "Unsupported query: delta supports only $filter=id eq '{id}' (joined with or).",
                )
            if len(compiled.ids) > MAX_FILTER_IDS:
                raise GraphError(
                    400,
                    "Request_UnsupportedQuery",
                    f"Too many ids in the filter: delta tracks at most {MAX_FILTER_IDS} objects.",
                )
            ids = sorted(set(compiled.ids))
        top = DEFAULT_DELTA_PAGE
        raw_top = request.query.get("$top")
        if raw_top:
            # delta-query-overview.md: the page size "can vary"; $top is taken as a hint.
            try:
                top = max(1, min(int(raw_top), MAX_PAGE_SIZE))
            except ValueError:
                raise bad_request(f"Invalid $top value '{raw_top}'.") from None
        return {
            "k": self.kind,
            "sel": select,
            "ids": ids,
            "t": top,
            "e": self.epoch,
            "r": self.reset,
        }

    def _check_age(self, state: dict[str, Any]) -> None:
        if int(state.get("r", 0)) < self.reset:
            raise GraphError(
                410,
                "resyncRequired",
                "The delta token is no longer valid, and the app must reset the sync state.",
                {"Location": self.request.url(f"/{self.kind}/delta", {"$deltatoken": ""})},
            )
        base = int(state["f"] if state.get("ph") == "c" else state["s"])
        expired = base < self.tenant.min_valid_delta_seq and int(state.get("e", 0)) < self.epoch
        oldest = self.tenant.changes[0].seq if self.tenant.changes else None
        if expired or (oldest is not None and base < oldest - 1):
            raise sync_state_not_found()

    # -- selection -----------------------------------------------------------------------------

    def _fields(self, state: dict[str, Any]) -> list[str]:
        select = state.get("sel")
        names = [n for n in (select or self.resource.default_select) if n != "members"]
        if "id" not in names:
            names.append("id")  # user-delta.md: "The id property is always returned."
        return names

    def _tracks_members(self, state: dict[str, Any]) -> bool:
        select = state.get("sel")
        return self.kind == "groups" and (select is None or "members" in select)

    def _represent(self, obj: Any, names: list[str]) -> dict[str, Any]:
        getters = self.resource.getters
        return {name: getters[name](obj) for name in names}

    def _members(self, group: Any) -> list[dict[str, Any]]:
        members = []
        for member_id in sorted(group.member_ids):
            member = self.tenant.users.get(member_id) or self.tenant.groups.get(member_id)
            if member is None or member.deleted_at is not None:
                continue
            members.append({"@odata.type": odata_type(self.tenant, member_id), "id": member_id})
        return members

    # -- the first round: current state --------------------------------------------------------

    def _ids(self, state: dict[str, Any]) -> list[str]:
        wanted = state.get("ids")
        if wanted is not None:
            return [i for i in wanted if i in self.objects]
        return sorted_ids(self.tenant, self.kind)

    def _initial(self, state: dict[str, Any]) -> GraphResponse:
        ids = self._ids(state)
        names = self._fields(state)
        top = int(state["t"])
        start = 0
        if "a" in state:
            start = bisect_right(ids, state["a"])
        values: list[dict[str, Any]] = []
        index = start
        while index < len(ids) and len(values) < top:
            obj = self.objects.get(ids[index])
            index += 1
            if obj is None or obj.deleted_at is not None:
                continue
            values.append(self._full(obj, names, state))
        if index < len(ids):
            return self._respond(values, {**state, "a": ids[index - 1]}, None)
        rate = delta_replay_rate(self.tenant)
        if rate > 0 and any(self._replay_ids(state, ids, rate)):
            return self._respond(values, {**state, "ph": "ir", "o": 0}, None)
        return self._respond(values, None, {**self._base(state), "ph": "d", "s": state["s"]})

    def _replay_ids(self, state: dict[str, Any], ids: list[str], rate: float) -> list[str]:
        round_seq = int(state["s"])
        return [
            i
            for i in ids
            if replayed(i, round_seq, rate)
            and (obj := self.objects.get(i)) is not None
            and obj.deleted_at is None
        ]

    def _initial_replays(self, state: dict[str, Any]) -> GraphResponse:
        names = self._fields(state)
        replays = self._replay_ids(state, self._ids(state), delta_replay_rate(self.tenant))
        offset = int(state["o"])
        top = int(state["t"])
        chunk = replays[offset : offset + top]
        values = [self._full(self.objects[i], names, state) for i in chunk]
        if offset + top < len(replays):
            return self._respond(values, {**state, "o": offset + top}, None)
        return self._respond(values, None, {**self._base(state), "ph": "d", "s": state["s"]})

    def _full(self, obj: Any, names: list[str], state: dict[str, Any]) -> dict[str, Any]:
        body = self._represent(obj, names)
        if self._tracks_members(state):
            body["members@delta"] = self._members(obj)
        return body

    # -- later rounds: changes -----------------------------------------------------------------

    def _events(self, first: int, last: int) -> list[ChangeEvent]:
        changes = self.tenant.changes
        kinds = ("user",) if self.kind == "users" else ("group", "membership")
        # The log is ordered by seq: find the first event after `first`.
        low, high = 0, len(changes)
        while low < high:
            mid = (low + high) // 2
            if changes[mid].seq <= first:
                low = mid + 1
            else:
                high = mid
        result = []
        for event in changes[low:]:
            if event.seq > last:
                break
            if event.kind in kinds:
                result.append(event)
        return result

    def _entries(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """The change set of the round (first, last]: one entry per object, in the order of its
        last change, then the replays."""
        events = self._events(int(state["f"]), int(state["u"]))
        wanted = set(state["ids"]) if state.get("ids") is not None else None
        select = state.get("sel")
        selected = set(select) if select else None
        tracks_members = self._tracks_members(state)
        per_object: dict[str, dict[str, Any]] = {}
        for event in events:
            if wanted is not None and event.object_id not in wanted:
                continue
            entry = per_object.pop(event.object_id, None) or {
                "id": event.object_id,
                "created": False,
                "properties": set(),
                "unknown": False,
                "members": {},
                "relevant": False,
            }
            per_object[event.object_id] = entry  # re-inserted: ordered by last change
            if event.kind == "membership":
                if tracks_members and event.member_id is not None:
                    entry["members"][event.member_id] = bool(event.added)
                    entry["relevant"] = True
                continue
            if event.change_type in ("created", "deleted"):
                entry["created"] = entry["created"] or event.change_type == "created"
                entry["relevant"] = True
                entry["unknown"] = True
                continue
            changed = event.properties
            if changed is None:
                entry["unknown"] = True
                entry["relevant"] = True
            else:
                entry["properties"].update(changed)
                if selected is None or selected.intersection(changed):
                    entry["relevant"] = True
        entries = [e for e in per_object.values() if e["relevant"]]
        rate = delta_replay_rate(self.tenant)
        if rate > 0:
            round_seq = int(state["u"])
            entries += [e for e in list(entries) if replayed(e["id"], round_seq, rate)]
        return entries

    def _changes(self, state: dict[str, Any]) -> GraphResponse:
        entries = self._entries(state)
        names = self._fields(state)
        offset = int(state.get("o", 0))
        top = int(state["t"])
        chunk = entries[offset : offset + top]
        values = [self._change(entry, names, state) for entry in chunk]
        if offset + top < len(entries):
            return self._respond(values, {**state, "o": offset + top}, None)
        return self._respond(values, None, {**self._base(state), "ph": "d", "s": state["u"]})

    def _change(
        self, entry: dict[str, Any], names: list[str], state: dict[str, Any]
    ) -> dict[str, Any]:
        object_id = entry["id"]
        obj = self.objects.get(object_id)
        if obj is None:
            return {"id": object_id, "@removed": {"reason": "deleted"}}
        if obj.deleted_at is not None:
            return {"id": object_id, "@removed": {"reason": "changed"}}
        if entry["created"]:
            return self._full(obj, names, state)
        if self.minimal and not entry["unknown"]:
            shown = [n for n in names if n in entry["properties"] or n == "id"]
        else:
            shown = names
        body = self._represent(obj, shown)
        if entry["members"]:
            body["members@delta"] = [
                {"@odata.type": odata_type(self.tenant, member_id), "id": member_id}
                if added
                else {
                    "@odata.type": odata_type(self.tenant, member_id),
                    "id": member_id,
                    "@removed": {"reason": "deleted"},
                }
                for member_id, added in entry["members"].items()
            ]
        return body

    # -- links ---------------------------------------------------------------------------------

    def _base(self, state: dict[str, Any]) -> dict[str, Any]:
        return {
            "k": state["k"],
            "sel": state.get("sel"),
            "ids": state.get("ids"),
            "t": state["t"],
            "e": self.epoch,
            "r": self.reset,
        }

    def _respond(
        self,
        values: list[dict[str, Any]],
        next_state: dict[str, Any] | None,
        delta_state: dict[str, Any] | None,
    ) -> GraphResponse:
        request = self.request
        body: dict[str, Any] = {"@odata.context": request.context(self.kind)}
        path = f"/{self.kind}/delta"
        if next_state is not None:
            body["@odata.nextLink"] = request.url(
                path, {"$skiptoken": seal(request.state, next_state)}
            )
        if delta_state is not None:
            body["@odata.deltaLink"] = request.url(
                path, {"$deltatoken": seal(request.state, delta_state)}
            )
        body["value"] = values
        return GraphResponse(200, body)
