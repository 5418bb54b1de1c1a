"""The group planner, pure: ranges, names, members, the limit, removals, and determinism."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.sync.groups_model import EntraGroup, PbxGroup, group_kind
from app.sync.plan_groups import GroupInput, GroupPlan, GroupRules, plan_groups

EXTS = {f"u{i}": f"x{i}" for i in range(10)}  # Entra user id -> synced extension id


def eg(
    gid: str, name: str | None = None, kind: str = "security", members: list[str] | None = None
) -> EntraGroup:
    return EntraGroup(
        gid, name or f"Group {gid}", kind, frozenset(members) if members is not None else None
    )


def pg(
    pid: str,
    name: str,
    *,
    entra_id: str | None = None,
    managed_by: str = "entra",
    former: str | None = None,
    members: list[str] | None = None,
) -> PbxGroup:
    return PbxGroup(pid, name, managed_by, entra_id, former, frozenset(members or []))


def run(
    groups: list[EntraGroup],
    current: list[PbxGroup] | None = None,
    rules: GroupRules | None = None,
    max_groups: int = 63,
    *,
    removed: dict[str, str] | None = None,
    full: bool = True,
    free_deleted: bool = True,
) -> GroupPlan:
    return plan_groups(
        GroupInput({g.id: g for g in groups}, removed or {}, full),
        current or [],
        EXTS,
        rules or GroupRules(),
        max_groups,
        free_deleted=free_deleted,
    )


@pytest.mark.parametrize(
    "item, kind",
    [
        ({"groupTypes": ["Unified"], "mailEnabled": True}, "microsoft365"),
        ({"groupTypes": [], "securityEnabled": True, "mailEnabled": False}, "security"),
        ({"groupTypes": [], "securityEnabled": True, "mailEnabled": True}, "security"),
        ({"groupTypes": [], "securityEnabled": False, "mailEnabled": True}, "distribution"),
        ({"groupTypes": ["DynamicMembership"], "securityEnabled": False}, "other"),
    ],
)
def test_group_kind_mapping(item: dict[str, object], kind: str) -> None:
    assert group_kind(item) == kind


def test_ranges_all_types_and_chosen_groups() -> None:
    groups = [
        eg("s", kind="security", members=[]),
        eg("m", kind="microsoft365", members=[]),
        eg("d", kind="distribution", members=[]),
        eg("o", kind="other", members=[]),
    ]

    def made(rules: GroupRules) -> set[str]:
        return {c.entra_id for c in run(groups, rules=rules).creates}

    assert made(GroupRules()) == {"s", "m", "d", "o"}
    assert made(GroupRules(range_mode="types", types=frozenset({"security"}))) == {"s"}
    assert made(GroupRules(range_mode="types", types=frozenset({"microsoft365"}))) == {"m"}
    assert made(GroupRules(range_mode="groups", group_ids=frozenset({"d", "x"}))) == {"d"}


def test_members_are_synced_extensions_and_others_are_counted() -> None:
    plan = run([eg("g", members=["u1", "u2", "stranger", "admin"])])
    assert plan.creates[0].member_ids == ("x1", "x2")
    assert plan.skipped_members == 2


def test_name_and_members_follow_entra() -> None:
    current = [pg("p1", "Old", entra_id="g", members=["x1", "x9"])]
    plan = run([eg("g", "New", members=["u1", "u2"])], current)
    [u] = plan.updates
    assert u.name == "New" and u.member_ids == ("x1", "x2")
    assert u.added == ("x2",) and u.removed == ("x9",)
    same = run([eg("g", "Old", members=["u1", "u9"])], current)
    assert same.updates == [] and same.unchanged == 1


def test_name_clash_with_a_manual_group_gets_a_deterministic_suffix() -> None:
    current = [pg("m1", "Sales", managed_by="pbx"), pg("m2", "Sales (2)", managed_by="pbx")]
    plan = run([eg("b", "Sales", members=[]), eg("a", "Sales", members=[])], current)
    assert [(c.entra_id, c.name) for c in plan.creates] == [("a", "Sales (3)"), ("b", "Sales (4)")]
    assert [(w.entra_id, w.code) for w in plan.warnings] == [
        ("a", "group_name_taken"),
        ("b", "group_name_taken"),
    ]
    # A synced group keeps its suffixed name while the clash lasts.
    kept = run([eg("a", "Sales", members=[])], [*current, pg("p", "Sales (3)", entra_id="a")])
    assert kept.updates == [] and kept.unchanged == 1


def test_limit_keeps_synced_seats_and_goes_by_name_then_id() -> None:
    current = [pg("p1", "Zulu", entra_id="z"), pg("m", "Manual", managed_by="pbx")]
    groups = [
        eg("z", "Zulu", members=[]),
        eg("c", "Bravo", members=[]),
        eg("b", "Alpha", members=[]),
        eg("a", "Bravo", members=[]),
    ]
    plan = run(groups, current, max_groups=4)
    assert [c.entra_id for c in plan.creates] == ["b", "a"]
    assert [(f.entra_id, f.code) for f in plan.failures] == [("c", "group_limit_reached")]
    assert plan.unchanged == 1  # the synced group kept its seat


@pytest.mark.parametrize("auto_delete", [True, False])
def test_out_of_range_deleted_or_released(auto_delete: bool) -> None:
    current = [pg("p1", "Team", entra_id="g", members=["x1"])]
    rules = GroupRules(
        range_mode="types", types=frozenset({"microsoft365"}), auto_delete_out_of_range=auto_delete
    )
    plan = run([eg("g", "Team", kind="security")], current, rules)
    removals = plan.deletes if auto_delete else plan.releases
    assert [(r.group.id, r.reason) for r in removals] == [("p1", "out_of_range")]
    assert (plan.releases if auto_delete else plan.deletes) == []


@pytest.mark.parametrize("auto_delete", [True, False])
def test_deleted_in_entra_is_always_deleted(auto_delete: bool) -> None:
    current = [pg("p1", "A", entra_id="a"), pg("p2", "B", entra_id="b")]
    rules = GroupRules(auto_delete_out_of_range=auto_delete)
    delta = run([], current, rules, removed={"a": "deleted"}, full=False)
    assert [r.group.id for r in delta.deletes] == ["p1"] and delta.unchanged == 1
    listing = run([eg("b", "B", members=[])], current, rules)
    assert [r.group.id for r in listing.deletes] == ["p1"]


def test_former_entra_id_is_re_adopted_without_a_seat() -> None:
    current = [pg("p1", "Old name", managed_by="pbx", former="g", members=["x3"])]
    plan = run([eg("g", "Team", members=["u1"])], current, max_groups=1)
    [u] = plan.updates
    assert u.adopt and u.name == "Team" and u.member_ids == ("x1",) and plan.failures == []


def test_incremental_run_drops_members_that_stopped_being_synced() -> None:
    current = [pg("p1", "A", entra_id="a", members=["x1", "released"])]
    plan = run([], current, full=False)
    assert [(u.group.id, u.member_ids) for u in plan.updates] == [("p1", ("x1",))]
    renamed = run([eg("a", "A2")], current, full=False)  # members not read this run
    assert renamed.updates[0].name == "A2" and renamed.updates[0].member_ids == ("x1",)


def test_held_deletions_keep_their_seats_and_names() -> None:
    current = [pg("p1", "Sales", entra_id="gone")]
    groups = [eg("n", "Sales", members=[])]
    held = run(groups, current, max_groups=1, free_deleted=False)
    assert [r.group.id for r in held.deletes] == ["p1"]
    assert held.creates == [] and [f.code for f in held.failures] == ["group_limit_reached"]
    freed = run(groups, current, max_groups=1)
    assert [(c.entra_id, c.name) for c in freed.creates] == [("n", "Sales")]


names = st.sampled_from(["Sales", "Ops", "Sales (2)", "R&D"])
groups_st = st.lists(
    st.builds(
        EntraGroup,
        id=st.text("abcdef", min_size=1, max_size=3),
        display_name=names,
        kind=st.sampled_from(["security", "microsoft365", "distribution", "other"]),
        member_user_ids=st.frozensets(st.sampled_from([*EXTS, "s1", "s2"]), max_size=5),
    ),
    max_size=20,
    unique_by=lambda g: g.id,
)


@settings(max_examples=150, deadline=None)
@given(
    groups=groups_st,
    manual=st.lists(names, max_size=3, unique=True),
    max_groups=st.integers(min_value=0, max_value=12),
    types=st.sampled_from([None, frozenset({"security"}), frozenset({"microsoft365", "other"})]),
)
def test_plans_are_deterministic_and_converge(
    groups: list[EntraGroup], manual: list[str], max_groups: int, types: frozenset[str] | None
) -> None:
    rules = GroupRules(range_mode="types", types=types) if types else GroupRules()
    current = [pg(f"m{i}", n, managed_by="pbx") for i, n in enumerate(manual)]
    a = run(groups, current, rules, max_groups)
    b = run(list(reversed(groups)), list(reversed(current)), rules, max_groups)
    assert a == b
    names_now = [g.name for g in current] + [c.name for c in a.creates]
    assert len(names_now) == len(set(names_now))
    assert len(current) + len(a.creates) <= max(max_groups, len(current))
    failed = {f.entra_id for f in a.failures}
    ordered = sorted(
        (g for g in groups if g.id in {c.entra_id for c in a.creates} | failed),
        key=lambda g: (g.display_name, g.id),
    )
    # Seats go in (display name, id) order: no failed group comes before a created one.
    flags = [g.id in failed for g in ordered]
    assert flags == sorted(flags)
    # Applying the plan and planning again changes nothing.
    after = current + [
        pg(f"n{i}", c.name, entra_id=c.entra_id, members=list(c.member_ids))
        for i, c in enumerate(a.creates)
    ]
    again = run(groups, after, rules, max_groups)
    assert again.creates == [] and again.updates == [] and again.deletes == []
    assert {f.entra_id for f in again.failures} == failed
