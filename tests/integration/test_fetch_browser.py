"""The browser engine against the local test site, in real headless Chromium: JavaScript
content, script evaluation, error classes shared with the http engine, resource blocking
seen from the server's side, and browser restarts while pages are in flight."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backends.errors import PermanentError, RetryableError, TrawlError
from backends.fetcher import FetchRequest
from nodes.page import Page
from tests.site import LoggedRequest, SiteServer
from worker.fetchers.browser import BrowserFetcher

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
]


async def fetch(fetcher: BrowserFetcher, url: str, **kw: Any) -> Page:
    """Fetch and return the Page, reading what the tests need while the tab is open."""
    async with fetcher.open(FetchRequest(url, **kw)) as page:
        return page


async def failure(fetcher: BrowserFetcher, url: str, **kw: Any) -> TrawlError:
    with pytest.raises(TrawlError) as info:
        await fetch(fetcher, url, **kw)
    return info.value


async def test_javascript_content_is_rendered(
    browser_fetcher: BrowserFetcher, site: SiteServer
) -> None:
    page = await fetch(browser_fetcher, site.url("/js/product/1"))
    assert page.status == 200
    assert page.url == site.url("/js/product/1")
    assert page.css("h1")[0].text() == "Script Pump 1"
    assert page.css(".price")[0].text() == "€21.25"
    assert [a.attr("href") for a in page.css("ul.js-links a[href]")] == [
        "/product/2",
        "/product/3",
    ]
    assert page.css("title")[0].text() == "Script Pump 1"
    assert page.css(".loading") == []


async def test_a_page_that_breaks_serialization_is_still_read(
    browser_fetcher: BrowserFetcher, site: SiteServer
) -> None:
    # The page's own world throws on outerHTML: the DOM is read from Playwright's
    # isolated world instead, out of the page's reach.
    page = await fetch(browser_fetcher, site.url("/js/tampered"))
    assert page.css("h1")[0].text() == "Real heading"
    assert page.css("title")[0].text() == "Tampered"
    assert page.html.startswith("<!DOCTYPE html>")


async def test_evaluate_reads_the_live_page(
    browser_fetcher: BrowserFetcher, site: SiteServer
) -> None:
    async with browser_fetcher.open(FetchRequest(site.url("/js/product/2"))) as page:
        assert page.evaluate is not None
        product = await page.evaluate("() => window.__PRODUCT__", 5)
        assert product == {
            "name": "Script Pump 2",
            "price": 22.25,
            "reviews": [{"stars": 5, "text": "Quiet"}, {"stars": 3, "text": "Ok"}],
        }
        assert await page.evaluate("() => document.querySelectorAll('a').length", 5) == 2
        with pytest.raises(TimeoutError):
            await page.evaluate("() => new Promise(() => {})", 0.3)
        with pytest.raises(RuntimeError, match="boom"):
            await page.evaluate("() => { throw new Error('boom') }", 5)


async def test_static_page_and_user_agent(
    browser_fetcher: BrowserFetcher, site: SiteServer
) -> None:
    page = await fetch(browser_fetcher, site.url("/product/5?t=ua"), user_agent="trawl-ua/9")
    assert page.css("h1")[0].text() == "Aqua Filter 5"
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    [entry] = [e for e in site.log.entries() if e.path == "/product/5?t=ua"]
    assert entry.user_agent == "trawl-ua/9"
    assert entry.host == f"127.0.0.1:{site.port}"


async def test_redirects(browser_fetcher: BrowserFetcher, site: SiteServer) -> None:
    page = await fetch(browser_fetcher, site.url("/redirect/chain"))
    assert page.url == site.url("/product/1")
    assert page.requested_url == site.url("/redirect/chain")
    error = await failure(browser_fetcher, site.url("/redirect/loop/a"))
    assert isinstance(error, PermanentError)
    assert error.error_class == "redirect_loop"


async def test_status_classes_match_the_http_engine(
    browser_fetcher: BrowserFetcher, site: SiteServer
) -> None:
    not_found = await failure(browser_fetcher, site.url("/status/404"))
    assert isinstance(not_found, PermanentError)
    assert not_found.error_class == "http_404"
    server_error = await failure(browser_fetcher, site.url("/status/500"))
    assert isinstance(server_error, RetryableError)
    assert server_error.error_class == "http_5xx"
    limited = await failure(browser_fetcher, site.url("/status/429?retry_after=7"))
    assert isinstance(limited, RetryableError)
    assert (limited.error_class, limited.delay_s) == ("http_429", 7.0)


@pytest.mark.parametrize("path", ["/binary/image.png", "/binary/doc.pdf", "/binary/untyped.png"])
async def test_non_html_is_permanent(
    browser_fetcher: BrowserFetcher, site: SiteServer, path: str
) -> None:
    error = await failure(browser_fetcher, site.url(path))
    assert isinstance(error, PermanentError)
    assert error.error_class == "not_html"


async def test_timeout_is_retryable(browser_fetcher: BrowserFetcher, site: SiteServer) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    error = await failure(browser_fetcher, site.url("/slow?delay_s=20"), timeout_s=1.0)
    assert isinstance(error, RetryableError)
    assert error.error_class == "timeout"
    assert loop.time() - started < 5
    # The fetcher is still fine afterwards.
    assert (await fetch(browser_fetcher, site.url("/product/8"))).css("h1")[0].text()


async def test_dropped_connection_is_retryable(
    browser_fetcher: BrowserFetcher, site: SiteServer
) -> None:
    error = await failure(browser_fetcher, site.url("/drop-early"))
    assert isinstance(error, RetryableError)
    assert error.error_class == "connection"


async def test_block_resources_blocks_images(
    browser_fetcher: BrowserFetcher, site: SiteServer
) -> None:
    def images_of(n: int, entries: list[LoggedRequest]) -> list[str]:
        return [e.path for e in entries if f"/p{n}-" in e.path]

    # wait_until=load: the page is done only when every subresource has loaded or failed,
    # so a blocked image that was going to be requested would have been by then.
    await fetch(
        browser_fetcher, site.url("/product/41"), block_resources=("image",), wait_until="load"
    )
    await fetch(browser_fetcher, site.url("/product/42"), block_resources=(), wait_until="load")
    entries = await site.log.wait_for(lambda log: len(images_of(42, log)) == 2, timeout_s=5)
    assert sorted(images_of(42, entries)) == ["/img/p42-1.png", "/product/img/p42-2.png"]
    assert images_of(41, entries) == []
    # Stylesheets were not in the blocked types: both pages fetched theirs.
    referers = {e.referer for e in entries if e.path == "/static/site.css"}
    assert {site.url("/product/41"), site.url("/product/42")} <= referers


async def test_body_cap(browser_fetcher: BrowserFetcher, site: SiteServer) -> None:
    error = await failure(browser_fetcher, site.url("/huge?bytes=2000000"), max_body_bytes=500_000)
    assert isinstance(error, PermanentError)
    assert error.error_class == "too_large"


async def test_page_crash_is_retryable_and_recovered(
    browser_fetcher: BrowserFetcher, site: SiteServer
) -> None:
    error = await failure(browser_fetcher, "chrome://crash")
    assert isinstance(error, RetryableError)
    assert error.error_class == "browser_crash"
    page = await fetch(browser_fetcher, site.url("/product/9"))
    assert page.css("h1")[0].text() == "Aqua Filter 9"


async def test_disconnected_browser_is_relaunched(chromium_path: str, site: SiteServer) -> None:
    fetcher = BrowserFetcher(executable_path=chromium_path)
    await fetcher.start()
    try:
        await fetcher._live[True].browser.close()  # as if Chromium had died
        page = await fetch(fetcher, site.url("/product/10"))
        assert page.css("h1")[0].text() == "Aqua Filter 10"
        assert fetcher.launches == 2
    finally:
        await fetcher.close()


@pytest.mark.parametrize(("lean_first", "launches"), [(False, 1), (True, 2)])
async def test_start_launches_the_kind_the_pages_need(
    chromium_path: str, site: SiteServer, lean_first: bool, launches: int
) -> None:
    # Pages that block nothing need the full browser: started first, it is the only one.
    fetcher = BrowserFetcher(executable_path=chromium_path, lean_first=lean_first)
    await fetcher.start()
    try:
        page = await fetch(fetcher, site.url("/product/11"), block_resources=())
        assert page.css("h1")[0].text() == "Aqua Filter 11"
        assert fetcher.launches == launches
    finally:
        await fetcher.close()


async def test_restart_after_n_pages(chromium_path: str, site: SiteServer) -> None:
    fetcher = BrowserFetcher(executable_path=chromium_path, restart_after_pages=3)
    await fetcher.start()
    try:
        for n in range(7):
            page = await fetch(fetcher, site.url(f"/product/{n}"))
            assert page.css("h1")[0].text() == f"Aqua Filter {n}"
        assert fetcher.launches == 3  # pages 1-3, 4-6, 7
    finally:
        await fetcher.close()


async def test_a_context_serves_a_small_batch_then_is_replaced(
    chromium_path: str, site: SiteServer
) -> None:
    fetcher = BrowserFetcher(executable_path=chromium_path, pages_per_context=3)
    await fetcher.start()
    try:
        for n in range(7):
            page = await fetch(fetcher, site.url(f"/product/{n}"))
            assert page.css("h1")[0].text() == f"Aqua Filter {n}"
        assert fetcher.contexts_opened == 3  # pages 1-3, 4-6, 7
        # A request that needs other settings never reuses a tab made for different ones.
        page = await fetch(fetcher, site.url("/product/8"), user_agent="other-agent")
        assert page.css("h1")[0].text() == "Aqua Filter 8"
        assert fetcher.contexts_opened == 4
        # A failed page's tab is not handed to the next task when the failure may be stuck.
        await failure(fetcher, site.url("/slow?delay_s=5"), timeout_s=0.5)
        opened = fetcher.contexts_opened
        await fetch(fetcher, site.url("/product/9"))
        assert fetcher.contexts_opened == opened + 1
    finally:
        await fetcher.close()


async def test_restart_drains_pages_in_flight(chromium_path: str, site: SiteServer) -> None:
    """Pages still open on the old browser keep working while new pages use the new one."""
    fetcher = BrowserFetcher(executable_path=chromium_path, restart_after_pages=2)
    await fetcher.start()
    try:
        async with (
            fetcher.open(FetchRequest(site.url("/js/product/1"))) as first,
            fetcher.open(FetchRequest(site.url("/js/product/2"))) as second,
        ):
            assert fetcher.launches == 1
            third = await fetch(fetcher, site.url("/js/product/3"))  # quota hit: new browser
            assert fetcher.launches == 2
            assert third.css("h1")[0].text() == "Script Pump 3"
            # The old browser was not closed under the open pages.
            assert first.evaluate is not None and second.evaluate is not None
            assert await first.evaluate("() => window.__PRODUCT__.name", 5) == "Script Pump 1"
            assert await second.evaluate("() => window.__PRODUCT__.name", 5) == "Script Pump 2"
        assert len(fetcher._browsers) == 1  # the old one closed once its pages finished
        fourth = await fetch(fetcher, site.url("/product/4"))
        assert fourth.css("h1")[0].text() == "Aqua Filter 4"
    finally:
        await fetcher.close()


async def test_concurrent_pages(browser_fetcher: BrowserFetcher, site: SiteServer) -> None:
    pages = await asyncio.gather(
        *(fetch(browser_fetcher, site.url(f"/product/{n}")) for n in range(12))
    )
    assert [p.css("h1")[0].text() for p in pages] == [f"Aqua Filter {n}" for n in range(12)]


async def test_workflow_headers_go_to_the_pages_own_site_only(
    browser_fetcher: BrowserFetcher,
) -> None:
    """A workflow header may be a credential: the page's own site gets it, a stylesheet on
    another site (another port of the same host) does not."""
    from aiohttp import web

    seen: dict[str, str | None] = {}

    async def style(request: web.Request) -> web.Response:
        seen["other"] = request.headers.get("X-Token")
        return web.Response(text="h1 {color: red}", content_type="text/css")

    other = web.Application()
    other.router.add_get("/style.css", style)
    other_runner = web.AppRunner(other)
    await other_runner.setup()
    other_site = web.TCPSite(other_runner, "127.0.0.1", 0)
    await other_site.start()
    other_port = other_runner.addresses[0][1]

    async def page(request: web.Request) -> web.Response:
        seen["page"] = request.headers.get("X-Token")
        body = (
            f'<link rel="stylesheet" href="http://127.0.0.1:{other_port}/style.css"><h1>hello</h1>'
        )
        return web.Response(text=body, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        request = FetchRequest(
            f"http://127.0.0.1:{port}/",
            headers={"X-Token": "t0ken"},
            wait_until="load",
            session="headers-test",
        )
        async with browser_fetcher.open(request) as fetched:
            assert fetched.css_first("h1") is not None
        assert seen == {"page": "t0ken", "other": None}
    finally:
        await runner.cleanup()
        await other_runner.cleanup()
