"""The worker's stage pipeline: receive → process (politeness, fetch, nodes, frontier) →
sink → ack, joined by bounded queues so a slow stage pushes back instead of piling up tasks.

A stage that dies ends the pipeline: ``run`` stops the others and raises StageFailed naming
the stage and its error, within seconds. Stopping never waits on a stage without a bound:
processors are cancelled again and again until they end (a cancel can be lost inside a
client library, e.g. redis-py's ``wait_for`` on Python 3.11), see a stopping flag before
taking another task, and are abandoned with an error in the log if they still will not end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from backends.clock import Clock, SystemClock
from backends.queue import Delivery, TaskQueue
from worker.autoscale import Concurrency
from worker.outage import DEFAULT_OUTAGE_BUDGET_S, Outages, StageFailed, ride_out
from worker.process import Outcome, TaskProcessor
from worker.sink import Sink, hand_back

log = logging.getLogger(__name__)

# How long a stop keeps cancelling processors that will not end before abandoning them.
CANCEL_DEADLINE_S = 5.0
_CANCEL_EVERY_S = 0.05


class Pipeline:
    def __init__(
        self,
        *,
        queue: TaskQueue,
        processor: TaskProcessor,
        sink: Sink,
        concurrency: int | Concurrency,
        drain_timeout_s: float | None = None,
        outage_budget_s: float = DEFAULT_OUTAGE_BUDGET_S,
        clock: Clock | None = None,
        cancel_deadline_s: float = CANCEL_DEADLINE_S,
    ) -> None:
        self._queue = queue
        self._processor = processor
        self._sink = sink
        # How many tasks it holds at once (its processors), and each engine's pages at once
        # within that: fixed, or autoscaled (worker/autoscale.py).
        self.concurrency = (
            concurrency if isinstance(concurrency, Concurrency) else Concurrency.fixed(concurrency)
        )
        self._concurrency = self.concurrency.ceiling
        # How long a stop waits for tasks in flight before handing them back; None: no limit.
        self.drain_timeout_s = drain_timeout_s
        self.outage_budget_s = outage_budget_s
        self._clock = clock or SystemClock()
        self._cancel_deadline_s = cancel_deadline_s
        self._intake: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=self._concurrency)
        self._outbox: asyncio.Queue[Outcome | None] = asyncio.Queue(maxsize=self._concurrency * 4)
        self._stopping = False
        self.in_flight = 0

    @property
    def outages(self) -> Outages:
        """Backends the stages are waiting out right now (shared with the sink)."""
        return self._sink.outages

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then finish what is in flight and flush the sink.
        StageFailed if a stage dies first."""
        self._stopping = False
        sink_task = asyncio.create_task(self._sink.run(self._outbox), name="sink")
        processors = [
            asyncio.create_task(self._process_loop(), name=f"processor-{i}")
            for i in range(self._concurrency)
        ]
        receiver = asyncio.create_task(self._receive_loop(), name="receiver")
        stopper = asyncio.create_task(stop.wait())
        # Not a stage: if it fails, the levels stay where they are (it logs why).
        scaler = asyncio.create_task(_autoscale(self.concurrency), name="autoscaler")
        failure: StageFailed | None = None
        try:
            done, _ = await asyncio.wait(
                [stopper, receiver, sink_task, *processors], return_when=asyncio.FIRST_COMPLETED
            )
            failure = _first_failure(done - {stopper})
            await self._shutdown(receiver, processors, sink_task)
        finally:
            # Even when the shutdown itself is cancelled, no stage outlives the pipeline
            # (what they held comes back from the queue after its ack deadline).
            for task in (receiver, *processors, sink_task, stopper, scaler):
                task.cancel()
        if failure is not None:
            raise failure
        error = None if sink_task.cancelled() else sink_task.exception()
        if error is not None:  # the last flush, after the stop, failed
            raise StageFailed("sink", error)

    async def _shutdown(
        self,
        receiver: asyncio.Task[None],
        processors: list[asyncio.Task[None]],
        sink_task: asyncio.Task[None],
    ) -> None:
        self._stopping = True
        receiver.cancel()
        await asyncio.wait([receiver])  # its end, whatever it was (run() reports failures)
        # Deliveries still in the intake were never started: hand them back.
        await self._hand_back_intake()
        # Tasks waiting for a politeness permit have not started either.
        self._processor.stop_waiting()
        # The rest finish, unless the sink is gone (they could not hand in their outcome) or
        # they take longer than the drain allows: then they are cancelled, and their
        # deliveries handed back.
        drain = 0.0 if sink_task.done() else self.drain_timeout_s
        if self.in_flight:
            waiter = asyncio.ensure_future(self._intake.join())
            await asyncio.wait([waiter], timeout=drain)
            if not waiter.done():
                waiter.cancel()
                log.warning(
                    "%d tasks still in flight after the drain; handing them back", self.in_flight
                )
        await self._stop_processors(processors)
        await self._hand_back_intake()
        if sink_task.done():  # outcomes the dead sink never took: hand them back
            left: list[Outcome] = []
            while not self._outbox.empty():
                outcome = self._outbox.get_nowait()
                if outcome is not None:
                    left.append(outcome)
            await hand_back(left)
        if not sink_task.done():
            await self._outbox.put(None)
            await asyncio.wait([sink_task])  # run() reports the sink's failure

    async def _stop_processors(self, processors: list[asyncio.Task[None]]) -> None:
        """Cancel until every processor has ended, for at most the cancel deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._cancel_deadline_s
        pending = {p for p in processors if not p.done()}
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=_CANCEL_EVERY_S)
            if pending and loop.time() >= deadline:
                log.error(
                    "%d processors ignored cancellation for %g s; abandoning them",
                    len(pending),
                    self._cancel_deadline_s,
                )
                return

    async def _hand_back_intake(self) -> None:
        # Each delivery taken out is marked done, or a join would wait for it forever.
        while not self._intake.empty():
            delivery = self._intake.get_nowait()
            self._intake.task_done()
            with contextlib.suppress(Exception):
                await delivery.nack(0.0)

    async def _receive_loop(self) -> None:
        while True:
            delivery = await ride_out(
                self._queue.receive,
                what="receiving tasks",
                clock=self._clock,
                budget_s=self.outage_budget_s,
                outages=self.outages,
            )
            try:
                await self._intake.put(delivery)
            except asyncio.CancelledError:  # stopping with the intake full: hand it back
                with contextlib.suppress(Exception):
                    await delivery.nack(0.0)
                raise

    async def _process_loop(self) -> None:
        # The stopping flag, not only the cancel, ends the loop: a processor whose cancel
        # was swallowed must not wait on an intake that nothing fills any more.
        while not self._stopping:
            delivery = await self._intake.get()
            self.in_flight += 1
            try:
                if self._stopping:  # taken just as the stop began: never started
                    with contextlib.suppress(Exception):
                        await delivery.nack(0.0)
                    continue
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


async def _autoscale(concurrency: Concurrency) -> None:
    try:
        await concurrency.run()
    except Exception:
        log.exception("the autoscaler stopped; the concurrency stays as it is")


def _first_failure(done: set[asyncio.Task[Any]]) -> StageFailed | None:
    """Why a stage ended before the stop: its exception, or that it ended at all."""
    for task in sorted(done, key=lambda t: t.get_name()):
        if task.cancelled():
            return StageFailed(task.get_name(), "cancelled")
        return StageFailed(task.get_name(), task.exception() or "ended unexpectedly")
    return None
