"""What the browser engine asks a site for, seen from the site: with the default blocked
types no image, font or favicon request reaches it (nodes never see them), with nothing
blocked they all do; and the pages of one execution share one browser context (a cookie
the site set on one page goes with the next page, in another tab)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from aiohttp import web

from backends.fetcher import FetchRequest
from worker.fetchers.browser import BrowserFetcher

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
]

PAGE = """<!doctype html><html><head><title>{n}</title>
<link rel="stylesheet" href="/style.css"></head>
<body><h1>Page {n}</h1><img src="/photo.png" alt="photo"><p>text in the web font</p></body>
</html>"""
STYLE = '@font-face{font-family:"F";src:url(/font.woff2) format("woff2")}body{font-family:"F"}'
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8ffff3f0005fe02fea7d6a4bc0000000049454e44ae426082"
)


@dataclass
class Site:
    base: str
    paths: list[str] = field(default_factory=list)
    cookies: dict[str, str | None] = field(default_factory=dict)  # path -> Cookie header


async def _serve() -> tuple[Site, web.AppRunner]:
    site = Site("")

    async def handle(request: web.Request) -> web.StreamResponse:
        site.paths.append(request.path)
        site.cookies[request.path] = request.headers.get("Cookie")
        name = request.match_info["name"]
        if name.startswith("page"):
            response = web.Response(text=PAGE.format(n=name), content_type="text/html")
            response.set_cookie(f"seen_{name}", "1")
            return response
        if name == "style.css":
            return web.Response(text=STYLE, content_type="text/css")
        if name == "photo.png":
            return web.Response(body=PNG, content_type="image/png")
        if name == "font.woff2":
            return web.Response(body=b"\0" * 64, content_type="font/woff2")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{name}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = runner.addresses[0][1]
    site.base = f"http://127.0.0.1:{port}"
    return site, runner


@pytest_asyncio.fixture(loop_scope="module")
async def two_sites() -> AsyncIterator[tuple[Site, Site]]:
    first, first_runner = await _serve()
    second, second_runner = await _serve()
    try:
        yield first, second
    finally:
        await first_runner.cleanup()
        await second_runner.cleanup()


async def wait_for(condition: object, timeout_s: float = 10.0) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the server records requests, no event
            await asyncio.sleep(0.02)


async def test_blocked_types_never_reach_the_site(
    browser_fetcher: BrowserFetcher, two_sites: tuple[Site, Site]
) -> None:
    blocked, open_site = two_sites
    # The defaults (image, font, media blocked), then nothing blocked on another site;
    # wait_until=load: every subresource has been asked for or refused by then.
    async with browser_fetcher.open(
        FetchRequest(f"{blocked.base}/page1", wait_until="load", session="s1")
    ) as page:
        assert page.css("h1")[0].text() == "Page page1"
    async with browser_fetcher.open(
        FetchRequest(f"{open_site.base}/page1", wait_until="load", block_resources=())
    ) as page:
        assert page.css("h1")[0].text() == "Page page1"
    wanted = {"/page1", "/style.css", "/photo.png", "/font.woff2", "/favicon.ico"}
    await wait_for(lambda: wanted <= set(open_site.paths))
    assert sorted(set(blocked.paths)) == ["/page1", "/style.css"]


async def test_the_pages_of_one_execution_share_a_context(
    browser_fetcher: BrowserFetcher, two_sites: tuple[Site, Site]
) -> None:
    site = two_sites[0]
    opened = browser_fetcher.contexts_opened
    # A second page of the same execution while the first is open: another tab.
    async with (
        browser_fetcher.open(FetchRequest(f"{site.base}/page2", session="exec-1")),
        browser_fetcher.open(FetchRequest(f"{site.base}/page3", session="exec-1")),
    ):
        pass
    async with browser_fetcher.open(FetchRequest(f"{site.base}/page4", session="exec-2")):
        pass
    assert site.cookies["/page3"] == "seen_page2=1"
    assert site.cookies["/page4"] is None  # another execution: another context
    assert browser_fetcher.contexts_opened == opened + 2
