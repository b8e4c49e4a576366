"""The extract node: the record a page gives, field feature by field feature."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from nodes import extract
from nodes.context import NodeContext
from nodes.convert import collapse, to_bool, to_float, to_int
from nodes.page import Page
from workflows.spec import ExtractNode

URL = "http://shop.test/p/12"

PRODUCT = """<!doctype html>
<html><head><title>
  Nano Cube  60 | Aqua Shop </title></head>
<body>
  <h1>  Nano
     Cube   60 </h1>
  <p class="price">Price: 1,234.50 EUR</p>
  <p class="old-price">was 12,5</p>
  <div class="sku" data-sku=" NC-60 ">SKU-0042</div>
  <div class="gallery">
    <img src="/img/a.jpg"><img src="//cdn.test/b.jpg"><img alt="no src">
    <img src="data:image/png;base64,AAAA"><img src="big.jpg#zoom">
  </div>
  <table class="specs">
    <tr><th>Volume</th><td>60 l</td></tr>
    <tr><th> Weight </th><td> 4
      kg</td></tr>
    <tr><td>no key</td></tr>
    <tr><th></th><td>empty key</td></tr>
    <tr><th>Volume</th><td>61 l</td></tr>
  </table>
  <span class="stock">In stock</span>
  <div class="desc"><p>Hello  <b>world</b></p>
  <p>two</p></div>
  <ul class="reviews">
    <li data-stars="5"><span class="who">Ann</span> <q>Great</q></li>
    <li data-stars="x"><span class="who">Bob</span></li>
  </ul>
  <a class="more" href="/p/13">next</a> <a class="more" href="/p/14">after</a>
  <input class="gift" type="checkbox" checked> <input class="pick" type="checkbox">
