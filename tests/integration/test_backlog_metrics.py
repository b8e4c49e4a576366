"""`trawl orchestrator` exports the backlog gauges through the real OpenTelemetry SDK and
OTLP/HTTP, read back by a collector the test serves: the queued and held tasks of running
executions in a database of the test's own, the age of the oldest, and their changes as
tasks finish."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.clock import SystemClock
from backends.postgres import PostgresStateStore
from backends.state import Execution, TaskResult
from tests.cluster import ROOT, TRAWL
from tests.cluster_fixtures import deployment
from tests.otlp_receiver import OtlpReceiver
from tests.services import free_port
from tests.services.gcs import gcs_emulator
from tests.services.postgres import TestDatabase, create_database, drop_database
from tests.services.pubsub import pubsub_emulator
from tests.webhook_receiver import wait_until

__all__ = ["gcs_emulator", "pubsub_emulator"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def database() -> Iterator[TestDatabase]:
    """A database of this test's own: the backlog is global, so no other test's executions
    may be in it."""
    database = create_database()
    try:
        yield database
    finally:
        drop_database(database)


def start_orchestrator(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``trawl orchestrator`` with ``env``, its output in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [*TRAWL, "orchestrator"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )


def finished(key: str) -> TaskResult:
    return TaskResult(key=key, url=key, phase="page", depth=0, outcome="succeeded")


async def test_the_orchestrator_exports_the_backlog_over_otlp(
    database: TestDatabase, pubsub_emulator: str, gcs_emulator: str, tmp_path: Path
) -> None:
    store = await PostgresStateStore.from_url(database.dsn, max_size=2, clock=SystemClock())
    try:
        for execution_id in ("ex-1", "ex-2"):
            await store.create_execution(
                Execution(
                    id=execution_id,
                    workflow="shop",
                    workflow_version=1,
                    created_at=SystemClock().wall(),
                )
            )
            assert await store.transition(execution_id, "running", from_statuses=["pending"])
        keys = [f"http://127.0.0.1/{n}" for n in range(5)]
        await store.register_tasks("ex-1", keys, payloads=keys)
        await store.register_tasks("ex-2", ["a", "b", "c"], payloads=["a", "b", "c"], window=1)
        registered = time.monotonic()

        async with OtlpReceiver() as collector:
            with deployment(tmp_path, database, pubsub_emulator, gcs_emulator) as cluster:
                env = {
                    **cluster.env,
                    "PORT": str(free_port()),
                    "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                    "OTEL_METRIC_EXPORT_INTERVAL": "300",  # milliseconds
                    "TRAWL_METRICS_INTERVAL_S": "1",
                    "TRAWL_SCHEDULER": "0",
                }
                log = tmp_path / "orchestrator.log"
                process = start_orchestrator(env, log)
                try:

                    def exported(name: str, value: float) -> bool:
                        assert process.poll() is None, log.read_text(errors="replace")
                        return collector.latest(name) == value

                    await wait_until(
                        lambda: exported("trawl.queue.backlog", 6),  # 5 of ex-1, 1 of ex-2
                        deadline_s=60,
                        what="the backlog exported",
                    )
                    assert collector.latest("trawl.queue.held") == 2
                    assert collector.latest("trawl.executions.running") == 2
                    assert collector.latest("trawl.executions.stalled") == 0
                    age = collector.latest("trawl.queue.oldest_unacked_age")
                    assert age is not None
                    assert 0 < age <= time.monotonic() - registered + 1
                    [point] = collector.gauges["trawl.queue.backlog"]
                    assert point.service == "trawl-orchestrator"

                    # Tasks finish: the next readings say so.
                    await store.finish_tasks("ex-1", [finished(k) for k in keys])
                    await wait_until(
                        lambda: exported("trawl.queue.backlog", 1),
                        deadline_s=30,
                        what="the backlog after finishes",
                    )
                    assert collector.latest("trawl.queue.held") == 2
                finally:
                    process.terminate()
                    process.wait(timeout=30)
    finally:
        await store.close()
