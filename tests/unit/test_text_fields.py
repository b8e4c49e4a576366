"""Text fields read as a reader sees them: ``<pre>`` keeps its lines, ``<br>`` ends one,
everything else collapses as before; CSS (lexbor) and XPath (lxml) agree on every case."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from nodes import extract
from nodes.context import NodeContext
from nodes.convert import collapse
from nodes.page import Page
from tests.docs_site import ADDRESS_TEXT, INSTALL_CODE, PAGES, USAGE_CODE
from workflows.spec import ExtractNode


async def record(fields: dict[str, Any], html: str) -> dict[str, Any]:
    spec = msgspec.convert({"type": "extract", "fields": fields}, ExtractNode)
    ctx = NodeContext(depth=0)
    await extract.run(spec, Page(url="http://docs.test/p.html", html=html), ctx)
    return ctx.data


async def both_parsers(html: str, css: str = "#t", xpath: str = "//*[@id='t']") -> str:
    """The text of one element read through CSS and through XPath; they must agree."""
    data = await record({"css": css, "xpath": {"xpath": xpath}}, html)
    assert data["css"] == data["xpath"], data
    text = data["css"]
    assert isinstance(text, str)
    return text


CASES = [
    pytest.param(
        "<div id=t>  Nano\n   Cube\t 60 </div>", "Nano Cube 60", id="plain-collapses-as-before"
    ),
    pytest.param("<p id=t>a<br>b<br/>c</p>", "a\nb\nc", id="br-ends-a-line"),
    pytest.param("<p id=t>  a  <br>\n   b   c  <br>  </p>", "a\nb c", id="lines-trimmed"),
    pytest.param("<p id=t>a<br><br>b</p>", "a\n\nb", id="two-br-leave-an-empty-line"),
    pytest.param("<p id=t><br><br>a<br><br></p>", "a", id="empty-lines-at-the-ends-dropped"),
    pytest.param(
        "<p id=t><span>a<br></span><b>b<br>c</b> d</p>", "a\nb\nc d", id="br-inside-inline"
    ),
    pytest.param(
        "<pre id=t>\n  def f():\n      return 1\n\n  f()\n</pre>",
        "  def f():\n      return 1\n\n  f()",
        id="pre-kept-as-written",
    ),
    pytest.param(
        "<pre id=t>\n\n   \nx  y\t z\n\n \n</pre>", "x  y\t z", id="pre-blank-lines-at-ends-only"
    ),
    pytest.param(
        '<pre id=t><span class="k">if</span> <span>x</span>:\n    <i>go</i>()</pre>',
        "if x:\n    go()",
        id="pre-with-highlighting-spans",
    ),
    pytest.param("<pre id=t>a<br>b</pre>", "a\nb", id="br-inside-pre"),
    pytest.param(
        "<div id=t>Intro\n  text:<pre>x = 1\n  y = 2</pre>\n  after  it\n</div>",
        "Intro text:\nx = 1\n  y = 2\nafter it",
        id="pre-stands-on-its-own-lines",
    ),
    pytest.param("<div id=t>a<br><pre>code</pre><br>b</div>", "a\ncode\n\nb", id="br-around-pre"),
    pytest.param("<div id=t><pre>one</pre><pre>two</pre></div>", "one\ntwo", id="two-pre-in-a-row"),
    pytest.param(
        "<div id=t>a<!-- hidden <br> -->b<br><!-- c -->d</div>", "ab\nd", id="comments-ignored"
    ),
    pytest.param(
        "<div id=t><p>a</p>\n<p>b<br>c</p>\n<p>d</p></div>", "a b\nc d", id="only-br-breaks"
    ),
    # Large elements are looked into by a CSS query rather than node by node.
    pytest.param(
        "<ul id=t>" + "<li>x</li>\n" * 40 + "</ul>", " ".join(["x"] * 40), id="large-plain"
    ),
    pytest.param(
        "<ul id=t>" + "<li>x</li>\n" * 40 + "<li>y<br>z</li></ul>",
        " ".join(["x"] * 40) + " y\nz",
        id="large-with-a-late-br",
    ),
]


@pytest.mark.parametrize(("html", "expected"), CASES)
async def test_text_reads_as_on_screen_in_both_parsers(html: str, expected: str) -> None:
    assert await both_parsers(html) == expected


async def test_an_element_without_pre_or_br_reads_exactly_as_before() -> None:
    html = "<div id=t>\n  <p>Hello  <b>world</b></p>\n\t<p>two\u00a0three</p>  </div>"
    text = await both_parsers(html)
    assert text == collapse("Hello  world\n\ttwo\u00a0three") == "Hello world two three"


async def test_the_sphinx_page_gives_its_code_heading_and_address() -> None:
    data = await record(
        {
            "heading": "h1",
            "code": {"css": "div.highlight pre", "multiple": True},
            "address": "address",
            "intro": ".body p:not(.version)",
        },
        PAGES["/install.html"],
    )
    assert data == {
        "heading": "Installation¶",
        "code": [INSTALL_CODE],
        "address": ADDRESS_TEXT,
        "intro": "Install it with pip:",
    }
    usage = await record({"code": "pre"}, PAGES["/usage.html"])
    assert usage == {"code": USAGE_CODE}


async def test_regex_and_types_see_the_lines() -> None:
    html = "<pre id=t>total:\n  42\n</pre><p id=n>1<br>2</p>"
    data = await record(
        {
            "second_line": {"css": "#t", "regex": r"(?m)^\s+(?P<value>\d+)$", "type": "int"},
            "lines": {"css": "#t", "regex": r"(?s).*"},
            "br": {"css": "#n", "regex": r"\d\n\d"},
        },
        html,
    )
    assert data == {"second_line": 42, "lines": "total:\n  42", "br": "1\n2"}


async def test_html_type_and_attributes_are_untouched() -> None:
    html = '<div id=t title="a\n   b"><pre>x\n y</pre><br></div>'
    data = await record(
        {"html": {"css": "#t", "type": "html"}, "attr": {"css": "#t", "attr": "title"}}, html
    )
    assert data == {"html": "<pre>x\n y</pre><br>", "attr": "a b"}


def nested(depth: int) -> str:
    return "<div id=t>" + "<span>" * depth + "a<br>b" + "</span>" * depth + "</div>"


async def test_a_deeply_nested_page_does_not_exhaust_the_stack() -> None:
    assert await both_parsers(nested(200)) == "a\nb"
    # lxml's parser stops nesting at a few hundred levels; lexbor goes on.
    assert await record({"t": "#t"}, nested(5000)) == {"t": "a\nb"}
