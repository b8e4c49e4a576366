"""``trawl.client`` against the real API app over the memory adapters, served by uvicorn on a
free port in this process: workflows, executions, waiting, following records as they are
written, the export and its download. The errors are in test_client_errors.py."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from backends.state import OutputObject
from orchestrator.auth import create_key
from orchestrator.quotas import Quotas
from orchestrator.services import Limits, Services
from tests.api.memory_app import memory_services, served
from tests.crawling import FAST_POLITENESS, make_workflow
from tests.site import SiteServer
from trawl.client import Client, Conflict, ExecutionOut, NotFound
from worker.engines import Engines, open_engines
from worker.netguard import NetGuard
from worker.runtime import WorkerOptions, run_until_idle

DEADLINE_S = 30.0
# Progress events every 20 ms instead of every second.
FAST = Limits(events_interval_s=0.02)
# And no request rate to speak of, for clients that poll every 20 ms.
UNLIMITED = Limits(events_interval_s=0.02, quotas=Quotas(api_requests_per_s=1e4, api_burst=10_000))

WORKFLOW = """
name: shop
start_urls: ["http://shop.test/"]
phases:
  - name: page
    nodes:
      - {type: extract, fields: {title: h1}}
      - {type: extract_links}
"""


@dataclass
class Served:
    client: Client
    services: Services


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, limits: Limits = FAST) -> AsyncIterator[Served]:
    """A client of tenant ``acme`` of the memory-backed API, served on a free port."""
    services = memory_services(tmp_path, limits=limits)
    async with served(services) as base:
        key = await create_key(services.ports.state, "acme")
        async with Client(base, key, timeout=10) as client:
            yield Served(client, services)


def record(url: str, depth: int = 1, title: str = "") -> dict[str, Any]:
    return {
        "execution_id": "e",
        "workflow": "shop",
        "phase": "page",
        "url": url,
        "marker": None,
        "depth": depth,
        "status": 200,
        "fetched_at": "2026-01-01T00:00:00Z",
        "data": {"title": title or url},
    }


async def write_part(services: Services, execution_id: str, n: int, *records: Any) -> None:
    """What the sink does: a part file, written whole, then registered as an output."""
    path = f"{execution_id}/parts/page/part-w1-{n:06d}.jsonl"
    body = b"".join(msgspec.json.encode(r) + b"\n" for r in records)
    await services.ports.blobs.write(path, body)
    output = OutputObject(path=path, size_bytes=len(body), records=len(records), kind="part")
    await services.ports.state.add_output(execution_id, output)


async def test_workflows_put_get_list_delete(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        client = api.client
        first = await client.put_workflow(WORKFLOW)
        assert (first.name, first.version) == ("shop", 1)
        assert first.source == WORKFLOW
        assert first.spec["phases"][0]["name"] == "page"
        # The same name again is a new version, from a mapping or JSON text alike.
        spec = dict(first.spec)
        assert (await client.put_workflow(spec)).version == 2
        assert (await client.put_workflow(json.dumps(spec))).version == 3

        assert (await client.get_workflow("shop")).version == 3
        assert (await client.get_workflow("shop", version=1)).source == WORKFLOW
        listed = await client.list_workflows()
        assert [(w.name, w.version) for w in listed] == [("shop", 3)]

        await client.delete_workflow("shop")
        assert await client.list_workflows() == []
        with pytest.raises(NotFound) as missing:
            await client.get_workflow("shop")
        assert missing.value.status == 404
        assert "shop" in missing.value.detail


async def test_start_get_list_and_page_through_executions(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        client = api.client
        await client.put_workflow(WORKFLOW)
        started = await client.start("shop", set=["max_pages=5"])
        assert isinstance(started, ExecutionOut)
        assert started.status == "running"
        assert started.overrides == ["max_pages=5"]
        assert started.pages.published == 1
        got = await client.get(started.id)
        assert (got.id, got.workflow, got.workflow_version) == (started.id, "shop", 1)
        assert got.health.state == "ok"

        ids = [started.id] + [(await client.start("shop")).id for _ in range(2)]
        newest_first = list(reversed(ids))
        page = await client.list_executions("shop", limit=2)
        assert [e.id for e in page] == newest_first[:2]
        rest = await client.list_executions("shop", limit=2, offset=2)
        assert [e.id for e in rest] == newest_first[2:]
        every = [e.id async for e in client.iter_executions(page_size=2)]
        assert every == newest_first
        assert [e.id for e in await client.list_executions()] == newest_first


async def test_cancel_and_wait_on_the_event_stream(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        client = api.client
        await client.put_workflow(WORKFLOW)
        started = await client.start("shop")
        waiting = asyncio.create_task(client.wait(started.id, timeout_s=DEADLINE_S))
        cancelled = await client.cancel(started.id)
        assert cancelled.status == "cancelled"
        final = await waiting
        assert final.status == "cancelled"
        assert final.finished_at is not None
        with pytest.raises(Conflict, match="already cancelled"):
            await client.cancel(started.id)


async def test_wait_polls_when_the_stream_quota_is_used_up(tmp_path: Path) -> None:
    limits = Limits(events_interval_s=0.02, quotas=Quotas(streams_at_once=0))
    async with serving(tmp_path, limits) as api:
        client = api.client
        await client.put_workflow(WORKFLOW)
        started = await client.start("shop")
        waiting = asyncio.create_task(client.wait(started.id, timeout_s=DEADLINE_S, poll_s=0.02))
        await client.cancel(started.id)
        assert (await waiting).status == "cancelled"


async def test_wait_gives_up_after_its_timeout(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        await api.client.put_workflow(WORKFLOW)
        started = await api.client.start("shop")
        with pytest.raises(TimeoutError):
            await api.client.wait(started.id, timeout_s=0.2)
        assert (await api.client.get(started.id)).status == "running"


async def test_following_yields_part_records_as_written_then_the_export(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        client, services = api.client, api.services
        await client.put_workflow(WORKFLOW)
        eid = (await client.start("shop")).id
        with pytest.raises(Conflict, match="running"):
            [r async for r in client.records(eid)]  # the export: not before the end

        following = client.records(eid, follow=True, poll_s=0.01)
        async with asyncio.timeout(DEADLINE_S):
            await write_part(services, eid, 1, record("http://shop.test/a"))
            first = await anext(following)
            assert first["url"] == "http://shop.test/a"
            # A task run twice writes its record again: yielded once.
            await write_part(
                services,
                eid,
                2,
                record("http://shop.test/a", depth=3),
                record("http://shop.test/b"),
            )
            second = await anext(following)
            assert second["url"] == "http://shop.test/b"
            assert (await client.get(eid)).status == "running"

            # A last part, then the end (a cancel, whose export is written at once when no
            # worker holds a task), before the follower looks again: what it has not
            # yielded yet comes from the export.
            await write_part(services, eid, 3, record("http://shop.test/c"))
            assert (await client.cancel(eid)).status == "cancelled"
            rest = [r async for r in following]
        assert [r["url"] for r in rest] == ["http://shop.test/c"]

        exported = [r async for r in client.records(eid)]
        assert [r["url"] for r in exported] == [f"http://shop.test/{x}" for x in "abc"]
        assert [r["url"] async for r in client.records(eid, phase="other")] == []


async def test_following_waits_out_the_keys_request_rate(tmp_path: Path) -> None:
    """A follower polls; past the key's rate it waits as Retry-After says and goes on."""
    limits = Limits(quotas=Quotas(api_requests_per_s=2, api_burst=3))
    async with serving(tmp_path, limits) as api:
        await api.client.put_workflow(WORKFLOW)
        eid = (await api.client.start("shop")).id
        await write_part(api.services, eid, 1, record("http://shop.test/a"))
        await write_part(api.services, eid, 2, record("http://shop.test/b"))
        # Two requests of the burst of three are spent: the follower meets a 429 within
        # its first round.
        async with (
            asyncio.timeout(DEADLINE_S),
            contextlib.aclosing(api.client.records(eid, follow=True, poll_s=0.01)) as following,
        ):
            urls = [(await anext(following))["url"] for _ in range(2)]
        assert urls == ["http://shop.test/a", "http://shop.test/b"]