</body></html>
"""


def spec_of(fields: dict[str, Any]) -> ExtractNode:
    return msgspec.convert({"type": "extract", "fields": fields}, ExtractNode)


async def extract_from(fields: dict[str, Any], html: str = PRODUCT, url: str = URL) -> NodeContext:
    ctx = NodeContext(depth=2)
    await extract.run(spec_of(fields), Page(url=url, html=html), ctx)
    return ctx


async def test_the_workflows_md_example_gives_its_record() -> None:
    html = PRODUCT.replace('class="price">Price: 1,234.50 EUR', 'class="price">12.50 EUR')
    ctx = await extract_from(
        {
            "name": "h1",
            "price": {"css": ".price", "type": "float", "regex": r"[0-9]+(\.[0-9]+)?"},
            "sku": {"css": "[data-sku]", "attr": "data-sku"},
            "images": {
                "css": ".gallery img",
                "attr": "src",
                "multiple": True,
                "absolute_url": True,
            },
            "title_xpath": {"xpath": "//title/text()"},
            "specs": {
                "css": "table.specs tr",
                "multiple": True,
                "fields": {"key": "th", "value": "td"},
                "as": "object",
            },
            "in_stock": {"css": ".stock", "type": "bool", "default": False},
        },
        html,
    )
    assert ctx.data == {
        "name": "Nano Cube 60",
        "price": 12.5,
        "sku": "NC-60",
        "images": [
            "http://shop.test/img/a.jpg",
            "http://cdn.test/b.jpg",
            "data:image/png;base64,AAAA",
            "http://shop.test/p/big.jpg#zoom",
        ],
        "title_xpath": "Nano Cube 60 | Aqua Shop",
        "specs": {"Volume": "61 l", "Weight": "4 kg"},
        "in_stock": True,
    }
    assert ctx.warnings == {}
    assert ctx.links == []


async def test_shorthand_is_css_text_with_whitespace_collapsed() -> None:
    ctx = await extract_from({"name": "h1", "desc": ".desc"})
    assert ctx.data == {"name": "Nano Cube 60", "desc": "Hello world two"}


async def test_a_selector_matching_nothing_gives_null_or_the_default() -> None:
    ctx = await extract_from(
        {
            "none": ".nothing",
            "dflt": {"css": ".nothing", "default": "n/a"},
            "xp": {"xpath": "//nothing/text()", "default": 0},
            "no_attr": {"css": "h1", "attr": "data-x", "default": "?"},
            "many": {"css": ".nothing", "multiple": True},
            "many_dflt": {"css": ".nothing", "multiple": True, "default": []},
        }
    )
    assert ctx.data == {
        "none": None,
        "dflt": "n/a",
        "xp": 0,
        "no_attr": "?",
        "many": [],  # an empty list, never null
        "many_dflt": [],
    }
    assert ctx.warnings == {}  # nothing to find is not a conversion problem


async def test_mutable_defaults_are_not_shared_between_records() -> None:
    spec = spec_of({"tags": {"css": ".nothing", "multiple": True, "default": []}})
    page = Page(url=URL, html=PRODUCT)
    first, second = NodeContext(depth=0), NodeContext(depth=0)
    await extract.run(spec, page, first)
    await extract.run(spec, page, second)
    first.data["tags"].append("x")
    assert second.data == {"tags": []}


async def test_attr_reads_the_attribute_stripped() -> None:
    ctx = await extract_from({"sku": {"css": ".sku", "attr": "data-sku"}})
    assert ctx.data == {"sku": "NC-60"}


async def test_multiple_lists_every_match_and_skips_missing_attributes() -> None:
    ctx = await extract_from(
        {
            "who": {"css": ".reviews .who", "multiple": True},
            "srcs": {"css": ".gallery img", "attr": "src", "multiple": True},
            "alts": {"css": ".gallery img", "attr": "alt", "multiple": True},
            "none": {"css": ".gallery img", "attr": "title", "multiple": True},
        }
    )
    assert ctx.data == {
        "who": ["Ann", "Bob"],
        "srcs": ["/img/a.jpg", "//cdn.test/b.jpg", "data:image/png;base64,AAAA", "big.jpg#zoom"],
        "alts": ["no src"],
        "none": [],  # matches, but no values: as if nothing matched
    }


async def test_absolute_url_joins_the_base_href_and_keeps_other_schemes() -> None:
    html = """<head><base href="http://cdn.test/assets/"></head>
        <a href="x/1.png">a</a><a href="../2.png?s=1#f">b</a><a href="mailto:a@b.test">c</a>
        <a href="  ">blank</a><a href="http://[::1">bad</a>"""
    ctx = await extract_from(
        {"urls": {"css": "a", "attr": "href", "multiple": True, "absolute_url": True}}, html
    )
    assert ctx.data == {
        "urls": ["http://cdn.test/assets/x/1.png", "http://cdn.test/2.png?s=1#f", "mailto:a@b.test"]
    }
    assert ctx.warnings == {"field_bad_url": 1}


async def test_absolute_url_with_an_invalid_url_is_null_or_the_default() -> None:
    html = '<a href="http://host.test:99999/">x</a>'
    ctx = await extract_from(
        {
            "u": {"css": "a", "attr": "href", "absolute_url": True},
            "d": {"css": "a", "attr": "href", "absolute_url": True, "default": "none"},
        },
        html,
    )
    assert ctx.data == {"u": None, "d": "none"}
    assert ctx.warnings == {"field_bad_url": 2}


async def test_regex_keeps_the_value_group_or_else_the_whole_match() -> None:
    ctx = await extract_from(
        {
            "whole": {"css": ".price", "regex": r"[\d,]+\.\d+"},
            "named": {"css": ".price", "regex": r"Price: (?P<value>[\d,.]+) (?P<cur>\w+)"},
            # an unnamed group does not narrow the value: group(0) is kept
            "unnamed": {"css": ".sku", "regex": r"SKU-(\d+)"},
            "as_int": {"css": ".sku", "regex": r"(?P<value>\d+)$", "type": "int"},
            "from_attr": {"css": ".sku", "attr": "data-sku", "regex": r"\d+", "type": "int"},
        }
    )
    assert ctx.data == {
        "whole": "1,234.50",
        "named": "1,234.50",
        "unnamed": "SKU-0042",
        "as_int": 42,
        "from_attr": 60,
    }
    assert ctx.warnings == {}


async def test_regex_without_a_match_is_null_or_the_default_and_a_warning() -> None:
    ctx = await extract_from(
        {
            "a": {"css": "h1", "regex": r"\d{4}"},
            "b": {"css": "h1", "regex": r"\d{4}", "default": "-"},
            "c": {"css": "h1", "regex": r"(?P<value>x)?Nano"},  # the group took no part
            "d": {"css": ".reviews li", "attr": "data-stars", "regex": r"\d", "multiple": True},
        }
    )
    assert ctx.data == {"a": None, "b": "-", "c": None, "d": ["5"]}
    assert ctx.warnings == {"field_regex_no_match": 4}


async def test_int_conversion() -> None:
    html = "<i>1,234</i><i> 42 </i><i>-7</i><i>abc</i><i>12.5</i><i>3.00</i>"
    ctx = await extract_from({"ints": {"css": "i", "type": "int", "multiple": True}}, html)
    assert ctx.data == {"ints": [1234, 42, -7, 3]}
    assert ctx.warnings == {"field_conversion": 2}


async def test_float_conversion() -> None:
    html = "<i>12.50</i><i>1,234.5</i><i>12,5</i><i>nonsense</i><i>1.234,5</i><i>-0.5</i>"
    ctx = await extract_from({"floats": {"css": "i", "type": "float", "multiple": True}}, html)
    assert ctx.data == {"floats": [12.5, 1234.5, 12.5, 1234.5, -0.5]}
    assert ctx.warnings == {"field_conversion": 1}


async def test_a_failed_conversion_is_null_or_the_default_and_counted() -> None:
    ctx = await extract_from(
        {
            "a": {"css": "h1", "type": "int"},
            "b": {"css": "h1", "type": "float", "default": 0.0},
            "c": {"css": ".old-price", "type": "float", "regex": r"[\d,]+"},
        }
    )
    assert ctx.data == {"a": None, "b": 0.0, "c": 12.5}
    assert ctx.warnings == {"field_conversion": 2}


async def test_bool_conversion_and_presence() -> None:
    html = (
        "<i>Yes</i><i>no</i><i> TRUE </i><i>off</i><i>1</i><i>0</i><i>y</i><i>N</i>"
        "<i></i><i>In stock</i>"
        '<input class="gift" checked><input class="pick"><input class="on" checked="false">'
    )
    ctx = await extract_from(
        {
            "flags": {"css": "i", "type": "bool", "multiple": True},
            "gift": {"css": ".gift", "attr": "checked", "type": "bool", "default": False},
            "pick": {"css": ".pick", "attr": "checked", "type": "bool", "default": False},
            "on": {"css": ".on", "attr": "checked", "type": "bool"},
            "absent": {"css": ".stock", "type": "bool", "default": False},
            "absent_null": {"css": ".stock", "type": "bool"},
        },
        html,
    )
    assert ctx.data == {
        "flags": [True, False, True, False, True, False, True, False, False, True],
        "gift": True,
        "pick": False,
        "on": False,
        "absent": False,
        "absent_null": None,
    }
    assert ctx.warnings == {}


async def test_html_type_is_inner_html_not_collapsed() -> None:
    ctx = await extract_from(
        {
            "html": {"css": ".desc", "type": "html"},
            "bold": {"css": ".desc", "type": "html", "regex": "<b>(?P<value>.*?)</b>"},
        }
    )
    assert ctx.data == {
        "html": "<p>Hello  <b>world</b></p>\n  <p>two</p>",
        "bold": "world",
    }


async def test_xpath_strings_elements_and_scalars() -> None:
    ctx = await extract_from(
        {
            "title": {"xpath": "//title/text()"},
            "hrefs": {"xpath": "//a[@class='more']/@href", "multiple": True},
            "abs": {"xpath": "//a[@class='more']/@href", "absolute_url": True},
            "el_text": {"xpath": "//h1"},
            "el_attr": {"xpath": "//div[@data-sku]", "attr": "data-sku"},
            "el_html": {"xpath": "//div[@class='desc']/p[2]", "type": "html"},
            "count": {"xpath": "count(//ul[@class='reviews']/li)", "type": "int"},
            "has_h1": {"xpath": "boolean(//h1)", "type": "bool"},
            "none": {"xpath": "//h2/text()", "multiple": True},
        }
    )
    assert ctx.data == {
        "title": "Nano Cube 60 | Aqua Shop",
        "hrefs": ["/p/13", "/p/14"],
        "abs": "http://shop.test/p/13",
        "el_text": "Nano Cube 60",
        "el_attr": "NC-60",
        "el_html": "two",
        "count": 2,
        "has_h1": True,
        "none": [],
    }
    assert ctx.warnings == {}


async def test_nested_fields_give_an_object_or_a_list_of_objects() -> None:
    ctx = await extract_from(
        {
            "first_review": {"css": ".reviews li", "fields": {"who": ".who", "text": "q"}},
            "reviews": {
                "css": ".reviews li",
                "multiple": True,
                "fields": {
                    "who": ".who",
                    "stars": {"attr": "data-stars", "type": "int"},  # the li itself
                    "all": {"type": "string"},
                    "quote": {"css": "q", "default": ""},
                },
            },
            "missing": {"css": ".nothing", "fields": {"a": "b"}},
            "missing_many": {"css": ".nothing", "multiple": True, "fields": {"a": "b"}},
        }
    )
    assert ctx.data == {
        "first_review": {"who": "Ann", "text": "Great"},
        "reviews": [
            {"who": "Ann", "stars": 5, "all": "Ann Great", "quote": "Great"},
            {"who": "Bob", "stars": None, "all": "Bob", "quote": ""},
        ],
        "missing": None,
        "missing_many": [],
    }
    assert ctx.warnings == {"field_conversion": 1}


async def test_nested_selectors_look_inside_the_parent_only() -> None:
    html = """<div class="card"><div class="card inner">A</div><p>x</p></div>
              <p>outside</p>"""
    ctx = await extract_from(
        {
            "card": {
                "css": "div.card",
                "fields": {
                    "inner": "div.card",
                    "cards": {"css": ".card", "multiple": True},
                    "ps": {"xpath": "//p/text()", "multiple": True},  # made relative
                    "ps_rel": {"xpath": "p", "multiple": True},
                },
            },
            "by_xpath": {
                "xpath": "//div[@class='card']",
                "fields": {"inner": "div.card", "ps": {"xpath": "//p", "multiple": True}},
            },
        },
        html,
    )
    assert ctx.data == {
        "card": {"inner": "A", "cards": ["A"], "ps": ["x"], "ps_rel": ["x"]},
        "by_xpath": {"inner": "A", "ps": ["x"]},
    }


async def test_nested_fields_on_xpath_strings_are_null_with_a_warning() -> None:
    ctx = await extract_from({"t": {"xpath": "//title/text()", "fields": {"a": "b"}}})
    assert ctx.data == {"t": None}
    assert ctx.warnings == {"field_not_element": 1}


async def test_as_object_folds_key_value_rows() -> None:
    ctx = await extract_from(
        {
            # null key (row without th) and empty key skipped; the later "Volume" wins
            "specs": {
                "css": "table.specs tr",
                "multiple": True,
                "fields": {"key": "th", "value": {"css": "td"}},
                "as": "object",
            },
            "one": {
                "css": "table.specs tr",
                "fields": {"key": "th", "value": "td"},
                "as": "object",
            },
            "typed": {
                "css": ".reviews li",
                "multiple": True,
                "fields": {"key": ".who", "value": {"attr": "data-stars", "type": "int"}},
                "as": "object",
            },
        }
    )
    assert ctx.data == {
        "specs": {"Volume": "61 l", "Weight": "4 kg"},
        "one": {"Volume": "60 l"},
        "typed": {"Ann": 5, "Bob": None},
    }
    assert ctx.warnings == {"field_conversion": 1}


async def test_a_bad_css_selector_raises_naming_it() -> None:
    with pytest.raises(ValueError, match=r"'div\['"):
        await extract_from({"x": "div["})
    with pytest.raises(ValueError, match=r"'div\['"):
        await extract_from({"x": {"css": "div[", "multiple": True}})
    with pytest.raises(ValueError, match=r"'ul\['"):
        await extract_from({"x": {"css": ".reviews", "fields": {"y": "ul["}}})


async def test_a_bad_xpath_raises_naming_it() -> None:
    with pytest.raises(ValueError, match=r"'//p\['"):
        await extract_from({"x": {"xpath": "//p["}})


async def test_a_spec_is_compiled_once() -> None:
    spec = spec_of({"a": "h1", "b": {"css": ".price", "regex": r"\d+"}})
    assert extract._plans(spec) is extract._plans(spec)
    assert extract._plans(spec) is not extract._plans(spec_of({"a": "h1"}))


async def test_a_later_field_cannot_leak_into_an_earlier_record() -> None:
    ctx = NodeContext(depth=0, data={"kept": 1})
    await extract.run(spec_of({"name": "h1"}), Page(url=URL, html=PRODUCT), ctx)
    assert ctx.data == {"kept": 1, "name": "Nano Cube 60"}


async def test_an_empty_document_gives_nulls() -> None:
    ctx = await extract_from({"a": "h1", "b": {"xpath": "//h1"}, "c": {"type": "string"}}, "")
    assert ctx.data == {"a": None, "b": None, "c": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,234", 1234),
        (" 42 ", 42),
        ("+3", 3),
        ("-1,234,567", -1234567),
        ("1 234", 1234),
        ("1.234", 1234),
        ("42.00", 42),
        ("12.5", None),
        ("1,2", None),
        ("1e3", None),
        ("abc", None),
        ("", None),
        ("$5", None),
    ],
)
def test_to_int(text: str, expected: int | None) -> None:
    assert to_int(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.50", 12.5),
        ("1,234.5", 1234.5),
        ("12,5", 12.5),
        ("1.234,5", 1234.5),
        ("1,234", 1234.0),
        ("0,125", 0.125),
        ("1.234", 1.234),
        ("1.234.567", 1234567.0),
        ("1'234.50", 1234.5),
        (".5", 0.5),
        ("-3", -3.0),
        ("1e3", 1000.0),
        ("1,2,3.4.5", None),
        ("nan", None),
        ("inf", None),
        ("1e999", None),
        ("12 EUR", None),
        ("", None),
    ],
)
def test_to_float(text: str, expected: float | None) -> None:
    assert to_float(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("Yes", True),
        ("y", True),
        ("ON", True),
        ("1", True),
        ("available", True),
        ("false", False),
        ("No", False),
        ("n", False),
        ("off", False),
        ("0", False),
        ("", False),
        ("  ", False),
    ],
)
def test_to_bool(text: str, expected: bool) -> None:
    assert to_bool(text) is expected


def test_collapse() -> None:
    assert collapse("  a \n\t b\u00a0 c  ") == "a b c"
