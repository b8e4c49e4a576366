"""The worker's stage pipeline: receive → process (politeness, fetch, nodes, frontier) →
sink → ack, joined by bounded queues so a slow stage pushes back instead of piling up tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from backends.queue import Delivery, TaskQueue
from worker.process import Outcome, TaskProcessor
from worker.sink import Sink

log = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self,
        *,
        queue: TaskQueue,
        processor: TaskProcessor,
        sink: Sink,
        concurrency: int,
        drain_timeout_s: float | None = None,
    ) -> None:
        self._queue = queue
        self._processor = processor
        self._sink = sink
        self._concurrency = concurrency
        # How long a stop waits for tasks in flight before handing them back; None: no limit.
        self._drain_timeout_s = drain_timeout_s
        self._intake: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=concurrency)
        self._outbox: asyncio.Queue[Outcome | None] = asyncio.Queue(maxsize=concurrency * 4)
        self.in_flight = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then finish what is in flight and flush the sink."""
        sink_task = asyncio.create_task(self._sink.run(self._outbox), name="sink")
        processors = [
            asyncio.create_task(self._process_loop(), name=f"processor-{i}")
            for i in range(self._concurrency)
        ]
        receiver = asyncio.create_task(self._receive_loop(), name="receiver")
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait(
                [stopper, receiver, sink_task, *processors], return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            try:
                await self._shutdown(receiver, processors, sink_task)
            finally:
                # Even when the shutdown itself is cancelled, no stage outlives the pipeline
                # (what they held comes back from the queue after its ack deadline).
                for task in (receiver, *processors, sink_task, stopper):
                    task.cancel()

    async def _shutdown(
        self,
        receiver: asyncio.Task[None],
        processors: list[asyncio.Task[None]],
        sink_task: asyncio.Task[None],
    ) -> None:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        # Deliveries still in the intake were never started: hand them back. (Each one taken
        # out is marked done, or the join below would wait for it forever.)
        while not self._intake.empty():
            delivery = self._intake.get_nowait()
            self._intake.task_done()
            with contextlib.suppress(Exception):
                await delivery.nack(0.0)
        # Tasks waiting for a politeness permit have not started either.
        self._processor.stop_waiting()
        # The rest finish, unless the sink is gone (they could not hand in their outcome) or
        # they take longer than the drain allows: then they are cancelled, and their
        # deliveries handed back.
        drain = 0.0 if sink_task.done() else self._drain_timeout_s
        try:
            await asyncio.wait_for(self._intake.join(), drain)
        except TimeoutError:
            log.warning(
                "%d tasks still in flight after the drain; handing them back", self.in_flight
            )
        for task in processors:
            task.cancel()
        await asyncio.gather(*processors, return_exceptions=True)
        if not sink_task.done():
            await self._outbox.put(None)
        await sink_task

    async def _receive_loop(self) -> None:
        while True:
            delivery = await self._queue.receive()
            try:
                await self._intake.put(delivery)
            except asyncio.CancelledError:  # stopping with the intake full: hand it back
                with contextlib.suppress(Exception):
                    await delivery.nack(0.0)
                raise

    async def _process_loop(self) -> None:
        while True:
            delivery = await self._intake.get()
            self.in_flight += 1
            try:
                outcome = await self._processor.process(delivery)
                if outcome is not None:
                    await self._outbox.put(outcome)
            except asyncio.CancelledError:
                # Stopped mid-task (the drain ran out): the task was not counted, so it is
                # handed back to be done again.
                with contextlib.suppress(Exception):
                    await delivery.nack(0.0)
                raise
            except Exception:
                # process() records every failure itself; reaching here is a bug in the
                # runtime, so the delivery goes back to the queue rather than being lost.
                log.exception("processing %s crashed; handing it back", delivery.task.url)
                with contextlib.suppress(Exception):
                    await delivery.nack(1.0)
            finally:
                self.in_flight -= 1
                self._intake.task_done()
