"""A task handed back to wait for politeness has not been tried: it keeps all its retries.

The queue's ``delivery_attempt`` counts every delivery, and a slow host (a low rate, a long
Crawl-delay) hands tasks back several times before their first fetch. Those deliveries
must not count against ``retries.max_attempts``, or a page that fails once under slow
politeness would be given up without a single retry. Time is a FakeClock: no sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from backends.errors import RetryableError
from backends.fetcher import Fetcher, FetchRequest
from backends.memory import MemoryRateLimiter, MemorySeenSet
from backends.ratelimit import Grant, RatePolicy
from backends.task import Task
from nodes.page import Page
from tests.crawling import make_workflow
from tests.processing import one_processor


class FailsOnceFetcher(Fetcher):
    """Each URL answers 503 the first time, then a page."""

    def __init__(self) -> None:
        self.fetched: list[str] = []

    @asynccontextmanager
    async def open(self, request: FetchRequest) -> AsyncIterator[Page]:
        first = request.url not in self.fetched
        self.fetched.append(request.url)
        if first:
            raise RetryableError(f"HTTP 503 from {request.url}", error_class="http_5xx")
        yield Page(url=request.url, html="<html><body><h1>ok</h1></body></html>")


async def test_politeness_hand_backs_do_not_use_up_retries() -> None:
    workflow = make_workflow(
        ["http://shop.test/"],
        # One request every 10 s: a second task for the host waits longer than a worker
        # waits in place, so it is handed back to the queue.
        politeness={"requests_per_second": 0.1, "burst": 1, "respect_robots_txt": False},
        retries={"max_attempts": 2, "backoff_s": 1.0},
    )
    fetcher = FailsOnceFetcher()
    one = one_processor(workflow, fetcher)
    processor, queue, clock = one.processor, one.queue, one.clock
    await queue.publish(
        [
            Task(execution_id="e1", url=f"http://shop.test/{name}", depth=0, phase="page")
            for name in ("first", "second")
        ]
    )

    # "first" takes the host's permit (and fails once); "second" is handed back untried.
    assert await processor.process(await queue.receive()) is None
    second = await queue.receive()
    assert await processor.process(second) is None
    assert fetcher.fetched == ["http://shop.test/first"]

    clock.advance(10.0)
    # "first" is due again (after its 1 s backoff) and gets the permit; "second" waits.
    first = await queue.receive()
    assert first.task.url == "http://shop.test/first"
    outcome = await processor.process(first)
    assert outcome is not None
    assert outcome.result.outcome == "succeeded"

    clock.advance(10.0)
    # "second": its second delivery but its first fetch, which fails. A retry is left.
    second = await queue.receive()
    assert second.task.url == "http://shop.test/second"
    assert second.delivery_attempt == 2
    assert await processor.process(second) is None, "the retry was used up by hand-backs"

    clock.advance(10.0)
    second = await queue.receive()
    outcome = await processor.process(second)
    assert outcome is not None
    assert outcome.result.outcome == "succeeded"
    assert fetcher.fetched.count("http://shop.test/second") == 2


class RedisDownSeenSet(MemorySeenSet):
    """The seen-set of a Redis that is down for the first ``outage`` calls."""

    def __init__(self, outage: int) -> None:
        super().__init__()
        self.outage = outage

    async def add_new(
        self, execution_id: str, keys: Sequence[str], *, claimer: str = ""
    ) -> list[bool]:
        if self.outage > 0:
            self.outage -= 1
            raise RetryableError(
                "redis at 10.0.0.3 is unreachable", error_class="redis_unavailable"
            )
        return await super().add_new(execution_id, keys, claimer=claimer)


async def test_a_backend_outage_hands_the_task_back_without_using_its_retries() -> None:
    workflow = make_workflow(
        ["http://shop.test/"],
        politeness={"requests_per_second": 100, "burst": 10, "respect_robots_txt": False},
        retries={"max_attempts": 2, "backoff_s": 1.0},
    )
    one = one_processor(workflow, LinkingFetcher(), seen=RedisDownSeenSet(outage=4))
    processor, queue, clock = one.processor, one.queue, one.clock
    await queue.publish([Task(execution_id="e1", url="http://shop.test/", depth=0, phase="page")])
    # Four deliveries meet the outage (more than max_attempts): each goes back untried.
    for attempt in range(1, 5):
        delivery = await queue.receive()
        assert delivery.delivery_attempt == attempt
        assert await processor.process(delivery) is None
        clock.advance(60.0)
    outcome = await processor.process(await queue.receive())
    assert outcome is not None
    assert outcome.result.outcome == "succeeded"


class LinkingFetcher(Fetcher):
    """Every page links to one other page."""

    @asynccontextmanager
    async def open(self, request: FetchRequest) -> AsyncIterator[Page]:
        yield Page(url=request.url, html='<html><body><a href="/next">n</a></body></html>')


class RedisDownLimiter(MemoryRateLimiter):
    """The rate limiter of a Redis that is down for the first ``outage`` calls of each."""

    def __init__(self, outage: int) -> None:
        super().__init__()
        self.outage = {"acquire": outage, "release": outage}

    def _down(self, what: str) -> None:
        if self.outage[what] > 0:
            self.outage[what] -= 1
            raise RetryableError(f"Redis is unavailable ({what})", error_class="redis_unavailable")

    async def acquire(self, key: str, policy: RatePolicy) -> Grant:
        self._down("acquire")
        return await super().acquire(key, policy)

    async def release(self, key: str, lease_id: str | None) -> None:
        self._down("release")
        await super().release(key, lease_id)


async def _no_rules(url: str, user_agent: str) -> tuple[int, str]:
    return 404, ""


async def test_a_limiter_outage_before_robots_txt_hands_the_task_back() -> None:
    workflow = make_workflow(
        ["http://shop.test/"],
        politeness={"requests_per_second": 100, "burst": 10, "respect_robots_txt": True},
        retries={"max_attempts": 1, "backoff_s": 1.0},
    )
    one = one_processor(
        workflow, LinkingFetcher(), limiter=RedisDownLimiter(outage=2), robots=_no_rules
    )
    processor, queue, clock = one.processor, one.queue, one.clock
    await queue.publish([Task(execution_id="e1", url="http://shop.test/", depth=0, phase="page")])
    for _ in range(2):  # the robots.txt permit meets the outage: back to the queue, untried
        assert await processor.process(await queue.receive()) is None
        clock.advance(60.0)
    # A release that fails is not a reason to redo the page: the lease expires by itself.
    outcome = await processor.process(await queue.receive())
    assert outcome is not None
    assert outcome.result.outcome == "succeeded"
