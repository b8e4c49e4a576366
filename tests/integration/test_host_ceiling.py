"""The deployment's ceiling per host holds across executions: two crawls of one server, each
allowed 50 requests a second by its own workflow, get 5 a second together when the operator
says so (TRAWL_HOST_MAX_RPS=5), counted by the server. The permits live in Redis, as the
workers share them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.redis import RedisRateLimiter
from tests.crawling import make_workflow, pages, read_export
from tests.integration.test_politeness import busiest_second
from tests.services.redis import redis_client, redis_prefix, redis_url
from tests.site import SiteServer
from trawl.embedded import RunResult, open_fetchers, run_embedded
from trawl.settings import Settings, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
__all__ = ["redis_client", "redis_prefix", "redis_url"]  # fixtures used by name

SIZE = 20
HOST_RPS = 5


@pytest.fixture
def own_site() -> Iterator[SiteServer]:
    with SiteServer() as server:
        yield server


async def test_two_executions_share_the_host_ceiling(
    own_site: SiteServer, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    settings = load_settings({"TRAWL_HOST_MAX_RPS": str(HOST_RPS)})
    policy = settings.host_policy()
    assert policy is not None
    limiter = RedisRateLimiter.from_url(redis_url, prefix=redis_prefix)
    politeness = {
        "requests_per_second": 50,
        "burst": 10,
        "max_concurrency_per_host": 8,
        "respect_robots_txt": False,
    }
    workflows = [
        make_workflow([own_site.url(f"/graph/{name}/{SIZE}/0")], politeness=politeness)
        for name in ("first", "second")
    ]

    async def one(index: int) -> RunResult:
        workflow = workflows[index]
        async with open_fetchers(workflow, Settings()) as (fetchers, robots):
            return await run_embedded(
                workflow,
                out_dir=tmp_path / str(index),
                fetchers=fetchers,
                robots=robots,
                concurrency=8,
                limiter=limiter,
                host_policy=policy,
                persist=False,
            )

    started = time.monotonic()
    try:
        async with asyncio.timeout(60):
            results = await asyncio.gather(one(0), one(1))
    finally:
        await limiter.close()
    elapsed = time.monotonic() - started

    for result in results:
        assert read_export(result).summary["pages"] == pages(SIZE, succeeded=SIZE)
    arrivals = [e.at for e in own_site.log.entries()]
    assert len(arrivals) == 2 * SIZE
    # Together, never more than the ceiling plus its burst of one in any second...
    assert busiest_second(arrivals) <= HOST_RPS + 1
    # ...and the ceiling really held both back: 40 pages at 5 a second.
    assert elapsed >= (2 * SIZE - 1) / HOST_RPS - 0.2
