"""A task's stages: the one table of how errors end a task, robots.txt asked once per task,
and the record a page of a record phase gets. Memory adapters and a FakeClock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import msgspec
import pytest

from backends.errors import PermanentError, RetryableError
from backends.fetcher import Fetcher, FetchRequest
from backends.task import Task
from nodes.page import Page
from nodes.script import ScriptEngineError, ScriptTimeout
from tests.crawling import make_workflow
from tests.processing import one_processor
from worker.endings import Ending, Filtered, HandBack, ending_of
from worker.records import Record


@pytest.mark.parametrize(
    ("exc", "ending"),
    [
        (HandBack(2.5), Ending("hand_back", delay_s=2.5)),
        (Filtered("robots_txt"), Ending("filtered", "robots_txt", "robots_txt")),
        (
            RetryableError("redis down", error_class="redis_unavailable"),
            Ending("hand_back"),
        ),
        (
            RetryableError("HTTP 429", error_class="http_429", delay_s=7.0),
            Ending("retry", "http_429", "HTTP 429", 7.0),
        ),
        (
            PermanentError("HTTP 404", error_class="http_404"),
            Ending("failed", "http_404", "HTTP 404"),
        ),
        (ScriptEngineError("no browser"), Ending("failed", "script_engine", "no browser")),
        (
            ScriptTimeout("http://h/", 1.0),
            Ending(
                "failed",
                "script_timeout",
                "http://h/: script did not finish within its timeout_s (1 s)",
            ),
        ),
        (ValueError("x" * 600), Ending("failed", "node_error", "x" * 500)),
        (KeyError("k"), Ending("failed", "internal_KeyError", "'k'", unexpected=True)),
    ],
)
def test_each_exception_ends_the_task_as_its_row_says(exc: Exception, ending: Ending) -> None:
    assert ending_of(exc) == ending


# sha256 of OnePage's HTML: a record's content_hash.
HELLO_SHA256 = "03652bd21da4bf063eecf9bc37bd653630dea9449fab786d5c51a47b6550dc6b"


class OnePage(Fetcher):
    """Every URL answers the same small page."""

    def __init__(self) -> None:
        self.fetched: list[str] = []

    @asynccontextmanager
    async def open(self, request: FetchRequest) -> AsyncIterator[Page]:
        self.fetched.append(request.url)
        yield Page(
            url=request.url,
            html="<html><body><h1>Hello</h1></body></html>",
            headers={"content-type": "text/html; charset=utf-8"},
        )


def task(path: str) -> Task:
    return Task(execution_id="e1", url=f"http://shop.test{path}", depth=1, phase="page", marker="m")


async def test_a_robots_txt_that_cannot_be_read_is_asked_once_and_blocks_nothing() -> None:
    asked: list[str] = []

    async def broken(url: str, user_agent: str) -> tuple[int, str]:
        asked.append(url)
        raise RuntimeError("the robots.txt fetch broke")

    workflow = make_workflow(
        ["http://shop.test/"],
        politeness={"requests_per_second": 100, "burst": 10, "respect_robots_txt": True},
    )
    fetcher = OnePage()
    one = one_processor(workflow, fetcher, robots=broken)
    await one.queue.publish([task("/a")])
    outcome = await one.processor.process(await one.queue.receive())
    assert outcome is not None
    assert outcome.result.outcome == "succeeded"
    assert asked == ["http://shop.test/robots.txt"]
    assert fetcher.fetched == ["http://shop.test/a"]


async def test_a_disallowed_page_is_filtered_without_being_fetched() -> None:
    async def rules(url: str, user_agent: str) -> tuple[int, str]:
        return 200, "User-agent: *\nDisallow: /private/\nCrawl-delay: 2\n"

    workflow = make_workflow(
        ["http://shop.test/"],
        politeness={"requests_per_second": 100, "burst": 10, "respect_robots_txt": True},
    )
    fetcher = OnePage()
    one = one_processor(workflow, fetcher, robots=rules)
    await one.queue.publish([task("/private/x")])
    outcome = await one.processor.process(await one.queue.receive())
    assert outcome is not None
    assert (outcome.result.outcome, outcome.result.error_class) == ("filtered", "robots_txt")
    assert fetcher.fetched == []


async def test_a_page_of_a_record_phase_gets_its_record() -> None:
    workflow = make_workflow(["http://shop.test/"])
    one = one_processor(workflow, OnePage())
    one.clock.advance(9 * 3600 + 10 * 60 + 27.5)  # the fake wall clock starts on 2026-01-01
    await one.queue.publish([task("/a")])
    outcome = await one.processor.process(await one.queue.receive())
    assert outcome is not None
    assert outcome.record == Record(
        execution_id="e1",
        workflow="test-crawl",
        phase="page",
        url="http://shop.test/a",
        final_url="http://shop.test/a",
        marker="m",
        depth=1,
        status=200,
        content_type="text/html",
        content_hash=HELLO_SHA256,
        fetched_at=datetime(2026, 1, 1, 9, 10, 27, tzinfo=UTC),
        data={"title": "Hello"},
    )
    assert msgspec.json.encode(outcome.record) == (
        b'{"execution_id":"e1","workflow":"test-crawl","phase":"page",'
        b'"url":"http://shop.test/a","final_url":"http://shop.test/a","marker":"m",'
        b'"parent_url":null,"depth":1,"status":200,"content_type":"text/html",'
        b'"etag":null,"last_modified":null,"content_hash":"' + HELLO_SHA256.encode() + b'",'
        b'"change":"new","lastmod":null,"fetched_at":"2026-01-01T09:10:27Z",'
        b'"data":{"title":"Hello"}}'
    )
    assert outcome.result.records == 1
    assert outcome.result.funnel == {"fetched|page|m": 1, "extracted|page|m": 1}
