"""When the next scheduled sync fires: daily or weekly at HH:MM in the PBX's own timezone.

Wall-clock times across DST changes: a time that does not exist that day (clocks spring forward
over it) fires at the same instant the clock jumps past it, i.e. shifted by the gap; a time that
happens twice (clocks fall back) fires once, at its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAY_INDEX = {
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
}


def _local_fire(day: date, at: time, tz: ZoneInfo) -> datetime:
    # fold=0: an ambiguous time means its first occurrence; a missing one maps past the gap.
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def next_fire(
    frequency: str, days: list[str], hhmm: str, timezone: str, after: datetime
) -> datetime:
    """The first fire strictly after `after` (UTC in, UTC out)."""
    tz = ZoneInfo(timezone)
    hour, minute = (int(part) for part in hhmm.split(":"))
    at = time(hour, minute)
    allowed = {WEEKDAY_INDEX[d] for d in days} if frequency == "weekly" else set(range(7))
    start = after.astimezone(tz).date() - timedelta(days=1)
    for offset in range(9):
        day = start + timedelta(days=offset)
        if day.weekday() not in allowed:
            continue
        fire = _local_fire(day, at, tz)
        if fire > after:
            return fire
    raise ValueError("no fire time within a week")  # unreachable with at least one day
