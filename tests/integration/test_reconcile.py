"""Lost tasks, stalls and cancels in a real distributed deployment: `trawl worker` processes
over Pub/Sub (emulator), Redis, Postgres through PgBouncer and GCS (emulator).

Tasks the queue lost are published again (by the workers' sweep and by `trawl reconcile`) and
the execution completes with the export a clean crawl gives; meanwhile `trawl status` says it
is stalled and why, and `status --wait --timeout` has an exit code of its own. A cancel
mid-crawl leaves counts and an export that agree, and stay so."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from examples.aqua.generate import expected, expected_counts
from tests.cluster import Cluster, completed, wait_for_execution
from tests.cluster_fixtures import cluster, shop, without_run_fields
from tests.services.gcs import gcs_emulator
from tests.services.postgres import postgres_database
from tests.services.pubsub import pubsub_emulator
from trawl.distributed import make_queue
from trawl.settings import load_settings

__all__ = ["cluster", "gcs_emulator", "postgres_database", "pubsub_emulator", "shop"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

AQUA_HTTP = Path(__file__).resolve().parents[2] / "examples" / "aqua" / "aqua-http.yaml"
EXIT_TIMEOUT = 124


def status_of(cluster: Cluster, execution_id: str, *args: str) -> dict[str, Any]:
    done = cluster.run("status", execution_id, "--json", *args)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


async def lose_queued_tasks(cluster: Cluster) -> None:
    """Lose every task in the queue, as a Pub/Sub that restarted empty would: the
    deployment's subscription is deleted and made again."""
    queue = make_queue(load_settings(cluster.env))
    try:
        await asyncio.to_thread(
            queue._subscriber.delete_subscription,
            request={"subscription": queue.subscription_path},
        )
        await queue.ensure_resources()
    finally:
        await queue.close()


async def test_tasks_lost_from_the_queue_are_published_again(
    cluster: Cluster, shop: tuple[Any, str]
) -> None:
    site, base = shop
    execution_id = cluster.submit(
        AQUA_HTTP, f"start_urls=[{base}/]", "politeness.requests_per_second=15"
    )
    for _ in range(2):
        cluster.start_worker()
    await wait_for_execution(
        cluster,
        execution_id,
        until=lambda e, p: p.finished >= 40 or completed(e, p),
        deadline_s=120,
    )
    cluster.stop_workers()
    await lose_queued_tasks(cluster)
    report = status_of(cluster, execution_id)
    assert report["status"] == "running"
    outstanding = report["pages"]["published"] - report["pages"]["finished"]
    assert outstanding > 0

    # Nothing will finish now: stalled, and waiting for it gives up with its own exit code.
    cluster.env["TRAWL_STALL_AFTER_S"] = "0"
    health = status_of(cluster, execution_id)["health"]
    assert health["state"] == "stalled"
    assert health["cause"].startswith("no worker is running: none has checked in for")
    waited = cluster.run("status", execution_id, "--wait", "--timeout", "1")
    assert waited.returncode == EXIT_TIMEOUT, waited.stderr
    assert "gave up waiting after 1 s" in waited.stderr
    assert "stalled since" in waited.stdout

    # The command re-publishes what no worker holds (the stopped workers' leases may keep a
    # few back for a minute); the workers' sweep does the rest.
    done = cluster.run("reconcile", execution_id, "--after", "0")
    assert done.returncode == 0, done.stderr
    found = re.fullmatch(r"re-published (\d+) task\(s\)\n", done.stdout)
    assert found is not None, done.stdout
    assert 0 < int(found.group(1)) <= outstanding
    del cluster.env["TRAWL_STALL_AFTER_S"]
    cluster.start_worker(TRAWL_RECONCILE_AFTER_S="5")
    execution, _ = await wait_for_execution(cluster, execution_id, until=completed, deadline_s=240)
    assert execution.status == "completed", cluster.all_logs()
    records = cluster.records(execution_id)
    assert len({r["url"] for r in records}) == len(records)
    assert without_run_fields(records) == expected(site, base, "http")
    assert status_of(cluster, execution_id)["health"] == {
        "state": "ok",
        "since": None,
        "cause": None,
    }


async def test_reconcile_refuses_an_execution_that_is_not_running(cluster: Cluster) -> None:
    missing = cluster.run("reconcile", "no-such-execution")
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        "trawl: no execution no-such-execution",
    )


async def test_a_cancel_mid_crawl_counts_what_its_export_holds(
    cluster: Cluster, shop: tuple[Any, str]
) -> None:
    site, base = shop
    execution_id = cluster.submit(
        AQUA_HTTP, f"start_urls=[{base}/]", "politeness.requests_per_second=20"
    )
    for _ in range(2):
        cluster.start_worker()
    await wait_for_execution(
        cluster,
        execution_id,
        until=lambda e, p: p.by_phase.get("product", {}).get("succeeded", 0) >= 20,
        deadline_s=120,
    )
    cancelled = cluster.run("cancel", execution_id, "--timeout", "120", timeout_s=150)
    assert cancelled.returncode == 0, cancelled.stderr + cluster.all_logs()
    assert re.match(rf"execution {execution_id} \(aqua-shop v\d+\): cancelled\n", cancelled.stdout)

    def agreed() -> tuple[int, dict[str, int]]:
        report = status_of(cluster, execution_id)
        assert report["status"] == "cancelled" and report["settled"] is True
        exported = len(cluster.records(execution_id))
        product = report["by_phase"]["product"]
        assert exported == report["records"] == product["succeeded"], report
        return exported, report["pages"]

    first = agreed()
    assert first[0] >= 20
    full = expected_counts(site)["pages"]["published"]
    assert first[1]["published"] < full  # it was stopped mid-crawl
    # The workers go on dropping its queued tasks; nothing they do changes it.
    assert all(code == 0 for code in cluster.stop_workers()), cluster.all_logs()
    assert agreed() == first
    again = cluster.run("cancel", execution_id)
    assert (again.returncode, again.stderr.strip()) == (
        1,
        f"trawl: execution {execution_id} is already cancelled",
    )
