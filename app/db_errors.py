"""What a database integrity error means to a client, on PostgreSQL and SQLite alike.

Checks before a write can't see a concurrent request's write: the constraint is the last word.
A unique violation is a conflict (409, with the code of the value taken); a foreign-key violation
means a referenced row was deleted meanwhile (422)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

# (table, columns) of the unique constraints a client can run into -> (code, detail).
UNIQUE: dict[tuple[str, tuple[str, ...]], tuple[str, str]] = {
    ("pbxes", ("name",)): ("pbx_name_taken", "A PBX with this name exists."),
    ("extensions", ("pbx_id", "number")): (
        "extension_number_taken",
        "The extension number is in use.",
    ),
    ("extensions", ("pbx_id", "email_key")): (
        "email_taken",
        "The email address is in use by another extension.",
    ),
    ("extension_groups", ("pbx_id", "name")): (
        "group_name_taken",
        "An extension group with this name exists.",
    ),
    ("phonebooks", ("pbx_id", "name")): (
        "phonebook_name_taken",
        "A phonebook with this name exists.",
    ),
}
# The same constraints by name (the metadata's naming convention, as the migrations create them).
_BY_NAME = {f"uq_{table}_{'_'.join(cols)}": found for (table, cols), found in UNIQUE.items()}
_PG_NAME = re.compile(r'constraint "([^"]+)"')
_SQLITE_COLUMNS = re.compile(r"UNIQUE constraint failed: ([\w., ]+)")


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    title: str
    detail: str


def _unique_of(message: str) -> tuple[str, str] | None:
    if (named := _PG_NAME.search(message)) is not None:
        return _BY_NAME.get(named.group(1))
    if (columns := _SQLITE_COLUMNS.search(message)) is not None:
        parts = [c.strip().split(".") for c in columns.group(1).split(",")]
        if all(len(p) == 2 for p in parts) and len({p[0] for p in parts}) == 1:
            return UNIQUE.get((parts[0][0], tuple(p[1] for p in parts)))
    return None


def _kind(exc: IntegrityError) -> str:
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    message = str(exc.orig)
    if sqlstate == "23505" or "UNIQUE constraint failed" in message:
        return "unique"
    if sqlstate == "23503" or "FOREIGN KEY constraint failed" in message:
        return "foreign_key"
    return "other"


def conflict_of(exc: IntegrityError) -> Refusal:
    kind = _kind(exc)
    if kind == "unique":
        code, detail = _unique_of(str(exc.orig)) or (
            "conflict",
            "The change conflicts with a concurrent one.",
        )
        return Refusal(409, code, "Conflict", detail)
    if kind == "foreign_key":
        return Refusal(
            422,
            "reference_gone",
            "Reference gone",
            "An object this change refers to was deleted meanwhile.",
        )
    return Refusal(409, "conflict", "Conflict", "The change conflicts with the stored data.")
