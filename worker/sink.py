"""The sink: records batched into part files, then counters, then acks, in that order.

A task is acked only after its record is durable in the BlobStore and its result counted in
the StateStore; a crash in between means a redelivery, a second copy of the record in some
part file, and an idempotent recount: at-least-once on the way, exactly-once in the export.

Each backend call of a flush is retried on its own (same name, same arguments) while a
backend outage lasts less than ``outage_budget_s``; past it, or on an error another try
will not fix, the sink dies and with it the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from backends.blobs import BlobStore
from backends.clock import Clock
from backends.state import OutputObject, StateStore, TaskResult
from worker.outage import DEFAULT_OUTAGE_BUDGET_S, Outages, ride_out
from worker.paths import part_path
from worker.process import Outcome

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()

T = TypeVar("T")

# Called with each execution id whose counters a flush moved: ``on_counted`` first (once
# the results are counted and acked), then ``on_flushed``.
OnFlushed = Callable[[str], Awaitable[object]]


class Sink:
    def __init__(
        self,
        *,
        blobs: BlobStore,
        state: StateStore,
        clock: Clock,
        worker_id: str,
        max_batch: int = 256,
        max_delay_s: float = 0.5,
        on_flushed: OnFlushed | None = None,
        on_counted: OnFlushed | None = None,
        outage_budget_s: float = DEFAULT_OUTAGE_BUDGET_S,
        outages: Outages | None = None,
    ) -> None:
        self._blobs = blobs
        self._state = state
        self._clock = clock
        self._worker_id = worker_id
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._on_flushed = on_flushed
        self._on_counted = on_counted
        self._seq = 0
        self.outage_budget_s = outage_budget_s
        self.outages = outages or Outages()
        # When set and true after a batch is taken in, the batch is flushed at once rather
        # than at ``max_delay_s``: nothing else is coming (an embedded run's last pages), so
        # waiting would only delay completion.
        self.idle: Callable[[], bool] | None = None

    async def run(self, inbox: asyncio.Queue[Outcome | None]) -> None:
        """Drain ``inbox`` until it yields None, flushing by size or age."""
        batch: list[Outcome] = []
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(deadline - self._clock.now(), 0.0)
            try:
                item: Outcome | None = await asyncio.wait_for(inbox.get(), timeout)
            except TimeoutError:
                item = None
                timed_out = True
            else:
                timed_out = False
            if item is None and not timed_out:  # the end-of-input marker
                await self.flush(batch)
                return
            if item is not None:
                batch.append(item)
                if deadline is None:
                    deadline = self._clock.now() + self._max_delay_s
                # Everything already waiting joins this batch: under load, batches fill up.
                while len(batch) < self._max_batch and not inbox.empty():
                    nxt = inbox.get_nowait()
                    if nxt is None:
                        await self.flush(batch)
                        return
                    batch.append(nxt)
            if batch and (
                len(batch) >= self._max_batch
                or timed_out
                or (self.idle is not None and inbox.empty() and self.idle())
            ):
                await self.flush(batch)
                batch = []
                deadline = None

    async def flush(self, batch: list[Outcome]) -> None:
        """Make a batch durable, count it, ack it; when that fails, hand the batch back
        (to be done again, by this worker or another) and raise."""
        if not batch:
            return
        try:
            await self._flush(batch)
        except Exception:
            await hand_back(batch)
            raise

    async def _flush(self, batch: list[Outcome]) -> None:
        groups: dict[tuple[str, str], list[bytes]] = defaultdict(list)
        results: dict[str, list[TaskResult]] = defaultdict(list)
        for outcome in batch:
            task = outcome.delivery.task
            if outcome.record is not None:
                groups[(task.execution_id, task.phase)].append(_encoder.encode(outcome.record))
            results[task.execution_id].append(outcome.result)
        for (execution_id, phase), lines in groups.items():
            self._seq += 1
            path = part_path(execution_id, phase, self._worker_id, self._seq)
            data = b"\n".join(lines) + b"\n"
            output = OutputObject(path=path, size_bytes=len(data), records=len(lines), kind="part")
            await self._retry(f"writing {path}", self._blobs.write, path, data)
            await self._retry(f"registering {path}", self._state.add_output, execution_id, output)
        for execution_id, items in results.items():
            await self._retry("counting results", self._state.finish_tasks, execution_id, items)
        for outcome in batch:
            try:
                await outcome.delivery.ack()
            except Exception as exc:  # the task was counted; a redelivery is recounted as 0
                log.warning("ack failed for %s: %s", outcome.delivery.task.url, exc)
        if self._on_counted is not None:  # e.g. release held tasks into the freed room
            on_counted = self._on_counted
            for execution_id in results:
                await self._retry("releasing held tasks", on_counted, execution_id)
        if self._on_flushed is not None:
            on_flushed = self._on_flushed
            for execution_id in results:
                await self._retry("checking completion", on_flushed, execution_id)

    async def _retry(self, what: str, fn: Callable[..., Awaitable[T]], *args: object) -> T:
        """``fn(*args)``, tried again while a backend outage lasts less than the budget."""
        return await ride_out(
            functools.partial(fn, *args),
            what=what,
            clock=self._clock,
            budget_s=self.outage_budget_s,
            outages=self.outages,
        )


async def hand_back(outcomes: list[Outcome]) -> None:
    """Nack each outcome's delivery (not acked: it was not, or not surely, counted)."""
    for outcome in outcomes:
        with contextlib.suppress(Exception):
            await outcome.delivery.nack(0.0)
