"""The backlog gauges over the memory adapters on a FakeClock: queued and held tasks, the age
of the oldest queued one, running and stalled executions, reported by the one process that
holds the metrics claim, and by none once its reading is stale."""

from __future__ import annotations

from datetime import datetime

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from backends.clock import FakeClock
from backends.memory import MemoryStateStore
from backends.state import Execution, TaskResult
from orchestrator.metrics import BacklogMetrics

T0 = datetime(2026, 3, 1, 12, 0)
GAUGES = (
    "trawl.queue.backlog",
    "trawl.queue.held",
    "trawl.queue.oldest_unacked_age",
    "trawl.executions.running",
    "trawl.executions.stalled",
)


def gauges(reader: InMemoryMetricReader) -> dict[str, float]:
    """The value of each gauge the reader collected now (absent: nothing observed)."""
    values: dict[str, float] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = list(metric.data.data_points)
                if points:
                    [point] = points  # one series: the totals carry no attributes
                    assert not point.attributes
                    values[metric.name] = point.value
    return values


def finished(key: str) -> TaskResult:
    return TaskResult(key=key, url=key, phase="page", depth=1, outcome="succeeded")


async def running(store: MemoryStateStore, clock: FakeClock, execution_id: str) -> None:
    execution = Execution(
        id=execution_id, workflow="shop", workflow_version=1, created_at=clock.wall()
    )
    await store.create_execution(execution)
    assert await store.transition(execution_id, "running", from_statuses=["pending"])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryStateStore:
    return MemoryStateStore(clock)


def job(
    store: MemoryStateStore, clock: FakeClock, owner: str
) -> tuple[BacklogMetrics, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    metrics = BacklogMetrics(
        store,
        clock,
        interval_s=10,
        stall_after_s=180,
        owner=owner,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    return metrics, reader


async def test_two_executions_backlog_and_age(store: MemoryStateStore, clock: FakeClock) -> None:
    # ex-1: three tasks at t=0, one of them finished at t=40; ex-2: two tasks at t=40 under
    # a window of one (one queued, one held); ex-3 is pending and counts for nothing.
    await running(store, clock, "ex-1")
    keys = ["a", "b", "c"]
    await store.register_tasks("ex-1", keys, payloads=keys)
    await clock.run_for(40)
    await store.finish_tasks("ex-1", [finished("a")])
    await running(store, clock, "ex-2")
    await store.register_tasks("ex-2", ["x", "y"], payloads=["x", "y"], window=1)
    await store.create_execution(
        Execution(id="ex-3", workflow="shop", workflow_version=1, created_at=clock.wall())
    )
    await store.add_tasks("ex-3", ["p"])
    await clock.run_for(20)

    metrics, reader = job(store, clock, "orchestrator-1")
    assert gauges(reader) == {}  # nothing read yet: nothing reported
    await metrics.refresh()
    assert gauges(reader) == {
        "trawl.queue.backlog": 3,  # b, c and x
        "trawl.queue.held": 1,  # y
        "trawl.queue.oldest_unacked_age": 60,  # b and c, registered at t=0
        "trawl.executions.running": 2,
        "trawl.executions.stalled": 0,
    }
    # The age is taken when the SDK collects, so it grows between readings.
    await clock.run_for(5)
    assert gauges(reader)["trawl.queue.oldest_unacked_age"] == 65

    # The oldest finish: the age counts from the next oldest (x, at t=40).
    await store.finish_tasks("ex-1", [finished("b"), finished("c")])
    await metrics.refresh()
    values = gauges(reader)
    assert values["trawl.queue.backlog"] == 1
    assert values["trawl.queue.oldest_unacked_age"] == 25


async def test_nothing_queued_is_age_zero(store: MemoryStateStore, clock: FakeClock) -> None:
    await running(store, clock, "ex-1")
    metrics, reader = job(store, clock, "orchestrator-1")
    await metrics.refresh()
    assert gauges(reader) == dict.fromkeys(GAUGES, 0) | {"trawl.executions.running": 1}


async def test_one_process_reports_and_another_takes_over(
    store: MemoryStateStore, clock: FakeClock
) -> None:
    await running(store, clock, "ex-1")
    await store.add_tasks("ex-1", ["a", "b"])
    first, first_reader = job(store, clock, "orchestrator-1")
    second, second_reader = job(store, clock, "orchestrator-2")
    assert await first.refresh() is not None
    assert await second.refresh() is None  # the claim is the first one's
    assert gauges(first_reader)["trawl.queue.backlog"] == 2
    assert gauges(second_reader) == {}

    # The first stops reading (its process died): once its reading is as old as its claim
    # it reports nothing, and the second, whose claim is now free, reports instead.
    await clock.run_for(first.claim_ttl_s)
    assert gauges(first_reader) == {}
    assert await second.refresh() is not None
    assert gauges(second_reader)["trawl.queue.backlog"] == 2
    assert await first.refresh() is None  # it came back: the claim is taken
    assert gauges(first_reader) == {}


async def test_stalled_executions_as_trawl_status_judges_them(
    store: MemoryStateStore, clock: FakeClock
) -> None:
    await running(store, clock, "stuck")
    await store.add_tasks("stuck", ["a"])
    await running(store, clock, "moving")
    await store.add_tasks("moving", ["m1", "m2"])
    await running(store, clock, "idle")  # nothing unfinished: not stalled, however long
    await clock.run_for(170)
    await store.finish_tasks("moving", [finished("m1")])
    await clock.run_for(20)  # "stuck": 190 s without a finish; "moving": 20 s
    metrics, reader = job(store, clock, "orchestrator-1")
    await metrics.refresh()
    assert gauges(reader)["trawl.executions.stalled"] == 1
    # A cancelled execution the sweep still has to settle is not a stall.
    assert await store.transition("stuck", "cancelled", from_statuses=["running"])
    await metrics.refresh()
    assert gauges(reader)["trawl.executions.stalled"] == 0


async def test_the_loop_reads_every_interval(store: MemoryStateStore, clock: FakeClock) -> None:
    await running(store, clock, "ex-1")
    await store.add_tasks("ex-1", ["a", "b", "c"])
    metrics, reader = job(store, clock, "orchestrator-1")
    metrics.start()
    try:
        await clock.run_for(0)
        assert gauges(reader)["trawl.queue.backlog"] == 3
        await store.finish_tasks("ex-1", [finished("a")])
        await clock.run_for(metrics.interval_s)
        assert gauges(reader)["trawl.queue.backlog"] == 2
    finally:
        await metrics.stop()
    assert gauges(reader) == {}  # stopped: nothing reported


def test_the_interval_must_be_positive(store: MemoryStateStore, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="above 0"):
        BacklogMetrics(store, clock, interval_s=0, stall_after_s=180)