@pytest.fixture
async def engines() -> AsyncIterator[Engines]:
    async with open_engines(NetGuard.allow_all()) as opened:
        yield opened


async def test_a_crawl_followed_waited_for_and_downloaded(
    site: SiteServer, engines: Engines, tmp_path: Path
) -> None:
    size = 25
    workflow = make_workflow(
        [site.url(f"/graph/{uuid.uuid4().hex[:8]}/{size}/0")],
        max_depth=5,
        politeness=FAST_POLITENESS | {"requests_per_second": 100},  # the API's ceiling
    )
    async with serving(tmp_path / "api", UNLIMITED) as api:
        client, services = api.client, api.services
        stored = await client.put_workflow(msgspec.to_builtins(workflow))
        execution = await client.start(stored.name)

        async def follow() -> list[dict[str, Any]]:
            return [r async for r in client.records(execution.id, follow=True, poll_s=0.02)]

        async with asyncio.timeout(DEADLINE_S):
            followed, final, _ = await asyncio.gather(
                follow(),
                client.wait(execution.id, poll_s=0.02),
                run_until_idle(
                    services.ports,
                    fetchers=engines.fetchers,
                    robots=engines.robots,
                    options=WorkerOptions(worker_id="w1", concurrency=4),
                ),
            )

        assert final.status == "completed"
        assert final.pages.succeeded == final.records == size
        exported = [r async for r in client.records(execution.id)]
        assert len(exported) == size
        key = lambda r: (r["phase"], r["url"])  # noqa: E731
        assert sorted(map(key, followed)) == sorted(map(key, exported))
        titles = {r["url"].rsplit("/", 1)[1]: r["data"]["title"] for r in followed}
        assert titles == {str(n): f"Node {n}" for n in range(size)}

        written = await client.download_export(execution.id, tmp_path / "download")
        outputs = [o for o in await client.outputs(execution.id) if o.kind != "part"]
        assert {o.kind for o in outputs} >= {"export", "summary"}
        assert sorted(written) == sorted(tmp_path / "download" / o.path for o in outputs)
        for output in outputs:
            blob = await services.ports.blobs.read(output.path)
            assert (tmp_path / "download" / output.path).read_bytes() == blob
        assert not list((tmp_path / "download").rglob("*.partial"))


