"""Stopping the pipeline loses nothing and waits for nothing it need not.

Over the memory queue, with a processor whose tasks finish only when the test says so:
after a stop every task is either done (counted and acked) or back in the queue for another
worker, whether it sat in the intake, waited for a politeness permit, or ran past the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, cast

from backends.local import LocalBlobStore
from backends.memory import MemoryStateStore, MemoryTaskQueue
from backends.queue import Delivery
from backends.state import TaskResult
from backends.task import Task
from worker.pipeline import Pipeline
from worker.process import Outcome, TaskProcessor
from worker.sink import Sink


class GatedProcessor:
    """Each task runs until ``release`` is set; counts what it started and finished."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: list[str] = []
        self.waiting_stopped = False

    def stop_waiting(self) -> None:
        self.waiting_stopped = True

    async def process(self, delivery: Delivery) -> Outcome | None:
        self.started.append(delivery.task.url)
        await self.release.wait()
        task = delivery.task
        result = TaskResult(
            key=task.url, url=task.url, phase=task.phase, depth=0, outcome="succeeded"
        )
        return Outcome(delivery, result)


def make_pipeline(
    tmp_path: Path, processor: GatedProcessor, queue: MemoryTaskQueue, **kwargs: Any
) -> Pipeline:
    sink = Sink(
        blobs=LocalBlobStore(tmp_path),
        state=MemoryStateStore(),
        clock=queue._clock,
        worker_id="test",
        max_delay_s=0.05,
    )
    return Pipeline(
        queue=queue, processor=cast(TaskProcessor, processor), sink=sink, concurrency=4, **kwargs
    )


async def publish(queue: MemoryTaskQueue, n: int) -> None:
    await queue.publish(
        [Task(execution_id="e", url=f"http://x.test/{i}", depth=0, phase="p") for i in range(n)]
    )


async def wait_until(condition: Any, deadline_s: float = 5.0) -> None:
    """Poll ``condition`` (it spans the queue's internals: no event to wait on) until true;
    TimeoutError after ``deadline_s``."""
    async with asyncio.timeout(deadline_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_stop_with_a_full_intake_finishes_in_flight_and_hands_back_the_rest(
    tmp_path: Path,
) -> None:
    queue = MemoryTaskQueue()
    processor = GatedProcessor()
    pipeline = make_pipeline(tmp_path, processor, queue)
    await publish(queue, 20)
    stop = asyncio.Event()
    run = asyncio.create_task(pipeline.run(stop))
    # 4 tasks running, 4 more received into the intake behind them and 1 in the hands of
    # the receiver, waiting for room in the intake.
    await wait_until(lambda: len(processor.started) == 4 and queue.in_flight() == 9)

    stop.set()
    await asyncio.sleep(0.05)
    assert not run.done()  # waiting for the 4 in flight (no drain limit)
    processor.release.set()
    await asyncio.wait_for(run, 5)

    assert processor.waiting_stopped
    assert len(processor.started) == 4  # nothing new started after the stop
    # The 4 finished were acked; the 5 received but not started and the 11 never received
    # are queued again.
    assert queue.in_flight() == 0
    assert queue.pending() == 16


async def test_stop_hands_back_tasks_that_outrun_the_drain(tmp_path: Path) -> None:
    queue = MemoryTaskQueue()
    processor = GatedProcessor()  # never released: the tasks would run forever
    pipeline = make_pipeline(tmp_path, processor, queue, drain_timeout_s=0.2)
    await publish(queue, 6)
    stop = asyncio.Event()
    run = asyncio.create_task(pipeline.run(stop))
    await wait_until(lambda: len(processor.started) == 4)

    stop.set()
    await asyncio.wait_for(run, 5)

    assert queue.in_flight() == 0
    assert queue.pending() == 6  # nothing finished, nothing lost
    assert pipeline.in_flight == 0


async def test_cancelling_the_pipeline_leaves_no_stage_running(tmp_path: Path) -> None:
    queue = MemoryTaskQueue()
    processor = GatedProcessor()
    pipeline = make_pipeline(tmp_path, processor, queue)
    await publish(queue, 6)
    stop = asyncio.Event()
    run = asyncio.create_task(pipeline.run(stop))
    await wait_until(lambda: len(processor.started) == 4)
    stop.set()
    await asyncio.sleep(0.05)  # now draining, with no limit: a supervisor gives up on it
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(run, 5)
    await asyncio.sleep(0)
    stages = [
        t for t in asyncio.all_tasks() if (t.get_name() or "").startswith(("processor-", "sink"))
    ]
    assert all(t.done() for t in stages), stages
