"""``POST /v1/workflows/{name}/executions`` with ``recrawl_of``, over the memory adapters: the
previous execution is checked (the tenant's, the same workflow, ended, exported), and a
recrawl run by a worker (``run_until_idle``) asks the site conditionally and reports its
changes. The site is tests/recrawl_site.py, counting conditional requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.memory_app import Api, memory_api
from tests.recrawl_site import RecrawlSite
from trawl.local_outputs import exported_records
from worker.engines import Engines, open_engines
from worker.netguard import NetGuard
from worker.runtime import WorkerOptions, run_until_idle

YAML = {"Content-Type": "application/yaml"}
DEADLINE_S = 30.0


def workflow(site: RecrawlSite, name: str) -> str:
    return f"""
name: {name}
start_urls: ["{site.url("/")}"]
engine: http
politeness: {{requests_per_second: 100, burst: 50, max_concurrency_per_host: 8,
             respect_robots_txt: false}}
phases:
  - name: page
    nodes:
      - {{type: extract, fields: {{title: h1}}}}
      - {{type: extract_links}}
"""


@pytest.fixture
def recrawl_site() -> Iterator[RecrawlSite]:
    site = RecrawlSite().start()
    try:
        yield site
    finally:
        site.stop()


@pytest.fixture
async def engines() -> AsyncIterator[Engines]:
    async with open_engines(NetGuard.allow_all()) as opened:
        yield opened


async def start(api: Api, auth: dict[str, str], name: str, **body: Any) -> Any:
    return await api.client.post(f"/v1/workflows/{name}/executions", json=body, headers=auth)


async def run_worker(api: Api, engines: Engines) -> None:
    async with asyncio.timeout(DEADLINE_S):
        await run_until_idle(
            api.services.ports,
            fetchers=engines.fetchers,
            robots=engines.robots,
            options=WorkerOptions(worker_id="w1", concurrency=8),
        )


async def test_a_recrawl_through_the_api(
    recrawl_site: RecrawlSite, engines: Engines, tmp_path: Path
) -> None:
    site = recrawl_site
    async with memory_api(tmp_path) as api:
        auth = await api.key("recrawl-acme")
        posted = await api.client.post(
            "/v1/workflows", content=workflow(site, "shop-recrawl"), headers=auth | YAML
        )
        assert posted.status_code == 201, posted.text
        first = (await start(api, auth, "shop-recrawl")).json()
        assert first["recrawl_of"] is None

        running = await start(api, auth, "shop-recrawl", recrawl_of=first["id"])
        assert running.status_code == 409
        assert running.json()["detail"] == (
            f"recrawl_of: execution {first['id']} is running; only one that has ended "
            "(completed, failed or cancelled) can be recrawled"
        )

        await run_worker(api, engines)
        pages = len(site.paths())
        site.counts.reset()
        started = await start(api, auth, "shop-recrawl", recrawl_of=first["id"])
        assert started.status_code == 202, started.text
        body = started.json()
        assert body["recrawl_of"] == first["id"]
        assert body["pages"]["published"] == pages  # every record seeded; "/" among them
        # The start URL was seeded with its record: it is not queued a second time without.
        assert api.queue.pending() == pages
        await run_worker(api, engines)

        done = (await api.client.get(f"/v1/executions/{body['id']}", headers=auth)).json()
        assert done["status"] == "completed"
        assert done["changes"] == {"changed": 0, "unchanged": pages}
        (row,) = done["funnel"]
        assert (row["fetched"], row["extracted"], row["unchanged"]) == (pages, 0, pages)
        assert sum(site.counts.not_modified.values()) == pages - 1  # /plain has no validators
        blobs = tmp_path / "blobs"
        records = exported_records(blobs / body["id"])
        assert {r["change"] for r in records} == {"unchanged"}
        assert len(records) == pages


async def test_what_cannot_be_recrawled_is_refused(
    recrawl_site: RecrawlSite, tmp_path: Path
) -> None:
    async with memory_api(tmp_path) as api:
        auth = await api.key("recrawl-one")
        other_tenant = await api.key("recrawl-two")
        for name, headers in (("shop-a", auth), ("shop-b", auth), ("shop-a", other_tenant)):
            content = workflow(recrawl_site, name)
            posted = await api.client.post("/v1/workflows", content=content, headers=headers | YAML)
            assert posted.status_code == 201, posted.text
        a = (await start(api, auth, "shop-a")).json()["id"]
        cancelled = await api.client.post(f"/v1/executions/{a}/cancel", headers=auth)
        assert cancelled.status_code == 202

        unknown = await start(api, auth, "shop-a", recrawl_of="nope")
        assert (unknown.status_code, unknown.json()["detail"]) == (
            422,
            "recrawl_of: no execution 'nope'",
        )
        theirs = await start(api, other_tenant, "shop-a", recrawl_of=a)
        assert (theirs.status_code, theirs.json()["detail"]) == (
            422,
            f"recrawl_of: no execution {a!r}",
        )
        other_workflow = await start(api, auth, "shop-b", recrawl_of=a)
        assert other_workflow.status_code == 422
        assert other_workflow.json()["detail"] == (
            f"recrawl_of: execution {a} ran workflow 'shop-a', not 'shop-b'; a recrawl goes "
            "over an execution of the same workflow"
        )
        # A cancelled execution has ended and has its export (of nothing): it may be recrawled.
        again = await start(api, auth, "shop-a", recrawl_of=a)
        assert again.status_code == 202, again.text
        assert again.json()["recrawl_of"] == a
