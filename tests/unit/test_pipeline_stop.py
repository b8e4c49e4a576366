"""Stopping the pipeline loses nothing and waits for nothing it need not.

Over the memory queue, with a processor whose tasks finish only when the test says so:
after a stop every task is either done (counted and acked) or back in the queue for another
worker, whether it sat in the intake, waited for a politeness permit, or ran past the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from backends.errors import PermanentError, RetryableError
from backends.local import LocalBlobStore
from backends.memory import MemoryStateStore, MemoryTaskQueue
from backends.queue import Delivery
from backends.state import TaskResult
from backends.task import Task
from tests.services import free_port
from worker.outage import StageFailed
from worker.pipeline import Pipeline
from worker.process import Outcome, TaskProcessor
from worker.records import Record
from worker.service import NotReady, WorkerService, serve_health
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
        record = Record(
            execution_id=task.execution_id,
            workflow="w",
            phase=task.phase,
            url=task.url,
            marker=None,
            depth=0,
            status=200,
            fetched_at=datetime(2026, 11, 23, tzinfo=UTC),
            data={},
        )
        return Outcome(delivery, result, record)


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


# -- a stage that dies ends the pipeline, loudly and within seconds


class FailingBlobs(LocalBlobStore):
    """A blob store whose writes fail: ``retryable_failures`` times with RetryableError
    (None: always), then for good with ``final`` (None: they succeed)."""

    def __init__(
        self, root: Path, *, retryable_failures: int | None = 0, final: Exception | None = None
    ) -> None:
        super().__init__(root)
        self.retryable_failures = retryable_failures
        self.final = final
        self.attempts = 0

    async def write(self, path: str, data: bytes, *, if_absent: bool = False) -> bool:
        self.attempts += 1
        if self.retryable_failures is None or self.attempts <= self.retryable_failures:
            raise RetryableError("GCS at test unreachable: refused", error_class="gcs_unavailable")
        if self.final is not None:
            raise self.final
        return await super().write(path, data, if_absent=if_absent)


def pipeline_over(
    tmp_path: Path,
    processor: Any,
    queue: MemoryTaskQueue,
    blobs: LocalBlobStore,
    **kwargs: Any,
) -> Pipeline:
    budget = kwargs.pop("outage_budget_s", 300.0)
    sink = Sink(
        blobs=blobs,
        state=MemoryStateStore(),
        clock=queue._clock,
        worker_id="test",
        max_delay_s=0.01,
        outage_budget_s=budget,
    )
    return Pipeline(
        queue=queue,
        processor=cast(TaskProcessor, processor),
        sink=sink,
        concurrency=4,
        outage_budget_s=budget,
        **kwargs,
    )


def stages_done() -> bool:
    names = ("processor-", "sink", "receiver")
    return all(t.done() for t in asyncio.all_tasks() if t.get_name().startswith(names))


async def test_a_sink_that_fails_for_good_ends_the_run_naming_why(tmp_path: Path) -> None:
    queue = MemoryTaskQueue()
    processor = GatedProcessor()
    processor.release.set()
    missing = PermanentError("GCS refused to write: 404 (does bucket 'trawl-x' exist?)")
    blobs = FailingBlobs(tmp_path, final=missing)
    pipeline = pipeline_over(tmp_path, processor, queue, blobs)
    await publish(queue, 20)

    with pytest.raises(StageFailed) as failed:
        await asyncio.wait_for(pipeline.run(asyncio.Event()), 5)

    assert str(failed.value) == (
        "sink failed: GCS refused to write: 404 (does bucket 'trawl-x' exist?)"
    )
    assert stages_done()
    # Nothing was acked: every task is back in the queue for a worker that can write.
    assert queue.in_flight() == 0
    assert queue.pending() == 20


async def test_a_backend_outage_is_ridden_out_and_shown_meanwhile(tmp_path: Path) -> None:
    queue = MemoryTaskQueue()
    processor = GatedProcessor()
    processor.release.set()
    blobs = FailingBlobs(tmp_path, retryable_failures=2)  # 0.5 s + 1 s of backoff
    pipeline = pipeline_over(tmp_path, processor, queue, blobs)
    await publish(queue, 3)
    stop = asyncio.Event()
    run = asyncio.create_task(pipeline.run(stop))

    await wait_until(lambda: "gcs" in pipeline.outages.current)
    # What /readyz may show anyone: the kind of failure, not the library's text (which the
    # log line carries).
    assert pipeline.outages.current["gcs"] == "unavailable (gcs_unavailable)"
    await wait_until(lambda: queue.pending() == 0)
    assert pipeline.outages.current == {}
    stop.set()
    await asyncio.wait_for(run, 5)
    assert blobs.attempts == 3


async def test_an_outage_longer_than_the_budget_ends_the_run(tmp_path: Path) -> None:
    queue = MemoryTaskQueue()
    processor = GatedProcessor()
    processor.release.set()
    blobs = FailingBlobs(tmp_path, retryable_failures=None)
    pipeline = pipeline_over(tmp_path, processor, queue, blobs, outage_budget_s=1.0)
    await publish(queue, 3)

    with pytest.raises(StageFailed) as failed:
        await asyncio.wait_for(pipeline.run(asyncio.Event()), 5)

    assert str(failed.value).startswith("sink failed: gcs unavailable for more than 1 s (writing ")
    assert str(failed.value).endswith("): GCS at test unreachable: refused")
    assert stages_done()
    assert queue.pending() == 3


class BrokenQueue(MemoryTaskQueue):
    async def receive(self) -> Delivery:
        raise RuntimeError("subscriber thread crashed")


async def test_a_receiver_that_dies_ends_the_run(tmp_path: Path) -> None:
    queue = BrokenQueue()
    pipeline = pipeline_over(tmp_path, GatedProcessor(), queue, LocalBlobStore(tmp_path))
    with pytest.raises(StageFailed, match=r"^receiver failed: subscriber thread crashed$"):
        await asyncio.wait_for(pipeline.run(asyncio.Event()), 5)
    assert stages_done()


class StubbornProcessor(GatedProcessor):
    """Swallows cancellation as a client library can (redis-py's wait_for on 3.11):
    ``swallow`` times, or always when None."""

    def __init__(self, swallow: int | None) -> None:
        super().__init__()
        self.swallow = swallow
        self.swallowed = 0

    async def process(self, delivery: Delivery) -> Outcome | None:
        self.started.append(delivery.task.url)
        while True:
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.swallowed += 1
                if self.swallow is not None and self.swallowed >= self.swallow:
                    # "Finished as the cancel arrived": the cancel is lost, the task was
                    # handed back, and the processor goes on as if nothing happened.
                    await delivery.nack(0.0)
                    return None
            else:
                return None


async def test_processors_whose_cancel_was_lost_still_end(tmp_path: Path) -> None:
    queue = MemoryTaskQueue()
    processor = StubbornProcessor(swallow=1)
    pipeline = pipeline_over(
        tmp_path, processor, queue, LocalBlobStore(tmp_path), drain_timeout_s=0.1
    )
    await publish(queue, 10)
    stop = asyncio.Event()
    run = asyncio.create_task(pipeline.run(stop))
    await wait_until(lambda: len(processor.started) == 4)

    stop.set()
    await asyncio.wait_for(run, 5)  # before: waited on the intake forever

    assert stages_done()
    assert processor.swallowed == 4
    assert len(processor.started) == 4  # nothing new was taken after the stop
    assert queue.in_flight() == 0


async def test_a_processor_that_never_ends_is_abandoned_after_the_deadline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    queue = MemoryTaskQueue()
    processor = StubbornProcessor(swallow=None)
    pipeline = pipeline_over(
        tmp_path,
        processor,
        queue,
        LocalBlobStore(tmp_path),
        drain_timeout_s=0.1,
        cancel_deadline_s=0.3,
    )
    await publish(queue, 4)
    stop = asyncio.Event()
    run = asyncio.create_task(pipeline.run(stop))
    await wait_until(lambda: len(processor.started) == 4)

    try:
        stop.set()
        await asyncio.wait_for(run, 5)
    finally:
        processor.release.set()  # the abandoned ones may end now, before the loop closes

    assert "4 processors ignored cancellation for 0.3 s; abandoning them" in caplog.text


# -- a worker whose backends are not there yet pulls nothing, and says why


class Bucket:
    """A readiness check that fails until the bucket is "created"."""

    def __init__(self) -> None:
        self.exists = False

    async def __call__(self) -> None:
        if not self.exists:
            raise PermanentError("bucket 'trawl-x' does not exist", error_class="gcs_missing")


async def test_a_worker_waits_for_its_backends_before_pulling(tmp_path: Path) -> None:
    queue = MemoryTaskQueue()
    processor = GatedProcessor()
    processor.release.set()
    pipeline = pipeline_over(tmp_path, processor, queue, LocalBlobStore(tmp_path))
    bucket = Bucket()
    service = WorkerService(
        pipeline, checks={"gcs": bucket}, first_ready_delay_s=0.05, outage_budget_s=60
    )
    await publish(queue, 5)
    stop = asyncio.Event()
    async with (
        serve_health(service, "127.0.0.1", free_port()) as base,
        aiohttp.ClientSession() as http,
    ):
        run = asyncio.create_task(service.run(stop))
        async with http.get(f"{base}/readyz") as resp:
            assert resp.status == 503
            assert await resp.json() == {
                "status": "unavailable",
                "down": {"gcs": "bucket 'trawl-x' does not exist"},
            }
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 200  # alive: it is checking again and again
        assert queue.in_flight() == 0 and queue.pending() == 5  # nothing pulled

        bucket.exists = True
        await wait_until(lambda: queue.pending() == 0)
        async with http.get(f"{base}/readyz") as resp:
            assert (resp.status, await resp.json()) == (
                200,
                {"status": "ready", "checked": ["gcs"]},
            )
        stop.set()
        await asyncio.wait_for(run, 5)
    assert len(processor.started) == 5


async def test_a_worker_gives_up_when_a_backend_stays_down(tmp_path: Path) -> None:
    queue = MemoryTaskQueue()
    pipeline = pipeline_over(tmp_path, GatedProcessor(), queue, LocalBlobStore(tmp_path))
    service = WorkerService(
        pipeline, checks={"gcs": Bucket()}, first_ready_delay_s=0.05, outage_budget_s=0.3
    )
    await publish(queue, 5)
    with pytest.raises(NotReady, match=r"gcs: bucket 'trawl-x' does not exist$"):
        await asyncio.wait_for(service.run(asyncio.Event()), 5)
    assert queue.pending() == 5 and queue.in_flight() == 0
