"""Permission checks per route, from each API page's "Permissions" table.

A delegated token is checked against the delegated column, an app-only token against the
application column; `emulator.tokens.require` answers 403 Authorization_RequestDenied.
Exchange-backed routes (mailbox settings, contacts) answer 403 ErrorAccessDenied instead, as
Exchange does.
"""

from __future__ import annotations

from emulator.graph.http import access_denied
from emulator.tokens import Caller, require


def require_permission(
    caller: Caller, delegated: tuple[str, ...], application: tuple[str, ...]
) -> None:
    if caller.is_app_only:
        if not application:
            require(caller, "\x00not-supported")
        require(caller, *application)
    else:
        if not delegated:
            require(caller, "\x00not-supported")
        require(caller, *delegated)


def has_any(caller: Caller, *permissions: str) -> bool:
    return bool(caller.permissions.intersection(permissions))


def require_mailbox_permission(
    caller: Caller, delegated: tuple[str, ...], application: tuple[str, ...]
) -> None:
    wanted = application if caller.is_app_only else delegated
    if not has_any(caller, *wanted):
        raise access_denied()
