"""What the contacts sync compares: Outlook contacts as read, and the PBX's side of them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

FIELDS = (
    "first_name",
    "last_name",
    "company",
    "email",
    "mobile_phone",
    "home_phone",
    "business_phone",
)
PHONE_KEYS = {
    "mobile_phone": "mobile_key",
    "home_phone": "home_key",
    "business_phone": "business_key",
}
_NOT_DIGIT = re.compile(r"[^0-9]")
_EXTENSION = re.compile(r"(?i)\s*(?:x|ext\.?)\s*\d+\s*$")


def normalise_number(value: str | None) -> str | None:
    """Digits, with a leading + when the number has one: `+1 (425) 555-0100` → `+14255550100`.
    Extensions (`x123`, `ext 4`) are cut off; nothing left is None."""
    if not value:
        return None
    text = _EXTENSION.split(value.strip())[0]
    digits = _NOT_DIGIT.sub("", text)
    if not digits:
        return None
    return ("+" if text.lstrip().startswith("+") else "") + digits[:31]


def _clip(value: Any, size: int) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:size] or None


def _shared(value: str | None, common: dict[str, str] | None) -> str | None:
    if value is None or common is None:
        return value
    return common.setdefault(value, value)


@dataclass(frozen=True, slots=True)
class OutlookContact:
    id: str
    change_key: str | None
    display_name: str | None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    email: str | None = None
    mobile_phone: str | None = None
    home_phone: str | None = None
    business_phone: str | None = None

    @classmethod
    def from_graph(
        cls, body: dict[str, Any], common: dict[str, str] | None = None
    ) -> OutlookContact:
        """`common`: names and companies read before, so that contacts with the same first
        name, last name or company share one string (a run may hold many thousands)."""
        emails = body.get("emailAddresses") or []
        home = body.get("homePhones") or []
        business = body.get("businessPhones") or []
        return cls(
            id=str(body["id"]),
            change_key=body.get("changeKey"),
            display_name=_clip(body.get("displayName"), 400),
            first_name=_shared(_clip(body.get("givenName"), 200), common),
            last_name=_shared(_clip(body.get("surname"), 200), common),
            company=_shared(_clip(body.get("companyName"), 200), common),
            email=_clip(emails[0].get("address") if emails else None, 320),
            mobile_phone=_clip(body.get("mobilePhone"), 64),
            home_phone=_clip(home[0] if home else None, 64),
            business_phone=_clip(business[0] if business else None, 64),
        )

    def values(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in FIELDS}

    def label(self) -> str:
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return self.display_name or name or self.company or self.email or self.id


@dataclass(frozen=True, slots=True)
class ContactFailure:
    source_id: str
    display_name: str | None
    code: str
    message: str


def validate(contact: OutlookContact) -> ContactFailure | None:
    """The guide's rule: a first or last name, and a mobile, home or business phone."""
    if not (contact.first_name or contact.last_name):
        return ContactFailure(
            contact.id,
            contact.label(),
            "contact_missing_name",
            "The contact needs a first name or a last name.",
        )
    if not (contact.mobile_phone or contact.home_phone or contact.business_phone):
        return ContactFailure(
            contact.id,
            contact.label(),
            "contact_missing_phone",
            "The contact needs a mobile phone, home phone or business phone number.",
        )
    return None


@dataclass(slots=True)
class FolderRead:
    """What was read of one source folder. `full`: every contact of the folder is in `contacts`
    or `failed` (anything the target holds beyond them is gone); otherwise they are the created
    and updated ones and `removed` the deleted ones. Contacts are validated as they are read
    (`put`): those that fail keep only their failure."""

    owner_id: str
    full: bool
    contacts: dict[str, OutlookContact] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    failed: dict[str, ContactFailure] = field(default_factory=dict)

    def put(self, contact: OutlookContact) -> None:
        cid = contact.id
        self.removed.discard(cid)
        failure = validate(contact)
        if failure is None:
            self.failed.pop(cid, None)
            # Only a failure's label shows the display name: a valid contact drops it.
            self.contacts[cid] = replace(contact, display_name=None)
        else:
            self.contacts.pop(cid, None)
            self.failed[cid] = failure

    def remove(self, cid: str) -> None:
        self.contacts.pop(cid, None)
        self.failed.pop(cid, None)
        self.removed.add(cid)

    def touched(self) -> bool:
        return self.full or bool(self.contacts or self.failed or self.removed)

    def seen(self) -> int:
        return len(self.contacts) + len(self.failed) + len(self.removed)


@dataclass(frozen=True)
class Mailbox:
    """A shared mailbox in range: its phonebook's wanted name, and what was read (None: not
    readable now, its phonebook is kept as it is)."""

    id: str
    name: str
    read: FolderRead | None


@dataclass(frozen=True, slots=True)
class PbxContact:
    id: str
    entra_id: str
    owner: str  # the extension id or phonebook id it belongs to
    change_key: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    email: str | None
    mobile_phone: str | None
    home_phone: str | None
    business_phone: str | None
    # Released earlier (managed_by "pbx", `entra_id` is its former Entra id): taken back when
    # Outlook still has it, left alone otherwise.
    adopt: bool = False

    def values(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in FIELDS}

    def label(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or self.entra_id


@dataclass(frozen=True)
class PbxPhonebook:
    id: str
    name: str
    managed_by: str
    entra_id: str | None
    former_entra_id: str | None = None


@dataclass
class ContactsInput:
    """`personal`: Entra user id → its folder read, for the users in range whose folder was
    readable; `users`: Entra user id → extension id for every user in range (a user in range whose
    folder could not be read keeps nothing: sharing was withdrawn). `mailboxes`: those in range.
    `partial_mailboxes`: the shared side read only some mailboxes (an incremental round), so
    phonebooks of mailboxes not named are left alone."""

    personal: dict[str, FolderRead] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    personal_enabled: bool = True
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    shared_enabled: bool = True
