"""Injected time, so rate limits, backoff and redelivery are tested without sleeping.

``sleep`` returns an awaitable rather than being a coroutine function: a fake clock then
registers the sleeper when ``sleep`` is called, not when the awaiting task first runs, so a
test that advances time right after scheduling a wait cannot slip past it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Monotonic time for durations, wall time for timestamps users read."""

    def now(self) -> float:
        """Monotonic seconds; only differences mean anything."""
        ...

    def wall(self) -> datetime:
        """The current time of day, timezone-aware UTC."""
        ...

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Wait ``seconds`` of this clock's time; await the result at once."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> Awaitable[None]:
        return asyncio.sleep(max(seconds, 0.0))


DEFAULT_FAKE_WALL = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told: ``advance`` for a jump, ``run_for`` to let timed
    loops run as they would in real time. Sleepers wait on futures, never on real time."""

    def __init__(self, start: float = 1000.0, wall_start: datetime = DEFAULT_FAKE_WALL) -> None:
        # Monotonic time does not start at 0 in real life; neither does this.
        self._start = start
        self._now = start
        self._wall_start = wall_start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> datetime:
        return self._wall_start + timedelta(seconds=self._now - self._start)

    def sleep(self, seconds: float) -> Awaitable[None]:
        if seconds <= 0:
            # Still yield to the loop, so a zero retry delay is never a hot loop.
            return asyncio.sleep(0)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        return future

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting (tests wait for a consumer to be parked)."""
        return sum(not future.done() for _, _, future in self._sleepers)

    def next_deadline(self) -> float | None:
        """When the earliest waiting sleeper wakes, or None if none waits."""
        self._drop_cancelled()
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        """Jump ``seconds`` ahead and wake every sleeper whose deadline has passed."""
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self._now += seconds
        self._wake_due()

    async def run_for(self, seconds: float, *, yields: int = 20) -> None:
        """Advance ``seconds`` deadline by deadline, letting woken tasks run in between, so
        a loop that sleeps repeatedly sees each of its wake-ups. ``yields`` is how many
        loop turns woken tasks get to reach their next await."""
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        target = self._now + seconds
        while (deadline := self.next_deadline()) is not None and deadline <= target:
            self._now = max(self._now, deadline)
            self._wake_due()
            for _ in range(yields):
                await asyncio.sleep(0)
        self._now = target
        for _ in range(yields):
            await asyncio.sleep(0)

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
