"""Field processors: what each gives in a record, the order they run in, their bounds, and
how validation reports a processor that cannot run."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from nodes import extract
from nodes.context import NodeContext
from nodes.page import Page
from worker.export.schema import describe, field_type
from workflows import validate_data
from workflows.errors import WorkflowInvalid
from workflows.processors import MAX_GROWN_CHARS, MAX_LIST_ITEMS
from workflows.spec import ExtractNode, Field

HTML = """<html><body>
  <h1>Installation<a class="headerlink" href="#installation">¶</a></h1>
  <p class="tags">  Python, Crawling ,, HTML  </p>
  <ul><li> One </li><li>two</li><li>  </li><li>Three</li></ul>
  <p class="price">Price: 1.234,50 EUR</p>
  <a class="doc" href="guide/Intro.HTML">Guide</a>
  <p class="sku">--SKU-42--</p>
  <p class="empty"></p>
</body></html>"""


async def extract_from(fields: dict[str, Any], html: str = HTML) -> NodeContext:
    spec = msgspec.convert({"type": "extract", "fields": fields}, ExtractNode)
    ctx = NodeContext(depth=0)
    await extract.run(spec, Page(url="http://docs.test/a/b.html", html=html), ctx)
    return ctx


async def value(process: list[Any], css: str = "h1", **field: Any) -> Any:
    ctx = await extract_from({"v": {"css": css, "process": process, **field}})
    return ctx.data["v"]


@pytest.mark.parametrize(
    ("process", "css", "expected"),
    [
        ([{"remove": "¶"}], "h1", "Installation"),
        (["lower"], "h1", "installation¶"),
        (["upper"], "h1", "INSTALLATION¶"),
        ([{"strip_chars": "-"}], ".sku", "SKU-42"),
        ([{"replace": ["-", "_"]}], ".sku", "__SKU_42__"),
        ([{"regex_replace": [r"-+(\w+)-(\d+)-+", r"\2/\1"]}], ".sku", "42/SKU"),
        ([{"regex_replace": [r"(?P<n>\d+)", r"#\g<n>#\g<0>\\"]}], ".sku", "--SKU-#42#42\\--"),
        ([{"prefix": "sku:"}, {"suffix": "!"}], ".sku", "sku:--SKU-42--!"),
        ([{"slice": [2, -2]}], ".sku", "SKU-42"),
        ([{"slice": [None, 3]}], ".sku", "--S"),
        ([{"split": ","}], ".tags", ["Python", "Crawling", "HTML"]),
        ([{"split": ","}, {"join": "|"}], ".tags", "Python|Crawling|HTML"),
        ([{"split": ","}, {"slice": [1, None]}, "lower"], ".tags", ["crawling", "html"]),
        ([{"default_if_empty": "none"}], ".empty", "none"),
        ([{"default_if_empty": "none"}], ".sku", "--SKU-42--"),
        ([{"prefix": "  a  b  "}, "collapse_whitespace"], ".sku", "a b --SKU-42--"),
        ([{"prefix": "  "}, "strip"], ".sku", "--SKU-42--"),
    ],
)
async def test_each_processor_on_a_text(process: list[Any], css: str, expected: Any) -> None:
    assert await value(process, css) == expected


async def test_on_a_list_they_work_item_by_item_and_join_and_slice_on_the_whole() -> None:
    ctx = await extract_from(
        {
            "items": {"css": "li", "multiple": True, "process": ["lower", {"prefix": "-"}]},
            "joined": {"css": "li", "multiple": True, "process": [{"join": ", "}]},
            "first_two": {"css": "li", "multiple": True, "process": [{"slice": [0, 2]}]},
            # split flattens: one list of every item's parts
            "words": {
                "css": "li, .tags",
                "multiple": True,
                "process": [{"split": ","}, {"split": " "}],
            },
            # an item that becomes null leaves the list
            "nonempty": {
                "css": "li",
                "multiple": True,
                "process": ["strip", {"default_if_empty": None}],
            },
        }
    )
    assert ctx.data == {
        "items": ["-one", "-two", "-", "-three"],
        "joined": "One, two, , Three",
        "first_two": ["One", "two"],
        "words": ["Python", "Crawling", "HTML", "One", "two", "Three"],  # document order
        "nonempty": ["One", "two", "Three"],
    }
    assert ctx.warnings == {}


async def test_order_regex_then_processors_then_absolute_url_then_type() -> None:
    ctx = await extract_from(
        {
            # the regex narrows "Price: 1.234,50 EUR", processors make it a number's text
            "price": {
                "css": ".price",
                "regex": r"(?P<value>[\d.,]+)",
                "process": [{"remove": "."}, {"replace": [",", "."]}],
                "type": "float",
            },
            # processors see the relative href; the URL is made absolute after them
            "doc": {
                "css": "a.doc",
                "attr": "href",
                "process": ["lower"],
                "absolute_url": True,
            },
            "numbers": {
                "css": ".sku",
                "process": [{"strip_chars": "-"}, {"split": "-"}],
                "type": "int",
            },
        }
    )
    assert ctx.data == {
        "price": 1234.5,
        "doc": "http://docs.test/a/guide/intro.html",
        "numbers": [42],  # "SKU" does not convert: left out, and counted
    }
    assert ctx.warnings == {"field_conversion": 1}


async def test_nothing_found_skips_the_processors() -> None:
    ctx = await extract_from(
        {
            "text": {"css": ".nothing", "process": [{"default_if_empty": "x"}]},
            "dflt": {"css": ".nothing", "process": ["upper"], "default": "n/a"},
            "joined": {"css": ".nothing", "multiple": True, "process": [{"join": ","}]},
            "split": {"css": ".nothing", "process": [{"split": ","}]},
            # null from a processor: the field is missing, so its default applies
            "empty": {"css": ".empty", "process": [{"default_if_empty": None}], "default": "-"},
        }
    )
    assert ctx.data == {"text": None, "dflt": "n/a", "joined": None, "split": [], "empty": "-"}


async def test_a_value_cannot_grow_without_bound() -> None:
    html = "<p>" + "a" * 100_000 + "</p>"
    grow = {"replace": ["a", "a" * 100]}  # 10,000,000 characters: past the bound
    ctx = await extract_from(
        {
            "replaced": {"css": "p", "process": [grow]},
            "regexed": {"css": "p", "process": [{"regex_replace": ["a", "b" * 100]}]},
            "fits": {"css": "p", "process": [{"replace": ["a", "bb"]}]},
            "kept": {"css": "p", "process": [grow], "default": "too long"},
        },
        html,
    )
    assert ctx.data["replaced"] is None
    assert ctx.data["regexed"] is None
    assert ctx.data["fits"] == "b" * 200_000  # under MAX_GROWN_CHARS
    assert ctx.data["kept"] == "too long"
    assert ctx.warnings == {"field_process_limit": 3}
    assert ctx.warning_fields == {
        "field_process_limit|replaced": 1,
        "field_process_limit|regexed": 1,
        "field_process_limit|kept": 1,
    }
    assert 200_000 < MAX_GROWN_CHARS < 10_000_000


async def test_the_bound_is_shared_by_the_items_of_a_list() -> None:
    html = "<ul>" + "<li>a</li>" * 2000 + "</ul>"
    ctx = await extract_from(
        {"li": {"css": "li", "multiple": True, "process": [{"suffix": "x" * 1000}]}}, html
    )
    assert ctx.data == {"li": []}  # 2,000 x 1,001 characters > MAX_GROWN_CHARS
    assert ctx.warnings == {"field_process_limit": 1}


async def test_a_split_makes_at_most_max_list_items() -> None:
    many = "<p>" + "a," * MAX_LIST_ITEMS + "</p>"  # one item more than allowed
    two_halves = "<ul>" + ("<li>" + "a," * (MAX_LIST_ITEMS // 2 + 1) + "</li>") * 2 + "</ul>"
    split = {"process": [{"split": ","}]}
    ctx = await extract_from({"one": {"css": "p", **split}}, many)
    assert ctx.data == {"one": []}
    assert ctx.warnings == {"field_process_limit": 1}
    ctx = await extract_from({"both": {"css": "li", "multiple": True, **split}}, two_halves)
    assert ctx.data == {"both": []}
    assert ctx.warnings == {"field_process_limit": 1}
    fits = "<p>" + "a," * (MAX_LIST_ITEMS - 1) + "</p>"
    ctx = await extract_from({"fits": {"css": "p", **split}}, fits)
    assert len(ctx.data["fits"]) == MAX_LIST_ITEMS - 1


def problems_of(process: list[Any], **field: Any) -> list[str]:
    data = {
        "name": "proc-test",
        "start_urls": ["http://docs.test/"],
        "engine": "http",
        "phases": [
            {
                "name": "doc",
                "nodes": [
                    {
                        "type": "extract",
                        "fields": {"title": {"css": "h1", "process": process, **field}},
                    }
                ],
            }
        ],
    }
    try:
        validate_data(data)
    except WorkflowInvalid as invalid:
        return [str(p) for p in invalid.problems]
    return []


AT = "phases[0].nodes[0].fields.title.process"


@pytest.mark.parametrize(
    ("process", "expected"),
    [
        (
            ["strip", "strp"],
            f"{AT}[1]: unknown processor 'strp' (expected one of: collapse_whitespace, "
            "default_if_empty, join, lower, prefix, regex_replace, remove, replace, slice, "
            "split, strip, strip_chars, suffix, upper); did you mean 'strip'?",
        ),
        ([{"lower": True}], f"{AT}[0]: lower takes no argument: write it as a bare name, lower"),
        (["remove"], f"{AT}[0]: remove needs an argument: write {{remove: TEXT}}"),
        ([{"remove": ""}], f'{AT}[0]: remove takes the text to remove, a non-empty string; got ""'),
        (
            [{"replace": "¶"}],
            f'{AT}[0]: replace takes [OLD, NEW], a list of two strings; got "¶"',
        ),
        (
            [{"replace": ["", "x"]}],
            f"{AT}[0]: replace: OLD (the text to replace) must not be empty",
        ),
        (
            [{"regex_replace": ["(?<=a)b", ""]}],
            f"{AT}[0]: regex_replace: PATTERN: invalid regex: invalid perl operator at '(?<=' "
            "(lookaround is not supported: RE2 syntax)",
        ),
        (
            [{"regex_replace": ["(a)", r"\2"]}],
            f"{AT}[0]: regex_replace: REPLACEMENT: group 2 does not exist (the pattern has 1)",
        ),
        (
            [{"regex_replace": ["(?P<num>a)", r"\g<nun>"]}],
            f"{AT}[0]: regex_replace: REPLACEMENT: no group named 'nun' (named groups: num); "
            "did you mean 'num'?",
        ),
        (
            [{"regex_replace": ["a", r"\n"]}],
            f"{AT}[0]: regex_replace: REPLACEMENT: unknown escape '\\\\n' (groups are \\1 or "
            "\\g<name>; a backslash is \\\\)",
        ),
        (
            [{"join": ","}],
            f"{AT}[0]: join needs a list, and the value here is a text (use multiple: true, or "
            "a split before it)",
        ),
        (
            [{"slice": [0]}],
            f"{AT}[0]: slice takes [START, END], two integers or nulls (negative counts from "
            "the end); got [0]",
        ),
        (
            [{"default_if_empty": 3}],
            f"{AT}[0]: default_if_empty takes the value for an empty text, a string or null; got 3",
        ),
        (
            [{"split": ",", "join": ","}],
            f"{AT}[0]: a processor is a name or a mapping of one name to its argument; got 2 "
            "keys (split, join)",
        ),
    ],
)
def test_validation_names_the_processor_and_what_is_wrong(
    process: list[Any], expected: str
) -> None:
    assert problems_of(process) == [expected]


def test_valid_processor_lists_pass_validation() -> None:
    assert problems_of([{"split": ","}, "strip", {"join": ", "}]) == []
    assert problems_of([{"join": ", "}, {"slice": [0, 10]}], multiple=True) == []
    assert problems_of([{"regex_replace": [r"(?P<a>x)(y)", r"\2\g<a>\g<0>\\"]}]) == []


def test_processors_on_a_field_with_fields_are_refused() -> None:
    problems = problems_of(["strip"], fields={"a": "b"})
    assert problems == [f"{AT}: processors work on text; this field has fields"]


def test_the_export_schema_follows_split_and_join() -> None:
    def typed(**spec: Any) -> str:
        return describe(field_type(msgspec.convert(spec, Field)))

    assert typed(css="p", process=[{"split": ","}]) == "list<string>"
    assert typed(css="p", process=[{"split": ","}], type="int") == "list<int64>"
    assert typed(css="p", multiple=True, process=[{"join": ","}]) == "string"
    assert typed(css="p", multiple=True, process=["strip"]) == "list<string>"
