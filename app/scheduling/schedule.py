"""When the next scheduled sync fires (kept with the integration, whose schedule it reads)."""

from app.integration.schedule import WEEKDAY_INDEX, next_fire

__all__ = ["WEEKDAY_INDEX", "next_fire"]
