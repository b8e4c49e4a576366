"""The orchestrator over the memory adapters, as unit tests drive it (Litestar's test client
over the real app; only the backends are in-process)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from litestar.testing import AsyncTestClient

from backends.fetcher import Fetcher
from backends.local import LocalBlobStore
from backends.memory import MemoryRateLimiter, MemorySeenSet, MemoryStateStore, MemoryTaskQueue
from orchestrator import Services, create_app
from orchestrator.auth import create_key
from orchestrator.services import Check, Limits, UrlGuard
from trawl.embedded import open_fetchers
from trawl.settings import Settings
from worker.assemble import Ports
from workflows.isolated import Offload
from workflows.spec import Workflow


@contextlib.asynccontextmanager
async def preview_fetchers(workflow: Workflow) -> AsyncIterator[Mapping[str, Fetcher]]:
    async with open_fetchers(workflow, Settings()) as (fetchers, _robots):
        yield fetchers


class AllowAll:
    async def check_url(self, url: str) -> None:
        return None


@dataclass
class Api:
    client: AsyncTestClient  # type: ignore[type-arg]
    services: Services
    queue: MemoryTaskQueue

    async def key(self, tenant: str) -> dict[str, str]:
        """Headers with a new key of ``tenant``."""
        key = await create_key(self.services.ports.state, tenant)
        return {"Authorization": f"Bearer {key}"}


# One pool of admission helpers for every test of the process: starting a helper process
# costs a few hundred milliseconds, and a pool outlives the event loop of any one test. Its
# helpers exit when the test process does (their stdin closes).
SHARED_ADMISSION = Offload()


async def close_admission(services: Services) -> None:
    """Stop the services' admission helpers, unless they are the shared ones."""
    if services.admission is not SHARED_ADMISSION:
        await services.admission.close()


def memory_services(
    tmp_path: Path,
    *,
    guard: UrlGuard | None = None,
    limits: Limits | None = None,
    checks: dict[str, Check] | None = None,
) -> Services:
    """The API's services over fresh memory adapters."""
    queue = MemoryTaskQueue()
    ports = Ports(
        queue=queue,
        seen=MemorySeenSet(),
        limiter=MemoryRateLimiter(),
        state=MemoryStateStore(),
        blobs=LocalBlobStore(tmp_path / "blobs"),
    )
    return Services(
        ports=ports,
        open_fetchers=preview_fetchers,
        guard=guard or AllowAll(),
        limits=limits or Limits(),
        checks=checks or {},
        admission=SHARED_ADMISSION,
    )


@contextlib.asynccontextmanager
async def memory_api(
    tmp_path: Path,
    *,
    guard: UrlGuard | None = None,
    limits: Limits | None = None,
    checks: dict[str, Check] | None = None,
) -> AsyncIterator[Api]:
    services = memory_services(tmp_path, guard=guard, limits=limits, checks=checks)
    queue = services.ports.queue
    assert isinstance(queue, MemoryTaskQueue)
    try:
        async with AsyncTestClient(app=create_app(services)) as client:
            yield Api(client, services, queue)
    finally:
        await close_admission(services)


@contextlib.asynccontextmanager
async def served(services: Services) -> AsyncIterator[str]:
    """The app over ``services`` behind a real uvicorn on a free port (the test client runs
    the app on a loop of its own and one request at a time: concurrency needs a server)."""
    import asyncio

    import uvicorn

    from tests.services import free_port

    port = free_port()
    config = uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        await close_admission(services)
