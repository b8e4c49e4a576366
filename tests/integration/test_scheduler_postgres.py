"""Schedules over Postgres (through PgBouncer) with two orchestrator instances' schedulers
racing on every tick: each fire starts exactly one execution, whichever instance takes it,
on a test clock. The queue, seen set and blobs are the memory and local ones: only the
store is what is being shown here."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backends.clock import FakeClock
from backends.local import LocalBlobStore
from backends.memory import MemoryRateLimiter, MemorySeenSet, MemoryTaskQueue
from backends.postgres import PostgresStateStore
from orchestrator import Services
from orchestrator.schedule_wire import ScheduleCreate
from orchestrator.scheduler import Scheduler
from orchestrator.schedules import create_schedule
from tests.api.memory_app import SHARED_ADMISSION, AllowAll, preview_fetchers
from tests.api.schedule_app import WORKFLOW
from tests.services.postgres import TestDatabase, postgres_database
from worker.assemble import Ports
from worker.start import store_workflow
from workflows import load_workflow

__all__ = ["postgres_database"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def store(
    postgres_database: TestDatabase,
) -> AsyncIterator[tuple[PostgresStateStore, FakeClock]]:
    clock = FakeClock(wall_start=T0)
    state = await PostgresStateStore.from_url(postgres_database.dsn, max_size=6, clock=clock)
    try:
        yield state, clock
    finally:
        await state.close()


def instance(state: PostgresStateStore, clock: FakeClock, tmp_path: Path) -> Services:
    """One orchestrator instance's services: its own queue (the executions it starts are
    what is counted), the shared store."""
    ports = Ports(
        queue=MemoryTaskQueue(clock),
        seen=MemorySeenSet(),
        limiter=MemoryRateLimiter(clock),
        state=state,
        blobs=LocalBlobStore(tmp_path / "blobs"),
    )
    return Services(
        ports=ports,
        open_fetchers=preview_fetchers,
        guard=AllowAll(),
        admission=SHARED_ADMISSION,
        clock=clock,
    )


async def test_two_instances_start_each_fire_once(
    store: tuple[PostgresStateStore, FakeClock], tmp_path: Path
) -> None:
    state, clock = store
    tenant = f"sched-{uuid.uuid4().hex[:8]}"  # the session database is shared
    await store_workflow(state, tenant, load_workflow(WORKFLOW))
    first, second = (instance(state, clock, tmp_path / name) for name in ("a", "b"))
    request = ScheduleCreate(workflow="shop", cron="*/5 * * * *", overlap="allow")
    made = [await create_schedule(first, tenant, request) for _ in range(3)]
    schedulers = [Scheduler(first, tick_s=5), Scheduler(second, tick_s=5)]

    for fire in range(1, 4):  # three fires of each schedule, both instances ticking at once
        clock.advance((T0 + timedelta(minutes=5 * fire, seconds=1) - clock.wall()).total_seconds())
        await asyncio.gather(*(s.tick() for s in schedulers))

    executions = await state.list_executions(tenant, limit=100)
    assert len(executions) == 9
    for schedule in made:
        stored = await state.get_schedule(schedule.id)
        assert stored is not None
        assert stored.counts == {"started": 3}
        assert stored.next_run_at == T0 + timedelta(minutes=20)
        history = await state.schedule_fires(schedule.id)
        assert [f.scheduled_for for f in history] == [
            T0 + timedelta(minutes=m) for m in (15, 10, 5)
        ]
        assert {f.execution_id for f in history} <= {e.id for e in executions}
    queues = [s.services.ports.queue for s in schedulers]
    published = sum(q.pending() for q in queues if isinstance(q, MemoryTaskQueue))
    assert published == 9  # one start URL per execution, published once
