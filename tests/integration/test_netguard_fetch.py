"""The SSRF guard in the fetchers, against the local test site: a refused address fails the
page for good (``blocked_address``) before any request reaches it, on the first URL and on
every redirect hop, in both engines, for robots.txt too, and in a whole crawl the refused
link is one failed page while the rest completes.

The site serves on 127.0.0.1. Tests that need a "public" site exempt 127.0.0.1/32, so that
127.0.0.2 (also loopback) or a name a stub resolver maps to 10.0.0.1 plays the private
address a page or a redirect points at.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.abc import AbstractResolver, ResolveResult

from backends.errors import TrawlError
from backends.fetcher import Fetcher, FetchRequest
from tests.crawling import FAST_POLITENESS, make_workflow, pages, read_export
from tests.site import SiteServer
from trawl.embedded import open_fetchers, run_embedded
from trawl.settings import Settings
from worker.engines import open_robots
from worker.fetchers.browser import BrowserFetcher
from worker.fetchers.http import HttpFetcher
from worker.netguard import BlockedAddressError, NetGuard
from workflows.urls import canonicalize

pytestmark = pytest.mark.integration

LOCAL_IS_PUBLIC = [ipaddress.ip_network("127.0.0.1/32")]
HINT = "add the network or host to TRAWL_ALLOW_NETWORKS to allow it"


class _Redirect(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        target = parse_qs(urlsplit(self.path).query)["url"][0]
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def redirector() -> Iterator[str]:
    """http://127.0.0.1:PORT: ``/to?url=U`` answers 302 to U."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def redirect(redirector: str, target: str) -> str:
    return f"{redirector}/to?url={quote(target, safe='')}"


def elsewhere(site: SiteServer, path: str, host: str = "127.0.0.2") -> str:
    """``path`` on the site's port at another host."""
    return f"http://{host}:{site.port}{path}"


