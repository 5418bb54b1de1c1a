"""The user planner, pure: every rule of the user-sync section, and determinism (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.sync.plan_users import UserInput, UserRules, parse_number, plan_users
from app.sync.users_model import EntraUser, PbxExtension


def user(uid: str, **kw: object) -> EntraUser:
    base = dict(
        id=uid,
        display_name=f"User {uid}",
        given_name=f"Given{uid}",
        surname=f"Sur{uid}",
        mail=f"{uid}@contoso.com",
        upn=f"{uid}@contoso.onmicrosoft.com",
        user_type="Member",
        enabled=True,
        mobile=None,
        job_title=None,
        number_value=None,
    )
    base.update(kw)
    return EntraUser(**base)


def ext(
    eid: str,
    number: str,
    *,
    entra_id: str | None = None,
    managed_by: str = "entra",
    email: str | None = None,
    former: str | None = None,
    **kw: object,
) -> PbxExtension:
    base = dict(
        id=eid,
        number=number,
        first_name=f"Given{entra_id}" if entra_id else "Manual",
        last_name=f"Sur{entra_id}" if entra_id else None,
        email=email if email is not None else (f"{entra_id}@contoso.com" if entra_id else None),
        mobile=None,
        job_title=None,
        managed_by=managed_by,
        entra_id=entra_id,
        former_entra_id=former,
    )
    base.update(kw)
    return PbxExtension(**base)


def run(
    users: list[EntraUser],
    current: list[PbxExtension] | None = None,
    rules: UserRules | None = None,
    max_ext: int = 1000,
    **inp: object,
):
    return plan_users(
        UserInput(users={u.id: u for u in users}, **inp),
        current or [],
        rules or UserRules(),
        max_ext,
    )


@pytest.mark.parametrize(
    "value, number, code",
    [
        ("+1 425 555 0100 x1234", "1234", None),
        ("+1 425 555 0100 ext. 77", "77", None),
        ("+1 425 555 0100 Ext 5001", "5001", None),
        ("1234", "1234", None),
        ("12", "12", None),
        ("1", None, "extension_number_invalid"),
        ("+1 425 555 0100", None, "extension_number_invalid"),
        ("1234567890123", None, "extension_number_invalid"),
        ("abc", None, "extension_number_invalid"),
        ("", None, "missing_required_field"),
        (None, None, "missing_required_field"),
        ("x", None, "extension_number_invalid"),
    ],
)
def test_parse_number(value: str | None, number: str | None, code: str | None) -> None:
    assert parse_number(value) == (number, code)


def test_auto_numbers_skip_used_and_go_by_entra_id() -> None:
    current = [ext("m1", "1001", managed_by="pbx", entra_id=None, email="manual@x.com")]
    plan = run([user("b"), user("a"), user("c")], current)
    assert [(c.entra_id, c.number) for c in plan.creates] == [
        ("a", "1000"),
        ("b", "1002"),
        ("c", "1003"),
    ]


def test_existing_numbers_are_stable() -> None:
    current = [ext("e1", "1500", entra_id="a")]
    plan = run([user("a"), user("b")], current)
    assert plan.updates == [] and plan.unchanged == 1
    assert [(c.entra_id, c.number) for c in plan.creates] == [("b", "1000")]


def test_property_numbers_and_their_failures() -> None:
    rules = UserRules(number_mode="property", number_property="businessPhones")
    current = [ext("m", "300", managed_by="pbx", entra_id=None, email="m@x.com")]
    users = [
        user("a", number_value="+1 206 555 0100 x200"),
        user("b", number_value=None),
        user("c", number_value="+1 206 555 0100"),
        user("d", number_value="300"),
        user("e", number_value="200"),
    ]
    plan = run(users, current, rules)
    assert [(c.entra_id, c.number) for c in plan.creates] == [("a", "200")]
    assert {f.entra_id: f.code for f in plan.failures} == {
        "b": "missing_required_field",
        "c": "extension_number_invalid",
        "d": "extension_number_taken",
        "e": "extension_number_taken",
    }


def test_field_mapping_name_fallback_and_guest_upn() -> None:
    users = [
        user(
            "a",
            given_name=None,
            surname=None,
            display_name="Front Desk",
            mail=None,
            upn="frontdesk@contoso.com",
        ),
        user("b", given_name=None, surname=None, display_name=None),
        user(
            "c", mail=None, upn="jane_fabrikam.com#EXT#@contoso.onmicrosoft.com", user_type="Guest"
        ),
        user("d", mobile="+1 555", job_title="CFO"),
    ]
    plan = run(users, rules=UserRules(range_mode="all"))
    by = {c.entra_id: c for c in plan.creates}
    assert (by["a"].first_name, by["a"].last_name, by["a"].email) == (
        "Front Desk",
        None,
        "frontdesk@contoso.com",
    )
    assert by["c"].email is None
    assert (by["d"].mobile, by["d"].job_title) == ("+1 555", "CFO")
    assert [(f.entra_id, f.code) for f in plan.failures] == [("b", "missing_required_field")]


def test_ranges() -> None:
    users = [user("m"), user("g", user_type="Guest")]
    members = run(users, rules=UserRules(range_mode="user_types", user_types=frozenset({"member"})))
    assert [c.entra_id for c in members.creates] == ["m"]
    guests = run(users, rules=UserRules(range_mode="user_types", user_types=frozenset({"guest"})))
    assert [c.entra_id for c in guests.creates] == ["g"]
    grouped = run(users, rules=UserRules(range_mode="groups"), in_groups=frozenset({"g"}))
    assert [c.entra_id for c in grouped.creates] == ["g"]


@pytest.mark.parametrize(
    "auto_delete, deleted, released", [(True, ["e1"], []), (False, [], ["e1"])]
)
def test_out_of_range(auto_delete: bool, deleted: list[str], released: list[str]) -> None:
    rules = UserRules(
        range_mode="user_types",
        user_types=frozenset({"member"}),
        auto_delete_out_of_range=auto_delete,
    )
    plan = run([user("a", user_type="Guest")], [ext("e1", "1000", entra_id="a")], rules)
    assert [r.ext.id for r in plan.deletes] == deleted
    assert [r.ext.id for r in plan.releases] == released
    assert all(r.reason == "out_of_range" for r in plan.deletes + plan.releases)


@pytest.mark.parametrize("delete_when, deleted", [({"disabled"}, True), (set(), False)])
def test_disabled_user(delete_when: set[str], deleted: bool) -> None:
    rules = UserRules(delete_when=frozenset(delete_when))
    current = [ext("e1", "1000", entra_id="a")]
    plan = run(
        [user("a", enabled=False, job_title="Gone"), user("b", enabled=False)], current, rules
    )
    assert plan.creates == []  # a disabled account never gets a new extension
    if deleted:
        assert [r.ext.id for r in plan.deletes] == ["e1"] and plan.updates == []
    else:
        assert plan.deletes == [] and plan.updates[0].fields == {"job_title": (None, "Gone")}


@pytest.mark.parametrize("reason", ["changed", "deleted"])
@pytest.mark.parametrize("delete_when, deleted", [({"deleted"}, True), (set(), False)])
def test_deleted_user(reason: str, delete_when: set[str], deleted: bool) -> None:
    rules = UserRules(delete_when=frozenset(delete_when))
    plan = run([], [ext("e1", "1000", entra_id="a")], rules, removed={"a": reason}, full=False)
    assert [r.ext.id for r in plan.deletes] == (["e1"] if deleted else [])
    assert [r.ext.id for r in plan.releases] == ([] if deleted else ["e1"])


def test_missing_from_full_listing_counts_as_deleted_but_not_in_delta() -> None:
    current = [ext("e1", "1000", entra_id="a")]
    assert [r.ext.id for r in run([], current).deletes] == ["e1"]
    assert run([], current, full=False).deletes == []


def test_what_only_entra_can_fix_fails_first_whatever_the_pbx_holds() -> None:
    """A user without a usable property number fails for that, also when the PBX is full or
    the address is in use (those are reported only for users who could take a seat); a user
    an existing extension can be associated with needs no number of its own."""
    rules = UserRules(number_mode="property", number_property="businessPhones")
    taken = ext("m", "300", managed_by="pbx", entra_id=None, email="b@contoso.com")
    users = [
        user("a", number_value=None),
        user("b", number_value="x"),
        user("c", number_value="77"),
    ]
    full = run(users, [taken], rules, max_ext=1)
    assert {f.entra_id: f.code for f in full.failures} == {
        "a": "missing_required_field",
        "b": "extension_number_invalid",
        "c": "capacity_exceeded",
    }
    associating = replace(rules, associate_by_email=True)
    plan = run([user("b", number_value=None)], [taken], associating, max_ext=1)
    assert [u.ext.id for u in plan.updates] == ["m"] and plan.failures == []


@pytest.mark.parametrize("associate", [True, False])
def test_association_by_email_is_case_insensitive(associate: bool) -> None:
    current = [ext("m1", "200", managed_by="pbx", entra_id=None, email="A@Contoso.COM")]
    plan = run([user("a", mail="a@contoso.com")], current, UserRules(associate_by_email=associate))
    if associate:
        [u] = plan.updates
        assert u.associate and u.ext.id == "m1" and plan.associated == 1 and plan.creates == []
        assert u.fields["email"] == ("A@Contoso.COM", "a@contoso.com")
    else:
        assert plan.updates == [] and plan.creates == []
        assert [(f.entra_id, f.code) for f in plan.failures] == [("a", "email_taken")]


def test_association_never_steals_another_synced_extension() -> None:
    current = [ext("e1", "200", entra_id="x", email="a@contoso.com")]
    plan = run(
        [user("x", mail="other@contoso.com"), user("a", mail="a@contoso.com")],
        current,
        UserRules(associate_by_email=True),
    )
    # x moves to a new address first, so a's address is free by the time a is planned.
    assert [c.entra_id for c in plan.creates] == ["a"]


def test_former_entra_id_re_adopts_even_without_email_association() -> None:
    current = [
        ext("old", "300", managed_by="pbx", entra_id=None, former="a", email="old@contoso.com"),
        ext("other", "301", managed_by="pbx", entra_id=None, email="b@contoso.com"),
    ]
    plan = run([user("a")], current, UserRules(associate_by_email=False))
    [u] = plan.updates
    assert (
        u.ext.id == "old"
        and u.associate
        and u.fields["email"] == ("old@contoso.com", "a@contoso.com")
    )
    assert plan.creates == [] and plan.failures == []


def test_capacity_keeps_seats_and_goes_by_entra_id() -> None:
    current = [
        ext("e1", "1000", entra_id="z"),
        ext("m", "5", managed_by="pbx", entra_id=None, email="m@x.com"),
    ]
    plan = run([user("z"), user("c"), user("b"), user("a")], current, max_ext=4)
    assert [c.entra_id for c in plan.creates] == ["a", "b"]
    assert [(f.entra_id, f.code) for f in plan.failures] == [("c", "capacity_exceeded")]
    assert plan.deletes == []


def test_deletions_free_seats_numbers_and_emails_for_creates() -> None:
    current = [ext("e1", "1000", entra_id="gone", email="new@contoso.com")]
    plan = run([user("n", mail="new@contoso.com")], current, max_ext=1)
    assert [r.ext.id for r in plan.deletes] == ["e1"]
    assert [(c.entra_id, c.number) for c in plan.creates] == [("n", "1000")]


def test_email_change_to_a_taken_address_fails_that_user() -> None:
    current = [
        ext("e1", "1000", entra_id="a"),
        ext("m", "2", managed_by="pbx", entra_id=None, email="b@x.com"),
    ]
    plan = run([user("a", mail="B@x.com")], current)
    assert [(f.entra_id, f.code) for f in plan.failures] == [("a", "email_taken")]
    assert plan.updates == []


users_st = st.lists(
    st.builds(
        user,
        st.text(alphabet="abcdef0123", min_size=1, max_size=4),
        user_type=st.sampled_from(["Member", "Guest"]),
        enabled=st.booleans(),
        mail=st.sampled_from(["x@c.com", "X@c.com", "y@c.com", None]),
        given_name=st.sampled_from(["A", None]),
        surname=st.sampled_from(["B", None]),
        display_name=st.sampled_from(["D", None]),
    ),
    max_size=25,
    unique_by=lambda u: u.id,
)


@settings(max_examples=150, deadline=None)
@given(
    users=users_st,
    max_ext=st.integers(min_value=0, max_value=30),
    start=st.sampled_from(["1000", "0007"]),
)
def test_plans_are_deterministic_and_consistent(
    users: list[EntraUser], max_ext: int, start: str
) -> None:
    rules = UserRules(range_mode="all", number_start=start, associate_by_email=True)
    a = run(users, rules=rules, max_ext=max_ext)
    b = run(list(reversed(users)), rules=rules, max_ext=max_ext)
    assert a == b
    numbers = [c.number for c in a.creates]
    assert len(numbers) == len(set(numbers)) and all(len(n) >= len(start) for n in numbers)
    emails = [c.email.lower() for c in a.creates if c.email]
    assert len(emails) == len(set(emails))
    assert len(a.creates) <= max_ext
    planned = {c.entra_id for c in a.creates} | {f.entra_id for f in a.failures}
    assert planned <= {u.id for u in users if u.enabled}
    # Applying the plan and planning again changes nothing.
    after = [
        ext(
            f"n{i}",
            c.number,
            entra_id=c.entra_id,
            email=c.email,
            first_name=c.first_name,
            last_name=c.last_name,
            mobile=c.mobile,
            job_title=c.job_title,
        )
        for i, c in enumerate(a.creates)
    ]
    again = run(users, after, rules, max_ext=max_ext)
    assert again.creates == [] or len(after) >= max_ext
    assert again.updates == [] and again.deletes == [] and again.releases == []


def test_replace_keeps_frozen_dataclass() -> None:
    assert replace(user("a"), enabled=False).enabled is False


def test_held_deletions_keep_what_they_hold() -> None:
    current = [ext("e1", "1000", entra_id="gone", email="new@contoso.com")]
    users = [user("n", mail="new@contoso.com")]
    plan = plan_users(
        UserInput(users={u.id: u for u in users}), current, UserRules(), 1, free_deleted=False
    )
    assert [r.ext.id for r in plan.deletes] == ["e1"]
    assert plan.creates == [] and [f.code for f in plan.failures] == ["email_taken"]
