"""The user-sync planner: desired state + current state + rules → creates, updates, deletes.

Pure and deterministic: no I/O, the same input always gives the same plan (users are taken in
Entra id order, so capacity and numbers go the same way every time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from app.sync.trace import NO_TRACE, Trace, Verdict
from app.sync.users_model import EntraUser, PbxExtension

__all__ = ["Trace", "Verdict"]

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


def _range_verdict(user: EntraUser, rules: UserRules, ok: bool) -> tuple[str, str]:
    if rules.range_mode == "all":
        return "range", "The range is all users."
    if rules.range_mode == "user_types":
        kind = (user.user_type or "Member").lower()
        wanted = ", ".join(sorted(rules.user_types)) or "none"
        verb = "is" if ok else "is not"
        return "user_type", f"User type {kind!r} {verb} in the range ({wanted})."
    if ok:
        return "groups", "In range through a group of the range (transitive)."
    return "groups", "Not a member of any group of the range, directly or through nesting."


def plan_users(
    inp: UserInput,
    current: list[PbxExtension],
    rules: UserRules,
    max_extensions: int,
    *,
    free_deleted: bool = True,
    numbers_in_use: NumberSet | None = None,
    seats_used: int | None = None,
    trace: Trace | None = None,
) -> UserPlan:
    """Plan one run. With `free_deleted` off (deletions held), what the deletions would free —
    numbers, seats, email addresses — stays taken.

    An incremental run passes only the extensions its users touch (by Entra id, former Entra id
    or email) as `current`, with every number in use and the seat count of the whole PBX.
    `trace` records, for the users it names, each verdict in the order it is reached."""
    plan = UserPlan()
    traced = trace.ids if trace is not None else NO_TRACE
    managed = {e.entra_id: e for e in current if e.managed_by == "entra" and e.entra_id}
    former = {e.former_entra_id: e for e in current if e.managed_by == "pbx" and e.former_entra_id}
    by_email = {e.email_key: e for e in current if e.email_key}
    numbers: NumberSet = (
        numbers_in_use.copy() if numbers_in_use is not None else {e.number for e in current}
    )
    seats = seats_used if seats_used is not None else len(current)

    def note(entra_id: str, step: str, ok: bool, detail: str, code: str | None = None) -> None:
        assert trace is not None
        trace.add(entra_id, step, ok, detail, code)

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
        delete = "deleted" in rules.delete_when
        if entra_id in traced:
            _note_removed(note, entra_id, ext, delete)
        if ext is not None:
            remove(ext, "deleted", delete)

    pending: list[tuple[EntraUser, dict[str, str | None]]] = []
    for entra_id in sorted(inp.users):
        if entra_id in removed:
            continue
        user = inp.users[entra_id]
        ext = managed.get(entra_id)
        ranged = in_range(user, rules, inp)
        if entra_id in traced:
            step, detail = _range_verdict(user, rules, ranged)
            note(entra_id, step, ranged, detail)
            note(entra_id, "enabled", user.enabled, _enabled_detail(user.enabled))
            if ext is not None:
                note(
                    entra_id,
                    "existing_extension",
                    True,
                    f"Extension {ext.number} follows this user.",
                )
        if not ranged:
            plan.settled.add(entra_id)
            if ext is not None:
                delete = rules.auto_delete_out_of_range
                if entra_id in traced:
                    verb = "deleted" if delete else "released (kept, managed by the PBX)"
                    flag = "on" if delete else "off"
                    note(
                        entra_id, "delete_rules", True, f"Out of range, auto delete {flag}: {verb}."
                    )
                remove(ext, "out_of_range", delete)
            elif entra_id in traced:
                note(entra_id, "existing_extension", True, "No extension follows this user.")
            continue
        if not user.enabled:
            plan.settled.add(entra_id)
            if ext is not None and "disabled" in rules.delete_when:
                if entra_id in traced:
                    note(entra_id, "delete_rules", True, "'disabled' is in delete_when: deleted.")
                remove(ext, "disabled", True)
                continue
            if ext is None:
                if entra_id in traced:
                    note(entra_id, "existing_extension", True, "No extension follows this user.")
                    note(
                        entra_id,
                        "delete_rules",
                        True,
                        "A disabled account never gets a new extension.",
                    )
                continue  # a disabled account never gets a new extension
            if entra_id in traced:
                note(
                    entra_id,
                    "delete_rules",
                    True,
                    "'disabled' is not in delete_when: the extension stays and is updated.",
                )
        wanted = desired_fields(user)
        if wanted is None:
            if entra_id in traced:
                note(
                    entra_id,
                    "name",
                    False,
                    "No first, last or display name.",
                    "missing_required_field",
                )
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
            _update(plan, ext, user, wanted, by_email, associate=False, trace=trace)
            continue
        pending.append((user, wanted))

    # New users: re-adoption by former Entra id, association by email, then creation.
    numbering = _Numbers(numbers, rules.number_start)
    for user, wanted in pending:
        on = user.id in traced
        adopt = former.get(user.id)
        if adopt is not None:
            if on:
                note(
                    user.id,
                    "existing_extension",
                    True,
                    f"Extension {adopt.number} followed this user before (former Entra id): "
                    "it is taken over again.",
                )
            _update(plan, adopt, user, wanted, by_email, associate=True, trace=trace)
            continue
        key = wanted["email"].lower() if wanted["email"] else None
        holder = by_email.get(key) if key else None
        if key and holder is not None:
            if rules.associate_by_email and holder.managed_by == "pbx":
                if on:
                    note(
                        user.id,
                        "existing_extension",
                        True,
                        f"Extension {holder.number} has the address {wanted['email']}: it is "
                        "associated (associate_by_email).",
                    )
                by_email.pop(key, None)
                _update(plan, holder, user, wanted, by_email, associate=True, trace=trace)
            else:
                if on:
                    why = (
                        "it is synced for another user"
                        if holder.managed_by != "pbx"
                        else "associate_by_email is off"
                    )
                    note(user.id, "existing_extension", True, "No extension follows this user.")
                    note(
                        user.id,
                        "email",
                        False,
                        f"Extension {holder.number} already uses {wanted['email']} ({why}).",
                        "email_taken",
                    )
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
        if on:
            note(user.id, "existing_extension", True, "No extension follows this user: a new one.")
            note(user.id, "email", True, _free_address(wanted["email"]))
        if seats >= max_extensions:
            if on:
                note(
                    user.id,
                    "capacity",
                    False,
                    f"{seats} of {max_extensions} extensions in use.",
                    "capacity_exceeded",
                )
            plan.failures.append(
                Failure(
                    user.id,
                    user.display_name,
                    "capacity_exceeded",
                    f"The PBX allows {max_extensions} extensions.",
                )
            )
            continue
        if on:
            note(
                user.id,
                "capacity",
                True,
                f"{seats} of {max_extensions} extensions in use (as of now).",
            )
        if rules.number_mode == "property":
            number, code = parse_number(user.number_value)
            if code is not None:
                message = (
                    f"{rules.number_property} is empty."
                    if code == "missing_required_field"
                    else f"{rules.number_property} value {user.number_value!r} holds no extension number."
                )
                if on:
                    note(user.id, "number", False, message, code)
                plan.failures.append(Failure(user.id, user.display_name, code, message))
                continue
            assert number is not None
            if number in numbers:
                if on:
                    note(
                        user.id,
                        "number",
                        False,
                        f"{rules.number_property} value {user.number_value!r} gives {number}, "
                        "which is in use.",
                        "extension_number_taken",
                    )
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
            if on:
                note(
                    user.id,
                    "number",
                    True,
                    f"{number}, read from {rules.number_property} value {user.number_value!r}.",
                )
        else:
            number = numbering.take_auto()
            if on:
                note(
                    user.id,
                    "number",
                    True,
                    f"{number}: the first free number from {rules.number_start} (as of now).",
                )
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


def _enabled_detail(enabled: bool) -> str:
    return "The account is enabled." if enabled else "The account is disabled."


def _free_address(email: str | None) -> str:
    if not email:
        return "The user has no address: none to conflict."
    return f"No other extension uses {email}."


def _note_removed(note: _Note, entra_id: str, ext: PbxExtension | None, delete: bool) -> None:
    if ext is None:
        note(entra_id, "existing_extension", True, "No extension follows this user.")
        note(entra_id, "delete_rules", True, "Gone from Entra, and no extension: nothing to do.")
        return
    note(entra_id, "existing_extension", True, f"Extension {ext.number} follows this user.")
    if delete:
        note(entra_id, "delete_rules", True, "Gone from Entra, 'deleted' in delete_when: deleted.")
    else:
        note(
            entra_id,
            "delete_rules",
            True,
            "Gone from Entra, 'deleted' not in delete_when: released (kept, managed by the PBX).",
        )


class _Note(Protocol):
    def __call__(
        self, entra_id: str, step: str, ok: bool, detail: str, code: str | None = None
    ) -> None: ...


def _update(
    plan: UserPlan,
    ext: PbxExtension,
    user: EntraUser,
    wanted: dict[str, str | None],
    by_email: dict[str, PbxExtension],
    *,
    associate: bool,
    trace: Trace | None = None,
) -> None:
    entra_id = user.id
    on = trace is not None and entra_id in trace.ids
    key = wanted["email"].lower() if wanted["email"] else None
    if key and key != ext.email_key:
        holder = by_email.get(key)
        if holder is not None and holder is not ext:
            if on:
                assert trace is not None
                trace.add(
                    entra_id,
                    "email",
                    False,
                    f"Extension {holder.number} already uses {wanted['email']}.",
                    "email_taken",
                )
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
    if on:
        assert trace is not None
        trace.add(entra_id, "email", True, _free_address(wanted["email"]))
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
