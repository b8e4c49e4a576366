"""extract_links and filter: which links a page emits, with which marker and depth."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from nodes import extract_links, filter
from nodes.context import Link, NodeContext
from nodes.page import Page
from workflows.spec import ExtractLinksNode, FilterNode

LISTING = """<html><head><title>Tanks</title></head><body>
<nav class="categories">
  <a href="/c/tanks">Tanks</a>
  <a href="/c/filters#top">Filters</a>
  <a href="/c/tanks">Tanks again</a>
  <a href="/c/tanks#again">Tanks, another fragment</a>
  <a href="javascript:void(0)">js</a>
  <a href="mailto:shop@shop.test">mail</a>
  <a href="tel:+123">tel</a>
  <a href="data:text/html,hi">data</a>
  <a href="ftp://shop.test/file">ftp</a>
  <a href="#">top</a>
  <a href="">empty</a>
  <a>no href</a>
  <a href="  /c/lights  ">Lights</a>
  <a href="HTTPS://Other.test/c/x">other host</a>
</nav>
<ul class="products">
  <li><a class="product" href="p/1">1</a></li>
  <li><a class="product" href="./p/2?ref=list">2</a></li>
  <li><a class="product" href="../p/3">3</a></li>
  <li><a class="product discontinued" href="/discontinued/p/4">4</a></li>
  <li><span class="product" data-href="p/5">5</span></li>
