"""A distributed worker as a function: ``trawl worker``'s runtime (``worker.runtime``) over the
memory adapters, started the way ``trawl submit`` starts an execution, run until its queue
is empty and nothing is in flight.

The pages come from the local test site's link graph (tests/site.py), fetched by the real
engines behind the guard of a user's own machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from backends.clock import SystemClock
from backends.local import LocalBlobStore
from backends.memory import MemoryRateLimiter, MemorySeenSet, MemoryStateStore, MemoryTaskQueue
from backends.queue import Delivery, TaskQueue
from backends.state import Execution
from backends.task import Task
from tests.crawling import make_workflow, pages
from tests.site import SiteServer
from trawl.local_outputs import exported_records
from worker.assemble import Ports
from worker.engines import Engines, open_engines
from worker.netguard import NetGuard
from worker.runtime import WorkerOptions, run_until_idle
from worker.start import start_execution, store_workflow
from workflows import Workflow

DEADLINE_S = 60.0
SIZE = 25  # graph nodes: the root, 10 children, 14 grandchildren


def memory_ports(out: Path) -> Ports:
    clock = SystemClock()
    return Ports(
        queue=MemoryTaskQueue(clock, ack_deadline_s=60.0),
        seen=MemorySeenSet(),
        limiter=MemoryRateLimiter(clock),
        state=MemoryStateStore(clock),
        blobs=LocalBlobStore(out),
    )


@pytest.fixture
async def engines() -> AsyncIterator[Engines]:
    # No workflow, as a worker: the browser would start on first use (none here).
    async with open_engines(NetGuard.allow_all()) as opened:
        yield opened


def graph_workflow(site: SiteServer, size: int = SIZE) -> Workflow:
    token = uuid.uuid4().hex[:8]
    return make_workflow([site.url(f"/graph/{token}/{size}/0")], max_depth=5)


async def submit(ports: Ports, workflow: Workflow) -> Execution:
    version = await store_workflow(ports.state, "acme", workflow)
    return await start_execution(ports, workflow, tenant="acme", version=version)


def titles(out: Path, execution_id: str) -> dict[str, str]:
    records = exported_records(out / execution_id)
    return {r["url"].rsplit("/", 1)[1]: r["data"]["title"] for r in records}


async def test_a_worker_runs_an_execution_to_completion_and_returns_when_idle(
    site: SiteServer, engines: Engines, tmp_path: Path
) -> None:
    ports = memory_ports(tmp_path)
    execution = await submit(ports, graph_workflow(site))

    async with asyncio.timeout(DEADLINE_S):
        worker = await run_until_idle(
            ports,
            fetchers=engines.fetchers,
            robots=engines.robots,
            options=WorkerOptions(worker_id="w1", concurrency=8),
        )

    assert isinstance(ports.queue, MemoryTaskQueue)
    assert ports.queue.pending() == 0
    assert worker.stages.pipeline.in_flight == 0
    final = await ports.state.get_execution(execution.id)
    assert final is not None
    assert final.status == "completed"
    progress = await ports.state.progress(execution.id)
    assert progress.pages() == pages(SIZE, succeeded=SIZE)
    assert progress.records == SIZE
    assert titles(tmp_path, execution.id) == {str(n): f"Node {n}" for n in range(SIZE)}
    parts = await ports.blobs.list(f"{execution.id}/parts/")
    assert parts
    assert all("part-w1-" in part.path for part in parts)


async def test_two_workers_share_one_queue_and_write_each_record_once(
    site: SiteServer, engines: Engines, tmp_path: Path
) -> None:
    ports = memory_ports(tmp_path)
    first = await submit(ports, graph_workflow(site))
    second = await submit(ports, graph_workflow(site, size=12))

    async with asyncio.timeout(DEADLINE_S):
        await asyncio.gather(
            *(
                run_until_idle(
                    ports,
                    fetchers=engines.fetchers,
                    robots=engines.robots,
                    options=WorkerOptions(worker_id=name, concurrency=4),
                )
                for name in ("w1", "w2")
            )
        )

    for execution, size in ((first, SIZE), (second, 12)):
        final = await ports.state.get_execution(execution.id)
        assert final is not None
        assert final.status == "completed"
        progress = await ports.state.progress(execution.id)
        assert progress.pages() == pages(size, succeeded=size)
        assert titles(tmp_path, execution.id) == {str(n): f"Node {n}" for n in range(size)}


async def test_an_execution_with_nothing_to_crawl_completes_at_start_and_the_worker_returns(
    site: SiteServer, engines: Engines, tmp_path: Path
) -> None:
    ports = memory_ports(tmp_path)
    workflow = make_workflow(
        [site.url("/graph/out-of-scope/5/0")], scope={"exclude": ["/graph/out-of-scope/"]}
    )
    execution = await submit(ports, workflow)
    running = await ports.state.get_execution(execution.id)
    assert running is not None
    assert running.status == "completed"

    async with asyncio.timeout(DEADLINE_S):
        await run_until_idle(ports, fetchers=engines.fetchers, robots=engines.robots)

    progress = await ports.state.progress(execution.id)
    assert progress.pages()["published"] == 0
    assert not any(p.startswith("/graph/out-of-scope/") for p in site.log.paths())


class Opaque(TaskQueue):
    """A queue that cannot say how many tasks it holds, as Pub/Sub cannot."""

    def __init__(self) -> None:
        self.inner = MemoryTaskQueue()

    async def publish(self, tasks: Sequence[Task]) -> None:
        await self.inner.publish(tasks)

    async def receive(self) -> Delivery:
        return await self.inner.receive()

    async def close(self) -> None:
        await self.inner.close()


async def test_until_idle_needs_a_queue_that_counts_its_tasks(
    engines: Engines, tmp_path: Path
) -> None:
    ports = dataclasses.replace(memory_ports(tmp_path), queue=Opaque())
    with pytest.raises(TypeError, match="counts its pending tasks"):
        await run_until_idle(ports, fetchers=engines.fetchers, robots=engines.robots)
