"""One validation run reports every problem: structural and semantic together, in document
order, with no semantic echo of a structural problem."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from trawl.cli import main
from workflows import WorkflowInvalid, load_workflow, parse_document
from workflows.spec import Workflow
from workflows.structure import salvage

REPO = Path(__file__).resolve().parents[2]
HEAD = "name: t1\nstart_urls: [http://example.com/]\n"

# The workflow: a wrong type, a transition to a phase that does not exist, a bad
# CSS selector, two bad regexes and a phase nothing leads to.
SHOP = """\
name: shop
start_urls: [http://127.0.0.1:8765/]
max_depth: deep
scope:
  include: ['(unclosed']
phases:
  - name: listing
    nodes:
      - {type: extract_links, selector: 'a.product', marker: product}
      - {type: filter, markers: [product], exclude: ['*bad']}
    transitions:
      - {when: {marker: product}, to: prodcut}
  - name: product
    nodes:
      - type: extract
        fields:
          title: 'h1['
          price: {css: .price, type: float}
  - name: orphan
"""

SHOP_PROBLEMS = [
    'max_depth: expected an integer, got string "deep"',
    "scope.include[0]: invalid regex: missing ) at '(unclosed'",
    "phases[0].nodes[1].exclude[0]: invalid regex: no argument for repetition operator at '*'",
    "phases[0].transitions[0].to: unknown phase 'prodcut' (phases: listing, product, orphan);"
    " did you mean 'product'?",
    "phases[1]: phase 'product' is unreachable: no transition path from start phase 'listing'",
    "phases[1].nodes[0].fields.title: invalid CSS selector 'h1[': expected an attribute name "
    "at position 3 (the end)",
    "phases[2]: phase 'orphan' is unreachable: no transition path from start phase 'listing'",
]


def problems_of(text: str) -> list[str]:
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(text)
    return [str(problem) for problem in caught.value.problems]


def test_every_layer_is_reported_in_one_run_in_document_order() -> None:
    assert problems_of(SHOP) == SHOP_PROBLEMS


def test_trawl_validate_prints_them_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(SHOP)
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [f"{path}: 7 problems", *SHOP_PROBLEMS]


def test_fixing_them_all_leaves_nothing_new() -> None:
    fixed = (
        SHOP.replace("deep", "4")
        .replace("(unclosed", "(closed)")
        .replace("*bad", "bad")
        .replace("prodcut", "product")
        .replace("h1[", "h1")
        .replace("  - name: orphan\n", "")
    )
    assert load_workflow(fixed).max_depth == 4


# Each document has structural problems only; a semantic rule reading what they broke
# would report more (in brackets: the echo that must not appear).
NO_ECHO = {
    # [phases[0].transitions[0].to: unknown phase 'b'; phases[1] unreachable]
    "phase-name-of-the-wrong-type": "phases:\n  - {name: a, transitions: [{when: {}, to: b}]}\n"
    "  - {name: [b]}\n",
    # [unknown phase 'b', as phases[1] is dropped from the view]
    "phase-not-a-mapping": "phases:\n  - {name: a, transitions: [{when: {}, to: b}]}\n  - b\n",
    # [marker: only allowed with emit: links]
    "typo-in-a-key-the-rule-reads": "phases:\n  - name: a\n    nodes:\n"
    "      - {type: script, code: x, emitt: links, marker: m}\n",
    # [script nodes need the browser engine: the phase's engine was meant to say]
    "engine-of-the-wrong-value": "engine: http\nphases:\n  - name: a\n    engine: browzer\n"
    "    nodes: [{type: script, code: x, as: y}]\n",
    # [filter marker and when.marker not emitted: the unknown node may have emitted it]
    "unknown-node-type-before-a-filter": "phases:\n  - name: a\n    nodes:\n"
    "      - {type: extract_linkz, marker: m}\n      - {type: filter, markers: [m]}\n"
    "    transitions: [{when: {marker: m}, to: a}]\n",
    # [start_urls: required]
    "typo-in-start-urls": "name: t1\nstart_url: [http://example.com/]\nphases: [{name: a}]\n",
    # [needs css or xpath]
    "selector-of-the-wrong-type": "phases:\n  - name: a\n    nodes:\n"
    "      - {type: extract, fields: {title: {css: 5}}}\n",
    # [as: object needs fields with exactly the keys key and value]
    "sub-field-of-the-wrong-type": "phases:\n  - name: a\n    nodes:\n      - type: extract\n"
    "        fields:\n          specs: {css: tr, multiple: true, as: object,"
    " fields: {key: 5, value: td}}\n",
    # [phase 'b' is unreachable from 'a']
    "start-phase-of-the-wrong-type": "start_phase: [b]\nphases:\n  - name: a\n  - name: b\n",
    # [phase 'b' is unreachable]
    "transition-without-to": "phases:\n  - name: a\n    transitions: [{when: {}}]\n  - name: b\n",
}


@pytest.mark.parametrize("body", NO_ECHO.values(), ids=list(NO_ECHO))
def test_a_structural_problem_has_no_semantic_echo(body: str) -> None:
    text = body if body.startswith("name:") else HEAD + body
    found = problems_of(text)
    assert len(found) == 1, found


def test_paths_after_a_dropped_item_are_the_documents() -> None:
    # The view drops the broken items; the problems still name the items as written.
    text = HEAD + (
        "scope: {include: [5, '(']}\n"
        "phases:\n  - 7\n  - name: a\n    nodes:\n"
        "      - {type: nope}\n      - {type: extract_links, selector: 'a['}\n"
    )
    assert [p.split(":")[0] for p in problems_of(text)] == [
        "scope.include[0]",
        "scope.include[1]",
        "phases[0]",
        "phases[1].nodes[0].type",
        "phases[1].nodes[1].selector",
    ]


def test_a_semantic_problem_beside_a_broken_sibling_is_still_reported() -> None:
    text = HEAD + (
        "phases:\n  - name: a\n    nodes:\n      - type: extract\n        fields:\n"
        "          price: {css: .price, type: number}\n"
        "          name: {attr: title}\n"
        "          title: 'h1['\n"
    )
    assert [p.split(":")[0] for p in problems_of(text)] == [
        "phases[0].nodes[0].fields.price.type",
        "phases[0].nodes[0].fields.name",
        "phases[0].nodes[0].fields.title",
    ]


def test_a_top_level_field_needs_a_selector() -> None:
    text = HEAD + "phases:\n  - name: a\n    nodes:\n      - type: extract\n"
    text += "        fields: {sku: {attr: data-sku}, row: {css: tr, fields: {id: {attr: id}}}}\n"
    assert problems_of(text) == [
        "phases[0].nodes[0].fields.sku: needs css or xpath (only a nested field may leave "
        "both out, to read its parent's element)"
    ]


def example_documents() -> list[Path]:
    return sorted(p for p in (REPO / "examples").glob("**/*.yaml") if "malformed" not in str(p))


@pytest.mark.parametrize("path", example_documents(), ids=lambda p: p.name)
def test_the_view_of_a_clean_document_is_what_msgspec_builds(path: Path) -> None:
    # The semantic rules judge the view when a document has problems and msgspec's
    # Workflow when it has none: both must be the same objects for the same data.
    data = parse_document(path.read_text())
    found = salvage(data, Workflow)
    assert found.problems == []
    assert found.value == msgspec.convert(data, Workflow)


def test_a_rule_tripping_over_a_broken_value_leaves_the_structural_problems(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Rules are written for valid data; on the view of a broken document, one may meet a
    # value that breaks a bound. The author still gets what structural validation found.
    from workflows import validate

    def trips(*_: object) -> list[object]:
        raise ZeroDivisionError("a rule divided by a rate of 0")

    monkeypatch.setattr(validate, "check_semantics", trips)
    text = HEAD + "politeness: {requests_per_second: 0}\nphases: [{name: a}]\n"
    assert problems_of(text) == ["politeness.requests_per_second: must be > 0"]
