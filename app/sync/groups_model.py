"""What the group sync reads from Graph and from the PBX, as compact immutable records.

Group kinds follow the directory picker (`app.integration.pickers.group_type`): a group with
"Unified" in `groupTypes` is Microsoft 365; otherwise a security-enabled group is security (a
mail-enabled security group too); a mail-enabled one is a distribution list; anything else is other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GROUP_SELECT = "id,displayName,groupTypes,securityEnabled,mailEnabled"


def group_kind(item: dict[str, Any]) -> str:
    if "Unified" in (item.get("groupTypes") or []):
        return "microsoft365"
    if item.get("securityEnabled"):
        return "security"
    if item.get("mailEnabled"):
        return "distribution"
    return "other"


@dataclass(frozen=True, slots=True)
class EntraGroup:
    """One Entra group. `member_user_ids` are its transitive user members, or None when they
    were not read this run (an incremental run that saw no membership change)."""

    id: str
    display_name: str
    kind: str  # security | microsoft365 | distribution | other
    member_user_ids: frozenset[str] | None = None

    @classmethod
    def from_graph(cls, item: dict[str, Any], members: frozenset[str] | None = None) -> EntraGroup:
        return cls(
            item["id"], str(item.get("displayName") or item["id"]), group_kind(item), members
        )


@dataclass(frozen=True, slots=True)
class PbxGroup:
    id: str
    name: str
    managed_by: str
    entra_id: str | None
    former_entra_id: str | None
    member_ids: frozenset[str]
