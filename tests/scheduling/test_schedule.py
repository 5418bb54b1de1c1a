"""Next fire times: daily and weekly, in the PBX's timezone, across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.scheduling.schedule import next_fire


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_default_daily_0030_in_the_pbx_timezone() -> None:
    # 00:30 in Berlin (CET, UTC+1) is 23:30 UTC the evening before.
    assert next_fire("daily", [], "00:30", "Europe/Berlin", utc(2026, 1, 10, 12)) == utc(
        2026, 1, 10, 23, 30
    )
    assert next_fire("daily", [], "00:30", "UTC", utc(2026, 1, 10, 0, 30)) == utc(
        2026, 1, 11, 0, 30
    )


def test_weekly_on_chosen_days() -> None:
    # 2026-01-10 is a Saturday.
    after = utc(2026, 1, 10, 23, 0)
    assert next_fire("weekly", ["saturday"], "23:59", "UTC", after) == utc(2026, 1, 10, 23, 59)
    assert next_fire("weekly", ["saturday"], "23:59", "UTC", utc(2026, 1, 11)) == utc(
        2026, 1, 17, 23, 59
    )
    assert next_fire(
        "weekly", ["monday", "thursday"], "08:00", "America/New_York", utc(2026, 1, 13)
    ) == utc(2026, 1, 15, 13, 0)


def test_spring_forward_a_missing_time_fires_past_the_gap() -> None:
    # Berlin, 2026-03-29: clocks jump 02:00 → 03:00; 02:30 does not exist that day.
    fire = next_fire("daily", [], "02:30", "Europe/Berlin", utc(2026, 3, 28, 12))
    assert fire == utc(2026, 3, 29, 1, 30)  # 03:30 CEST, the gap's length after the wall time
    # The day after, 02:30 CEST again (00:30 UTC).
    assert next_fire("daily", [], "02:30", "Europe/Berlin", fire) == utc(2026, 3, 30, 0, 30)


def test_fall_back_an_ambiguous_time_fires_once() -> None:
    # Berlin, 2026-10-25: clocks fall back 03:00 → 02:00; 02:30 happens twice.
    first = next_fire("daily", [], "02:30", "Europe/Berlin", utc(2026, 10, 24, 12))
    assert first == utc(2026, 10, 25, 0, 30)  # the first 02:30 (CEST)
    # Not again an hour later at the second 02:30 (CET): the next one is the day after.
    assert next_fire("daily", [], "02:30", "Europe/Berlin", first) == utc(2026, 10, 26, 1, 30)


@pytest.mark.parametrize("tz", ["Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Chatham"])
def test_unusual_offsets_keep_the_local_wall_time(tz: str) -> None:
    from zoneinfo import ZoneInfo

    after = utc(2026, 6, 1)
    fire = next_fire("daily", [], "07:45", tz, after)
    local = fire.astimezone(ZoneInfo(tz))
    assert (local.hour, local.minute) == (7, 45) and fire > after
