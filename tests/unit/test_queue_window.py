"""The queue window of an execution, over the memory adapters: what does not fit is held,
finishes make room, ``Frontier.release`` publishes the held tasks oldest first, and a failed
publish loses nothing."""

from __future__ import annotations

from collections.abc import Sequence

from backends.clock import FakeClock
from backends.errors import RetryableError
from backends.memory import MemorySeenSet, MemoryStateStore, MemoryTaskQueue
from backends.state import Execution, TaskResult
from backends.task import Task
from tests.crawling import make_workflow
from worker.context import ExecutionContext
from worker.frontier import Frontier
from workflows.rules import Admit


class FlakyQueue(MemoryTaskQueue):
    """A memory queue whose publish fails while ``down``."""

    down = False

    async def publish(self, tasks: Sequence[Task]) -> None:
        if self.down:
            raise ConnectionError("queue unreachable")
        await super().publish(tasks)


def setup(window: int) -> tuple[Frontier, ExecutionContext, MemoryStateStore, FlakyQueue]:
    clock = FakeClock()
    state = MemoryStateStore(clock)
    queue = FlakyQueue(clock, ack_deadline_s=3600)
    params: dict[str, object] = {"queue_window": window} if window else {}
    execution = Execution(
        id="e1", workflow="test-crawl", workflow_version=1, created_at=clock.wall(), params=params
    )
    ctx = ExecutionContext.build(execution, make_workflow(["http://127.0.0.1:9/"]))
    return Frontier(MemorySeenSet(), state, queue, clock), ctx, state, queue


def admits(n: int) -> list[Admit]:
    return [Admit(f"http://127.0.0.1:9/p{i}", "page", 1, None) for i in range(n)]


def done(url: str) -> TaskResult:
    return TaskResult(key=url, url=url, phase="page", depth=1, outcome="succeeded")


async def queued_urls(queue: MemoryTaskQueue) -> list[str]:
    urls = []
    while queue.pending():
        delivery = await queue.receive()
        urls.append(delivery.task.url)
        await delivery.ack()
    return urls


async def test_what_does_not_fit_the_window_waits_and_comes_out_oldest_first() -> None:
    frontier, ctx, state, queue = setup(window=2)
    admitted = await frontier.publish(ctx, admits(5))
    assert len(admitted) == 5  # published or held: all are new
    assert await queued_urls(queue) == ["http://127.0.0.1:9/p0", "http://127.0.0.1:9/p1"]
    assert (await state.progress("e1")).published == 5
    assert await frontier.release(ctx) == 0  # nothing finished: no room
    await state.finish_tasks("e1", [done("http://127.0.0.1:9/p0")])
    assert await frontier.release(ctx) == 1
    assert await queued_urls(queue) == ["http://127.0.0.1:9/p2"]
    await state.finish_tasks("e1", [done(f"http://127.0.0.1:9/p{i}") for i in (1, 2)])
    assert await frontier.release(ctx) == 2
    assert await queued_urls(queue) == ["http://127.0.0.1:9/p3", "http://127.0.0.1:9/p4"]


async def test_a_failed_release_publish_is_kept_for_the_next_one() -> None:
    frontier, ctx, state, queue = setup(window=1)
    await frontier.publish(ctx, admits(3))
    await state.finish_tasks("e1", [done("http://127.0.0.1:9/p0")])
    queue.down = True
    try:
        await frontier.release(ctx)
    except RetryableError as exc:
        assert "publishing 1 released tasks failed: queue unreachable" in str(exc)
    else:
        raise AssertionError("the failed publish was not reported")
    queue.down = False
    assert await frontier.release(ctx) == 1
    assert await queued_urls(queue) == ["http://127.0.0.1:9/p0", "http://127.0.0.1:9/p1"]


async def test_without_a_window_everything_is_published_at_once() -> None:
    frontier, ctx, _, queue = setup(window=0)
    await frontier.publish(ctx, admits(5))
    assert len(await queued_urls(queue)) == 5
    assert await frontier.release(ctx) == 0
