"""Autoscaled concurrency: how many pages each engine fetches and runs its nodes on at once.

Every engine (``http``, ``browser``) has a gate, a pool of permits whose size can change
while tasks hold them: lowering it never cancels a page in flight, it only admits no new one
until enough have finished. A fixed concurrency is gates that never change. Autoscaled,
a controller per engine sets its gate every ``INTERVAL_S`` from one reading
(worker/autoscale_probe.py) of

- the CPU of the process and its children (Chromium) against the CPUs it may use,
- their memory against the limit (the container's, a setting, or a share of what was
  available), and the share of the machine's memory in use,
- the event loop's lag: how late a timer set every ``PROBE_S`` fires (a loop busy parsing
  pages answers everything late, whatever the CPU figures say). The median of an
  interval's probes counts, so one long pause (a module loaded, a huge page parsed) does
  not move the level; and of each delay only the share of the time the loop's thread was
  running: a machine so busy with other work that this process waits for a CPU is not a
  reason to crawl slower (its CPU figure is low, too).

An engine **rises** by an eighth (at least 1) when every figure has headroom and its gate
made a page wait during the interval (more permits would be used); it **falls** by a quarter
when any figure is overloaded and it had pages in flight; otherwise it stays. The level
never leaves ``[minimum, maximum]``: the maximum is the ceiling the deployment sets
(``TRAWL_WORKER_CONCURRENCY``, and ``TRAWL_WORKER_BROWSER_CONCURRENCY`` for browser tabs).
A browser tab costs far more memory than an http request, so an engine rises only when
its next step, at ``slot_bytes`` a page, still leaves memory headroom.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import statistics
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from backends.clock import Clock, SystemClock
from worker.autoscale_probe import Sample
from worker.endings import HandBack

log = logging.getLogger(__name__)

INTERVAL_S = 0.5  # between two decisions
PROBE_S = 0.1  # between two event-loop lag probes
RISE_SHARE = 1 / 8  # a rise adds this share of the level (at least 1)
FALL_FACTOR = 0.75  # a fall keeps this share of the level


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a figure is overloaded (at or above ``*_high``: fall) and when it has headroom
    (below ``*_low``: a rise is allowed). In between, the level stays."""

    cpu_high: float = 0.95
    cpu_low: float = 0.85
    memory_high: float = 0.9
    memory_low: float = 0.8
    lag_high_s: float = 0.05
    lag_low_s: float = 0.02

    def overloaded(self, sample: Sample) -> list[str]:
        """What is overloaded in ``sample``: some of "cpu", "memory", "loop lag"."""
        return [
            name
            for name, over in (
                ("cpu", sample.cpu >= self.cpu_high),
                ("memory", sample.memory >= self.memory_high),
                ("loop lag", sample.lag_s >= self.lag_high_s),
            )
            if over
        ]

    def headroom(self, sample: Sample, extra_bytes: int = 0) -> bool:
        """Whether every figure has room, with ``extra_bytes`` more memory in use."""
        extra = extra_bytes / sample.memory_limit if sample.memory_limit else 0.0
        return (
            sample.cpu < self.cpu_low
            and sample.memory + extra < self.memory_low
            and sample.lag_s < self.lag_low_s
        )


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """One engine's range, where it starts, and the memory a page of it may take."""

    minimum: int
    maximum: int
    start: int
    slot_bytes: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.start <= self.maximum:
            raise ValueError(f"need 1 <= minimum <= start <= maximum, not {self}")


# Rough resident memory of one page in flight: a response and its parsed tree; a tab.
HTTP_SLOT_BYTES = 4 * 1024 * 1024
BROWSER_SLOT_BYTES = 150 * 1024 * 1024


