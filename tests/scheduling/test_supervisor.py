"""The supervisor: loops that never wait for each other; a failing one is restarted."""

from __future__ import annotations

import asyncio

from app.db import Wakeup
from app.main import create_app
from app.scheduling.supervisor import Supervisor
from tests.conftest import make_settings


async def _until(predicate: object, rounds: int = 500) -> None:
    for _ in range(rounds):
        if callable(predicate) and predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition was not reached")


async def test_a_failing_loop_restarts_and_a_slow_one_delays_nobody() -> None:
    sup = Supervisor(restart_first=0)
    starts = 0
    never = asyncio.Event()

    async def flaky() -> None:
        nonlocal starts
        starts += 1
        if starts < 3:
            raise RuntimeError("boom")
        await never.wait()

    async def slow() -> None:
        await never.wait()  # busy for good: nobody else may notice

    ticks: list[int] = []
    bell = Wakeup()

    async def step() -> None:
        ticks.append(len(ticks))
        if len(ticks) == 2:
            raise ValueError("one bad round")

    sup.add("flaky", flaky)
    sup.add("slow", slow)
    sup.every("fast", 3600, step, wakeup=bell)
    sup.start()
    try:
        await _until(lambda: sup.restarts["flaky"] == 2 and starts == 3)
        for n in range(2, 5):
            # Rung (or poked): a round at once, though another loop never yields its work.
            (bell.ring if n % 2 else lambda: sup.poke("fast"))()
            await _until(lambda n=n: len(ticks) >= n)
        assert sup.rounds["fast"] >= 4  # the failing round was logged, the next came
        assert sup.restarts["slow"] == 0 and sup.restarts["fast"] == 0
        assert not sup.tasks["slow"].done() and not sup.tasks["flaky"].done()
    finally:
        await sup.stop()
    assert sup.tasks == {}


def test_a_loop_name_is_registered_once() -> None:
    sup = Supervisor()

    async def loop() -> None:
        return None

    sup.add("x", loop)
    try:
        sup.add("x", loop)
    except ValueError as exc:
        assert "x" in str(exc)
    else:
        raise AssertionError("a second loop named x was accepted")


async def test_the_service_runs_its_loops_under_one_supervisor(database_url: str) -> None:
    app = create_app(make_settings(database_url, worker_enabled=True, scheduler_enabled=False))
    async with app.router.lifespan_context(app):
        sup: Supervisor = app.state.supervisor
        assert set(sup.loops) == {
            "runs",
            "reaping",
            "notifications",
            "subscriptions",
            "outbox",
            "purge",
            "presence-notifications",
            "presence-upkeep",
        }
        # Each `every` loop does its first round (real database work) at once.
        for _ in range(1000):
            if all(sup.rounds[name] >= 1 for name in sup.rounds):
                break
            await asyncio.sleep(0.01)
        assert all(sup.rounds[name] >= 1 for name in sup.rounds), sup.rounds
        assert all(not t.done() for t in sup.tasks.values())
        assert app.state.worker.concurrency == 8  # WORKER_CONCURRENCY's default
    assert sup.tasks == {}
