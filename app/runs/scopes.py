"""The run scopes, and for each its rule section, directory kind, tables and pause choice.

The one table that ties them together: every domain that needs "which section is this scope",
"which tables does a cleanup of it touch" or "which flag deletes it" reads it here. A new scope
is one more row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.directory.models import Contact, Extension, ExtensionGroup, Phonebook


@dataclass(frozen=True)
class ScopeInfo:
    scope: str  # the run scope: "users"
    section: str  # its rule section: "user_sync"
    kind: str  # the directory objects it owns: "extensions"
    models: tuple[type[Any], ...]  # their tables; the first holds the objects counted as synced
    delete_flag: str  # the pause/disable/disconnect choice that deletes them
    pause_flag: str  # the pause endpoint's body field
    # Follows Graph change notifications on users and groups.
    directory: bool


SCOPES: tuple[ScopeInfo, ...] = (
    ScopeInfo(
        "users",
        "user_sync",
        "extensions",
        (Extension,),
        "delete_extensions",
        "delete_extensions",
        True,
    ),
    ScopeInfo(
        "groups",
        "group_sync",
        "extension_groups",
        (ExtensionGroup,),
        "delete_extension_groups",
        "delete_extension_groups",
        True,
    ),
    ScopeInfo(
        "contacts",
        "contacts_sync",
        "phonebooks",
        (Phonebook, Contact),
        "delete_phonebooks",
        "delete_contacts",
        False,
    ),
)
ALL_SCOPES: tuple[str, ...] = tuple(s.scope for s in SCOPES)
BY_SCOPE: dict[str, ScopeInfo] = {s.scope: s for s in SCOPES}
BY_SECTION: dict[str, ScopeInfo] = {s.section: s for s in SCOPES}
BY_KIND: dict[str, ScopeInfo] = {s.kind: s for s in SCOPES}
RUN_SECTIONS: tuple[str, ...] = tuple(s.section for s in SCOPES)
DIRECTORY_SECTIONS: tuple[str, ...] = tuple(s.section for s in SCOPES if s.directory)


def ordered(scopes: set[str] | list[str]) -> list[str]:
    """Scopes in the order runs execute them."""
    wanted = set(scopes)
    return [s for s in ALL_SCOPES if s in wanted]
