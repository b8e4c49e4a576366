"""Stalled executions and their remedies, over the memory adapters and a fake clock: the
health a user reads (stalled, since when, the likely cause), lost tasks published again, a
cancel whose counts and export agree."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from backends.clock import FakeClock
from backends.local import LocalBlobStore
from backends.memory import MemoryStateStore, MemoryTaskQueue
from backends.state import Execution, TaskResult
from backends.task import Task
from worker.export_read import open_export, record_lines
from worker.frontier import stored_task
from worker.reconcile import LeaseTracker, Reconciler, reconcile, settle_cancel
from worker.stall import Health, health_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STALL_S = 180.0


@dataclass
class World:
    clock: FakeClock
    state: MemoryStateStore
    queue: MemoryTaskQueue
    blobs: LocalBlobStore

    def now(self) -> datetime:
        return self.clock.wall()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    async def health(self, execution_id: str = "ex") -> Health:
        execution = await self.state.get_execution(execution_id)
        assert execution is not None
        progress = await self.state.progress(execution_id)
        return await health_of(
            self.state, execution, progress, now=self.now(), stall_after_s=STALL_S
        )

    def reconciler(self, owner: str) -> Reconciler:
        return Reconciler(
            self.state, self.blobs, self.queue, owner, reconcile_after_s=300.0, clock=self.clock
        )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = FakeClock(wall_start=T0)
    state = MemoryStateStore(clock)
    queue = MemoryTaskQueue(clock)
    blobs = LocalBlobStore(tmp_path / "blobs")
    await state.create_execution(
        Execution(id="ex", workflow="shop", workflow_version=1, created_at=T0)
    )
    await state.transition("ex", "running", from_statuses={"pending"})
    yield World(clock, state, queue, blobs)
    await queue.close()


def task(url: str) -> Task:
    return Task(execution_id="ex", url=url, depth=1, phase="product", marker="product")


async def register(world: World, *urls: str) -> None:
    tasks = [task(u) for u in urls]
    await world.state.add_tasks("ex", list(urls), payloads=[stored_task(t) for t in tasks])


def done(url: str, records: int = 1) -> TaskResult:
    return TaskResult(
        key=url, url=url, phase="product", depth=1, outcome="succeeded", records=records
    )


# -- health


async def test_an_execution_making_progress_is_ok(world: World) -> None:
    await register(world, "a", "b")
    await world.state.claim("sweep", "w1", 15.0)
    world.advance(170.0)
    assert await world.health() == Health(state="ok")
    await world.state.finish_tasks("ex", [done("a")])
    world.advance(170.0)
    assert (await world.health()).state == "ok"


async def test_no_worker_ever(world: World) -> None:
    await register(world, "a")
    world.advance(200.0)
    health = await world.health()
    assert health == Health(state="stalled", since=T0, cause="no worker has ever checked in")


async def test_no_worker_running_any_more(world: World) -> None:
    await register(world, "a", "b")
    await world.state.claim("sweep", "w1", 15.0)
    await world.state.finish_tasks("ex", [done("a")])
    world.advance(360.0)
    health = await world.health()
    assert health.state == "stalled"
    assert health.since == T0
    assert health.cause == "no worker is running: none has checked in for 6 min"


async def test_workers_running_but_none_pulls_its_tasks(world: World) -> None:
    """Dead-lettered or lost: the tasks are not in the queue."""
    await register(world, "a", "b", "c")
    await world.state.finish_tasks("ex", [done("a")])
    world.advance(400.0)
    await world.state.claim("sweep", "w1", 15.0)  # a worker is alive
    health = await world.health()
    assert health.state == "stalled"
    assert health.cause is not None
    assert health.cause.startswith(
        "no worker has pulled a task for 6 min: its 2 unfinished task(s) are not in the queue"
    )
    assert "dead-lettered" in health.cause and "TRAWL_RECONCILE_AFTER_S" in health.cause


async def test_workers_hold_its_tasks_but_none_finishes(world: World) -> None:
    await register(world, "a", "b")
    world.advance(200.0)
    await world.state.claim("sweep", "w1", 15.0)
    await world.state.lease_tasks("ex", ["a", "b"], world.now() + timedelta(seconds=60))
    health = await world.health()
    assert health.state == "stalled"
    assert health.cause == (
        "workers hold its tasks but none has finished for 3 min: all waiting on politeness "
        "(per-host rate, concurrency or crawl-delay) or retry backoff"
    )


async def test_ended_or_complete_executions_are_never_stalled(world: World) -> None:
    await register(world, "a")
    world.advance(1000.0)
    await world.state.finish_tasks("ex", [done("a")])
    world.advance(1000.0)
    assert (await world.health()).state == "ok"  # nothing outstanding
    await register(world, "b")
    await world.state.transition("ex", "cancelled", from_statuses={"running"})
    world.advance(1000.0)
    assert (await world.health()).state == "ok"


# -- lost tasks


async def test_lost_tasks_are_published_again_once(world: World) -> None:
    await register(world, "a", "b", "c")  # registered, but the queue lost them
    await world.state.finish_tasks("ex", [done("a")])
    await world.state.lease_tasks("ex", ["c"], world.now() + timedelta(seconds=900))
    assert await reconcile(world.state, world.queue, "ex", after_s=300, now=world.now()) == 0
    world.advance(301.0)
    assert await reconcile(world.state, world.queue, "ex", after_s=300, now=world.now()) == 1
    assert world.queue.pending() == 1
    delivery = await world.queue.receive()
    assert msgspec.structs.replace(delivery.task, published_at=0.0) == task("b")
    assert delivery.task.published_at > 0
    assert await reconcile(world.state, world.queue, "ex", after_s=300, now=world.now()) == 0


async def test_one_worker_at_a_time_reconciles_a_stalled_execution(world: World) -> None:
    await register(world, "a", "b")
    world.advance(301.0)
    first, second = world.reconciler("w1"), world.reconciler("w2")
    await first.round()
    await second.round()  # w1 holds the turn: w2 does nothing
    assert world.queue.pending() == 2
    world.advance(301.0)
    await second.round()  # w1's turn has run out; b and a come back once more
    assert world.queue.pending() == 4


async def test_a_progressing_execution_is_left_alone(world: World) -> None:
    """Its backlog may just be waiting in the queue: no duplicates while tasks finish."""
    await register(world, "a", "b", "c")
    world.advance(400.0)
    await world.state.finish_tasks("ex", [done("a")])
    await world.reconciler("w1").round()
    assert world.queue.pending() == 0


async def test_the_lease_tracker_knows_what_a_worker_holds(world: World) -> None:
    tracker = LeaseTracker(world.queue)
    await tracker.publish([task("a"), task("b")])
    first = await tracker.receive()
    second = await tracker.receive()
    assert tracker.held() == {"ex": ["a", "b"]}
    await first.ack()
    await second.nack(5.0)
    assert tracker.held() == {}


# -- cancels


async def test_a_cancel_with_no_worker_running_settles_at_once(world: World) -> None:
    await register(world, "a", "b")
    await world.state.finish_tasks("ex", [done("a", records=0)])
    await world.state.transition("ex", "cancelled", from_statuses={"running"})
    assert await settle_cancel(world.state, world.blobs, "ex", now=world.now()) is True
    export = await open_export(world.blobs, "ex")
    assert [line async for line in record_lines(export)] == []
    assert await world.state.finish_tasks("ex", [done("b")]) == 0  # frozen
    progress = await world.state.progress("ex")
    assert (progress.finished, progress.records) == (1, 0)


async def test_a_cancel_waits_for_the_workers_holding_its_tasks(world: World) -> None:
    await register(world, "a", "b")
    await world.state.claim("sweep", "w1", 15.0)  # a worker is running
    await world.state.lease_tasks("ex", ["b"], world.now() + timedelta(seconds=60))
    await world.state.transition("ex", "cancelled", from_statuses={"running"})
    assert await settle_cancel(world.state, world.blobs, "ex", now=world.now()) is False
    world.advance(11.0)
    assert await settle_cancel(world.state, world.blobs, "ex", now=world.now()) is False
    assert await world.state.finish_tasks("ex", [done("b")]) == 1  # in flight at the cancel
    assert await settle_cancel(world.state, world.blobs, "ex", now=world.now()) is True
    assert (await world.state.activity("ex")).frozen_at == world.now()
    assert await world.state.finish_tasks("ex", [done("a")]) == 0
    assert await settle_cancel(world.state, world.blobs, "ex", now=world.now()) is True