class StubResolver(AbstractResolver):
    """Fixed answers for some names, the system's for the rest."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.system = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.answers:
            return await self.system.resolve(host, port, family)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        await self.system.close()


async def failure(fetcher: Fetcher, url: str) -> TrawlError:
    with pytest.raises(TrawlError) as info:
        async with fetcher.open(FetchRequest(url)):
            pass
    return info.value


async def started_http(guard: NetGuard, **kw: Any) -> HttpFetcher:
    fetcher = HttpFetcher(guard=guard, **kw)
    await fetcher.start()
    return fetcher


# --- the http engine -------------------------------------------------------------------------


async def test_http_refuses_loopback_before_any_request(site: SiteServer) -> None:
    fetcher = await started_http(NetGuard(allow_private=False))
    try:
        url = site.url("/product/71?t=guard")
        error = await failure(fetcher, url)
    finally:
        await fetcher.close()
    assert isinstance(error, BlockedAddressError)
    assert error.error_class == "blocked_address"
    assert str(error) == f"refused {url}: 127.0.0.1 is a loopback address; {HINT}"
    assert "/product/71?t=guard" not in site.log.paths()


async def test_http_refuses_a_name_that_resolves_to_loopback(site: SiteServer) -> None:
    fetcher = await started_http(NetGuard())
    try:
        error = await failure(fetcher, elsewhere(site, "/product/72", host="localhost"))
    finally:
        await fetcher.close()
    assert isinstance(error, BlockedAddressError)
    assert "localhost resolves to " in str(error) and "a loopback address" in str(error)


async def test_http_refuses_a_redirect_hop_to_a_private_ip(
    site: SiteServer, redirector: str
) -> None:
    fetcher = await started_http(NetGuard(exempt=LOCAL_IS_PUBLIC))
    try:
        allowed = await failure_or_page(fetcher, redirect(redirector, site.url("/product/73")))
        start = redirect(redirector, elsewhere(site, "/product/74"))
        error = await failure(fetcher, start)
    finally:
        await fetcher.close()
    assert allowed == "Aqua Filter 73"  # the exempt address is fetched, redirects and all
    assert isinstance(error, BlockedAddressError)
    assert str(error) == (
        f"refused {elsewhere(site, '/product/74')} (redirected from {start}): "
        f"127.0.0.2 is a loopback address; {HINT}"
    )


async def test_http_refuses_a_redirect_hop_to_a_name_resolving_to_a_private_address(
    site: SiteServer, redirector: str
) -> None:
    resolver = StubResolver(
        {"internal.test": ["10.0.0.1"], "mixed.test": ["127.0.0.1", "10.0.0.1"]}
    )
    fetcher = await started_http(NetGuard(exempt=LOCAL_IS_PUBLIC), resolver=resolver)
    try:
        error = await failure(fetcher, redirect(redirector, f"http://internal.test:{site.port}/"))
        mixed = await failure(fetcher, f"http://mixed.test:{site.port}/product/75?t=guard-mixed")
    finally:
        await fetcher.close()
    assert isinstance(error, BlockedAddressError)
    assert error.error_class == "blocked_address"
    assert f"refused http://internal.test:{site.port}/ (redirected from " in str(error)
    assert "internal.test resolves to 10.0.0.1, a private address" in str(error)
    # One refused address among allowed ones refuses the host.
    assert isinstance(mixed, BlockedAddressError)
    assert "mixed.test resolves to 10.0.0.1" in str(mixed)
    assert "/product/75?t=guard-mixed" not in site.log.paths()


async def failure_or_page(fetcher: Fetcher, url: str) -> str:
    async with fetcher.open(FetchRequest(url)) as page:
        return page.css("h1")[0].text()


async def test_robots_txt_of_a_refused_host_is_not_fetched(site: SiteServer) -> None:
    agent = "trawl-test/robots-guard"
    async with open_robots(NetGuard()) as robots:
        # Unreachable robots.txt means "allowed": the page fetch is what gets refused.
        assert await robots.allowed(site.url("/product/76"), agent)
    async with open_robots(NetGuard(exempt=LOCAL_IS_PUBLIC)) as robots:
        assert await robots.allowed(site.url("/product/77"), agent)
    fetched = [e.path for e in site.log.entries() if e.user_agent == agent]
    assert fetched == ["/robots.txt"]  # only the exempt guard asked for it


# --- the browser engine ----------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def guarded_browser(chromium_path: str) -> AsyncIterator[BrowserFetcher]:
    """A browser behind a guard for which 127.0.0.1 is public and the rest is not."""
    fetcher = BrowserFetcher(executable_path=chromium_path, guard=NetGuard(exempt=LOCAL_IS_PUBLIC))
    await fetcher.start()
    try:
        yield fetcher
    finally:
        await fetcher.close()


@pytest.mark.browser
@pytest.mark.asyncio(loop_scope="module")
async def test_browser_renders_allowed_pages_through_the_guard(
    guarded_browser: BrowserFetcher, site: SiteServer, redirector: str
) -> None:
    assert await failure_or_page(guarded_browser, site.url("/js/product/7")) == "Script Pump 7"
    redirected = redirect(redirector, site.url("/product/78"))
    assert await failure_or_page(guarded_browser, redirected) == "Aqua Filter 78"


@pytest.mark.browser
@pytest.mark.asyncio(loop_scope="module")
async def test_browser_refuses_a_blocked_navigation(
    guarded_browser: BrowserFetcher, site: SiteServer
) -> None:
    url = elsewhere(site, "/product/79")
    error = await failure(guarded_browser, url)
    assert isinstance(error, BlockedAddressError)
    assert error.error_class == "blocked_address"
    assert str(error) == f"refused {url}: 127.0.0.2 is a loopback address; {HINT}"


@pytest.mark.browser
@pytest.mark.asyncio(loop_scope="module")
async def test_browser_refuses_a_redirect_hop(
    guarded_browser: BrowserFetcher, site: SiteServer, redirector: str
) -> None:
    start = redirect(redirector, elsewhere(site, "/product/80"))
    error = await failure(guarded_browser, start)
    assert isinstance(error, BlockedAddressError)
    assert str(error) == (
        f"refused {elsewhere(site, '/product/80')} (redirected from {start}): "
        f"127.0.0.2 is a loopback address; {HINT}"
    )
    # The tab is still good for the next page.
    assert await failure_or_page(guarded_browser, site.url("/product/81")) == "Aqua Filter 81"


@pytest.mark.browser
@pytest.mark.asyncio(loop_scope="module")
async def test_browser_refuses_loopback_when_nothing_is_exempt(
    chromium_path: str, site: SiteServer
) -> None:
    fetcher = BrowserFetcher(executable_path=chromium_path, guard=NetGuard())
    await fetcher.start()
    try:
        url = site.url("/product/82?t=guard")
        error = await failure(fetcher, url)
    finally:
        await fetcher.close()
    assert isinstance(error, BlockedAddressError)
    assert str(error) == f"refused {url}: 127.0.0.1 is a loopback address; {HINT}"
    assert "/product/82?t=guard" not in site.log.paths()


# --- a whole crawl ---------------------------------------------------------------------------


async def test_a_crawl_records_the_refused_link_and_completes(
    site: SiteServer, tmp_path: Path
) -> None:
    blocked = elsewhere(site, "/product/84")
    hub = site.url(
        "/hub?"
        + "&".join(f"to={quote(t, safe='')}" for t in ["/product/83", blocked, "/product/85"])
    )
    workflow = make_workflow(
        [hub],
        max_depth=1,
        scope={"allowed_domains": ["127.0.0.1", "127.0.0.2"]},
        politeness={**FAST_POLITENESS, "respect_robots_txt": True},
    )
    guard = NetGuard(exempt=LOCAL_IS_PUBLIC)
    async with open_fetchers(workflow, Settings(), guard=guard) as (fetchers, robots):
        result = await run_embedded(
            workflow, out_dir=tmp_path, fetchers=fetchers, robots=robots, concurrency=4
        )
    assert result.execution.status == "completed"
    export = read_export(result)
    assert export.titles() == {
        canonicalize(hub): "Hub",
        site.url("/product/83"): "Aqua Filter 83",
        site.url("/product/85"): "Aqua Filter 85",
    }
    assert export.summary["pages"] == pages(4, succeeded=3, failed=1)
    assert export.summary["failures_by_class"] == {"blocked_address": 1}
