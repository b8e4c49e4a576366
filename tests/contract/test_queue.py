"""TaskQueue contract: at-least-once delivery with ack, delayed nack, deadlines, extension."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from backends.clock import FakeClock
from backends.errors import InvalidInputError
from backends.memory import MemoryTaskQueue
from backends.queue import Delivery, QueueClosed, TaskQueue
from backends.task import Task, decode_task, encode_task
from tests.contract.conftest import QueueEnv

WAIT_S = 5.0  # a deadline for things that must happen, never a sleep


def make_task(n: int, execution_id: str = "ex-1") -> Task:
    return Task(execution_id=execution_id, url=f"http://site.test/p/{n}", depth=1, phase="p")


async def receive(queue: TaskQueue) -> Delivery:
    return await asyncio.wait_for(queue.receive(), WAIT_S)


@contextlib.asynccontextmanager
async def waiting_receive(queue: TaskQueue) -> AsyncIterator[asyncio.Task[Delivery]]:
    """A receive in the background, cancelled at the end if nothing came."""
    task = asyncio.create_task(queue.receive())
    await asyncio.sleep(0)
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def past_deadline(env: QueueEnv) -> float:
    """Long enough for a delivery whose ack deadline ran out to have come back: the deadline
    and a few seconds (Pub/Sub redelivers within about a second of it)."""
    return env.ack_deadline_s + 3.0


async def assert_nothing_delivered(env: QueueEnv, after_s: float = 0.0) -> None:
    async with waiting_receive(env.adapter) as pending:
        await env.advance(after_s)
        assert not pending.done(), f"unexpected delivery of {pending.result().task.url}"


async def test_publish_receive_ack(queue_env: QueueEnv) -> None:
    queue = queue_env.adapter
    tasks = [make_task(i) for i in range(3)]
    await queue.publish(tasks)
    deliveries = [await receive(queue) for _ in tasks]
    by_url = {d.task.url: d.task for d in deliveries}
    assert by_url == {t.url: t for t in tasks}
    assert all(d.delivery_attempt == 1 for d in deliveries)
    for d in deliveries:
        await d.ack()
    # Acked tasks never come back, not even after their deadline would have passed.
    await assert_nothing_delivered(queue_env, after_s=past_deadline(queue_env))


async def test_publish_nothing_is_fine(queue_env: QueueEnv) -> None:
    await queue_env.adapter.publish([])
    await assert_nothing_delivered(queue_env)


async def test_receive_waits_for_a_publish(queue_env: QueueEnv) -> None:
    queue = queue_env.adapter
    async with waiting_receive(queue) as pending:
        await queue_env.advance(0)
        assert not pending.done()
        await queue.publish([make_task(1)])
        delivery = await asyncio.wait_for(pending, WAIT_S)
    assert delivery.task == make_task(1)
    await delivery.ack()


async def test_task_fields_survive_the_queue(queue_env: QueueEnv) -> None:
    task = Task(
        execution_id="ex-9",
        url="http://site.test/a?b=1",
        depth=3,
        phase="product",
        marker="product",
        parent="http://site.test/list",
        trace={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    await queue_env.adapter.publish([task])
    delivery = await receive(queue_env.adapter)
    assert delivery.task == task
    await delivery.ack()


async def test_nack_redelivers_with_next_attempt(queue_env: QueueEnv) -> None:
    queue = queue_env.adapter
    await queue.publish([make_task(1)])
    first = await receive(queue)
    await first.nack()
    second = await receive(queue)
    assert second.task == first.task
    assert second.delivery_attempt == 2
    await second.ack()
    await assert_nothing_delivered(queue_env, after_s=past_deadline(queue_env))


async def test_nack_with_delay_redelivers_only_after_the_delay(queue_env: QueueEnv) -> None:
    queue = queue_env.adapter
    await queue.publish([make_task(1)])
    first = await receive(queue)
    await first.nack(delay_s=30.0)
    async with waiting_receive(queue) as pending:
        await queue_env.advance(29.0)
        assert not pending.done(), "redelivered before the nack delay"
        await queue_env.advance(2.0)
        second = await asyncio.wait_for(pending, WAIT_S)
    assert second.task == first.task
    assert second.delivery_attempt == 2
    await second.ack()


async def test_delayed_task_does_not_block_others(queue_env: QueueEnv) -> None:
    queue = queue_env.adapter
    await queue.publish([make_task(1)])
    first = await receive(queue)
    await first.nack(delay_s=60.0)
    await queue.publish([make_task(2)])
    other = await receive(queue)
    assert other.task == make_task(2)
    await other.ack()


async def test_expired_ack_deadline_redelivers(queue_env: QueueEnv) -> None:
    queue = queue_env.adapter
    await queue.publish([make_task(1)])
    crashed = await receive(queue)  # a worker that dies: never settles
    async with waiting_receive(queue) as pending:
        await queue_env.advance(queue_env.ack_deadline_s + 1.0)
        again = await asyncio.wait_for(pending, WAIT_S)
    assert again.task == crashed.task
    assert again.delivery_attempt == 2
    await again.ack()
    await crashed.ack()  # late ack of the dead delivery: harmless
    await assert_nothing_delivered(queue_env, after_s=past_deadline(queue_env))


async def test_concurrent_consumers_lose_nothing(queue_env: QueueEnv) -> None:
    queue = queue_env.adapter
    tasks = [make_task(i) for i in range(200)]
    acked: Counter[str] = Counter()
    all_acked = asyncio.Event()
    rng = random.Random(7)

    async def consume() -> None:
        while True:
            delivery = await queue.receive()
            # Some first deliveries are handed back, as a failing worker would.
            if delivery.delivery_attempt == 1 and rng.random() < 0.2:
                await delivery.nack()
                continue
            await asyncio.sleep(0)
            await delivery.ack()
            acked[delivery.task.url] += 1
            if len(acked) == len(tasks):
                all_acked.set()

    consumers = [asyncio.create_task(consume()) for _ in range(8)]
    try:
        for start in range(0, len(tasks), 25):
            await queue.publish(tasks[start : start + 25])
            await asyncio.sleep(0)
        await asyncio.wait_for(all_acked.wait(), WAIT_S * 4)
    finally:
        for consumer in consumers:
            consumer.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
    assert set(acked) == {t.url for t in tasks}
    await assert_nothing_delivered(queue_env, after_s=past_deadline(queue_env))


async def test_close_stops_waiting_receivers(queue_env: QueueEnv) -> None:
    queue = queue_env.adapter
    pending = asyncio.create_task(queue.receive())
    await asyncio.sleep(0)
    await queue.close()
    with pytest.raises(QueueClosed):
        await asyncio.wait_for(pending, WAIT_S)
    with pytest.raises(QueueClosed):
        await queue.receive()


# -- the task's wire form


def test_task_encoding_round_trips() -> None:
    task = Task(execution_id="e", url="http://a.test/", depth=0, phase="start", trace={"k": "v"})
    assert decode_task(encode_task(task)) == task
    assert b"attempt" not in encode_task(task)


def test_a_task_an_older_worker_published_still_decodes() -> None:
    # Tasks once carried an ``attempt`` field; messages still queued with it are read.
    old = b'{"execution_id": "e", "url": "http://a.test/", "depth": 1, "phase": "p", "attempt": 2}'
    assert decode_task(old) == Task(execution_id="e", url="http://a.test/", depth=1, phase="p")


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'{"execution_id": "e", "url": "http://a.test/", "depth": 0}',
        b'{"execution_id": "e", "url": "http://a.test/", "depth": -1, "phase": "p"}',
        b'{"execution_id": "e", "url": "http://a.test/", "depth": 0, "phase": "p", "x": 1}',
        b'{"execution_id": "e", "url": "http://a.test/", "depth": 0, "phase": "p", "attempt": -1}',
    ],
)
def test_bad_task_bytes_are_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInputError):
        decode_task(data)


# -- what only the memory queue promises


async def test_memory_queue_is_fifo_and_counts_pending() -> None:
    queue = MemoryTaskQueue(FakeClock(), ack_deadline_s=10.0)
    await queue.publish([make_task(i) for i in range(5)])
    assert queue.pending() == 5
    deliveries = [await receive(queue) for _ in range(5)]
    assert [d.task.url for d in deliveries] == [make_task(i).url for i in range(5)]
    assert queue.pending() == 5 and queue.in_flight() == 5
    await deliveries[0].nack(delay_s=5.0)
    for d in deliveries[1:]:
        await d.ack()
    assert queue.pending() == 1 and queue.in_flight() == 0


async def test_memory_queue_passes_on_a_wakeup_of_a_cancelled_receiver() -> None:
    queue = MemoryTaskQueue(FakeClock())
    first = asyncio.create_task(queue.receive())
    second = asyncio.create_task(queue.receive())
    await asyncio.sleep(0)
    await queue.publish([make_task(1)])  # wakes `first`...
    first.cancel()  # ...which dies before it takes the task
    with contextlib.suppress(asyncio.CancelledError):
        await first
    delivery = await asyncio.wait_for(second, WAIT_S)
    assert delivery.task == make_task(1)


async def test_memory_queue_replans_when_an_earlier_timer_appears() -> None:
    clock = FakeClock()
    queue = MemoryTaskQueue(clock, ack_deadline_s=600.0)
    await queue.publish([make_task(1), make_task(2)])
    held = await receive(queue)  # its deadline, 600 s away, is what an idle receiver waits for
    quick = await receive(queue)
    async with waiting_receive(queue) as pending:
        await clock.run_for(1.0)
        await quick.nack(delay_s=5.0)
        await clock.run_for(6.0)
        again = await asyncio.wait_for(pending, WAIT_S)
    assert again.task == make_task(2)
    await held.ack()


async def test_memory_queue_forgets_settled_deliveries() -> None:
    queue = MemoryTaskQueue(FakeClock(), ack_deadline_s=3600.0)
    for i in range(5000):
        await queue.publish([make_task(i)])
        delivery = await receive(queue)
        await delivery.ack()
    assert queue.pending() == 0
    assert len(queue._timers) <= 2 * 1024 + 2
