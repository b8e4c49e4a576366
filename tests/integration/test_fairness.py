"""Fair sharing between tenants on one deployment: a big crawl held back by its politeness
does not stop a small crawl started after it from completing. Each execution has at most
TRAWL_QUEUE_WINDOW tasks in the shared Pub/Sub subscription; the rest of a big crawl's
backlog waits in Postgres, so the small crawl's tasks are never queued behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from backends.state import Execution, Progress
from tests.cluster import Cluster, completed, wait_for_execution
from tests.cluster_fixtures import deployment
from tests.crawling import FAST_POLITENESS, PAGE_PHASE
from tests.services.gcs import gcs_emulator
from tests.services.postgres import TestDatabase, postgres_database
from tests.services.pubsub import pubsub_emulator
from tests.site import SiteServer

__all__ = ["gcs_emulator", "postgres_database", "pubsub_emulator"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WINDOW = 4  # below the worker's 8 slots: the big crawl can never hold all of them
BIG_RPS = 4  # the big crawl's own politeness: 2,000 pages would take over 8 minutes
SMALL = 10


def write_workflow(path: Path, name: str, start_url: str, politeness: dict[str, Any]) -> Path:
    workflow = {
        "name": name,
        "start_urls": [start_url],
        "engine": "http",
        "phases": [PAGE_PHASE],
        "politeness": politeness,
        "fetch": {"timeout_s": 10},
    }
    path.write_bytes(msgspec.json.encode(workflow))
    return path


async def test_a_small_crawl_completes_while_a_big_one_is_queued(
    tmp_path: Path, postgres_database: TestDatabase, pubsub_emulator: str, gcs_emulator: str
) -> None:
    with (
        SiteServer() as site,
        deployment(
            tmp_path,
            postgres_database,
            pubsub_emulator,
            gcs_emulator,
            TRAWL_QUEUE_WINDOW=str(WINDOW),
        ) as cluster,
    ):
        big = write_workflow(
            tmp_path / "big.json",
            "big",
            site.url("/graph/big/2000/0"),
            {**FAST_POLITENESS, "requests_per_second": BIG_RPS, "burst": 1},
        )
        small = write_workflow(
            tmp_path / "small.json", "small", site.url(f"/graph/small/{SMALL}/0"), FAST_POLITENESS
        )
        big_id = submit(cluster, big, "big")
        cluster.start_worker()

        def backlog(_execution: Execution, progress: Progress) -> bool:
            return progress.published >= 60

        await wait_for_execution(cluster, big_id, until=backlog, deadline_s=60)
        small_id = submit(cluster, small, "small")
        execution, progress = await wait_for_execution(
            cluster, small_id, until=completed, deadline_s=30
        )
        assert execution.status == "completed", cluster.all_logs()
        assert progress.by_outcome == {"succeeded": SMALL}
        assert sorted(r["url"] for r in cluster.records(small_id)) == sorted(
            site.url(f"/graph/small/{SMALL}/{n}") for n in range(SMALL)
        )
        # Meanwhile the big crawl kept most of its backlog out of the queue, and is running.
        big_now, big_progress = await wait_for_execution(
            cluster, big_id, until=lambda e, p: True, deadline_s=5
        )
        assert big_now.status == "running"
        assert big_progress.finished < big_progress.published - 2 * WINDOW


def submit(cluster: Cluster, workflow: Path, tenant: str) -> str:
    done = cluster.run("submit", str(workflow), "--tenant", tenant)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
