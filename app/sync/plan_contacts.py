"""Planning an Outlook contacts run: what to create, update and delete. Pure: no I/O.

Two kinds of targets receive contacts: an extension's personal (Linkus) contacts, fed by the
user's shared Contacts folder, and a company phonebook, fed by one shared mailbox. A folder read
in full replaces what its target holds; a delta round only names what changed. Contacts are
compared by `changeKey` first (Outlook's version stamp) and then field by field, so only
changed rows are written. The guide's rule: a first or last name, and a mobile, home or business
phone, else the contact is a failure and is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.sync.contacts_model import (
    FIELDS,
    PHONE_KEYS,
    ContactFailure,
    ContactsInput,
    FolderRead,
    Mailbox,
    OutlookContact,
    PbxContact,
    PbxPhonebook,
    normalise_number,
    validate,
)

__all__ = [
    "FIELDS",
    "PHONE_KEYS",
    "ContactFailure",
    "ContactsInput",
    "ContactsPlan",
    "FolderRead",
    "Mailbox",
    "OutlookContact",
    "PbxContact",
    "PbxPhonebook",
    "normalise_number",
    "owners_needed",
    "plan_contacts",
    "validate",
]

NAME_MAX = 200


@dataclass(frozen=True, slots=True)
class ContactCreate:
    owner_kind: str  # "extension" | "phonebook"
    owner: str  # extension id, phonebook id, or the mailbox id of a phonebook created this run
    source: OutlookContact  # written as read

    @property
    def entra_id(self) -> str:
        return self.source.id


@dataclass(frozen=True, slots=True)
class ContactUpdate:
    contact: PbxContact
    source: OutlookContact  # what the contact becomes
    fields: dict[str, tuple[str | None, str | None]]


@dataclass(frozen=True, slots=True)
class ContactDelete:
    contact: PbxContact
    reason: str


@dataclass(frozen=True, slots=True)
class PhonebookCreate:
    mailbox_id: str
    name: str


@dataclass(frozen=True, slots=True)
class PhonebookRename:
    book: PbxPhonebook
    name: str
    adopt: bool = False  # a released phonebook of this mailbox, taken back


@dataclass(frozen=True, slots=True)
class PhonebookDelete:
    book: PbxPhonebook
    reason: str


@dataclass(frozen=True, slots=True)
class ContactWarning:
    source_id: str | None
    code: str
    message: str


@dataclass
class ContactsPlan:
    creates: list[ContactCreate] = field(default_factory=list)
    updates: list[ContactUpdate] = field(default_factory=list)
    deletes: list[ContactDelete] = field(default_factory=list)
    unchanged: int = 0
    book_creates: list[PhonebookCreate] = field(default_factory=list)
    book_renames: list[PhonebookRename] = field(default_factory=list)
    book_deletes: list[PhonebookDelete] = field(default_factory=list)
    failures: list[ContactFailure] = field(default_factory=list)
    warnings: list[ContactWarning] = field(default_factory=list)
    # Outlook contact ids whose earlier failure is settled (fixed, or gone).
    settled: set[str] = field(default_factory=set)

    def deletions(self) -> int:
        return len(self.deletes)

    def counts(self) -> dict[str, int]:
        return {
            "created": len(self.creates),
            "updated": len(self.updates),
            "deleted": len(self.deletes),
            "unchanged": self.unchanged,
            "failed": len(self.failures),
        }


class _Target:
    """The contacts one extension or phonebook holds, and the plan's view of them."""

    def __init__(self, kind: str, owner: str, held: list[PbxContact]) -> None:
        self.kind = kind
        self.owner = owner
        self.held = {c.entra_id: c for c in held}


def _merge(plan: ContactsPlan, target: _Target, read: FolderRead, reason: str) -> None:
    for cid in sorted(read.contacts.keys() | read.failed.keys()):
        contact = read.contacts.get(cid)
        failure = read.failed[cid] if contact is None else validate(contact)
        current = target.held.get(cid)
        if failure is not None:
            plan.failures.append(failure)
            if current is not None and not current.adopt:
                # It can no longer be shown as it is in Outlook.
                plan.deletes.append(ContactDelete(current, "invalid"))
            continue
        assert contact is not None  # else a failure
        plan.settled.add(cid)
        if current is None:
            plan.creates.append(ContactCreate(target.kind, target.owner, contact))
            continue
        same_key = contact.change_key is not None and contact.change_key == current.change_key
        if same_key and not current.adopt:
            plan.unchanged += 1
            continue
        old = current.values()
        changed = {k: (old[k], v) for k, v in contact.values().items() if old[k] != v}
        if current.adopt or changed or contact.change_key != current.change_key:
            plan.updates.append(ContactUpdate(current, contact, changed))
        else:
            plan.unchanged += 1
    ours = {cid for cid, c in target.held.items() if not c.adopt}
    seen = read.contacts.keys() | read.failed.keys()
    gone = ours - seen if read.full else read.removed & ours
    for cid in sorted(gone):
        plan.deletes.append(ContactDelete(target.held[cid], reason))
    plan.settled |= read.removed


