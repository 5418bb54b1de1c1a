"""The user-sync planner: desired state + current state + rules → creates, updates, deletes.

Pure and deterministic: no I/O, the same input always gives the same plan (users are taken in
Entra id order, so capacity and numbers go the same way every time).
"""

from __future__ import annotations

from typing import Protocol

from app.sync.trace import NO_TRACE, Trace, Verdict
from app.sync.user_plan import (
    SYNCED_FIELDS,
    ExtensionChange,
    Failure,
    NewExtension,
    NumberSet,
    Removal,
    UserInput,
    UserPlan,
    UserRules,
    _Numbers,
    desired_fields,
    in_range,
    parse_number,
)
from app.sync.users_model import EntraUser, PbxExtension

__all__ = [
    "SYNCED_FIELDS",
    "ExtensionChange",
    "Failure",
    "NewExtension",
    "NumberSet",
    "Removal",
    "Trace",
    "UserInput",
    "UserPlan",
    "UserRules",
    "Verdict",
    "_Numbers",
    "desired_fields",
    "in_range",
    "parse_number",
]


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
        if key and holder is not None and rules.associate_by_email and holder.managed_by == "pbx":
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
            continue
        if on:
            new_one = "No extension follows this user" + (": a new one." if holder is None else ".")
            note(user.id, "existing_extension", True, new_one)
        # What only Entra can fix fails first, whatever the PBX holds (an address in use, the
        # seats): a property number the user lacks, or one that holds no extension number.
        number, code = (
            parse_number(user.number_value) if rules.number_mode == "property" else (None, None)
        )
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
        if key and holder is not None:
            if on:
                why = (
                    "it is synced for another user"
                    if holder.managed_by != "pbx"
                    else "associate_by_email is off"
                )
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
