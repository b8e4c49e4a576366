"""What leaves a process about a crawled URL carries no credentials or tokens, and what a
CSV export holds cannot run in a spreadsheet."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from backends.errors import PermanentError
from backends.fetcher import Fetcher, FetchRequest
from backends.local import LocalBlobStore
from backends.task import Task
from nodes.page import Page
from tests.crawling import make_workflow
from tests.processing import one_processor
from trawl import logs
from worker.export_read import csv_chunks, lines
from workflows.redact import redact_text, redact_url, use_params

SECRET_URL = "https://bob:hunter2@shop.example/a?page=2&access_token=abc123&X-Amz-Signature=f00"


def test_credentials_and_token_values_are_masked() -> None:
    assert redact_url(SECRET_URL) == (
        "https://REDACTED@shop.example/a?page=2&access_token=REDACTED&X-Amz-Signature=REDACTED"
    )
    assert redact_url("http://shop.example/p?q=shoes#top") == "http://shop.example/p?q=shoes#top"
    assert redact_text(f"fetch of {SECRET_URL} failed: timeout").endswith("failed: timeout")
    assert "hunter2" not in redact_text(f"'{SECRET_URL}'")


def test_the_parameter_list_is_the_operators(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        logs.configure("json", redact_params="page, q*")
        logging.getLogger("trawl.test").warning(
            "robots.txt check failed for %s", SECRET_URL, extra={"url": SECRET_URL}
        )
    finally:
        use_params(None)
        logging.getLogger().handlers.clear()
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "hunter2" not in line["message"] and "hunter2" not in line["url"]
    assert "page=REDACTED" in line["message"]
    assert "access_token=abc123" in line["url"]  # not on this operator's list


async def test_csv_cells_that_would_be_formulas_are_text(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    # An export holds whole records (worker/records.py); only url and data matter here.
    rest = {"execution_id": "e1", "workflow": "w", "phase": "p", "marker": None, "depth": 0}
    rest |= {"status": 200, "fetched_at": "2026-11-23T09:10:27Z"}
    rows = [
        {
            **rest,
            "url": "http://shop.example/1",
            "data": {"title": '=HYPERLINK("http://evil","x")'},
        },
        {**rest, "url": "http://shop.example/2", "data": {"title": "+1 500", "price": -3}},
        {**rest, "url": "http://shop.example/3", "data": {"title": "@SUM(A1)", "price": 4}},
    ]
    await blobs.write("export.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    text = "".join([chunk async for chunk, _ in csv_chunks(lambda: lines(blobs, "export.jsonl"))])
    cells = list(csv.DictReader(io.StringIO(text)))
    assert [c["data.title"] for c in cells] == [
        '\'=HYPERLINK("http://evil","x")',
        "'+1 500",
        "'@SUM(A1)",
    ]
    assert [c["data.price"] for c in cells] == ["", "-3", "4"]  # numbers stay numbers


async def test_a_failed_pages_message_keeps_no_token() -> None:
    workflow = make_workflow(
        ["http://shop.test/"],
        politeness={"requests_per_second": 100, "burst": 10, "respect_robots_txt": False},
        retries={"max_attempts": 1, "backoff_s": 0.0},
    )
    one = one_processor(workflow, GoneFetcher())
    processor, queue = one.processor, one.queue
    url = "http://shop.test/p?session_id=s3cr3t&page=2"
    await queue.publish([Task(execution_id="e1", url=url, depth=0, phase="page")])
    outcome = await processor.process(await queue.receive())
    assert outcome is not None and outcome.result.outcome == "failed"
    assert outcome.result.url == url  # what a replay fetches
    assert outcome.result.error_message == (
        "HTTP 404 from http://shop.test/p?session_id=REDACTED&page=2"
    )


class GoneFetcher(Fetcher):
    @asynccontextmanager
    async def open(self, request: FetchRequest) -> AsyncIterator[Page]:
        raise PermanentError(f"HTTP 404 from {request.url}", error_class="http_404")
        yield Page(url=request.url, html="")
