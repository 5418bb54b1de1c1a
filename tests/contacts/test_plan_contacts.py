"""The contacts planner alone (pure): validation, numbers, change keys, targets, phonebook names."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.sync.plan_contacts import (
    ContactsInput,
    FolderRead,
    Mailbox,
    OutlookContact,
    PbxContact,
    PbxPhonebook,
    normalise_number,
    owners_needed,
    plan_contacts,
)


def outlook(cid: str, key: str = "k1", **fields: str | None) -> OutlookContact:
    values: dict[str, str | None] = {
        "first_name": "Ann",
        "last_name": "Lee",
        "mobile_phone": "+1 425 555 0100",
    }
    values.update(fields)
    return OutlookContact(id=cid, change_key=key, display_name=None, **values)


def held(cid: str, owner: str, key: str = "k1", **fields: str | None) -> PbxContact:
    values: dict[str, str | None] = {
        "first_name": "Ann",
        "last_name": "Lee",
        "company": None,
        "email": None,
        "mobile_phone": "+1 425 555 0100",
        "home_phone": None,
        "business_phone": None,
    }
    values.update(fields)
    return PbxContact(f"row-{cid}", cid, owner, key, **values)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("+1 (425) 555-0100", "+14255550100"),
        ("020 7946 0000", "02079460000"),
        ("+49 89 3176 0042 ext 142", "+498931760042"),
        ("+1 425 555 0109 x4711", "+14255550109"),
        ("n/a", None),
        ("", None),
        (None, None),
    ],
)
def test_numbers_are_normalised_for_lookup(given: str | None, expected: str | None) -> None:
    assert normalise_number(given) == expected


def test_validation_and_change_keys() -> None:
    read = FolderRead(
        "u1",
        True,
        {
            "same": outlook("same"),
            "newer": outlook("newer", key="k2", last_name="Changed"),
            "touched": outlook("touched", key="k2"),
            "fresh": outlook("fresh"),
            "noname": outlook("noname", first_name=None, last_name=None),
            "nophone": outlook("nophone", mobile_phone=None),
        },
    )
    current = {
        "ext1": [
            held("same", "ext1"),
            held("newer", "ext1"),
            held("touched", "ext1"),
            held("nophone", "ext1"),
            held("vanished", "ext1"),
        ]
    }
    inp = ContactsInput(personal={"u1": read}, users={"u1": "ext1"}, shared_enabled=False)
    plan = plan_contacts(inp, [], current, {"ext1"})
    assert [c.entra_id for c in plan.creates] == ["fresh"]
    updates = {u.contact.entra_id: u for u in plan.updates}
    assert set(updates) == {"newer", "touched"}
    assert updates["newer"].fields == {"last_name": ("Lee", "Changed")}
    assert updates["touched"].fields == {}  # only the change key moved
    assert plan.unchanged == 1
    assert {(d.contact.entra_id, d.reason) for d in plan.deletes} == {
        ("vanished", "deleted"),
        ("nophone", "invalid"),
    }
    assert {(f.source_id, f.code) for f in plan.failures} == {
        ("noname", "contact_missing_name"),
        ("nophone", "contact_missing_phone"),
    }


def test_delta_rounds_touch_only_what_they_name() -> None:
    read = FolderRead("u1", False, {"b": outlook("b", key="k9", first_name="Bo")}, {"c"})
    current = {"ext1": [held("a", "ext1"), held("b", "ext1"), held("c", "ext1")]}
    inp = ContactsInput(personal={"u1": read}, users={"u1": "ext1"}, shared_enabled=False)
    plan = plan_contacts(inp, [], current, {"ext1"})
    assert [u.contact.entra_id for u in plan.updates] == ["b"]
    assert [d.contact.entra_id for d in plan.deletes] == ["c"]
    assert plan.creates == []


def test_unshared_and_out_of_range_users_lose_their_contacts() -> None:
    current = {"ext1": [held("a", "ext1")], "ext2": [held("b", "ext2")]}
    inp = ContactsInput(personal={}, users={"u1": "ext1"}, shared_enabled=False)
    assert owners_needed(inp, [], {"ext1", "ext2"}) == {"ext1", "ext2"}
    plan = plan_contacts(inp, [], current, {"ext1", "ext2"})
    assert {(d.contact.entra_id, d.reason) for d in plan.deletes} == {
        ("a", "not_shared"),
        ("b", "out_of_range"),
    }


def test_phonebooks_created_renamed_suffixed_kept_and_deleted() -> None:
    books = [
        PbxPhonebook("p1", "Partners", "pbx", None),
        PbxPhonebook("p2", "Old Name", "entra", "mb-renamed"),
        PbxPhonebook("p3", "Closed", "entra", "mb-closed"),
        PbxPhonebook("p4", "Gone", "entra", "mb-gone"),
    ]
    inp = ContactsInput(
        personal_enabled=False,
        mailboxes={
            "mb-new": Mailbox(
                "mb-new", "Partners", FolderRead("mb-new", True, {"x": outlook("x")})
            ),
            "mb-renamed": Mailbox("mb-renamed", "New Name", FolderRead("mb-renamed", True)),
            "mb-closed": Mailbox("mb-closed", "Closed", None),
        },
    )
    current = {"p4": [held("g", "p4")], "p3": [held("c", "p3")]}
    assert owners_needed(inp, books, set()) == {"p2", "p4"}
    plan = plan_contacts(inp, books, current, set())
    assert [(b.mailbox_id, b.name) for b in plan.book_creates] == [("mb-new", "Partners (2)")]
    assert [w.code for w in plan.warnings] == ["phonebook_name_taken"]
    assert [(r.book.id, r.name) for r in plan.book_renames] == [("p2", "New Name")]
    assert [(d.book.id, d.reason) for d in plan.book_deletes] == [("p4", "out_of_range")]
    assert [d.contact.entra_id for d in plan.deletes] == ["g"]  # "c" is kept: mailbox unread
    assert [(c.owner_kind, c.owner) for c in plan.creates] == [("phonebook", "mb-new")]


def test_released_phonebooks_and_contacts_are_taken_back() -> None:
    books = [PbxPhonebook("p1", "Desk", "pbx", None, "mb1")]
    read = FolderRead("mb1", True, {"a": outlook("a")})
    inp = ContactsInput(personal_enabled=False, mailboxes={"mb1": Mailbox("mb1", "Desk", read)})
    assert owners_needed(inp, books, set()) == {"p1"}
    released = held("a", "p1", key="old")
    released_gone = held("z", "p1")
    current = {
        "p1": [
            replace(released, adopt=True),
            replace(released_gone, adopt=True),
        ]
    }
    plan = plan_contacts(inp, books, current, set())
    assert plan.book_creates == [] and plan.warnings == []
    assert [(r.book.id, r.adopt) for r in plan.book_renames] == [("p1", True)]
    assert [u.contact.entra_id for u in plan.updates] == ["a"]
    assert plan.creates == [] and plan.deletes == []  # "z" stays the PBX's
