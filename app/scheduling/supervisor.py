"""A supervisor of independent loops: each loop is its own task, so a slow one delays nobody
and a failing one is logged and restarted (after a short, growing pause) without stopping the
others. It knows nothing of what the loops do; the application registers them at start-up.

Registering a loop (before `start()`):

    supervisor.add("presence", presence_loop)
        # `async def presence_loop() -> None` runs until cancelled; if it returns or raises,
        # it is logged and started again.
    supervisor.every("purge", 3600, purge_once, wakeup=bell)
        # `async def purge_once() -> object` is called every 3600 s, at once when the optional
        # `Wakeup` bell rings, and when `supervisor.poke("purge")` is called; an exception
        # is logged and the next round comes as usual.

`await supervisor.stop()` cancels every loop. `supervisor.restarts[name]` counts restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from app.db import Wakeup

log = logging.getLogger("pbx_entra.supervisor")
Loop = Callable[[], Awaitable[None]]
Step = Callable[[], Awaitable[Any]]
RESTART_FIRST = 1.0
RESTART_MAX = 60.0


class Supervisor:
    def __init__(self, *, restart_first: float = RESTART_FIRST) -> None:
        self.restart_first = restart_first
        self.loops: dict[str, Loop] = {}
        self.bells: dict[str, Wakeup] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts: dict[str, int] = {}
        self.rounds: dict[str, int] = {}

    def add(self, name: str, loop: Loop) -> None:
        """Register a loop that runs until cancelled."""
        if name in self.loops:
            raise ValueError(f"a loop named {name!r} is registered already")
        self.loops[name] = loop
        self.restarts[name] = 0

    def every(self, name: str, seconds: float, step: Step, *, wakeup: Wakeup | None = None) -> None:
        """Register a step called every `seconds`, and at once when its bell rings or it is
        poked."""
        bell = wakeup or Wakeup()
        self.bells[name] = bell
        self.rounds[name] = 0

        async def loop() -> None:
            while True:
                try:
                    await step()
                except Exception:
                    log.exception("loop %s: a round failed", name)
                self.rounds[name] += 1
                await bell.wait(seconds)

        self.add(name, loop)

    def poke(self, name: str) -> None:
        """Run the step of an `every` loop now (no effect on unknown names)."""
        bell = self.bells.get(name)
        if bell is not None:
            bell.ring()

    def start(self) -> None:
        for name, loop in self.loops.items():
            self.tasks[name] = asyncio.create_task(self._supervise(name, loop), name=name)

    async def _supervise(self, name: str, loop: Loop) -> None:
        pause = self.restart_first
        while True:
            try:
                await loop()
                log.error("loop %s returned; starting it again", name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("loop %s failed; starting it again", name)
            self.restarts[name] += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, RESTART_MAX)

    async def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        for task in self.tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
