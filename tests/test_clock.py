"""The runtime's clocks: the system one, and the fake one tests run the service on."""

from __future__ import annotations

import asyncio
import threading
import time

from app.clock import Clock, FakeClock


async def test_the_system_clock_waits_for_real() -> None:
    clock = Clock()
    assert clock.offset == 0
    assert abs((clock.now() - clock.now()).total_seconds()) < 1
    event = asyncio.Event()
    started = time.monotonic()
    assert await clock.wait(0.05, event) is False
    assert await clock.wait(0.05) is False
    await clock.sleep(0.01)
    assert time.monotonic() - started >= 0.1
    event.set()
    assert await clock.wait(10, event) is True


async def test_a_fake_sleep_passes_at_once_and_moves_the_clock() -> None:
    clock = FakeClock()
    before_now, before_mono = clock.now(), clock.monotonic()
    started = time.monotonic()
    await clock.sleep(120)
    await clock.sleep(0.5)
    assert time.monotonic() - started < 1
    assert clock.slept == [120, 0.5]
    assert (clock.now() - before_now).total_seconds() >= 120.5
    assert clock.monotonic() - before_mono >= 120.5
    assert clock.offset == 120.5


async def test_fake_waits_end_when_the_clock_passes_them_or_the_event_is_set() -> None:
    clock = FakeClock()
    event = asyncio.Event()
    short = asyncio.create_task(clock.wait(60, event))
    long = asyncio.create_task(clock.wait(3600))
    await asyncio.sleep(0.01)
    clock.advance(30)
    await asyncio.sleep(0.01)
    assert not short.done() and not long.done()
    await clock.sleep(31)  # a sleep elsewhere moves the clock for every waiter
    assert await asyncio.wait_for(short, 1) is False
    assert not long.done()
    event_wait = asyncio.create_task(clock.wait(3600, event))
    await asyncio.sleep(0.01)
    event.set()
    assert await asyncio.wait_for(event_wait, 1) is True
    clock.advance(3600)
    assert await asyncio.wait_for(long, 1) is False
    # Unmoved, a fake wait still ends with real time, as background loops expect.
    assert await asyncio.wait_for(clock.wait(0.05), 1) is False


async def test_a_fake_clock_wakes_waiters_in_another_thread_s_loop() -> None:
    clock = FakeClock()
    result: list[bool] = []
    waiting = threading.Event()

    async def waiter() -> None:
        task = asyncio.create_task(clock.wait(3600))
        await asyncio.sleep(0)
        waiting.set()
        result.append(await task)

    thread = threading.Thread(target=lambda: asyncio.run(waiter()))
    thread.start()
    assert await asyncio.to_thread(waiting.wait, 5)
    await asyncio.sleep(0.05)
    clock.advance(3601)
    await asyncio.to_thread(thread.join, 5)
    assert result == [False]
