"""A static page gives the same record and the same links whichever engine fetched it.

That is the promise that lets a workflow move a phase between ``engine: http`` and
``engine: browser``: the http engine parses the response body, the browser engine the
rendered DOM, and for pages without JavaScript the node chain must not tell them apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from backends.fetcher import Fetcher, FetchRequest
from nodes.chain import run_chain
from tests.docs_site import ADDRESS_TEXT, INSTALL_CODE, DocsSite
from tests.site import SiteServer
from worker.fetchers.browser import BrowserFetcher
from worker.fetchers.http import HttpFetcher
from workflows.spec import NodeSpec

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
]

NODES: list[dict[str, Any]] = [
    {
        "type": "extract",
        "fields": {
            "name": "h1",
            "price": {"css": ".price", "type": "float", "regex": r"[0-9]+(\.[0-9]+)?"},
            "sku": {"css": "[data-sku]", "attr": "data-sku"},
            "images": {
                "css": ".gallery img",
                "attr": "src",
                "multiple": True,
                "absolute_url": True,
            },
            "title": {"xpath": "//title/text()"},
            "specs": {
                "css": "table.specs tr",
                "multiple": True,
                "fields": {"key": "th", "value": "td"},
                "as": "object",
            },
            "in_stock": {"css": ".stock", "type": "bool", "default": False},
            "missing": {"css": ".no-such-thing", "default": "n/a"},
            "first_para_html": {"css": "p", "type": "html"},
        },
    },
    {"type": "extract_links", "selector": "ul.related a.product", "marker": "product"},
    {"type": "extract_links", "marker": "any"},
]

PATHS = [
    "/",
    "/product/1",
    "/product/2",
    "/product/3",
    "/catalog/4",  # <base href> changes what relative links resolve to
    "/redirect/chain",  # both engines must resolve against the final URL
    "/gzip",
    "/malformed",
    "/charset/header-1252",
    "/charset/meta",
    "/charset/http-equiv",
    "/charset/none",  # undeclared windows-1252: both fall back to it
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http_engine() -> AsyncIterator[HttpFetcher]:
    fetcher = HttpFetcher()
    await fetcher.start()
    try:
        yield fetcher
    finally:
        await fetcher.close()


async def outcome(fetcher: Fetcher, url: str) -> tuple[str, dict[str, Any], list[Any]]:
    nodes = msgspec.convert(NODES, list[NodeSpec])
    async with fetcher.open(FetchRequest(url)) as page:
        ctx = await run_chain(nodes, page, depth=1)
    links = [(link.url, link.marker, link.depth) for link in ctx.links]
    return page.url, ctx.data, links


@pytest.mark.parametrize("path", PATHS)
async def test_same_record_and_links(
    path: str, site: SiteServer, http_engine: HttpFetcher, browser_fetcher: BrowserFetcher
) -> None:
    url = site.url(path)
    http_url, http_data, http_links = await outcome(http_engine, url)
    browser_url, browser_data, browser_links = await outcome(browser_fetcher, url)
    assert browser_url == http_url
    assert browser_data == http_data
    assert browser_links == http_links
    assert http_links, "a page without links proves nothing here"


async def test_the_record_is_what_the_page_says(
    site: SiteServer, http_engine: HttpFetcher, browser_fetcher: BrowserFetcher
) -> None:
    """Parity alone would pass if both engines were equally wrong."""
    for fetcher in (http_engine, browser_fetcher):
        _, data, links = await outcome(fetcher, site.url("/catalog/4"))
        assert data["name"] == "Aqua Filter 4"
        assert data["price"] == 14.5
        assert data["sku"] == "AF-0004"
        assert data["images"] == [site.url("/img/p4-1.png"), site.url("/shop/img/p4-2.png")]
        assert data["specs"] == {"Volume": "64 l", "Power": "9 W", "Flow": "304 l/h"}
        assert data["in_stock"] is True
        assert data["missing"] == "n/a"
        assert data["title"] == "Aqua Filter 4 | Aqua Shop"
        product_links = [url for url, marker, _ in links if marker == "product"]
        assert product_links == [
            site.url("/product/5"),
            site.url("/product/6?utm_source=related"),
            site.url("/shop/product/7"),
        ]


# Text that keeps its lines: a <pre> code block and a <br>-separated address on a
# Sphinx-like page (tests/docs_site.py). Chromium serializes the DOM it rendered, so the
# <pre> and <br> reach the parser in a different spelling than the response body.
DOCS_NODES: list[dict[str, Any]] = [
    {
        "type": "extract",
        "fields": {
            "title": {"css": "h1", "process": [{"remove": "¶"}, "strip"]},
            "code": {"css": "div.highlight pre", "multiple": True},
            "code_xpath": {"xpath": "//pre"},
            "address": "address",
            "section": "section",
        },
    }
]


async def test_pre_and_br_text_is_the_same_in_both_engines(
    http_engine: HttpFetcher, browser_fetcher: BrowserFetcher
) -> None:
    nodes = msgspec.convert(DOCS_NODES, list[NodeSpec])
    with DocsSite() as docs:
        records = []
        for fetcher in (http_engine, browser_fetcher):
            async with fetcher.open(FetchRequest(docs.url("/install.html"))) as page:
                records.append((await run_chain(nodes, page, depth=1)).data)
    http_data, browser_data = records
    assert browser_data == http_data
    assert http_data["title"] == "Installation"
    assert http_data["code"] == [INSTALL_CODE]
    assert http_data["code_xpath"] == INSTALL_CODE
    assert http_data["address"] == ADDRESS_TEXT
    assert http_data["section"].endswith("\n" + INSTALL_CODE)


async def test_undeclared_utf8_is_where_the_engines_differ(
    site: SiteServer, http_engine: HttpFetcher, browser_fetcher: BrowserFetcher
) -> None:
    """Chromium reads an undeclared page as windows-1252 even when it is valid UTF-8 (the
    web's legacy default); the http engine reads valid UTF-8 as UTF-8. Known, deliberate:
    the http engine's text is the right one."""
    url = site.url("/charset/utf8-none")
    _, http_data, http_links = await outcome(http_engine, url)
    _, browser_data, browser_links = await outcome(browser_fetcher, url)
    assert http_data["name"].startswith("Le café crème")
    assert browser_data["name"].startswith("Le cafÃ©")
    assert http_links == browser_links
