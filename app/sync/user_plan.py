"""The user plan's types and the user-level rules the planner applies: ranges, the synced fields,
numbers (parsed from a property, or the next free one from a start number).

Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from app.sync.users_model import EntraUser, PbxExtension

SYNCED_FIELDS = ("first_name", "last_name", "email", "mobile", "job_title")
_EXT_SUFFIX = re.compile(r"(?:x|ext\.?|extension)\s*[:.]?\s*(\S+)\s*$", re.IGNORECASE)
_DIGITS = re.compile(r"^[0-9]{2,12}$")


@dataclass(frozen=True)
class UserRules:
    range_mode: str = "all"
    user_types: frozenset[str] = frozenset({"member"})
    group_ids: frozenset[str] = frozenset()
    auto_delete_out_of_range: bool = True
    number_mode: str = "auto"
    number_start: str = "1000"
    number_property: str = "businessPhones"
    delete_when: frozenset[str] = frozenset({"disabled", "deleted"})
    associate_by_email: bool = False
    send_welcome_email: bool = False


@dataclass(frozen=True)
class UserInput:
    users: dict[str, EntraUser]
    # Entra id -> "changed" (soft-deleted) | "deleted" (gone): from delta, or missing from a full listing.
    removed: dict[str, str] = field(default_factory=dict)
    # For range "groups": the users in range (transitive members); None for the other modes.
    in_groups: frozenset[str] | None = None
    full: bool = True


@dataclass(frozen=True)
class NewExtension:
    entra_id: str
    number: str
    first_name: str | None
    last_name: str | None
    email: str | None
    mobile: str | None
    job_title: str | None
    display_name: str


@dataclass(frozen=True)
class ExtensionChange:
    ext: PbxExtension
    entra_id: str
    fields: dict[str, tuple[str | None, str | None]]
    associate: bool = False


@dataclass(frozen=True)
class Removal:
    ext: PbxExtension
    reason: str  # deleted | disabled | out_of_range


@dataclass(frozen=True)
class Failure:
    entra_id: str
    display_name: str | None
    code: str
    message: str
    # What was contested: the number (extension_number_taken) or email key (email_taken).
    conflict: str | None = None


@dataclass
class UserPlan:
    creates: list[NewExtension] = field(default_factory=list)
    updates: list[ExtensionChange] = field(default_factory=list)
    deletes: list[Removal] = field(default_factory=list)
    releases: list[Removal] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    unchanged: int = 0
    # Entra ids whose earlier failure is settled by this plan.
    settled: set[str] = field(default_factory=set)

    @property
    def associated(self) -> int:
        return sum(1 for u in self.updates if u.associate)

    def counts(self) -> dict[str, int]:
        return {
            "created": len(self.creates),
            "updated": sum(1 for u in self.updates if not u.associate) + len(self.releases),
            "deleted": len(self.deletes),
            "associated": self.associated,
            "unchanged": self.unchanged,
            "failed": len(self.failures),
        }


class NumberSet(Protocol):
    """The numbers in use, as the planner asks about them: a set, or a view that answers from
    indexed lookups (one user's plan on a large PBX)."""

    def __contains__(self, number: object) -> bool: ...
    def add(self, number: str) -> None: ...
    def discard(self, number: str) -> None: ...
    def copy(self) -> NumberSet: ...


def parse_number(value: str | None) -> tuple[str | None, str | None]:
    """(number, None) or (None, failure code) by the property rule of the contract."""
    if value is None or not value.strip():
        return None, "missing_required_field"
    text = value.strip()
    match = _EXT_SUFFIX.search(text)
    candidate = match.group(1) if match else text
    if _DIGITS.match(candidate):
        return candidate, None
    return None, "extension_number_invalid"


def desired_fields(user: EntraUser) -> dict[str, str | None] | None:
    """The extension's synced fields for a user, or None when it has no usable name."""
    first, last = user.given_name or None, user.surname or None
    if not first and not last:
        if not user.display_name:
            return None
        first = user.display_name
    email = user.mail or None
    if not email and user.upn and "#EXT#" not in user.upn.upper():
        email = user.upn
    return {
        "first_name": first,
        "last_name": last,
        "email": email,
        "mobile": user.mobile or None,
        "job_title": user.job_title or None,
    }


def in_range(user: EntraUser, rules: UserRules, inp: UserInput) -> bool:
    if rules.range_mode == "all":
        return True
    if rules.range_mode == "user_types":
        return (user.user_type or "Member").lower() in rules.user_types
    return inp.in_groups is not None and user.id in inp.in_groups


class _Numbers:
    def __init__(self, used: NumberSet, start: str) -> None:
        self.used = used
        self.width = len(start)
        self.next = int(start)
        # A view that knows a run of taken candidates lets the scan jump over it.
        skip = getattr(used, "first_candidate_not_known_taken", None)
        if skip is not None:
            self.next = skip(self.next)

    def take_auto(self) -> str:
        while True:
            candidate = str(self.next).zfill(self.width)
            self.next += 1
            if candidate not in self.used and len(candidate) <= 12:
                self.used.add(candidate)
                return candidate
