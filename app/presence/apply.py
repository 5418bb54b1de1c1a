"""What a Teams presence reading does to an extension's presence (pure, no I/O).

One-way: Teams sets the extension's status through the user's mapping; a manual status set on
the PBX stays until Teams reports a different availability; `PresenceUnknown` (or any
availability the mapping does not name) never changes the status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

UNKNOWN = "PresenceUnknown"


@dataclass(frozen=True)
class Current:
    """The extension's presence as stored (None when it has no row yet)."""

    status: str
    source: str
    teams_availability: str | None
    teams_activity: str | None


@dataclass(frozen=True)
class Reading:
    availability: str
    activity: str


def reading_of(item: dict[str, Any]) -> Reading:
    availability = str(item.get("availability") or UNKNOWN)
    return Reading(availability, str(item.get("activity") or availability))


def decide(
    current: Current | None, reading: Reading, mapping: dict[str, str], now: datetime
) -> dict[str, Any] | None:
    """The row's new values, or None when nothing changes."""
    teams_changed = current is None or (
        (current.teams_availability, current.teams_activity)
        != (reading.availability, reading.activity)
    )
    availability_changed = current is None or current.teams_availability != reading.availability
    status = current.status if current else "available"
    source = current.source if current else "manual"
    target = mapping.get(reading.availability) if reading.availability != UNKNOWN else None
    status_changed = False
    if (
        target is not None
        and (availability_changed or source == "teams")
        and (target != status or source != "teams")
    ):
        # Teams moved on (or the mapping changed under a Teams-set status): follow it.
        status, source, status_changed = target, "teams", True
    if not teams_changed and not status_changed:
        return None
    row: dict[str, Any] = {
        "status": status,
        "source": source,
        "teams_availability": reading.availability,
        "teams_activity": reading.activity,
    }
    if teams_changed:
        row["teams_changed_at"] = now
    if status_changed or current is None:
        row["updated_at"] = now
    return row
