"""The user-sync planner: desired state + current state + rules → creates, updates, deletes.

Pure and deterministic: no I/O, the same input always gives the same plan (users are taken in
Entra id order, so capacity and numbers go the same way every time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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
    def __init__(self, used: set[str], start: str) -> None:
        self.used = used
        self.width = len(start)
        self.next = int(start)

    def take_auto(self) -> str:
        while True:
            candidate = str(self.next).zfill(self.width)
            self.next += 1
            if candidate not in self.used and len(candidate) <= 12:
                self.used.add(candidate)
                return candidate


def plan_users(
    inp: UserInput,
    current: list[PbxExtension],
    rules: UserRules,
    max_extensions: int,
    *,
    free_deleted: bool = True,
    numbers_in_use: set[str] | None = None,
    seats_used: int | None = None,
) -> UserPlan:
    """Plan one run. With `free_deleted` off (deletions held), what the deletions would free —
    numbers, seats, email addresses — stays taken.

    An incremental run passes only the extensions its users touch (by Entra id, former Entra id
    or email) as `current`, with every number in use and the seat count of the whole PBX."""
    plan = UserPlan()
    managed = {e.entra_id: e for e in current if e.managed_by == "entra" and e.entra_id}
    former = {e.former_entra_id: e for e in current if e.managed_by == "pbx" and e.former_entra_id}
    by_email = {e.email_key: e for e in current if e.email_key}
    numbers = set(numbers_in_use) if numbers_in_use is not None else {e.number for e in current}
    seats = seats_used if seats_used is not None else len(current)

    def remove(ext: PbxExtension, reason: str, delete: bool) -> None:
        nonlocal seats
        (plan.deletes if delete else plan.releases).append(Removal(ext, reason))
        if delete and free_deleted:
            seats -= 1
            numbers.discard(ext.number)
            if ext.email_key and by_email.get(ext.email_key) is ext:
                del by_email[ext.email_key]

    # Extensions of users that were removed, or vanished from a full listing.
    removed = dict(inp.removed)
    if inp.full:
        for entra_id in managed:
            if entra_id not in inp.users and entra_id not in removed:
                removed[entra_id] = "deleted"
    for entra_id in sorted(removed):
        ext = managed.get(entra_id)
        plan.settled.add(entra_id)
        if ext is not None:
            remove(ext, "deleted", "deleted" in rules.delete_when)

    pending: list[tuple[EntraUser, dict[str, str | None]]] = []
    for entra_id in sorted(inp.users):
        if entra_id in removed:
            continue
        user = inp.users[entra_id]
        ext = managed.get(entra_id)
        if not in_range(user, rules, inp):
            plan.settled.add(entra_id)
            if ext is not None:
                remove(ext, "out_of_range", rules.auto_delete_out_of_range)
            continue
        if not user.enabled:
            plan.settled.add(entra_id)
            if ext is not None and "disabled" in rules.delete_when:
                remove(ext, "disabled", True)
                continue
            if ext is None:
                continue  # a disabled account never gets a new extension
        wanted = desired_fields(user)
        if wanted is None:
            plan.failures.append(
                Failure(
                    entra_id,
                    user.display_name,
                    "missing_required_field",
                    "The user has no first, last or display name.",
                )
            )
            continue
        if ext is not None:
            _update(plan, ext, user, wanted, by_email, associate=False)
            continue
        pending.append((user, wanted))

    # New users: re-adoption by former Entra id, association by email, then creation.
    numbering = _Numbers(numbers, rules.number_start)
    for user, wanted in pending:
        adopt = former.get(user.id)
        if adopt is not None:
            _update(plan, adopt, user, wanted, by_email, associate=True)
            continue
        key = wanted["email"].lower() if wanted["email"] else None
        holder = by_email.get(key) if key else None
        if key and holder is not None:
            if rules.associate_by_email and holder.managed_by == "pbx":
                by_email.pop(key, None)
                _update(plan, holder, user, wanted, by_email, associate=True)
            else:
                plan.failures.append(
                    Failure(
                        user.id,
                        user.display_name,
                        "email_taken",
                        f"Extension {holder.number} already uses {wanted['email']}.",
                        conflict=key,
                    )
                )
            continue
        if seats >= max_extensions:
            plan.failures.append(
                Failure(
                    user.id,
                    user.display_name,
                    "capacity_exceeded",
                    f"The PBX allows {max_extensions} extensions.",
                )
            )
            continue
        if rules.number_mode == "property":
            number, code = parse_number(user.number_value)
            if code is not None:
                message = (
                    f"{rules.number_property} is empty."
                    if code == "missing_required_field"
                    else f"{rules.number_property} value {user.number_value!r} holds no extension number."
                )
                plan.failures.append(Failure(user.id, user.display_name, code, message))
                continue
            assert number is not None
            if number in numbers:
                plan.failures.append(
                    Failure(
                        user.id,
                        user.display_name,
                        "extension_number_taken",
                        f"Extension number {number} is in use.",
                        conflict=number,
                    )
                )
                continue
            numbers.add(number)
        else:
            number = numbering.take_auto()
        seats += 1
        if key:
            by_email[key] = PbxExtension(
                "", number, None, None, wanted["email"], None, None, "entra", user.id, None
            )
        plan.settled.add(user.id)
        plan.creates.append(
            NewExtension(
                entra_id=user.id,
                number=number,
                display_name=user.display_name
                or " ".join(filter(None, [wanted["first_name"], wanted["last_name"]])),
                **wanted,
            )
        )
    return plan


def _update(
    plan: UserPlan,
    ext: PbxExtension,
    user: EntraUser,
    wanted: dict[str, str | None],
    by_email: dict[str, PbxExtension],
    *,
    associate: bool,
) -> None:
    entra_id = user.id
    key = wanted["email"].lower() if wanted["email"] else None
    if key and key != ext.email_key:
        holder = by_email.get(key)
        if holder is not None and holder is not ext:
            plan.failures.append(
                Failure(
                    entra_id,
                    user.display_name,
                    "email_taken",
                    f"Extension {holder.number} already uses {wanted['email']}.",
                    conflict=key,
                )
            )
            return
    changes = {
        name: (getattr(ext, name), value)
        for name, value in wanted.items()
        if getattr(ext, name) != value
    }
    plan.settled.add(entra_id)
    if ext.email_key and ext.email_key != key and by_email.get(ext.email_key) is ext:
        del by_email[ext.email_key]
    if key:
        by_email[key] = ext
    if changes or associate:
        plan.updates.append(ExtensionChange(ext, entra_id, changes, associate=associate))
    else:
        plan.unchanged += 1