def _drop_all(plan: ContactsPlan, held: list[PbxContact], reason: str) -> None:
    for c in sorted(held, key=lambda c: c.entra_id):
        if not c.adopt:
            plan.deletes.append(ContactDelete(c, reason))


class _Names:
    """Phonebook names are unique per PBX: a clash gets " (2)", " (3)", … in mailbox id order."""

    def __init__(self, books: list[PbxPhonebook]) -> None:
        self.holder = {b.name: b.entra_id or f"pbx:{b.id}" for b in books}

    def release(self, name: str) -> None:
        self.holder.pop(name, None)

    def claim(self, base: str, owner: str) -> str:
        base = base[:NAME_MAX]
        name, n = base, 1
        while self.holder.get(name, owner) != owner:
            n += 1
            suffix = f" ({n})"
            name = base[: NAME_MAX - len(suffix)] + suffix
        self.holder[name] = owner
        return name


def _plan_phonebooks(
    plan: ContactsPlan,
    inp: ContactsInput,
    books: list[PbxPhonebook],
    contacts: dict[str, list[PbxContact]],
) -> None:
    synced = {b.entra_id: b for b in books if b.managed_by == "entra" and b.entra_id}
    former = {b.former_entra_id: b for b in books if b.managed_by == "pbx" and b.former_entra_id}
    names = _Names(books)
    wanted = inp.mailboxes if inp.shared_enabled else {}
    for mailbox_id in sorted(set(synced) - set(wanted)):
        gone = synced[mailbox_id]
        plan.book_deletes.append(PhonebookDelete(gone, "out_of_range"))
        _drop_all(plan, contacts.get(gone.id, []), "out_of_range")
        names.release(gone.name)
    for mailbox_id in sorted(wanted):
        mailbox = wanted[mailbox_id]
        book: PbxPhonebook | None = synced.get(mailbox_id)
        adopt = book is None and mailbox.read is not None and mailbox_id in former
        if adopt:
            book = former[mailbox_id]
        if book is not None:
            names.release(book.name)
        name = names.claim(mailbox.name, mailbox_id)
        if name != mailbox.name:
            plan.warnings.append(
                ContactWarning(
                    mailbox_id,
                    "phonebook_name_taken",
                    f"A phonebook named {mailbox.name!r} exists: this mailbox's phonebook is "
                    f"named {name!r}.",
                )
            )
        if book is None:
            if mailbox.read is None:
                continue
            plan.book_creates.append(PhonebookCreate(mailbox_id, name))
            target = _Target("phonebook", mailbox_id, [])
        else:
            if book.name != name or adopt:
                plan.book_renames.append(PhonebookRename(book, name, adopt))
            if mailbox.read is None:
                continue
            target = _Target("phonebook", book.id, contacts.get(book.id, []))
        _merge(plan, target, mailbox.read, "deleted")


def owners_needed(inp: ContactsInput, books: list[PbxPhonebook], holders: set[str]) -> set[str]:
    """The extensions and phonebooks whose synced contacts the plan must see: those it may empty
    or delete, and those a read touched. `holders`: extensions that hold synced contacts."""
    in_range = set(inp.users.values()) if inp.personal_enabled else set()
    need = holders - in_range
    if inp.personal_enabled:
        for uid, ext_id in inp.users.items():
            read = inp.personal.get(uid)
            if read is None:
                if ext_id in holders:
                    need.add(ext_id)
            elif read.touched():
                need.add(ext_id)
    wanted = inp.mailboxes if inp.shared_enabled else {}
    for book in books:
        if book.managed_by == "pbx" and book.former_entra_id in wanted:
            need.add(book.id)  # may be taken back with its contacts
        if book.managed_by != "entra" or not book.entra_id:
            continue
        mailbox = wanted.get(book.entra_id)
        if mailbox is None or (mailbox.read is not None and mailbox.read.touched()):
            need.add(book.id)
    return need


def plan_contacts(
    inp: ContactsInput,
    books: list[PbxPhonebook],
    contacts: dict[str, list[PbxContact]],
    synced_extensions: set[str],
) -> ContactsPlan:
    """`contacts`: the synced contacts by owner (extension or phonebook id), for every owner the
    input touches; `synced_extensions`: extensions whose personal contacts may be held (all of
    them when `inp` covers everything, or those the input touches)."""
    plan = ContactsPlan()
    in_range = set(inp.users.values()) if inp.personal_enabled else set()
    for ext_id in sorted(synced_extensions - in_range):
        _drop_all(plan, contacts.get(ext_id, []), "out_of_range")
    by_ext = {inp.users[uid]: uid for uid in inp.users} if inp.personal_enabled else {}
    for ext_id in sorted(in_range):
        read = inp.personal.get(by_ext[ext_id])
        held = contacts.get(ext_id, [])
        if read is None:
            _drop_all(plan, held, "not_shared")
            continue
        _merge(plan, _Target("extension", ext_id, held), read, "deleted")
    _plan_phonebooks(plan, inp, books, contacts)
    return plan
