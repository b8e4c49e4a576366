"""Pages that fail: retried when a retry may help, recorded as failed when not, never a hang.

Each crawl starts from a /hub page of the test site linking to the pages under test; the
site's request log shows how often, and when, each page was really asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.crawling import crawl, make_workflow, pages, read_export
from tests.site import LoggedRequest, SiteServer
from workflows import Workflow
from workflows.urls import canonicalize

pytestmark = pytest.mark.integration

# The hub's links go to "leaf" pages, which record their h1 and follow nothing.
PHASES: list[dict[str, Any]] = [
    {
        "name": "hub",
        "nodes": [{"type": "extract_links", "selector": "li a"}],
        "transitions": [{"when": {}, "to": "leaf"}],
    },
    {"name": "leaf", "nodes": [{"type": "extract", "fields": {"title": "h1"}}]},
]


def hub(site: SiteServer, targets: list[str]) -> str:
    """A hub page linking to ``targets`` (paths with their query keys in sorted order, as
    the crawler's canonical URLs have them)."""
    for target in targets:
        assert canonicalize(site.url(target)) == site.url(target), target
    return canonicalize(site.url("/hub?" + urlencode([("to", t) for t in targets])))


def hub_workflow(start: str, **fields: Any) -> Workflow:
    return make_workflow([start], phases=PHASES, **fields)


def requests_for(site: SiteServer, path: str) -> list[LoggedRequest]:
    return [e for e in site.log.entries() if e.path == path]


async def test_transient_failures_are_retried_and_permanent_ones_counted(
    site: SiteServer, tmp_path: Path
) -> None:
    flaky = [f"/flaky/retries-{i}?fails=2" for i in range(5)]
    missing = [f"/status/404?case=retries-{i}" for i in range(3)]
    result = await crawl(hub_workflow(hub(site, flaky + missing)), tmp_path)

    assert result.execution.status == "completed"
    export = read_export(result)
    # Each flaky page failed twice (503), then worked on the third attempt: one record each.
    assert export.titles() == {site.url(p): f"Flaky retries-{i}" for i, p in enumerate(flaky)}
    for path in flaky:
        assert len(requests_for(site, path)) == 3, path
    # A 404 is permanent: asked for once, counted as failed with its class.
    for path in missing:
        assert len(requests_for(site, path)) == 1, path
    summary = export.summary
    assert summary["pages"] == pages(9, succeeded=6, failed=3)
    assert summary["records"] == 5
    assert summary["duplicate_records_dropped"] == 0
    assert summary["failures_by_class"] == {"http_404": 3}
    assert summary["by_phase"] == {
        "hub": {"succeeded": 1},
        "leaf": {"succeeded": 5, "failed": 3},
    }


async def test_retries_give_up_after_max_attempts(site: SiteServer, tmp_path: Path) -> None:
    always = "/flaky/retries-always?fails=100"
    workflow = hub_workflow(hub(site, [always]), retries={"max_attempts": 2, "backoff_s": 0.05})
    result = await crawl(workflow, tmp_path)

    assert result.execution.status == "completed"
    export = read_export(result)
    assert export.records == []
    assert export.summary["pages"] == pages(2, succeeded=1, failed=1)
    assert export.summary["failures_by_class"] == {"http_5xx": 1}
    assert len(requests_for(site, always)) == 2


async def test_dropped_connections_fail_the_page_not_the_crawl(
    site: SiteServer, tmp_path: Path
) -> None:
    dropping = ["/drop?case=retries", "/drop-early?case=retries"]
    fine = "/product/3?case=retries-drop"
    result = await crawl(hub_workflow(hub(site, [*dropping, fine])), tmp_path, deadline_s=30)

    assert result.execution.status == "completed"
    export = read_export(result)
    assert export.titles() == {site.url(fine): "Aqua Filter 3"}
    assert export.summary["pages"] == pages(4, succeeded=2, failed=2)
    assert export.summary["failures_by_class"] == {"connection": 2}
    # Retryable: tried max_attempts times. aiohttp itself repeats a request once when a
    # reused keep-alive connection is closed before any byte of the answer (drop-early).
    assert len(requests_for(site, "/drop?case=retries")) == 3
    assert 3 <= len(requests_for(site, "/drop-early?case=retries")) <= 6


async def test_a_server_that_never_answers_times_out(site: SiteServer, tmp_path: Path) -> None:
    hanging = "/slow?case=retries&delay_s=60"
    workflow = hub_workflow(
        hub(site, [hanging]), fetch={"timeout_s": 0.5}, retries={"max_attempts": 2}
    )
    result = await crawl(workflow, tmp_path, deadline_s=20)

    assert result.execution.status == "completed"
    summary = read_export(result).summary
    assert summary["pages"] == pages(2, succeeded=1, failed=1)
    assert summary["failures_by_class"] == {"timeout": 1}
    assert len(requests_for(site, hanging)) == 2


async def test_retry_after_is_honoured(site: SiteServer, tmp_path: Path) -> None:
    limited = "/flaky/retries-429?fails=1&retry_after=2&status=429"
    unavailable = "/flaky/retries-503?fails=1&retry_after=1&status=503"
    # backoff_s alone would retry within 0.1 s: only the servers' Retry-After holds it back.
    workflow = hub_workflow(hub(site, [limited, unavailable]))
    result = await crawl(workflow, tmp_path, deadline_s=30)

    assert result.execution.status == "completed"
    export = read_export(result)
    assert export.summary["pages"] == pages(3, succeeded=3)
    assert set(export.titles()) == {site.url(limited), site.url(unavailable)}
    for path, wait_s in ((limited, 2.0), (unavailable, 1.0)):
        first, second = requests_for(site, path)
        assert second.at - first.at >= wait_s, (path, second.at - first.at)
