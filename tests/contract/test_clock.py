"""The clocks: FakeClock wakes sleepers only when time is moved; SystemClock is real."""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta

import pytest

from backends.clock import Clock, FakeClock, SystemClock


async def test_fake_sleep_waits_for_advance() -> None:
    clock = FakeClock()
    sleeper = asyncio.ensure_future(clock.sleep(5.0))
    clock.advance(4.9)
    await asyncio.sleep(0)
    assert not sleeper.done()
    assert clock.sleepers == 1
    clock.advance(0.1)
    await asyncio.wait_for(sleeper, 1.0)
    assert clock.sleepers == 0


async def test_fake_sleep_registers_when_called() -> None:
    clock = FakeClock()
    waiting = clock.sleep(1.0)  # not yet awaited
    clock.advance(1.0)
    await asyncio.wait_for(waiting, 1.0)


async def test_fake_wall_moves_with_now() -> None:
    clock = FakeClock()
    wall, now = clock.wall(), clock.now()
    assert wall.tzinfo is UTC
    clock.advance(90.0)
    assert clock.now() == now + 90.0
    assert clock.wall() == wall + timedelta(seconds=90)
    with pytest.raises(ValueError):
        clock.advance(-1.0)


async def test_run_for_lets_loops_see_every_tick() -> None:
    clock = FakeClock()
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            await clock.sleep(1.0)
            ticks.append(clock.now())

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = clock.now()
    await clock.run_for(5.5)
    task.cancel()
    assert [t - start for t in ticks] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert clock.now() == start + 5.5


async def test_cancelled_sleepers_are_forgotten() -> None:
    clock = FakeClock()
    sleeper = asyncio.ensure_future(clock.sleep(1.0))
    sleeper.cancel()
    assert clock.next_deadline() is None
    clock.advance(2.0)  # waking a cancelled future must not raise


async def test_zero_sleep_still_yields() -> None:
    clock: Clock = FakeClock()
    ran = asyncio.Event()

    async def other() -> None:
        ran.set()

    task = asyncio.create_task(other())
    await clock.sleep(0)
    assert ran.is_set()
    await task


async def test_system_clock() -> None:
    clock: Clock = SystemClock()
    before = clock.now()
    await clock.sleep(0)
    assert clock.now() >= before
    assert clock.wall().tzinfo is UTC
