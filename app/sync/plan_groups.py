"""The group-sync planner: Entra groups + extension groups + rules → creates, updates, deletes.

Pure and deterministic: no I/O, the same input always gives the same plan. Synced groups keep
their seats; new groups take the free ones by display name, then id; names that clash get a
" (2)", " (3)", … suffix in that same order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from app.sync.groups_model import EntraGroup, PbxGroup
from app.sync.trace import NO_TRACE, Trace

NAME_MAX = 200


@dataclass(frozen=True)
class GroupRules:
    range_mode: str = "all"  # all | types | groups
    types: frozenset[str] = frozenset({"security", "microsoft365"})
    group_ids: frozenset[str] = frozenset()
    auto_delete_out_of_range: bool = True


@dataclass(frozen=True)
class GroupInput:
    groups: dict[str, EntraGroup]
    # Entra id -> reason ("deleted" | "changed": soft-deleted): removed in Entra.
    removed: dict[str, str] = field(default_factory=dict)
    # A full listing: a synced group missing from `groups` and `removed` is gone from Entra.
    full: bool = True


@dataclass(frozen=True)
class NewGroup:
    entra_id: str
    name: str
    display_name: str
    member_ids: tuple[str, ...]


@dataclass(frozen=True)
class GroupChange:
    group: PbxGroup
    entra_id: str
    name: str | None  # the new name, None when unchanged
    member_ids: tuple[str, ...] | None  # the new member list, None when unchanged
    adopt: bool = False

    @property
    def added(self) -> tuple[str, ...]:
        if self.member_ids is None:
            return ()
        return tuple(m for m in self.member_ids if m not in self.group.member_ids)

    @property
    def removed(self) -> tuple[str, ...]:
        if self.member_ids is None:
            return ()
        keep = set(self.member_ids)
        return tuple(sorted(m for m in self.group.member_ids if m not in keep))


@dataclass(frozen=True)
class GroupRemoval:
    group: PbxGroup
    reason: str  # deleted | out_of_range


@dataclass(frozen=True)
class GroupFailure:
    entra_id: str
    display_name: str | None
    code: str
    message: str


@dataclass(frozen=True)
class GroupWarning:
    entra_id: str
    code: str
    message: str


@dataclass
class GroupPlan:
    creates: list[NewGroup] = field(default_factory=list)
    updates: list[GroupChange] = field(default_factory=list)
    deletes: list[GroupRemoval] = field(default_factory=list)
    releases: list[GroupRemoval] = field(default_factory=list)
    failures: list[GroupFailure] = field(default_factory=list)
    warnings: list[GroupWarning] = field(default_factory=list)
    unchanged: int = 0
    # Members of in-range groups that are not synced extensions (counted once per group).
    skipped_members: int = 0
    # Entra ids whose earlier failure is settled by this plan.
    settled: set[str] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        return {
            "created": len(self.creates),
            "updated": len(self.updates) + len(self.releases),
            "deleted": len(self.deletes),
            "unchanged": self.unchanged,
            "failed": len(self.failures),
            "skipped_members": self.skipped_members,
        }


def in_range(group: EntraGroup, rules: GroupRules) -> bool:
    if rules.range_mode == "all":
        return True
    if rules.range_mode == "types":
        return group.kind in rules.types
    return group.id in rules.group_ids


class _Names:
    """Names in use, each with the extension group holding it ("" for one about to be made)."""

    def __init__(self, current: list[PbxGroup]) -> None:
        self.holder = {g.name: g.id for g in current}

    def free(self, name: str, owner: str) -> None:
        if self.holder.get(name) == owner:
            del self.holder[name]

    def take(self, wanted: str, owner: str) -> str:
        base = wanted.strip()[:NAME_MAX] or owner
        name, n = base, 1
        while self.holder.get(name, owner) != owner:
            n += 1
            suffix = f" ({n})"
            name = base[: NAME_MAX - len(suffix)] + suffix
        self.holder[name] = owner
        return name


def plan_groups(
    inp: GroupInput,
    current: list[PbxGroup],
    extensions: Mapping[str, str],
    rules: GroupRules,
    max_groups: int,
    *,
    free_deleted: bool = True,
    trace: Trace | None = None,
) -> GroupPlan:
    """Plan one run. `extensions` maps the Entra user id of each synced extension to its id.

    With `free_deleted` off (deletions held), the deleted groups keep their seats and names.
    `trace` records, for the groups it names, each verdict in the order it is reached."""
    plan = GroupPlan()
    traced = trace.ids if trace is not None else NO_TRACE

    def note(entra_id: str, step: str, ok: bool, detail: str, code: str | None = None) -> None:
        if entra_id in traced:
            assert trace is not None
            trace.add(entra_id, step, ok, detail, code)

    synced = {g.entra_id: g for g in current if g.managed_by == "entra" and g.entra_id}
    former = {g.former_entra_id: g for g in current if g.managed_by == "pbx" and g.former_entra_id}
    synced_ext_ids = set(extensions.values())
    names = _Names(current)
    seats = len(current)

    def remove(group: PbxGroup, reason: str, delete: bool) -> None:
        nonlocal seats
        (plan.deletes if delete else plan.releases).append(GroupRemoval(group, reason))
        if delete and free_deleted:
            seats -= 1
            names.free(group.name, group.id)

    def members(entra: EntraGroup, group: PbxGroup | None) -> tuple[str, ...]:
        if entra.member_user_ids is None:
            kept = group.member_ids & synced_ext_ids if group is not None else set()
            return tuple(sorted(kept))
        found = {extensions[u] for u in entra.member_user_ids if u in extensions}
        plan.skipped_members += sum(1 for u in entra.member_user_ids if u not in extensions)
        return tuple(sorted(found))

    def place(entra: EntraGroup, group: PbxGroup | None) -> str:
        owner = group.id if group is not None else f"entra:{entra.id}"
        if group is not None:
            names.free(group.name, group.id)
        name = names.take(entra.display_name, owner)
        clash = name != entra.display_name.strip()[:NAME_MAX]
        if entra.id in traced:
            why = f": {entra.display_name.strip()!r} is taken" if clash else ""
            note(entra.id, "name", True, f"Named {name!r}{why}.")
        if clash:
            plan.warnings.append(
                GroupWarning(
                    entra.id,
                    "group_name_taken",
                    f"An extension group named {entra.display_name!r} exists: "
                    f"this group is named {name!r}.",
                )
            )
        return name

    removed = dict(inp.removed)
    if inp.full:
        for entra_id in synced:
            if entra_id not in inp.groups and entra_id not in removed:
                removed[entra_id] = "deleted"
    for entra_id in sorted(removed):
        plan.settled.add(entra_id)
        if entra_id in traced:
            held = synced.get(entra_id)
            note(entra_id, "existing_group", True, _following(held))
            if held is not None:
                note(
                    entra_id,
                    "delete_rules",
                    True,
                    "Gone from Entra: the extension group is deleted.",
                )
        if entra_id in synced:
            remove(synced[entra_id], "deleted", True)

    pending: list[EntraGroup] = []
    for entra_id in sorted(inp.groups):
        if entra_id in removed:
            continue
        entra = inp.groups[entra_id]
        group = synced.get(entra_id)
        ranged = in_range(entra, rules)
        if entra_id in traced:
            note(entra_id, "type", True, f"Group type: {entra.kind}.")
            note(entra_id, "range", ranged, _range_detail(entra, rules, ranged))
            note(entra_id, "existing_group", True, _following(group))
        if not ranged:
            plan.settled.add(entra_id)
            if group is not None:
                delete = rules.auto_delete_out_of_range
                if entra_id in traced:
                    verb = "deleted" if delete else "released (kept, managed by the PBX)"
                    flag = "on" if delete else "off"
                    note(
                        entra_id, "delete_rules", True, f"Out of range, auto delete {flag}: {verb}."
                    )
                remove(group, "out_of_range", delete)
            continue
        if group is None:
            pending.append(entra)
            continue
        plan.settled.add(entra_id)
        _change(plan, group, entra, place(entra, group), members(entra, group), adopt=False)

    if not inp.full:
        # Groups Entra reported nothing about keep their members, less the extensions that
        # stopped being synced.
        for entra_id in sorted(synced.keys() - inp.groups.keys() - removed.keys()):
            group = synced[entra_id]
            kept = group.member_ids & synced_ext_ids
            if kept != group.member_ids:
                plan.updates.append(GroupChange(group, entra_id, None, tuple(sorted(kept))))
            else:
                plan.unchanged += 1

    # Re-adoption by former Entra id takes no new seat; new groups go by name, then id.
    adopting = [e for e in pending if e.id in former]
    for entra in adopting:
        group = former[entra.id]
        plan.settled.add(entra.id)
        note(
            entra.id,
            "existing_group",
            True,
            f"Extension group {group.name!r} followed this group before: it is taken over again.",
        )
        _change(plan, group, entra, place(entra, group), members(entra, group), adopt=True)
    for entra in sorted(
        (e for e in pending if e.id not in former), key=lambda e: (e.display_name, e.id)
    ):
        if seats >= max_groups:
            note(
                entra.id,
                "limit",
                False,
                f"{seats} of {max_groups} extension groups in use.",
                "group_limit_reached",
            )
            plan.failures.append(
                GroupFailure(
                    entra.id,
                    entra.display_name,
                    "group_limit_reached",
                    f"The PBX allows {max_groups} extension groups.",
                )
            )
            continue
        note(
            entra.id, "limit", True, f"{seats} of {max_groups} extension groups in use (as of now)."
        )
        seats += 1
        plan.settled.add(entra.id)
        name = place(entra, None)
        plan.creates.append(NewGroup(entra.id, name, entra.display_name, members(entra, None)))
    return plan


def _following(group: PbxGroup | None) -> str:
    if group is None:
        return "No extension group follows this group."
    return f"Extension group {group.name!r} follows this group."


def _range_detail(entra: EntraGroup, rules: GroupRules, ok: bool) -> str:
    if rules.range_mode == "all":
        return "The range is all groups."
    if rules.range_mode == "types":
        wanted = ", ".join(sorted(rules.types)) or "none"
        return f"Type {entra.kind!r} {'is' if ok else 'is not'} in the range ({wanted})."
    return "Chosen in the range." if ok else "Not among the groups chosen for the range."


def _change(
    plan: GroupPlan,
    group: PbxGroup,
    entra: EntraGroup,
    name: str,
    member_ids: tuple[str, ...],
    *,
    adopt: bool,
) -> None:
    new_name = name if name != group.name else None
    new_members = member_ids if set(member_ids) != group.member_ids else None
    if new_name is None and new_members is None and not adopt:
        plan.unchanged += 1
        return
    plan.updates.append(GroupChange(group, entra.id, new_name, new_members, adopt=adopt))