def default_limits(ceiling: int, browser_ceiling: int) -> dict[str, EngineLimits]:
    """The engines' ranges under ``TRAWL_WORKER_CONCURRENCY`` = ``ceiling`` and
    ``TRAWL_WORKER_BROWSER_CONCURRENCY`` = ``browser_ceiling``: http starts at half its
    ceiling, the browser at 8 tabs (both at most their ceiling)."""
    browser_max = max(1, min(ceiling, browser_ceiling))
    return {
        "http": EngineLimits(1, ceiling, max(1, ceiling // 2), HTTP_SLOT_BYTES),
        "browser": EngineLimits(1, browser_max, min(8, browser_max), BROWSER_SLOT_BYTES),
    }


class GateClosed(HandBack):
    """The worker is stopping: a page still waiting for a place goes back to the queue
    untried, at once."""

    def __init__(self) -> None:
        super().__init__(0.0)


class Gate:
    """A pool of ``limit`` permits whose size can change while they are held. Waiters are
    admitted in order. ``waited`` and ``peak`` tell the controller, since it last reset
    them, whether a page had to wait and how many were in flight at most."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.waited = False
        self.peak = 0
        self.used = False  # ever admitted a page
        self.closed = False

    @property
    def waiting(self) -> int:
        return sum(not w.done() for w in self._waiters)

    async def acquire(self) -> None:
        """Wait for a permit; GateClosed once the worker is stopping."""
        if self.closed:
            raise GateClosed()
        self.used = True
        if self.in_use < self.limit and not self._waiters:
            self._take()
            return
        self.waited = True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # admitted as it was cancelled
                self.release()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.in_use -= 1
        self._admit()

    def close(self) -> None:
        """The worker is stopping: pages waiting end with GateClosed (handed back), and so
        does any that asks from now on; pages holding a permit go on."""
        self.closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(GateClosed())

    def resize(self, limit: int) -> None:
        """Hold ``limit`` permits from now on: more admits waiters at once; fewer lets the
        pages in flight finish and admits none until they are below it."""
        self.limit = limit
        self._admit()

    def reset_interval(self) -> None:
        self.waited = self.waiting > 0
        self.peak = self.in_use

    def _take(self) -> None:
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)

    def _admit(self) -> None:
        while self._waiters and self.in_use < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._take()
                waiter.set_result(None)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


@dataclass(slots=True)
class EngineControl:
    """One engine's controller: its gate, its range, and what it did (for the summary)."""

    engine: str
    limits: EngineLimits
    gate: Gate
    low: int = 0  # the lowest and highest levels it has been at while in use
    high: int = 0
    last_change: str = ""  # why it last fell or rose, for the log

    def step(self, sample: Sample, thresholds: Thresholds) -> int:
        """Decide the level after one interval described by ``sample``; the new level."""
        gate, level = self.gate, self.gate.limit
        saturated = gate.waited or gate.waiting > 0
        busy = gate.peak > 0
        rise = max(1, math.floor(level * RISE_SHARE))
        overloaded = thresholds.overloaded(sample)
        new = level
        if overloaded and busy:
            new = max(self.limits.minimum, math.floor(level * FALL_FACTOR))
            self.last_change = f"fell: {', '.join(overloaded)} overloaded"
        elif saturated and thresholds.headroom(sample, rise * self.limits.slot_bytes):
            new = min(self.limits.maximum, level + rise)
            self.last_change = "rose: pages waiting, headroom"
        if new != level:
            gate.resize(new)
            log.debug(
                "concurrency %s %d -> %d (%s; cpu %.2f, memory %.2f, loop lag %.3f s)",
                self.engine,
                level,
                new,
                self.last_change,
                sample.cpu,
                sample.memory,
                sample.lag_s,
            )
        gate.reset_interval()
        if gate.used:
            self.low = min(self.low, new) if self.low else min(level, new)
            self.high = max(self.high, level, new)
        return new


class Probe(Protocol):
    """Something that reads the machine (worker/autoscale_probe.py, or a script in tests)."""

    def sample(self, lag_s: float) -> Sample: ...


@dataclass(slots=True)
class Concurrency:
    """How many pages each engine runs at once: fixed, or autoscaled by ``run``.

    ``ceiling`` is the most tasks the pipeline holds at once (every engine together);
    ``gate(engine)`` is what a task holds while its page is fetched and its nodes run."""

    ceiling: int
    controls: dict[str, EngineControl]
    probe: Probe | None = None  # None: fixed
    clock: Clock = field(default_factory=SystemClock)
    thresholds: Thresholds = field(default_factory=Thresholds)
    interval_s: float = INTERVAL_S
    probe_s: float = PROBE_S
    on_change: Callable[[str, int], None] | None = None
    cpu_time: Callable[[], float] = time.thread_time  # the loop thread's CPU seconds

    @classmethod
    def fixed(cls, level: int, engines: tuple[str, ...] = ("http", "browser")) -> Concurrency:
        """Every engine at ``level``, and at most ``level`` tasks in flight in all."""
        if level < 1:
            raise ValueError(f"concurrency must be at least 1, not {level}")
        limits = EngineLimits(level, level, level)
        return cls(level, {e: EngineControl(e, limits, Gate(level)) for e in engines})

    @classmethod
    def auto(
        cls,
        ceiling: int,
        limits: Mapping[str, EngineLimits],
        probe: Probe,
        *,
        clock: Clock | None = None,
        thresholds: Thresholds | None = None,
    ) -> Concurrency:
        """Each engine within its ``limits``, steered by ``probe``'s readings."""
        controls = {e: EngineControl(e, lim, Gate(lim.start)) for e, lim in limits.items()}
        return cls(
            ceiling,
            controls,
            probe,
            clock or SystemClock(),
            thresholds or Thresholds(),
        )

    @property
    def autoscaled(self) -> bool:
        return self.probe is not None

    def gate(self, engine: str) -> Gate:
        control = self.controls.get(engine)
        if control is None:  # an engine without limits of its own: as wide as the pipeline
            control = EngineControl(
                engine, EngineLimits(self.ceiling, self.ceiling, self.ceiling), Gate(self.ceiling)
            )
            self.controls[engine] = control
        return control.gate

    def stop_waiting(self) -> None:
        """The worker is stopping: no page that waits for a place starts (worker/pipeline.py)."""
        for control in self.controls.values():
            control.gate.close()

    def levels(self) -> dict[str, int]:
        """The level of each engine that has run a page, by engine name."""
        return {e: c.gate.limit for e, c in sorted(self.controls.items()) if c.gate.used}

    def describe(self) -> str:
        """One line for a run's summary: each engine used, its level at the end and, when
        autoscaled, the range it moved in: ``http auto 24 (16 to 28)``."""
        parts = []
        for engine, control in sorted(self.controls.items()):
            if not control.gate.used:
                continue
            if not self.autoscaled:
                parts.append(f"{engine} {control.gate.limit} (fixed)")
                continue
            low, high = control.low or control.gate.limit, control.high or control.gate.limit
            spread = f" ({low} to {high})" if low != high else ""
            parts.append(f"{engine} auto {control.gate.limit}{spread}")
        return ", ".join(parts)

    def step(self, sample: Sample) -> dict[str, int]:
        """One decision for every engine from ``sample``; the new levels."""
        levels = {}
        for engine, control in self.controls.items():
            before = control.gate.limit
            levels[engine] = control.step(sample, self.thresholds)
            if levels[engine] != before and self.on_change is not None:
                self.on_change(engine, levels[engine])
        return levels

    async def run(self) -> None:
        """Probe the event loop's lag every ``probe_s`` and decide every ``interval_s``,
        until cancelled. Nothing to do when fixed."""
        if self.probe is None:
            return
        lags: list[float] = []
        next_decision = self.clock.now() + self.interval_s
        while True:
            before, ran_before = self.clock.now(), self.cpu_time()
            await self.clock.sleep(self.probe_s)
            took = self.clock.now() - before
            late = max(took - self.probe_s, 0.0)
            running = min(max(self.cpu_time() - ran_before, 0.0) / took, 1.0) if took else 0.0
            lags.append(late * running)
            if self.clock.now() < next_decision:
                continue
            next_decision = self.clock.now() + self.interval_s
            try:
                sample = self.probe.sample(statistics.median(lags))
            except Exception:  # a reading that failed: decide next time
                log.exception("reading the machine for the autoscaler failed")
                continue
            finally:
                lags.clear()
            self.step(sample)
