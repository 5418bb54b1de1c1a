"""What the user sync reads from Graph and from the PBX, as compact immutable records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Graph property for each number source (extension attributes live in one complex property).
NUMBER_SOURCE_PROPERTY = {
    "businessPhones": "businessPhones",
    "mobilePhone": "mobilePhone",
    "employeeId": "employeeId",
    **{f"extensionAttribute{i}": "onPremisesExtensionAttributes" for i in range(1, 16)},
}
BASE_SELECT = (
    "id",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "userPrincipalName",
    "userType",
    "accountEnabled",
    "mobilePhone",
    "jobTitle",
)


def user_select(number_mode: str, number_property: str) -> str:
    fields = list(BASE_SELECT)
    if number_mode == "property":
        prop = NUMBER_SOURCE_PROPERTY[number_property]
        if prop not in fields:
            fields.append(prop)
    return ",".join(fields)


@dataclass(slots=True)
class EntraUser:
    """One user as Graph lists it (slots, not frozen: 100k of them are built per full run)."""

    id: str
    display_name: str | None
    given_name: str | None
    surname: str | None
    mail: str | None
    upn: str | None
    user_type: str | None
    enabled: bool
    mobile: str | None
    job_title: str | None
    number_value: str | None  # the raw value of the configured number property

    @classmethod
    def from_graph(cls, item: dict[str, Any], number_property: str | None) -> EntraUser:
        value: Any = None
        if number_property:
            source = NUMBER_SOURCE_PROPERTY[number_property]
            raw = item.get(source)
            if source == "businessPhones":
                value = next((p for p in raw or [] if p), None)
            elif source == "onPremisesExtensionAttributes":
                value = (raw or {}).get(number_property)
            else:
                value = raw
        get = item.get
        return cls(
            item["id"],
            get("displayName"),
            get("givenName"),
            get("surname"),
            get("mail"),
            get("userPrincipalName"),
            get("userType"),
            get("accountEnabled") is not False,
            get("mobilePhone"),
            get("jobTitle"),
            str(value) if value not in (None, "") else None,
        )


@dataclass(frozen=True, slots=True)
class PbxExtension:
    id: str
    number: str
    first_name: str | None
    last_name: str | None
    email: str | None
    mobile: str | None
    job_title: str | None
    managed_by: str
    entra_id: str | None
    former_entra_id: str | None

    @property
    def email_key(self) -> str | None:
        return self.email.lower() if self.email else None
