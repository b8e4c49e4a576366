"""Politeness as the crawled server sees it: request rate and concurrency per host.

The crawl runs against a server of its own, so its request log holds this crawl alone; the
log stamps each request's arrival and how many requests to its host were being handled at
that moment. The limits are chosen so that both bind: pages take 100 ms to answer, so 16
tasks in flight would ask for over 100 pages a second, three at a time for 30 a second;
the rate allows 20.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.crawling import crawl, make_workflow, pages, read_export
from tests.site import SiteServer

pytestmark = pytest.mark.integration

RATE = 20
BURST = 5
CONCURRENCY = 3
SIZE = 110


@pytest.fixture
def own_site() -> Iterator[SiteServer]:
    with SiteServer() as server:
        yield server


def busiest_second(arrivals: list[float]) -> int:
    """The most requests that arrived within any one-second window [t, t + 1)."""
    times = sorted(arrivals)
    return max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))


async def test_rate_and_concurrency_per_host_hold(own_site: SiteServer, tmp_path: Path) -> None:
    workflow = make_workflow(
        [own_site.url(f"/graph/polite/{SIZE}/0?delay_ms=100")],
        politeness={
            "requests_per_second": RATE,
            "burst": BURST,
            "max_concurrency_per_host": CONCURRENCY,
            # robots.txt is fetched outside the per-host permits (once per origin); this
            # test counts page fetches only.
            "respect_robots_txt": False,
        },
    )
    started = time.monotonic()
    result = await crawl(workflow, tmp_path, concurrency=16, deadline_s=60)
    elapsed = time.monotonic() - started

    assert result.execution.status == "completed"
    assert read_export(result).summary["pages"] == pages(SIZE, succeeded=SIZE)
    entries = own_site.log.entries()
    assert len(entries) == SIZE
    assert {e.host for e in entries} == {f"127.0.0.1:{own_site.port}"}

    # Rate: never more than rate + burst requests in a second...
    assert busiest_second([e.at for e in entries]) <= RATE + BURST
    # ...and the limit really held the crawl back: after the burst, one request per 1/rate.
    assert elapsed >= (SIZE - BURST) / RATE - 0.1

    # Concurrency: never more than the cap in flight at the server, and the cap was reached
    # (the first pages found are asked for at once, each taking 100 ms).
    assert max(e.in_flight for e in entries) == CONCURRENCY
