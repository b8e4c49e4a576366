"""Script nodes, and whole chains: the record, links and warnings a phase gives a page."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import msgspec
import pytest

from nodes import ScriptEngineError, run_chain, script
from nodes.context import Link, NodeContext
from nodes.page import Page
from nodes.script import ScriptTimeout
from workflows.spec import NodeSpec, ScriptNode

URL = "http://shop.test/p/12"

PRODUCT = """<html><head><title>Nano Cube 60</title></head><body>
<h1>Nano Cube 60</h1>
<p class="price">12.50 EUR</p>
<p class="weight">heavy</p>
<table class="specs"><tr><th>Volume</th><td>60 l</td></tr>
<tr><th>Glass</th><td>clear</td></tr></table>
<div class="related">
  <a class="product" href="/p/13">13</a><a class="product" href="/p/14#reviews">14</a>
  <a class="product" href="/discontinued/p/15">15</a><a class="product" href="/p/13">13 again</a>
</div>
<a rel="next" href="/p/12?page=2">more</a>
<a class="home" href="/">home</a>
</body></html>"""


class FakeBrowser:
    """Stands in for the browser engine's evaluate: answers by script text."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, float]] = []

    async def evaluate(self, code: str, timeout_s: float) -> Any:
        self.calls.append((code, timeout_s))
        answer = self.answers[code]
        if answer == "hang":
            await asyncio.sleep(60)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def nodes_of(*nodes: dict[str, Any]) -> list[NodeSpec]:
    return msgspec.convert(list(nodes), list[NodeSpec])


def script_spec(**kw: Any) -> ScriptNode:
    return msgspec.convert({"type": "script", **kw}, ScriptNode)


async def run_script(answer: Any, **kw: Any) -> tuple[NodeContext, FakeBrowser]:
    browser = FakeBrowser({"js()": answer})
    page = Page(url=URL, html=PRODUCT, evaluate=browser.evaluate)
    ctx = NodeContext(depth=1)
    await script.run(script_spec(code="js()", **kw), page, ctx)
    return ctx, browser


async def test_script_value_is_stored_under_its_name() -> None:
    reviews = [{"stars": 5, "text": "great"}, {"stars": 4, "text": None}]
    ctx, browser = await run_script(reviews, **{"as": "reviews", "timeout_s": 2})
    assert ctx.data == {"reviews": reviews}
    assert ctx.links == []
    assert ctx.warnings == {}
    assert browser.calls == [("js()", 2.0)]


async def test_script_value_is_normalised_to_json() -> None:
    when = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
    answer = {"when": when, "nan": float("nan"), "pair": (1, 2.5), "n": None}
    ctx, _ = await run_script(answer, **{"as": "v"})
    assert ctx.data == {
        "v": {"when": "2026-11-22T10:00:00Z", "nan": None, "pair": [1, 2.5], "n": None}
    }
    assert ctx.warnings == {}


async def test_a_script_value_without_json_form_is_null_and_a_warning() -> None:
    ctx, _ = await run_script({"x": object()}, **{"as": "v"})
    assert ctx.data == {"v": None}
    assert ctx.warnings == {"script_bad_result": 1}


async def test_a_script_that_throws_gives_null_and_a_warning() -> None:
    ctx, _ = await run_script(
        RuntimeError("ReferenceError: __PRODUCT__ is not defined"), **{"as": "v"}
    )
    assert ctx.data == {"v": None}
    assert ctx.warnings == {"script_error": 1}


async def test_a_script_timing_out_in_the_engine_fails_the_task() -> None:
    with pytest.raises(ScriptTimeout, match=r"script did not finish within its timeout_s") as info:
        await run_script(TimeoutError("evaluate timed out"), **{"as": "v"})
    assert info.value.error_class == "script_timeout"


async def test_a_script_past_its_timeout_is_cut_off_here_too() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ScriptTimeout, match=r"\(0.05 s\)"):
        await run_script("hang", **{"as": "v", "timeout_s": 0.05})
    assert loop.time() - started < 5


async def test_an_engine_failure_is_not_mistaken_for_a_script_error() -> None:
    class TabCrashed(Exception):
        pass

    with pytest.raises(TabCrashed):
        await run_script(TabCrashed("browser crashed"), **{"as": "v"})


async def test_script_links_are_resolved_deduplicated_limited_and_marked() -> None:
    urls = ["/p/13", "/p/14#reviews", "javascript:void(0)", "/p/13", "p/15", "/p/16"]
    ctx, _ = await run_script(urls, emit="links", marker="product", limit=3)
    assert ctx.links == [
        Link("http://shop.test/p/13", "product", 2),
        Link("http://shop.test/p/14", "product", 2),
        Link("http://shop.test/p/p/15", "product", 2),
    ]
    assert ctx.data == {}
    assert ctx.warnings == {}


