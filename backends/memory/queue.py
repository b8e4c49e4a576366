"""MemoryTaskQueue: the TaskQueue of embedded mode, with Pub/Sub's delivery semantics.

Deliveries have ack deadlines; one that expires is delivered again with a higher
``delivery_attempt``, as if its worker had crashed. Nacks with a delay wait on the injected
clock. Otherwise tasks come out in publish order.

Timed events (delayed redeliveries, ack deadlines) sit in one heap and are fired lazily by
whoever touches the queue next; an idle receiver sleeps on the clock until the earliest of
them, so no background task needs a lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from backends.clock import Clock, SystemClock
from backends.errors import InvalidInputError
from backends.queue import Delivery, QueueClosed, TaskQueue
from backends.task import Task


@dataclass(slots=True, eq=False)
class _Message:
    task: Task
    deliveries: int = 0


@dataclass(slots=True, eq=False)
class _Lease:
    """One delivery in flight: its message and the deadline to settle it by."""

    message: _Message
    deadline: float


class _MemoryDelivery(Delivery):
    __slots__ = ("_lease", "_queue")

    def __init__(self, queue: MemoryTaskQueue, lease: _Lease) -> None:
        super().__init__(lease.message.task, lease.message.deliveries)
        self._queue = queue
        self._lease = lease

    async def ack(self) -> None:
        self._queue._settle(self._lease, None)

    async def nack(self, delay_s: float = 0.0) -> None:
        self._queue._settle(self._lease, max(delay_s, 0.0))


class MemoryTaskQueue(TaskQueue):
    """An in-process queue shared by the embedded runner's workers."""

    def __init__(self, clock: Clock | None = None, *, ack_deadline_s: float = 60.0) -> None:
        if not ack_deadline_s > 0:
            raise InvalidInputError(f"ack_deadline_s must be > 0, not {ack_deadline_s}")
        self._clock = clock or SystemClock()
        self._ack_deadline_s = ack_deadline_s
        self._ready: deque[_Message] = deque()
        # (due, seq, what): a _Message due for redelivery or a _Lease whose deadline it is.
        # Entries of settled leases stay until due and are skipped then.
        self._timers: list[tuple[float, int, _Message | _Lease]] = []
        self._seq = itertools.count()
        self._leases: set[_Lease] = set()
        self._delayed = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def pending(self) -> int:
        """Tasks not yet acked: ready, waiting out a nack delay, or in flight."""
        return len(self._ready) + self._delayed + len(self._leases)

    def in_flight(self) -> int:
        """Deliveries handed out and not yet settled or expired."""
        self._fire_timers()
        return len(self._leases)

    async def publish(self, tasks: Sequence[Task]) -> None:
        if self._closed:
            raise QueueClosed("the queue is closed")
        self._ready.extend(_Message(task) for task in tasks)
        self._wake(len(tasks))

    async def receive(self) -> Delivery:
        while True:
            if self._closed:
                raise QueueClosed("the queue is closed")
            self._fire_timers()
            if self._ready:
                return self._deliver(self._ready.popleft())
            await self._wait()

    async def close(self) -> None:
        self._closed = True
        self._wake(len(self._waiters))

    # -- internals (called by deliveries too; no awaits, so each step is atomic)

    def _deliver(self, message: _Message) -> Delivery:
        message.deliveries += 1
        lease = _Lease(message, self._clock.now() + self._ack_deadline_s)
        self._leases.add(lease)
        self._push_timer(lease.deadline, lease)
        return _MemoryDelivery(self, lease)

    def _settle(self, lease: _Lease, redeliver_after_s: float | None) -> None:
        self._fire_timers()  # an expired lease is redelivered, and its settling ignored
        if lease not in self._leases:
            return
        self._leases.discard(lease)
        if redeliver_after_s is None:
            return
        if redeliver_after_s > 0:
            self._delayed += 1
            self._push_timer(self._clock.now() + redeliver_after_s, lease.message)
        else:
            self._ready.append(lease.message)
            self._wake(1)

    def _push_timer(self, due: float, item: _Message | _Lease) -> None:
        live = self._delayed + len(self._leases)  # each has exactly one live entry
        if len(self._timers) > 2 * live + 1024:
            # Settled leases would otherwise keep their tasks alive until their deadline.
            self._timers = [
                entry
                for entry in self._timers
                if isinstance(entry[2], _Message)
                or (entry[2] in self._leases and entry[2].deadline == entry[0])
            ]
            heapq.heapify(self._timers)
        heapq.heappush(self._timers, (due, next(self._seq), item))
        if self._timers[0][2] is item:
            # Earlier than what idle receivers sleep until: one of them must re-plan.
            self._wake(1)

    def _fire_timers(self) -> None:
        now = self._clock.now()
        fired = 0
        while self._timers and self._timers[0][0] <= now:
            _, _, item = heapq.heappop(self._timers)
            if isinstance(item, _Message):
                self._delayed -= 1
                self._ready.append(item)
                fired += 1
            elif item in self._leases and item.deadline <= now:
                self._leases.discard(item)
                self._ready.append(item.message)
                fired += 1
        self._wake(fired)

    def _wake(self, n: int) -> None:
        while n > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                n -= 1

    async def _wait(self) -> None:
        """Park until woken (a publish, a settle, close) or the earliest timer is due."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        timer: asyncio.Future[None] | None = None
        if self._timers:
            timer = asyncio.ensure_future(self._clock.sleep(self._timers[0][0] - self._clock.now()))
        try:
            if timer is None:
                await waiter
            else:
                await asyncio.wait((waiter, timer), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # A wake-up meant for a task that is ready must not die with this receiver.
            if waiter.done() and not waiter.cancelled():
                self._wake(1)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
