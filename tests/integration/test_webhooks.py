"""Webhooks end to end: two executions run by `trawl worker` processes over the real services
each get exactly one valid signed call at a receiver on 127.0.0.1, also when the receiver
fails the first two attempts (it gets three calls, the third a success, and no more)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from backends.postgres import PostgresStateStore
from backends.state import WebhookDelivery
from tests.cluster import Cluster, completed, wait_for_execution
from tests.cluster_fixtures import deployment
from tests.crawling import make_workflow
from tests.services.gcs import gcs_emulator
from tests.services.postgres import TestDatabase, postgres_database
from tests.services.pubsub import pubsub_emulator
from tests.site import SiteServer
from tests.webhook_receiver import Call, Receiver, wait_until
from trawl.webhooks import tenant_secret, verify

__all__ = ["gcs_emulator", "postgres_database", "pubsub_emulator"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECRET = "integration-webhook-secret"
TENANT = "default"  # trawl submit's


@pytest.fixture
def hooked(
    tmp_path: Path, postgres_database: TestDatabase, pubsub_emulator: str, gcs_emulator: str
) -> Iterator[Cluster]:
    """A deployment whose processes share a webhook secret."""
    with deployment(
        tmp_path, postgres_database, pubsub_emulator, gcs_emulator, TRAWL_WEBHOOK_SECRET=SECRET
    ) as cluster:
        yield cluster


def workflow_file(tmp_path: Path, name: str, start_url: str, hook: str) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_bytes(
        msgspec.json.encode(make_workflow([start_url], max_depth=0, webhook={"url": hook}))
    )
    return path


async def calls_of(cluster: Cluster, execution_ids: list[str]) -> list[WebhookDelivery | None]:
    state = await PostgresStateStore.from_url(cluster.database_url, max_size=2)
    try:
        return [await state.get_webhook(e) for e in execution_ids]
    finally:
        await state.close()


def payload_of(call: Call, execution_id: str) -> dict[str, object]:
    """The call's payload, its signature checked with the tenant's secret."""
    assert call.headers["Trawl-Delivery"] == execution_id
    assert call.headers["Trawl-Event"] == "execution.completed"
    return verify(tenant_secret(SECRET, TENANT), call.headers, call.body)


async def test_each_execution_gets_exactly_one_valid_signed_call(
    hooked: Cluster, site: SiteServer, tmp_path: Path
) -> None:
    async with Receiver() as receiver:
        receiver.fail_first("/flaky", 2)
        ok = hooked.submit(
            workflow_file(tmp_path, "ok", site.url("/product/1?case=hook-ok"), receiver.url("/ok"))
        )
        flaky = hooked.submit(
            workflow_file(
                tmp_path, "flaky", site.url("/product/2?case=hook-flaky"), receiver.url("/flaky")
            )
        )
        hooked.start_worker()
        hooked.start_worker()
        for execution_id in (ok, flaky):
            execution, _ = await wait_for_execution(
                hooked, execution_id, until=completed, deadline_s=60
            )
            assert execution.status == "completed", hooked.all_logs()

        async def settled() -> bool:
            calls = await calls_of(hooked, [ok, flaky])
            return all(c is not None and c.status != "pending" for c in calls)

        await wait_until(settled, deadline_s=30, what="both webhook calls delivered or failed")
        # Delivered: the workers make no call after this; stopping them proves it.
        assert hooked.stop_workers() == [0, 0], hooked.all_logs()

    ok_call, flaky_call = await calls_of(hooked, [ok, flaky])
    assert ok_call is not None and (ok_call.status, ok_call.attempts) == ("delivered", 1)
    assert flaky_call is not None and (flaky_call.status, flaky_call.attempts) == ("delivered", 3)

    (hit,) = receiver.calls_to("/ok")
    payload = payload_of(hit, ok)
    bucket = hooked.env["TRAWL_GCS_BUCKET"]
    assert payload == {
        "event": "execution.completed",
        "execution_id": ok,
        "tenant": TENANT,
        "workflow": "test-crawl",
        "workflow_version": payload["workflow_version"],
        "status": "completed",
        "finished_at": payload["finished_at"],
        "pages": {"published": 1, "finished": 1, "succeeded": 1, "failed": 0, "filtered": 0},
        "records": 1,
        "manifest_path": f"{ok}/export/manifest.json",
        "manifest_uri": f"gs://{bucket}/{ok}/export/manifest.json",
        "records_path": f"/v1/executions/{ok}/records",
    }

    hits = receiver.calls_to("/flaky")
    assert [h.status for h in hits] == [500, 500, 200]
    payloads = [payload_of(h, flaky) for h in hits]  # every attempt signed, the same body
    assert all(p == payloads[0] for p in payloads)
    assert payloads[0]["execution_id"] == flaky and payloads[0]["records"] == 1
    assert len(receiver.calls) == 4
