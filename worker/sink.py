"""The sink: records batched into part files, then counters, then acks, in that order.

A task is acked only after its record is durable in the BlobStore and its result counted in
the StateStore; a crash in between means a redelivery, a second copy of the record in some
part file, and an idempotent recount: at-least-once on the way, exactly-once in the export.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

import msgspec

from backends.blobs import BlobStore
from backends.clock import Clock
from backends.state import OutputObject, StateStore, TaskResult
from worker.paths import part_path
from worker.process import Outcome

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()

# Called with each execution id whose counters a flush moved.
OnFlushed = Callable[[str], Awaitable[object]]


class Sink:
    def __init__(
        self,
        *,
        blobs: BlobStore,
        state: StateStore,
        clock: Clock,
        worker_id: str,
        prefix: str = "",
        max_batch: int = 256,
        max_delay_s: float = 0.5,
        on_flushed: OnFlushed | None = None,
    ) -> None:
        self._blobs = blobs
        self._state = state
        self._clock = clock
        self._worker_id = worker_id
        self._prefix = prefix
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._on_flushed = on_flushed
        self._seq = 0

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
            if batch and (len(batch) >= self._max_batch or timed_out):
                await self.flush(batch)
                batch = []
                deadline = None

    async def flush(self, batch: list[Outcome]) -> None:
        """Make a batch durable, count it, ack it."""
        if not batch:
            return
        groups: dict[tuple[str, str], list[bytes]] = defaultdict(list)
        results: dict[str, list[TaskResult]] = defaultdict(list)
        for outcome in batch:
            task = outcome.delivery.task
            if outcome.record is not None:
                groups[(task.execution_id, task.phase)].append(_encoder.encode(outcome.record))
            results[task.execution_id].append(outcome.result)
        for (execution_id, phase), lines in groups.items():
            self._seq += 1
            path = part_path(self._prefix, execution_id, phase, self._worker_id, self._seq)
            data = b"\n".join(lines) + b"\n"
            await self._blobs.write(path, data)
            await self._state.add_output(
                execution_id,
                OutputObject(path=path, size_bytes=len(data), records=len(lines), kind="part"),
            )
        for execution_id, items in results.items():
            await self._state.finish_tasks(execution_id, items)
        for outcome in batch:
            try:
                await outcome.delivery.ack()
            except Exception as exc:  # the task was counted; a redelivery is recounted as 0
                log.warning("ack failed for %s: %s", outcome.delivery.task.url, exc)
        if self._on_flushed is not None:
            for execution_id in results:
                await self._on_flushed(execution_id)