</ul>
<a rel="next" href="?page=2">next</a>
</body></html>
"""

URL = "http://shop.test/c/tanks/"


def links_spec(**kw: Any) -> ExtractLinksNode:
    return msgspec.convert({"type": "extract_links", **kw}, ExtractLinksNode)


def filter_spec(**kw: Any) -> FilterNode:
    return msgspec.convert({"type": "filter", **kw}, FilterNode)


async def emitted(html: str = LISTING, url: str = URL, depth: int = 1, **kw: Any) -> list[Link]:
    ctx = NodeContext(depth=depth)
    await extract_links.run(links_spec(**kw), Page(url=url, html=html), ctx)
    assert ctx.data == {}
    assert ctx.warnings == {}
    return ctx.links


async def test_crawlable_links_resolved_deduplicated_in_document_order() -> None:
    links = await emitted(selector="nav.categories a", marker="category")
    assert links == [
        Link("http://shop.test/c/tanks", "category", 2),
        Link("http://shop.test/c/filters", "category", 2),
        Link("http://shop.test/c/lights", "category", 2),
        Link("https://other.test/c/x", "category", 2),
    ]


async def test_relative_links_resolve_against_the_page_url() -> None:
    links = await emitted(selector="a.product, a[rel=next]", depth=0)
    assert [link.url for link in links] == [
        "http://shop.test/c/tanks/p/1",
        "http://shop.test/c/tanks/p/2?ref=list",
        "http://shop.test/c/p/3",
        "http://shop.test/discontinued/p/4",
        "http://shop.test/c/tanks/?page=2",
    ]
    assert {(link.marker, link.depth) for link in links} == {(None, 1)}


async def test_base_href_changes_what_relative_links_resolve_against() -> None:
    html = LISTING.replace("<title>", '<base href="http://cdn.shop.test/v2/#x"><title>')
    links = await emitted(html, selector="a.product, a[rel=next]")
    assert [link.url for link in links] == [
        "http://cdn.shop.test/v2/p/1",
        "http://cdn.shop.test/v2/p/2?ref=list",
        "http://cdn.shop.test/p/3",
        "http://cdn.shop.test/discontinued/p/4",
        "http://cdn.shop.test/v2/?page=2",
    ]


async def test_a_relative_base_href_is_relative_to_the_page() -> None:
    html = '<head><base href="/shop/"></head><a href="p/1">x</a>'
    assert await emitted(html) == [Link("http://shop.test/shop/p/1", None, 2)]


async def test_another_attribute_can_carry_the_url() -> None:
    links = await emitted(selector="[data-href]", attr="data-href", marker="product")
    assert links == [Link("http://shop.test/c/tanks/p/5", "product", 2)]


async def test_the_default_selector_is_every_a_with_href() -> None:
    links = await emitted()
    assert [link.url for link in links] == [
        "http://shop.test/c/tanks",
        "http://shop.test/c/filters",
        "http://shop.test/c/lights",
        "https://other.test/c/x",
        "http://shop.test/c/tanks/p/1",
        "http://shop.test/c/tanks/p/2?ref=list",
        "http://shop.test/c/p/3",
        "http://shop.test/discontinued/p/4",
        "http://shop.test/c/tanks/?page=2",
    ]


async def test_limit_counts_distinct_links_after_deduplication() -> None:
    links = await emitted(selector="nav.categories a", limit=2)
    assert [link.url for link in links] == [
        "http://shop.test/c/tanks",
        "http://shop.test/c/filters",
    ]
    assert await emitted(selector="nav.categories a", limit=0) == []
    assert len(await emitted(selector="nav.categories a", limit=99)) == 4


async def test_deduplication_is_per_node_not_per_page() -> None:
    ctx = NodeContext(depth=0)
    page = Page(url=URL, html=LISTING)
    await extract_links.run(links_spec(selector="a.product", marker="a"), page, ctx)
    await extract_links.run(links_spec(selector="a.product", marker="b", limit=1), page, ctx)
    assert [(link.url[-3:], link.marker) for link in ctx.links] == [
        ("p/1", "a"),
        ("ist", "a"),
        ("p/3", "a"),
        ("p/4", "a"),
        ("p/1", "b"),
    ]


async def test_a_page_without_matches_emits_nothing() -> None:
    assert await emitted("<p>no links</p>") == []
    assert await emitted("") == []


async def test_a_bad_selector_raises_naming_it() -> None:
    with pytest.raises(ValueError, match=r"'a\['"):
        await emitted(selector="a[")


def _ctx(*links: tuple[str, str | None, int]) -> NodeContext:
    ctx = NodeContext(depth=1)
    ctx.links.extend(Link(url, marker, depth) for url, marker, depth in links)
    return ctx


LINKS = (
    ("http://shop.test/p/1", "product", 2),
    ("http://shop.test/discontinued/p/2", "product", 2),
    ("http://shop.test/c/tanks?page=2", "page", 2),
    ("http://shop.test/about", None, 2),
    ("http://shop.test/deep/p/3", "product", 5),
)


async def kept(**kw: Any) -> list[str]:
    ctx = _ctx(*LINKS)
    await filter.run(filter_spec(**kw), Page(url=URL, html=""), ctx)
    assert ctx.data == {}
    assert ctx.warnings == {}
    return [link.url.removeprefix("http://shop.test") for link in ctx.links]


async def test_filter_without_conditions_keeps_everything() -> None:
    assert len(await kept()) == len(LINKS)


async def test_filter_by_markers_drops_unmarked_links_too() -> None:
    assert await kept(markers=["page"]) == ["/c/tanks?page=2"]
    assert await kept(markers=["product", "page"]) == [
        "/p/1",
        "/discontinued/p/2",
        "/c/tanks?page=2",
        "/deep/p/3",
    ]
    assert await kept(markers=[]) == []


async def test_filter_by_depth() -> None:
    assert await kept(max_depth=3) == [
        "/p/1",
        "/discontinued/p/2",
        "/c/tanks?page=2",
        "/about",
    ]
    assert await kept(min_depth=3) == ["/deep/p/3"]
    assert await kept(min_depth=2, max_depth=2) == await kept(max_depth=4)
    assert await kept(min_depth=3, max_depth=4) == []


async def test_filter_include_keeps_links_matching_any_pattern() -> None:
    assert await kept(include=[r"/p/\d+$", r"page=\d"]) == [
        "/p/1",
        "/discontinued/p/2",
        "/c/tanks?page=2",
        "/deep/p/3",
    ]
    assert await kept(include=["^https://"]) == []


async def test_filter_exclude_drops_links_matching_any_pattern() -> None:
    assert await kept(exclude=["/discontinued/", "/deep/"]) == [
        "/p/1",
        "/c/tanks?page=2",
        "/about",
    ]


async def test_filter_conditions_combine() -> None:
    assert await kept(markers=["product"], max_depth=3, exclude=["/discontinued/"]) == ["/p/1"]
    assert await kept(include=["/p/"], exclude=["discontinued"], min_depth=2) == [
        "/p/1",
        "/deep/p/3",
    ]


async def test_filter_on_no_links_is_a_no_op() -> None:
    ctx = NodeContext(depth=0)
    await filter.run(filter_spec(markers=["x"]), Page(url=URL, html=""), ctx)
    assert ctx.links == []


async def test_filter_regexes_are_compiled_once() -> None:
    filter._compile.cache_clear()
    spec = filter_spec(include=["/p/"], exclude=["x"])
    page = Page(url=URL, html="")
    for _ in range(3):
        await filter.run(spec, page, _ctx(*LINKS))
    info = filter._compile.cache_info()
    assert (info.misses, info.hits) == (2, 4)
