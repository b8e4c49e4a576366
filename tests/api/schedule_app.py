"""The orchestrator over memory adapters that all keep one FakeClock's time, as the
schedule tests drive it: the API through Litestar's test client, the scheduler's rounds in
the test's own loop (``Scheduler.tick``), time moved by hand."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from backends.clock import FakeClock
from backends.local import LocalBlobStore
from backends.memory import MemoryRateLimiter, MemorySeenSet, MemoryStateStore, MemoryTaskQueue
from orchestrator import Services, create_app
from orchestrator.auth import create_key
from orchestrator.scheduler import Scheduler
from orchestrator.services import Limits
from tests.api.memory_app import SHARED_ADMISSION, AllowAll, close_admission, preview_fetchers
from worker.assemble import Ports

WORKFLOW = """
name: shop
start_urls: ["http://shop.test/"]
max_pages: 50
phases:
  - name: page
    nodes:
      - {type: extract, fields: {title: h1}}
      - {type: extract_links}
"""
YAML = {"Content-Type": "application/yaml"}


@dataclass
class ScheduleApi:
    client: AsyncTestClient  # type: ignore[type-arg]
    services: Services
    clock: FakeClock
    scheduler: Scheduler
    auth: dict[str, str]

    async def key(self, tenant: str) -> dict[str, str]:
        """Headers with a new key of ``tenant``."""
        key = await create_key(self.services.ports.state, tenant)
        return {"Authorization": f"Bearer {key}"}

    async def post_workflow(self, auth: dict[str, str] | None = None) -> None:
        created = await self.client.post(
            "/v1/workflows", content=WORKFLOW, headers=(auth or self.auth) | YAML
        )
        assert created.status_code == 201, created.text

    async def create(self, body: dict[str, Any], auth: dict[str, str] | None = None) -> Any:
        response = await self.client.post("/v1/schedules", json=body, headers=auth or self.auth)
        assert response.status_code == 201, response.text
        return response.json()

    async def get(self, path: str) -> Any:
        response = await self.client.get(path, headers=self.auth)
        assert response.status_code == 200, response.text
        return response.json()

    def at(self, when: datetime) -> None:
        """Move the clock forward to ``when``."""
        self.clock.advance((when - self.clock.wall()).total_seconds())


def clocked_services(tmp_path: Path, clock: FakeClock, limits: Limits | None = None) -> Services:
    """The API's services over fresh memory adapters on ``clock``."""
    ports = Ports(
        queue=MemoryTaskQueue(clock),
        seen=MemorySeenSet(),
        limiter=MemoryRateLimiter(clock),
        state=MemoryStateStore(clock),
        blobs=LocalBlobStore(tmp_path / "blobs"),
    )
    return Services(
        ports=ports,
        open_fetchers=preview_fetchers,
        guard=AllowAll(),
        limits=limits or Limits(),
        admission=SHARED_ADMISSION,
        clock=clock,
    )


@contextlib.asynccontextmanager
async def schedule_api(
    tmp_path: Path, *, wall_start: datetime, limits: Limits | None = None, tenant: str = "acme"
) -> AsyncIterator[ScheduleApi]:
    """The app on a FakeClock starting at ``wall_start``, a key of ``tenant``, and a
    Scheduler over the same services (not started: the test calls ``tick``)."""
    clock = FakeClock(wall_start=wall_start)
    services = clocked_services(tmp_path, clock, limits)
    scheduler = Scheduler(services, tick_s=5.0)
    key = await create_key(services.ports.state, tenant)
    try:
        async with AsyncTestClient(app=create_app(services)) as client:
            yield ScheduleApi(
                client, services, clock, scheduler, {"Authorization": f"Bearer {key}"}
            )
    finally:
        await close_admission(services)
