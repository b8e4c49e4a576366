"""The HTTP cache over the browser engine: it keeps the rendered page (what JavaScript
made of it), serves it without a tab, and never stands in for a page whose phase runs
script nodes (``FetchRequest.live``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from backends.fetcher import FetchRequest
from tests.claims_site import PagesSite
from worker.fetchers.browser import BrowserFetcher
from worker.fetchers.cache import HttpCache

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
]

RENDERED = (
    "<!doctype html><html><body><h1 id='t'>static</h1>"
    "<script>document.getElementById('t').textContent = 'rendered';</script></body></html>"
)


async def test_the_rendered_page_is_kept_and_script_phases_fetch_live(
    browser_fetcher: BrowserFetcher, tmp_path: Path
) -> None:
    cache = HttpCache(tmp_path)
    cached = cache.fetcher(browser_fetcher, "browser")
    with PagesSite({"/js": RENDERED}) as site:
        request = FetchRequest(url=site.url("/js"), session="cache-test")

        async with cached.open(request) as first:
            assert "rendered" in first.html and first.evaluate is not None
        async with cached.open(request) as second:
            # From the cache: the rendered DOM, no tab behind it, no request to the site.
            assert "rendered" in second.html and second.evaluate is None
            assert second.url == site.url("/js")
        assert site.count("/js") == 1

        async with cached.open(dataclasses.replace(request, live=True)) as live:
            assert live.evaluate is not None
            assert await live.evaluate("() => document.title.length + 1", 5) == 1
        assert site.count("/js") == 2

    assert (cache.stats.hits, cache.stats.misses, cache.stats.bypassed) == (1, 1, 1)
