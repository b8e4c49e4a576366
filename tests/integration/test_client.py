"""The Python client against a real orchestrator: `trawl orchestrator` and two `trawl worker`
processes over Postgres (PgBouncer), Redis and the Pub/Sub and GCS emulators. It puts the
Aqua workflow, starts it, follows its records while the workers crawl, waits for the end,
and finds the records it followed equal to the export's and to the generator's answer."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from examples.aqua.generate import expected
from tests.cluster import Cluster
from tests.cluster_fixtures import cluster, shop, without_run_fields
from tests.integration.test_distributed import AQUA_HTTP
from tests.integration.test_orchestrator import Orchestrator, new_key, orchestrator
from tests.services.gcs import gcs_emulator
from tests.services.postgres import postgres_database
from tests.services.pubsub import pubsub_emulator
from trawl.client import Client

__all__ = ["cluster", "gcs_emulator", "orchestrator", "postgres_database", "pubsub_emulator"]
__all__ += ["shop"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DEADLINE_S = 120.0


def key_of(record: dict[str, Any]) -> tuple[str, str]:
    return record["phase"], record["url"]


async def test_the_client_follows_a_crawl_and_its_records_are_the_exports(
    cluster: Cluster, orchestrator: Orchestrator, shop: tuple[Any, str], tmp_path: Path
) -> None:
    site, base = shop
    # A tenant of its own: the session's database is shared with test_orchestrator, whose
    # tenant puts the same workflow and expects to create it.
    tenant = f"client-{uuid.uuid4().hex[:8]}"
    key = new_key(cluster, tenant)["Authorization"].removeprefix("Bearer ")
    async with aiohttp.ClientSession() as http:
        await orchestrator.wait_ready(http)

    async with Client(orchestrator.base, key) as client:
        stored = await client.put_workflow(AQUA_HTTP.read_text())
        assert (stored.name, stored.version) == ("aqua-shop", 1)
        execution = await client.start("aqua-shop", set=[f"start_urls=[{base}/]"])
        assert execution.status == "running"
        for _ in range(2):
            cluster.start_worker()

        async def follow() -> list[dict[str, Any]]:
            return [r async for r in client.records(execution.id, follow=True, poll_s=0.2)]

        async with asyncio.timeout(DEADLINE_S):
            followed, final = await asyncio.gather(follow(), client.wait(execution.id, poll_s=0.2))
        assert final.status == "completed", cluster.all_logs()
        assert final.records == len(followed)

        exported = [r async for r in client.records(execution.id)]
        assert sorted(map(key_of, followed)) == sorted(map(key_of, exported))
        assert len(set(map(key_of, followed))) == len(followed)  # each key once
        plain = without_run_fields(exported)  # (in place) execution_id, fetched_at, parent_url
        assert without_run_fields(followed) == plain
        assert plain == expected(site, base, "http")

        written = await client.download_export(execution.id, tmp_path / "download")
        outputs = [o for o in await client.outputs(execution.id) if o.kind != "part"]
        assert {"export", "summary"} <= {o.kind for o in outputs}
        sizes = {tmp_path / "download" / o.path: o.size_bytes for o in outputs}
        assert {path: path.stat().st_size for path in written} == sizes

    assert cluster.stop_workers() == [0, 0], cluster.all_logs()
