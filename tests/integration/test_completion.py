"""A crawl ends, completed, with the right counts, whatever its size, or promptly when stopped.

Completion is the runtime's own decision (every published task finished); these tests run
the embedded shape end to end against the local test site and read what a user reads: the
run's status, exported records and summary.json.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.crawling import crawl, make_workflow, pages, read_export
from tests.site import SiteServer
from trawl.local_outputs import exported_lines

pytestmark = pytest.mark.integration


def _tree_depth(n: int) -> int:
    """Depth of node ``n`` in /graph's fan-out-10 tree."""
    depth = 0
    while n > 0:
        n = (n - 1) // 10
        depth += 1
    return depth


async def test_one_page(site: SiteServer, tmp_path: Path) -> None:
    workflow = make_workflow(
        [site.url("/product/1?case=one-page")],
        phases=[{"name": "page", "nodes": [{"type": "extract", "fields": {"title": "h1"}}]}],
    )
    result = await crawl(workflow, tmp_path)
    assert result.execution.status == "completed"
    export = read_export(result)
    url = site.url("/product/1?case=one-page")
    assert export.records_without_run_fields() == [
        {
            "workflow": "test-crawl",
            "phase": "page",
            "url": url,
            "final_url": url,
            "marker": None,
            "depth": 0,
            "status": 200,
            "content_type": "text/html",
            "etag": None,
            "last_modified": None,
            "change": "new",
            "lastmod": None,
            "data": {"title": "Aqua Filter 1"},
        }
    ]
    assert export.summary["status"] == "completed"
    assert export.summary["pages"] == pages(1, succeeded=1)
    assert export.summary["records"] == 1
    assert export.summary["by_phase"] == {"page": {"succeeded": 1}}
    assert export.summary["by_marker"] == {"": {"succeeded": 1}}
    assert export.summary["failures_by_class"] == {}
    assert site.log.paths().count("/product/1?case=one-page") == 1


async def test_one_page_that_fails(site: SiteServer, tmp_path: Path) -> None:
    """A crawl whose only page fails for good is still completed: page failures are counted,
    they do not fail the execution."""
    result = await crawl(make_workflow([site.url("/status/404?case=lone")]), tmp_path)
    assert result.execution.status == "completed"
    export = read_export(result)
    assert export.records == []
    assert export.summary["pages"] == pages(1, failed=1)
    assert export.summary["failures_by_class"] == {"http_404": 1}


async def test_zero_pages_when_every_start_url_is_out_of_scope(
    site: SiteServer, tmp_path: Path
) -> None:
    workflow = make_workflow(
        [site.url("/product/1?case=zero"), site.url("/product/2?case=zero")],
        scope={"allowed_domains": ["example.com"]},
    )
    result = await crawl(workflow, tmp_path, deadline_s=20)
    assert result.execution.status == "completed"
    export = read_export(result)
    assert export.records == []
    assert exported_lines(result.out_dir / result.execution.id) == []
    assert export.summary["status"] == "completed"
    assert export.summary["pages"] == pages(0)
    assert export.summary["records"] == 0
    assert export.summary["by_phase"] == {}
    assert export.summary["by_marker"] == {}
    assert export.summary["failures_by_class"] == {}
    assert not [p for p in site.log.paths() if "case=zero" in p]


async def test_many_pages(site: SiteServer, tmp_path: Path) -> None:
    size = 600
    token = "many"
    workflow = make_workflow([site.url(f"/graph/{token}/{size}/0")], max_depth=5)
    result = await crawl(workflow, tmp_path, deadline_s=90)
    assert result.execution.status == "completed"
    export = read_export(result)
    assert export.summary["pages"] == pages(size, succeeded=size)
    assert export.summary["records"] == size
    assert export.summary["duplicate_records_dropped"] == 0
    expected = {site.url(f"/graph/{token}/{size}/{n}"): f"Node {n}" for n in range(size)}
    assert export.titles() == expected
    assert Counter(r["depth"] for r in export.records) == Counter(
        _tree_depth(n) for n in range(size)
    )
    # Links to parents and the root are deduplicated: every page was fetched exactly once.
    fetched = Counter(p for p in site.log.paths() if p.startswith(f"/graph/{token}/"))
    assert len(fetched) == size
    assert set(fetched.values()) == {1}


async def test_max_pages_caps_the_crawl_and_it_still_completes(
    site: SiteServer, tmp_path: Path
) -> None:
    token = "max-pages"
    workflow = make_workflow([site.url(f"/graph/{token}/300/0")], max_pages=25)
    result = await crawl(workflow, tmp_path)
    assert result.execution.status == "completed"
    export = read_export(result)
    assert export.summary["pages"] == pages(25, succeeded=25)
    assert len(export.records) == 25
    assert len([p for p in site.log.paths() if p.startswith(f"/graph/{token}/")]) == 25


async def test_stop_ends_the_run_cancelled_with_what_was_done_exported(
    site: SiteServer, tmp_path: Path
) -> None:
    token = "stop"
    # 2 pages a second over 300 pages: minutes, unless stopped.
    workflow = make_workflow(
        [site.url(f"/graph/{token}/300/0")],
        politeness={"requests_per_second": 4, "burst": 4, "respect_robots_txt": False},
    )
    stop = asyncio.Event()
    run = asyncio.create_task(crawl(workflow, tmp_path, stop=stop, deadline_s=60))
    await site.log.wait_for(
        lambda log: sum(e.path.startswith(f"/graph/{token}/") for e in log) >= 8, timeout_s=20
    )
    stop.set()
    stopped_at = time.monotonic()
    result = await asyncio.wait_for(run, 10)
    assert time.monotonic() - stopped_at < 5.0
    assert result.execution.status == "cancelled"
    export = read_export(result)
    summary = export.summary
    assert summary["status"] == "cancelled"
    done = summary["pages"]["succeeded"]
    assert done >= 8
    assert summary["pages"]["finished"] == done
    assert summary["pages"]["published"] > done
    # Every page done has its record in the export, and nothing else is there.
    assert summary["records"] == len(export.records) == done
    requested = {site.url(p) for p in site.log.paths() if p.startswith(f"/graph/{token}/")}
    assert set(export.titles()) <= requested
