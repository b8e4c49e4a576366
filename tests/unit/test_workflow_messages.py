"""What an author reads about a bad CSS selector, a YAML slip and an override path, and
phases addressed by name in ``--set``."""

from __future__ import annotations

import pytest
from selectolax.lexbor import LexborHTMLParser, SelectolaxError

from workflows import (
    Problem,
    WorkflowInvalid,
    apply_overrides,
    load_workflow,
    parse_document,
    yaml_safe,
)
from workflows.checks import css_error

HEAD = "name: t1\nstart_urls: [http://example.com/]\n"
TWO_PHASES = HEAD + (
    "phases:\n  - name: listing\n    transitions: [{when: {}, to: product}]\n  - name: product\n"
)


def only_problem(text: str, **kwargs: object) -> Problem:
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(text, **kwargs)  # type: ignore[arg-type]
    [problem] = caught.value.problems
    return problem


# --- CSS -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "reason"),
    [
        ("h1[", "expected an attribute name at position 3 (the end)"),
        ("td >", "expected a selector after '>' at position 4 (the end)"),
        ("a[href=", "expected an attribute value at position 7 (the end)"),
        ("div..x", "expected a class name at position 4, got '.'"),
        ("a[x=y z]", "expected ']' at position 6, got 'z'"),
        (",a", "unexpected ',' at position 0"),
        ("a >> b", "unexpected '>' at position 3"),
        ("a:nth-child(", "expected an argument or ')' at position 12 (the end)"),
        ('a[x="y\n"]', "invalid string at position 4"),
        ("", "it is empty"),
        # lexbor refuses what cssselect reads: lexbor says which part, on its own.
        ("h1::text", "pseudo-element '::text' at position 2 is not supported"),
        ("p:first", "pseudo-class ':first' at position 1 is not supported"),
        ("li:contains('x') a", "pseudo-class \":contains('x')\" at position 2 is not supported"),
        ("a::before b", "pseudo-element '::before' at position 1 is not supported"),
    ],
)
def test_a_bad_selector_says_why_and_where(selector: str, reason: str) -> None:
    assert css_error(selector) == f"invalid CSS selector {selector!r}: {reason}"


SELECTORS = [
    "h1",
    "a[href]",
    "a:not(.x",  # lexbor closes it at the end; cssselect would not
    "[data-x='1]",  # likewise the string
    "a:not(:not(b))",  # cssselect refuses nested :not(); lexbor runs it
    "a:has(> b)",
    "ul > li:nth-child(2n+1)",
    "h1[",
    "p:first",
    "a::before",
    "td >",
    ":scope > a",
    "a:nth-child(foo)",
]


@pytest.mark.parametrize("selector", SELECTORS)
def test_lexbor_alone_decides_what_is_accepted(selector: str) -> None:
    try:
        LexborHTMLParser("").css(selector)
    except SelectolaxError:
        accepted = False
    else:
        accepted = True
    assert (css_error(selector) is None) == accepted


def test_a_bad_selector_in_a_workflow_names_its_path() -> None:
    text = HEAD + "phases:\n  - name: a\n    nodes: [{type: extract, fields: {title: 'h1['}}]\n"
    assert str(only_problem(text)) == (
        "phases[0].nodes[0].fields.title: invalid CSS selector 'h1[': "
        "expected an attribute name at position 3 (the end)"
    )


# --- YAML ------------------------------------------------------------------------------------


