"""The service's sense of time: the wall clock, a monotonic clock, and waiting, in one object.

Whatever waits or reads the time to decide something (Graph retries and backoff, the worker's
polls and heartbeats, the schedule timers, the change-event delay) asks the Runtime's clock, so
that a test can hand the service a `FakeClock` that never sleeps.

Two kinds of waiting, kept apart on purpose:
- `sleep(seconds)`: a pause that its caller is blocked on (a backoff, a `Retry-After`).
- `wait(seconds, event)`: an idle period of a loop that repeats (a poll, a heartbeat), cut short
  by `event`. Loops use this one, never `sleep`: a fake clock passes sleeps at once, and a loop
  made of sleeps would spin.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any


class Clock:
    """The system clocks, and asyncio's timers to wait on them."""

    def __init__(self) -> None:
        self._offset = 0.0

    @property
    def offset(self) -> float:
        """Seconds this clock is ahead of the system clock (0 for the real one)."""
        return self._offset

    def now(self) -> datetime:
        """The current time in UTC (aware)."""
        return datetime.now(UTC) + timedelta(seconds=self._offset)

    def monotonic(self) -> float:
        return time.monotonic() + self._offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, seconds: float, event: asyncio.Event | None = None) -> bool:
        """Idle for `seconds`, or until `event` is set: True when the event ended the wait."""
        if event is None:
            await asyncio.sleep(seconds)
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        return event.is_set()


class FakeClock(Clock):
    """A clock for tests: it runs with the system clock, but never sleeps.

    `sleep(s)` returns at once and moves the clock `s` ahead (recorded in `slept`); `advance(s)`
    moves it ahead from outside. Every `wait` whose end the clock passed returns then, in
    whichever thread's event loop it waits; otherwise waits end with real time as usual, so a
    service's background loops behave as in production. Rows stamped with the system time stay
    in the past of this clock.
    """

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []
        self._lock = threading.Lock()
        self._waiters: set[asyncio.Future[None]] = set()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            self._offset += seconds
            waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            fut.get_loop().call_soon_threadsafe(_resolve, fut)

    async def wait(self, seconds: float, event: asyncio.Event | None = None) -> bool:
        deadline = self.monotonic() + seconds
        loop = asyncio.get_running_loop()
        woken = asyncio.ensure_future(event.wait()) if event is not None else None
        try:
            while (remaining := deadline - self.monotonic()) > 0:
                if event is not None and event.is_set():
                    return True
                moved: asyncio.Future[None] = loop.create_future()
                with self._lock:
                    self._waiters.add(moved)
                waits: set[asyncio.Future[Any]] = {moved}
                if woken is not None:
                    waits.add(woken)
                await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                with self._lock:
                    self._waiters.discard(moved)
                moved.cancel()
            return event is not None and event.is_set()
        finally:
            if woken is not None and not woken.done():
                woken.cancel()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
