"""Distributed mode end to end: `trawl worker` processes over Pub/Sub (emulator), Redis,
Postgres through PgBouncer and GCS (emulator) crawl the Aqua shop, and the export is the
one the generator says a correct crawl gives, also when workers are killed mid-crawl and
when Redis or PgBouncer restart under it."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from examples.aqua.generate import expected, expected_counts
from tests.cluster import Cluster, completed, wait_for_execution
from tests.cluster_fixtures import cluster, shop, without_run_fields
from tests.crawling import make_workflow
from tests.integration.test_politeness import busiest_second
from tests.services.gcs import gcs_emulator
from tests.services.postgres import (
    PgBouncer,
    TestDatabase,
    postgres_database,
    private_pgbouncer,
    restart_pgbouncer,
)
from tests.services.pubsub import pubsub_emulator
from tests.services.redis import RedisServer, throwaway_redis
from tests.site import SiteServer

__all__ = ["cluster", "gcs_emulator", "postgres_database", "private_pgbouncer", "pubsub_emulator"]
__all__ += ["shop"]
__all__ += ["throwaway_redis"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

AQUA_HTTP = Path(__file__).resolve().parents[2] / "examples" / "aqua" / "aqua-http.yaml"
SUMMARY_KEYS = ("pages", "records", "by_phase", "by_marker", "failures_by_class")


def summary_of(cluster: Cluster, execution_id: str) -> dict[str, Any]:
    done = cluster.run("status", execution_id, "--json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


async def test_three_workers_crawl_the_shop_exactly(
    cluster: Cluster, shop: tuple[Any, str]
) -> None:
    site, base = shop
    execution_id = cluster.submit(AQUA_HTTP, f"start_urls=[{base}/]")
    for _ in range(3):
        cluster.start_worker()
    execution, _ = await wait_for_execution(cluster, execution_id, until=completed, deadline_s=120)
    assert execution.status == "completed", cluster.all_logs()
    assert without_run_fields(cluster.records(execution_id)) == expected(site, base, "http")
    report = summary_of(cluster, execution_id)
    counts = expected_counts(site)
    assert {k: report[k] for k in SUMMARY_KEYS if k in report} == {
        k: counts[k] for k in SUMMARY_KEYS if k in report
    }
    # Health and readiness, as the platform asks them.
    async with aiohttp.ClientSession() as http:
        for port in cluster.ports:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
                assert (await resp.json())["status"] == "ok"
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                body = await resp.json()
                assert resp.status == 200, body
                assert body == {
                    "status": "ready",
                    "checked": ["gcs", "postgres", "pubsub", "redis"],
                }
    # Graceful shutdown: SIGTERM drains and exits 0.
    assert cluster.stop_workers() == [0, 0, 0], cluster.all_logs()
    # Every worker did some of the work.
    logs = [cluster.worker_log(n) for n in range(3)]
    assert all("worker started" in log for log in logs)


async def test_killed_workers_lose_nothing(cluster: Cluster, shop: tuple[Any, str]) -> None:
    """SIGKILL at random points, several times; every record exactly once, counts add up."""
    site, base = shop
    rng = random.Random(11)
    execution_id = cluster.submit(
        AQUA_HTTP, f"start_urls=[{base}/]", "politeness.requests_per_second=15"
    )
    for _ in range(3):
        cluster.start_worker()
    kills = 0
    for threshold in sorted(rng.sample(range(5, 100), 3)):
        await wait_for_execution(
            cluster,
            execution_id,
            until=lambda e, p, t=threshold: p.finished >= t or completed(e, p),
            deadline_s=120,
        )
        victims = cluster.live_workers()
        if len(victims) > 1:
            rng.choice(victims).kill()
            kills += 1
            cluster.start_worker()
    assert kills >= 2
    execution, progress = await wait_for_execution(
        cluster, execution_id, until=completed, deadline_s=180
    )
    assert execution.status == "completed", cluster.all_logs()
    records = cluster.records(execution_id)
    assert len({r["url"] for r in records}) == len(records)
    assert without_run_fields(records) == expected(site, base, "http")
    counts = expected_counts(site)
    assert progress.published == progress.finished == counts["pages"]["published"]
    assert progress.failures_by_class == counts["failures_by_class"]


async def test_redis_losing_its_data_mid_crawl_changes_nothing(
    cluster: Cluster, shop: tuple[Any, str], throwaway_redis: RedisServer
) -> None:
    """Redis is a fast path: a restart that loses everything does not change the export."""
    site, base = shop
    cluster.env["TRAWL_REDIS_URL"] = throwaway_redis.url
    execution_id = cluster.submit(
        AQUA_HTTP, f"start_urls=[{base}/]", "politeness.requests_per_second=20"
    )
    for _ in range(2):
        cluster.start_worker()
    await wait_for_execution(
        cluster, execution_id, until=lambda e, p: p.finished >= 30, deadline_s=120
    )
    throwaway_redis.restart()  # empty: every seen key and rate bucket is gone
    execution, _ = await wait_for_execution(cluster, execution_id, until=completed, deadline_s=180)
    assert execution.status == "completed", cluster.all_logs()
    assert without_run_fields(cluster.records(execution_id)) == expected(site, base, "http")


async def test_pgbouncer_restart_mid_crawl_changes_nothing(
    cluster: Cluster,
    shop: tuple[Any, str],
    private_pgbouncer: PgBouncer,
    postgres_database: TestDatabase,
) -> None:
    site, base = shop
    cluster.env["TRAWL_DATABASE_URL"] = postgres_database.dsn.replace(
        ":6432/", f":{private_pgbouncer.port}/"
    )
    execution_id = cluster.submit(
        AQUA_HTTP, f"start_urls=[{base}/]", "politeness.requests_per_second=20"
    )
    for _ in range(2):
        cluster.start_worker()
    await wait_for_execution(
        cluster, execution_id, until=lambda e, p: p.finished >= 30, deadline_s=120
    )
    restart_pgbouncer(private_pgbouncer)
    execution, _ = await wait_for_execution(cluster, execution_id, until=completed, deadline_s=180)
    assert execution.status == "completed", cluster.all_logs()
    assert without_run_fields(cluster.records(execution_id)) == expected(site, base, "http")


async def test_politeness_holds_across_three_workers(cluster: Cluster, tmp_path: Path) -> None:
    """The per-host rate and concurrency are shared by every worker, not per process."""
    rate, burst, concurrency, size = 20, 5, 3, 110
    with SiteServer() as site:
        workflow = make_workflow(
            [site.url(f"/graph/polite/{size}/0?delay_ms=100")],
            politeness={
                "requests_per_second": rate,
                "burst": burst,
                "max_concurrency_per_host": concurrency,
                "respect_robots_txt": False,
            },
        )
        path = tmp_path / "polite.json"
        path.write_bytes(msgspec.json.encode(workflow))
        execution_id = cluster.submit(path)
        for _ in range(3):
            cluster.start_worker()
        execution, progress = await wait_for_execution(
            cluster, execution_id, until=completed, deadline_s=120
        )
        entries = site.log.entries()
    assert execution.status == "completed", cluster.all_logs()
    assert progress.by_outcome == {"succeeded": size}
    assert len({e.path for e in entries}) == size
    assert busiest_second([e.at for e in entries]) <= rate + burst
    assert max(e.in_flight for e in entries) <= concurrency