@pytest.fixture(params=["libyaml", "pure-python"])
def yaml_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a test with each YAML parser: the wording must not depend on which one."""
    use_libyaml = request.param == "libyaml"
    if use_libyaml and not yaml_safe._HAS_LIBYAML:
        pytest.skip("libyaml is not installed")
    monkeypatch.setattr(yaml_safe, "_HAS_LIBYAML", use_libyaml)


@pytest.mark.usefixtures("yaml_parser")
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: x\nphases:\n  - name: a\n\tnodes: []\n",
            "line 4, column 1: a tab character; YAML indents with spaces",
        ),
        ("name: x\nphases:\n\t- name: a\n", "line 3, column 1: a tab character; YAML indents"),
        ("a: |\n\tfoo\n", "line 2, column 1: a tab character; YAML indents with spaces"),
        ("a: 'x\n", "line 2, column 1: the quoted value that starts at line 1, column 4 is not"),
        ("a: b: c\n", "line 1, column 5: unexpected ': '; put the value in quotes if it has one"),
        ("a: {b: 1\n", "line 2, column 1: the '{' at line 1, column 4 is not closed: expected"),
        ("a: [b, 1\n", "line 2, column 1: the '[' at line 1, column 4 is not closed: expected ','"),
        ("a: @x\n", "line 1, column 4: '@' cannot start a value; put the value in quotes"),
        ("- a\nb: c\n", "line 2, column 1: this line does not fit the block that starts at line 1"),
        ("a: 'x' y\n", "line 1, column 8: unexpected text after a value"),
    ],
)
def test_yaml_slips_are_named_in_plain_words(text: str, message: str) -> None:
    problem = only_problem(text)
    assert problem.path == ""
    assert problem.message.startswith(f"YAML error at {message}")


# --- --set paths -----------------------------------------------------------------------------


def test_a_phase_can_be_addressed_by_name() -> None:
    overridden = apply_overrides(
        parse_document(TWO_PHASES),
        ["phases[product].engine=http", "phases[listing].transitions[0].to=listing"],
    )
    assert overridden["phases"][1]["engine"] == "http"
    assert overridden["phases"][0]["transitions"][0]["to"] == "listing"
    workflow = load_workflow(TWO_PHASES, overrides=["phases[product].engine=http"])
    assert workflow.phase("product").engine == "http"
    assert load_workflow(TWO_PHASES, overrides=["phases[1].engine=http"]) == workflow


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        (
            "phases[prodcut].engine=http",
            Problem(
                "phases[prodcut].engine",
                "--set: no phase named 'prodcut' (phases: listing, product); "
                "did you mean 'product'?",
            ),
        ),
        (
            "phases[product].nodes[0].limit=1",
            Problem("phases[product].nodes[0].limit", "--set: phases[product].nodes is not a list"),
        ),
        (
            "max depth=2",
            Problem(
                "",
                "--set 'max depth=2': bad path 'max depth': expected '.', '[' or '=' after "
                "'max', got a space (a path has none)",
            ),
        ),
        (
            "phases[0=http",
            Problem(
                "",
                "--set 'phases[0=http': bad path 'phases[0': the '[' after 'phases' is not closed",
            ),
        ),
        (
            "phases[].engine=http",
            Problem(
                "",
                "--set 'phases[].engine=http': bad path 'phases[].engine': expected an index or "
                "a name, then ']' after 'phases[', got ']'",
            ),
        ),
        (
            "=5",
            Problem(
                "",
                "--set '=5': the path before '=' is empty "
                "(e.g. max_depth=2 or phases[page].engine=http)",
            ),
        ),
    ],
)
def test_a_bad_override_path_says_what_is_wrong(override: str, problem: Problem) -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        apply_overrides(parse_document(TWO_PHASES), [override])
    assert caught.value.problems == [problem]


def test_two_phases_of_one_name_need_an_index() -> None:
    text = HEAD + "phases:\n  - name: a\n  - name: a\n"
    with pytest.raises(WorkflowInvalid) as caught:
        apply_overrides(parse_document(text), ["phases[a].engine=http"])
    assert caught.value.problems == [
        Problem("phases[a].engine", "--set: phases has 2 items named 'a'; use an index")
    ]


def test_a_bad_override_is_reported_with_the_documents_problems() -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(
            TWO_PHASES + "max_depth: -1\n",
            filename="wf.yaml",
            overrides=["phases[nope].engine=http", "phases[product].engine=htp"],
        )
    assert caught.value.source == "wf.yaml"
    assert [str(p) for p in caught.value.problems] == [
        "phases[nope].engine: --set: no phase named 'nope' (phases: listing, product)",
        "phases[1].engine: invalid value 'htp' (expected one of: browser, http); "
        "did you mean 'http'?",
        "max_depth: must be >= 0",
    ]
