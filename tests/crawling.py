"""Helpers for the crawl tests: small workflows, an embedded run with a deadline, its export.

A crawl here is the real embedded run (``trawl.embedded.run_embedded``) over the real
fetchers and robots.txt cache that ``trawl run`` builds (``trawl.embedded.open_fetchers``);
only the workflow is made up for the test.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trawl.embedded import RunResult, open_fetchers, run_embedded
from trawl.local_outputs import exported_records
from trawl.settings import Settings
from workflows import Workflow, validate_data

# One phase that records each page's h1 and follows every link.
# What differs from one run of a crawl to the next: the execution, when each page was
# fetched, and which of the pages linking to a page was crawled first. (A record's
# content_hash does not, but no test spells one out: tests/unit/test_recrawl*.py check it.)
RUN_FIELDS = ("execution_id", "fetched_at", "parent_url")

PAGE_PHASE: dict[str, Any] = {
    "name": "page",
    "nodes": [
        {"type": "extract", "fields": {"title": "h1"}},
        {"type": "extract_links"},
    ],
}

# Fast enough for a local test site, still bounded.
FAST_POLITENESS: dict[str, Any] = {
    "requests_per_second": 500,
    "burst": 50,
    "max_concurrency_per_host": 16,
    "respect_robots_txt": False,
}


def make_workflow(start_urls: list[str], **fields: Any) -> Workflow:
    """A validated http-engine workflow; ``fields`` override the top-level keys."""
    data: dict[str, Any] = {
        "name": "test-crawl",
        "start_urls": start_urls,
        "engine": "http",
        "phases": [PAGE_PHASE],
        "politeness": FAST_POLITENESS,
        "fetch": {"timeout_s": 10},
        "retries": {"max_attempts": 3, "backoff_s": 0.05},
        **fields,
    }
    return validate_data(data)


async def crawl(
    workflow: Workflow,
    out_dir: Path,
    *,
    deadline_s: float = 60.0,
    stop: asyncio.Event | None = None,
    concurrency: int = 16,
    settings: Settings | None = None,
) -> RunResult:
    """Run ``workflow`` embedded to its end; fails the test if that takes over ``deadline_s``."""
    async with (
        asyncio.timeout(deadline_s),
        open_fetchers(workflow, settings or Settings()) as (fetchers, robots),
    ):
        return await run_embedded(
            workflow,
            out_dir=out_dir,
            fetchers=fetchers,
            robots=robots,
            concurrency=concurrency,
            stop=stop,
            progress_interval_s=0.1,
        )


@dataclass(frozen=True, slots=True)
class Export:
    records: list[dict[str, Any]]
    summary: dict[str, Any]

    def records_without_run_fields(self) -> list[dict[str, Any]]:
        """The records minus what differs per run (execution_id, fetched_at) and their
        content_hash."""
        dropped = (*RUN_FIELDS, "content_hash")
        return [{k: v for k, v in r.items() if k not in dropped} for r in self.records]

    def titles(self) -> dict[str, Any]:
        """url -> data.title of each record."""
        return {r["url"]: r["data"].get("title") for r in self.records}


def read_export(result: RunResult) -> Export:
    """The export files of a finished run, as a user would read them."""
    assert result.export is not None, f"no export written (status {result.execution.status})"
    summary_file = result.out_dir / result.export.summary_path
    records = exported_records(result.out_dir / result.execution.id)
    return Export(records, json.loads(summary_file.read_text(encoding="utf-8")))


def pages(published: int, succeeded: int = 0, failed: int = 0, filtered: int = 0) -> dict[str, int]:
    """summary.json's ``pages`` block, for a crawl that ran to completion."""
    assert published == succeeded + failed + filtered
    return {
        "published": published,
        "finished": published,
        "succeeded": succeeded,
        "failed": failed,
        "filtered": filtered,
    }