async def test_download_export_before_the_export_is_a_conflict(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        await api.client.put_workflow(WORKFLOW)
        eid = (await api.client.start("shop")).id
        await write_part(api.services, eid, 1, record("http://shop.test/a"))
        with pytest.raises(Conflict, match="no export yet"):
            await api.client.download_export(eid, tmp_path / "out")
        assert not (tmp_path / "out").exists()
        part = f"{eid}/parts/page/part-w1-000001.jsonl"
        body = b"".join([chunk async for chunk in api.client.iter_object(eid, part)])
        assert json.loads(body)["url"] == "http://shop.test/a"
        with pytest.raises(NotFound):
            [chunk async for chunk in api.client.iter_object(eid, f"{eid}/state.db")]


# What importing the client must not pull in: the worker, its engines and the backends' SDKs.
HEAVY = (
    "playwright",
    "asyncpg",
    "redis",
    "google.cloud",
    "pyarrow",
    "aiohttp",
    "selectolax",
    "lxml",
    "worker",
    "litestar",
)


@pytest.mark.integration  # runs python -c as a child process
def test_importing_the_client_pulls_in_no_worker_dependency() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import trawl.client, sys; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules = ast.literal_eval(done.stdout.strip())
    assert "trawl.client" in modules and "httpx" in modules
    heavy = sorted(m for m in modules if any(m == h or m.startswith(f"{h}.") for h in HEAVY))
    assert heavy == []