async def test_script_links_must_be_a_list_of_strings() -> None:
    ctx, _ = await run_script({"url": "/p/13"}, emit="links")
    assert (ctx.links, ctx.warnings) == ([], {"script_bad_result": 1})

    ctx, _ = await run_script(["/p/13", 14, None, "/p/15"], emit="links")
    assert [link.url for link in ctx.links] == [
        "http://shop.test/p/13",
        "http://shop.test/p/15",
    ]
    assert ctx.warnings == {"script_bad_result": 1}


async def test_script_links_on_error_emit_nothing() -> None:
    ctx, _ = await run_script(RuntimeError("boom"), emit="links")
    assert (ctx.links, ctx.data, ctx.warnings) == ([], {}, {"script_error": 1})


async def test_script_without_a_browser_is_a_clear_error() -> None:
    with pytest.raises(ScriptEngineError, match="script nodes need the browser engine"):
        await script.run(script_spec(code="1"), Page(url=URL, html=PRODUCT), NodeContext(depth=0))


async def test_a_product_phase_gives_its_record_links_and_warnings() -> None:
    browser = FakeBrowser(
        {
            "() => window.__PRODUCT__.reviews": [{"stars": 5}],
            "() => window.__PRODUCT__.variants": ["/p/12?v=red", "/p/12?v=blue", "/p/13"],
            "() => window.broken()": RuntimeError("TypeError: broken is not a function"),
        }
    )
    nodes = nodes_of(
        {
            "type": "extract",
            "fields": {
                "name": "h1",
                "price": {"css": ".price", "type": "float", "regex": r"[0-9.]+"},
                "weight": {"css": ".weight", "type": "float"},
                "specs": {
                    "css": "table.specs tr",
                    "multiple": True,
                    "fields": {"key": "th", "value": "td"},
                    "as": "object",
                },
            },
        },
        {"type": "extract_links", "selector": "a.product", "marker": "product", "limit": 10},
        {"type": "extract_links", "selector": "a[rel=next]", "marker": "page"},
        {"type": "extract_links", "selector": "a.home"},
        {"type": "filter", "markers": ["product", "page"], "exclude": ["/discontinued/"]},
        {"type": "script", "code": "() => window.__PRODUCT__.reviews", "as": "reviews"},
        {"type": "script", "code": "() => window.broken()", "as": "broken"},
        {
            "type": "script",
            "code": "() => window.__PRODUCT__.variants",
            "emit": "links",
            "marker": "variant",
        },
    )
    page = Page(url=URL, html=PRODUCT, evaluate=browser.evaluate)
    ctx = await run_chain(nodes, page, depth=2)

    assert ctx.depth == 2
    assert ctx.data == {
        "name": "Nano Cube 60",
        "price": 12.5,
        "weight": None,
        "specs": {"Volume": "60 l", "Glass": "clear"},
        "reviews": [{"stars": 5}],
        "broken": None,
    }
    assert ctx.links == [
        Link("http://shop.test/p/13", "product", 3),
        Link("http://shop.test/p/14", "product", 3),
        Link("http://shop.test/p/12?page=2", "page", 3),
        # emitted after the filter: untouched by it
        Link("http://shop.test/p/12?v=red", "variant", 3),
        Link("http://shop.test/p/12?v=blue", "variant", 3),
        Link("http://shop.test/p/13", "variant", 3),
    ]
    assert ctx.warnings == {"field_conversion": 1, "script_error": 1}


async def test_a_listing_phase_on_the_http_engine_emits_links_only() -> None:
    links = {"type": "extract_links", "selector": "a.product", "marker": "product"}
    page = Page(url=URL, html=PRODUCT)
    ctx = await run_chain(nodes_of(links, {"type": "filter", "max_depth": 1}), page, depth=0)
    assert (ctx.data, ctx.warnings) == ({}, {})
    assert ctx.links == [
        Link("http://shop.test/p/13", "product", 1),
        Link("http://shop.test/p/14", "product", 1),
        Link("http://shop.test/discontinued/p/15", "product", 1),
    ]
    ctx = await run_chain(nodes_of(links, {"type": "filter", "max_depth": 0}), page, depth=0)
    assert ctx.links == []


async def test_an_empty_chain_gives_an_empty_context() -> None:
    ctx = await run_chain([], Page(url=URL, html=PRODUCT), depth=4)
    assert ctx == NodeContext(depth=4)


async def test_a_later_extract_overwrites_a_field_of_the_same_name() -> None:
    nodes = nodes_of(
        {"type": "extract", "fields": {"name": "title", "price": ".price"}},
        {"type": "extract", "fields": {"name": "h1 .nothing"}},
    )
    ctx = await run_chain(nodes, Page(url=URL, html=PRODUCT), depth=1)
    assert ctx.data == {"name": None, "price": "12.50 EUR"}


async def test_an_unregistered_node_type_is_refused() -> None:
    class Unknown(msgspec.Struct, frozen=True):
        code: str = "x"

    bogus: Any = Unknown()  # a spec type the language might grow without a registry entry
    with pytest.raises(TypeError, match="Unknown"):
        await run_chain([bogus], Page(url=URL, html=PRODUCT), depth=0)
