"""The deletion guard: a run deleting more than the bounds allow holds its deletions."""

from __future__ import annotations

from typing import Any


def over_bounds(deletions: int, synced: int, guard: dict[str, Any]) -> bool:
    if not guard.get("enabled", True) or deletions == 0:
        return False
    if deletions > int(guard.get("max_deletions", 500)):
        return True
    percent = guard.get("max_percent")
    return percent is not None and synced > 0 and deletions * 100.0 / synced > float(percent)
