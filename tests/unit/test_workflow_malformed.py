"""Malformed workflows: each must be rejected with exactly the expected problems and paths.

Every case lists (path, message fragment) for every problem it must produce, so a rule that
reports too little, too much, or at the wrong path fails here.
"""

from __future__ import annotations

import pytest

from workflows import Problem, WorkflowInvalid, load_workflow

HEAD = "name: t1\nstart_urls: [http://example.com/]\n"
ONE_PHASE = "phases:\n  - name: a\n"

CASES: list[tuple[str, str, list[tuple[str, str]]]] = [
    # --- structure: keys ---------------------------------------------------------------
    (
        "unknown-top-level-key",
        HEAD + "max_pags: 3\n" + ONE_PHASE,
        [("max_pags", "unknown key 'max_pags' (expected one of: engine, fetch, link_claims, ")],
    ),
    (
        "unknown-key-suggestion",
        HEAD + ONE_PHASE + "    nodes:\n      - {type: extract_links, selectr: a}\n",
        [
            (
                "phases[0].nodes[0].selectr",
                "unknown key 'selectr' (expected one of: attr, limit, marker, selector, type); "
                "did you mean 'selector'?",
            )
        ],
    ),
    (
        "unknown-key-in-dict-value",
        HEAD + ONE_PHASE + "    nodes:\n      - type: extract\n"
        "        fields:\n          price: {css: .price, typ: float}\n",
        [("phases[0].nodes[0].fields.price.typ", "did you mean 'type'?")],
    ),
    (
        "required-key-missing",
        "start_urls: [http://example.com/]\n" + ONE_PHASE,
        [("name", "required key missing")],
    ),
    (
        "no-start-urls-nor-sitemaps",
        "name: t1\n" + ONE_PHASE,
        [("start_urls", "required: give start_urls, sitemaps, or both")],
    ),
    (
        "required-key-missing-in-node",
        HEAD + ONE_PHASE + "    nodes:\n      - {type: script, as: x}\n",
        [("phases[0].nodes[0].code", "required key missing")],
    ),
    (
        "required-when",
        HEAD + ONE_PHASE + "    transitions:\n      - {to: a}\n",
        [("phases[0].transitions[0].when", "required key missing")],
    ),
    (
        "unknown-node-type",
        HEAD + ONE_PHASE + "    nodes:\n      - {type: extrct}\n",
        [
            (
                "phases[0].nodes[0].type",
                "unknown node type 'extrct' (expected one of: extract, extract_links, filter, "
                "script); did you mean 'extract'?",
            )
        ],
    ),
    (
        "node-without-type",
        HEAD + ONE_PHASE + "    nodes:\n      - {selector: a}\n",
        [("phases[0].nodes[0].type", "required key missing (one of: extract, extract_links")],
    ),
    # --- structure: types and bounds -------------------------------------------------------
    (
        "int-from-string",
        HEAD + "max_depth: abc\n" + ONE_PHASE,
        [("max_depth", 'expected an integer, got string "abc"')],
    ),
    (
        "bool-is-not-an-int",
        HEAD + "max_pages: true\n" + ONE_PHASE,
        [("max_pages", "expected an integer, got boolean true")],
    ),
    (
        "float-is-not-an-int",
        HEAD + "retries: {max_attempts: 2.5}\n" + ONE_PHASE,
        [("retries.max_attempts", "expected an integer, got number 2.5")],
    ),
    (
        "int-bound-ge",
        HEAD + "max_depth: -1\n" + ONE_PHASE,
        [("max_depth", "must be >= 0")],
    ),
    (
        "int-bound-ge-1",
        HEAD + "politeness: {burst: 0}\n" + ONE_PHASE,
        [("politeness.burst", "must be >= 1")],
    ),
    (
        "float-bound-gt",
        HEAD + "politeness: {requests_per_second: 0}\n" + ONE_PHASE,
        [("politeness.requests_per_second", "must be > 0")],
    ),
    (
        "string-pattern",
        "name: Aqua Shop\nstart_urls: [http://example.com/]\n" + ONE_PHASE,
        [("name", 'must match ^[a-z0-9][a-z0-9-]{1,62}$, got "Aqua Shop"')],
    ),
    (
        "marker-pattern",
        HEAD + ONE_PHASE + "    nodes:\n      - {type: extract_links, marker: 'bad marker'}\n",
        [("phases[0].nodes[0].marker", "must match ^[A-Za-z0-9_]")],
    ),
    (
        "empty-string",
        HEAD + "fetch: {user_agent: ''}\n" + ONE_PHASE,
        [("fetch.user_agent", "must not be empty")],
    ),
    (
        "empty-list",
        HEAD + "phases: []\n",
        [("phases", "must not be empty")],
    ),
    (
        "empty-fields",
        HEAD + ONE_PHASE + "    nodes:\n      - {type: extract, fields: {}}\n",
        [("phases[0].nodes[0].fields", "must not be empty")],
    ),
    (
        "literal",
        HEAD + "engine: brwser\n" + ONE_PHASE,
        [
            (
                "engine",
                "invalid value 'brwser' (expected one of: browser, http); did you mean 'browser'?",
            )
        ],
    ),
    (
        "literal-in-list",
        HEAD + "fetch: {block_resources: [image, fonts]}\n" + ONE_PHASE,
        [("fetch.block_resources[1]", "invalid value 'fonts'")],
    ),
    (
        "optional-literal-wrong-kind",
        HEAD + "phases:\n  - {name: a, engine: 5}\n",
        [("phases[0].engine", "expected one of: browser, http, got integer 5")],
    ),
    (
        "mapping-expected",
        HEAD + "politeness: 5\n" + ONE_PHASE,
        [("politeness", "expected a mapping, got integer 5")],
    ),
    (
        "null-is-not-a-mapping",
        HEAD + "scope:\n" + ONE_PHASE,
        [("scope", "expected a mapping, got null")],
    ),
    (
        "list-expected",
        HEAD + "phases: {name: a}\n",
        [("phases", "expected a list, got a mapping")],
    ),
    (
        "list-item-not-mapping",
        HEAD + "phases: [a]\n",
        [("phases[0]", 'expected a mapping, got string "a"')],
    ),
    (
        "field-spec-wrong-type",
        HEAD + ONE_PHASE + "    nodes:\n      - type: extract\n        fields: {price: 5}\n",
        [("phases[0].nodes[0].fields.price", "expected a string or a mapping, got integer 5")],
    ),
    (
        "dict-key-quoted-in-path",
        HEAD + ONE_PHASE + "    nodes:\n      - type: extract\n        fields: {'a b': [x]}\n",
        [('phases[0].nodes[0].fields["a b"]', "expected a string or a mapping, got a list")],
    ),
    (
        "dict-key-not-a-string",
        HEAD + ONE_PHASE + "    nodes:\n      - type: extract\n        fields: {1: h1}\n",
        [('phases[0].nodes[0].fields["1"]', "key must be a string, got integer 1")],
    ),
    (
        "as-renamed-field-literal",
        HEAD + ONE_PHASE + "    nodes:\n      - type: extract\n        fields:\n"
        "          specs: {css: tr, multiple: true, fields: {key: th, value: td}, as: list}\n",
        [("phases[0].nodes[0].fields.specs.as", "invalid value 'list' (expected one of: object)")],
    ),
    (
        "nested-field-type",
        HEAD + ONE_PHASE + "    nodes:\n      - type: extract\n        fields:\n"
        "          specs: {css: tr, fields: {key: {css: th, multiple: maybe}}}\n",
        [("phases[0].nodes[0].fields.specs.fields.key.multiple", "expected true or false")],
    ),
    (
        "top-level-not-a-mapping",
        "- name: t1\n",
        [("", "a workflow must be a mapping, got a list")],
    ),
    # --- semantics: regexes, CSS, XPath -------------------------------------------------
    (
        "bad-regex-scope",
        HEAD + "scope: {include: ['(unclosed'], exclude: ['ok', '*bad']}\n" + ONE_PHASE,
        [
            ("scope.include[0]", "invalid regex: missing ) at '(unclosed'"),
            ("scope.exclude[1]", "invalid regex: no argument for repetition operator at '*'"),
        ],
    ),
    (
        "bad-regex-filter",
        HEAD + ONE_PHASE + "    nodes:\n      - {type: extract_links}\n"
        "      - {type: filter, include: ['[a-'], exclude: ['(?P<x']}\n",
        [
            ("phases[0].nodes[1].include[0]", "invalid regex"),
            ("phases[0].nodes[1].exclude[0]", "invalid regex"),
        ],
    ),
    (
        "bad-regex-field",
        HEAD + ONE_PHASE + "    nodes:\n      - type: extract\n"
        "        fields: {price: {css: .price, regex: '[0-9'}}\n",
        [("phases[0].nodes[0].fields.price.regex", "invalid regex: missing ] at '[0-9'")],
    ),
    (
        "bad-regex-when-url",
        HEAD + ONE_PHASE + "    transitions:\n      - {when: {url: '+x'}, to: a}\n",
        [
            (
                "phases[0].transitions[0].when.url",
                "invalid regex: no argument for repetition operator",
            )
        ],
    ),
    (
        "bad-css-links",
        HEAD + ONE_PHASE + "    nodes:\n      - {type: extract_links, selector: 'a['}\n",
        [("phases[0].nodes[0].selector", "invalid CSS selector 'a['")],
    ),
    (
        "bad-css-shorthand-and-nested",
        HEAD + ONE_PHASE + "    nodes:\n      - type: extract\n        fields:\n"
        "          name: 'h1::text'\n"
        "          rows: {css: tr, multiple: true, fields: {cell: {css: 'td >'}}}\n",
        [
            ("phases[0].nodes[0].fields.name", "invalid CSS selector 'h1::text'"),
            ("phases[0].nodes[0].fields.rows.fields.cell.css", "invalid CSS selector 'td >'"),
        ],
    ),
    (
        "bad-xpath",
        HEAD + ONE_PHASE + "    nodes:\n      - type: extract\n"
        "        fields: {title: {xpath: '//title['}}\n",
        [("phases[0].nodes[0].fields.title.xpath", "invalid XPath '//title['")],
    ),
    (
        "css-and-xpath",
        HEAD + ONE_PHASE + "    nodes:\n      - type: extract\n"
        "        fields: {title: {css: title, xpath: //title}}\n",
        [("phases[0].nodes[0].fields.title", "css and xpath are mutually exclusive")],
    ),
    # --- semantics: the phase graph ---------------------------------------------------------
    (
        "transition-to-unknown-phase",
        HEAD + "phases:\n  - name: a\n    transitions:\n      - {when: {}, to: lisitng}\n"
        "  - name: listing\n",
        [
            (
                "phases[0].transitions[0].to",
                "unknown phase 'lisitng' (phases: a, listing); did you mean 'listing'?",
            ),
            ("phases[1]", "phase 'listing' is unreachable"),
        ],
    ),
    (
        "unknown-start-phase",
        HEAD + "start_phase: b\n" + ONE_PHASE,
        [("start_phase", "unknown phase 'b' (phases: a)")],
    ),
    (
        "duplicate-phase-name",
        HEAD + "phases:\n  - name: a\n    transitions: [{when: {}, to: a}]\n  - name: a\n",
        [("phases[1].name", "duplicate phase name 'a' (also phases[0])")],
    ),
    (
        "unreachable-phase",
        HEAD + "phases:\n  - name: a\n    transitions: [{when: {}, to: b}]\n"
        "  - name: b\n  - name: orphan\n    transitions: [{when: {}, to: b}]\n",
        [("phases[2]", "phase 'orphan' is unreachable: no transition path from start phase 'a'")],
    ),
    (
        "start-phase-changes-reachability",
        HEAD + "start_phase: b\nphases:\n  - name: a\n    transitions: [{when: {}, to: b}]\n"
        "  - name: b\n",
        [("phases[0]", "phase 'a' is unreachable")],
    ),
    # --- semantics: markers ----------------------------------------------------------------
    (
        "when-marker-not-emitted",
        HEAD + "phases:\n  - name: a\n    nodes:\n      - {type: extract_links, marker: category}\n"
        "    transitions:\n      - {when: {marker: categry}, to: b}\n"
        "  - name: b\n",
        [
            (
                "phases[0].transitions[0].when.marker",
                "no node of phase 'a' emits marker 'categry' (markers emitted: category); "
                "did you mean 'category'?",
            )
        ],
    ),
    (
        "when-marker-emitted-by-another-phase-only",
        HEAD + "phases:\n  - name: a\n    transitions: [{when: {marker: item}, to: b}]\n"
        "  - name: b\n    nodes:\n      - {type: extract_links, marker: item}\n",
        [("phases[0].transitions[0].when.marker", "(its nodes emit no markers)")],
    ),
    (
        "filter-marker-emitted-only-later",
        HEAD + ONE_PHASE + "    nodes:\n      - {type: extract_links, marker: page}\n"
        "      - {type: filter, markers: [page, product]}\n"
        "      - {type: extract_links, marker: product}\n",
        [
            (
                "phases[0].nodes[1].markers[1]",
                "no node before this filter emits marker 'product' (markers emitted: page)",
            )
        ],
    ),
    # --- semantics: script nodes -------------------------------------------------------------
    (
        "script-in-http-workflow",
        HEAD
        + "engine: http\n"
        + ONE_PHASE
        + "    nodes:\n      - {type: script, code: x, as: y}\n",
        [("phases[0].nodes[0]", "script nodes need the browser engine; phase 'a' uses http")],
    ),
    (
        "script-in-http-phase",
        HEAD + "phases:\n  - name: a\n    engine: http\n"
        "    nodes:\n      - {type: script, code: x, as: y}\n",
        [("phases[0].nodes[0]", "uses http (its engine)")],
    ),
    (
        "script-value-needs-as",
        HEAD + ONE_PHASE + "    nodes:\n      - {type: script, code: x}\n",
        [("phases[0].nodes[0].as", "required when emit is value")],
    ),
    (
        "script-marker-and-limit-need-links",
        HEAD
        + ONE_PHASE
        + "    nodes:\n      - {type: script, code: x, as: y, marker: m, limit: 3}\n",
        [
            ("phases[0].nodes[0].marker", "only allowed with emit: links"),
            ("phases[0].nodes[0].limit", "only allowed with emit: links"),
        ],
    ),
    (
        "script-links-with-as",
        HEAD + ONE_PHASE + "    nodes:\n      - {type: script, code: x, emit: links, as: y}\n",
        [("phases[0].nodes[0].as", "only allowed with emit: value")],
    ),
    # --- semantics: as: object -----------------------------------------------------------
    (
        "as-object-needs-multiple",
        HEAD + ONE_PHASE + "    nodes:\n      - type: extract\n        fields:\n"
        "          specs: {css: tr, fields: {key: th, value: td}, as: object}\n",
        [("phases[0].nodes[0].fields.specs.as", "as: object needs multiple: true")],
    ),
    (
        "as-object-needs-key-and-value",
        HEAD + ONE_PHASE + "    nodes:\n      - type: extract\n        fields:\n"
        "          specs: {css: tr, multiple: true, fields: {name: th, value: td}, as: object}\n",
        [
            (
                "phases[0].nodes[0].fields.specs.as",
                "exactly the keys key and value (got: name, value)",
            )
        ],
    ),
    (
        "as-object-without-fields",
        HEAD + ONE_PHASE + "    nodes:\n      - type: extract\n        fields:\n"
        "          specs: {css: tr, multiple: true, as: object}\n",
        [("phases[0].nodes[0].fields.specs.as", "exactly the keys key and value (got: none)")],
    ),
    # --- semantics: URLs, domains, depths ----------------------------------------------------
    (
        "start-url-not-absolute",
        "name: t1\nstart_urls: [example.com/shop, 'ftp://example.com/', 'http://']\n" + ONE_PHASE,
        [
            ("start_urls[0]", "must be an absolute http(s) URL, got 'example.com/shop'"),
            ("start_urls[1]", "must be an absolute http(s) URL"),
            ("start_urls[2]", "must be an absolute http(s) URL"),
        ],
    ),
    (
        "start-url-bad-port",
        "name: t1\nstart_urls: ['http://example.com:99999/']\n" + ONE_PHASE,
        [("start_urls[0]", "Port out of range")],
    ),
    (
        "allowed-domains",
        HEAD + "scope:\n  allowed_domains: ['http://example.com/shop', 'example.com:99999', "
        "'*.', 'ok.example.com:8080', 'https://*.example.org', 'a/b', 'ftp://example.com', "
        "'*.127.0.0.1']\n" + ONE_PHASE,
        [
            ("scope.allowed_domains[0]", "must be a host, *.domain, host:port or scheme://"),
            ("scope.allowed_domains[1]", "a port is a number from 1 to 65535"),
            ("scope.allowed_domains[2]", "must be a host, *.domain, host:port or scheme://"),
            ("scope.allowed_domains[5]", "must be a host, *.domain, host:port or scheme://"),
            ("scope.allowed_domains[6]", "the scheme must be http or https"),
            ("scope.allowed_domains[7]", "*. goes with a domain name, not an address"),
        ],
    ),
    (
        "when-min-depth-above-max",
        HEAD
        + ONE_PHASE
        + "    transitions:\n      - {when: {min_depth: 3, max_depth: 1}, to: a}\n",
        [("phases[0].transitions[0].when", "min_depth (3) is greater than max_depth (1)")],
    ),
    (
        "filter-min-depth-above-max",
        HEAD + ONE_PHASE + "    nodes:\n      - {type: filter, min_depth: 2, max_depth: 0}\n",
        [("phases[0].nodes[0]", "min_depth (2) is greater than max_depth (0)")],
    ),
]


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(text)
    return caught.value.problems


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_workflow_reports_exactly_these_problems(
    text: str, expected: list[tuple[str, str]]
) -> None:
    problems = problems_of(text)
    assert sorted(p.path for p in problems) == sorted(path for path, _ in expected), problems
    for path, fragment in expected:
        messages = [p.message for p in problems if p.path == path]
        assert any(fragment in m for m in messages), (path, fragment, messages)


def test_one_document_reports_all_structural_problems_at_once() -> None:
    text = (
        "name: Bad Name\n"
        "start_urls: [http://example.com/]\n"
        "max_depth: deep\n"
        "politness: {burst: 2}\n"
        "phases:\n"
        "  - name: a\n"
        "    nodes:\n"
        "      - {type: extract_links, selectr: a, limit: -5}\n"
        "      - {type: extrct}\n"
        "    transitions:\n"
        "      - {when: {marker: m}}\n"
    )
    assert [str(p) for p in problems_of(text)] == [
        'name: must match ^[a-z0-9][a-z0-9-]{1,62}$, got "Bad Name"',
        'max_depth: expected an integer, got string "deep"',
        "politness: unknown key 'politness' (expected one of: engine, fetch, link_claims, "
        "login, max_depth, max_pages, name, phases, politeness, proxies, records, retries, "
        "scope, sitemaps, start_phase, start_urls, webhook); did you mean 'politeness'?",
        "phases[0].nodes[0].selectr: unknown key 'selectr' (expected one of: attr, limit, "
        "marker, selector, type); did you mean 'selector'?",
        "phases[0].nodes[0].limit: must be >= 0",
        "phases[0].nodes[1].type: unknown node type 'extrct' (expected one of: extract, "
        "extract_links, filter, script); did you mean 'extract'?",
        "phases[0].transitions[0].to: required key missing",
    ]


def test_one_document_reports_all_semantic_problems_at_once() -> None:
    text = (
        "name: shop\n"
        "start_urls: [shop.example]\n"
        "engine: http\n"
        "scope: {exclude: ['(']}\n"
        "phases:\n"
        "  - name: a\n"
        "    nodes:\n"
        "      - {type: extract_links, selector: 'a[', marker: item}\n"
        "      - {type: script, code: x}\n"
        "    transitions:\n"
        "      - {when: {marker: itme}, to: b}\n"
        "      - {when: {}, to: nowhere}\n"
        "  - name: b\n"
        "  - name: c\n"
    )
    paths = [p.path for p in problems_of(text)]
    assert paths == [  # in the order they are written, not the order the rules ran
        "start_urls[0]",
        "scope.exclude[0]",
        "phases[0].nodes[0].selector",
        "phases[0].nodes[1]",
        "phases[0].nodes[1].as",
        "phases[0].transitions[0].when.marker",
        "phases[0].transitions[1].to",
        "phases[2]",
    ]


def test_semantic_rules_run_beside_structural_problems() -> None:
    """A type error elsewhere does not hold back what the semantic rules find."""
    text = HEAD + "max_depth: x\nphases:\n  - {name: a, transitions: [{when: {}, to: b}]}\n"
    assert [str(p) for p in problems_of(text)] == [
        'max_depth: expected an integer, got string "x"',
        "phases[0].transitions[0].to: unknown phase 'b' (phases: a)",
    ]


VALID_EDGE_CASES = {
    "empty-when-matches-everything": ONE_PHASE + "    transitions: [{when: {}, to: a}]\n",
    "glob-query-params": "scope: {ignore_query_params: ['utm_*', 'session?d']}\n" + ONE_PHASE,
    "wildcard-ip-and-idn-domains": "scope:\n  allowed_domains: ['*.example.com', 127.0.0.1, "
    "localhost, bücher.de, '::1']\n" + ONE_PHASE,
    "script-links-marker-feeds-transition": "phases:\n  - name: a\n    nodes:\n"
    "      - {type: script, code: '() => []', emit: links, marker: m}\n"
    "      - {type: filter, markers: [m]}\n"
    "    transitions: [{when: {marker: m}, to: b}]\n  - name: b\n",
    "browser-phase-in-http-workflow": "engine: http\nphases:\n  - name: a\n    engine: browser\n"
    "    nodes: [{type: script, code: x, as: y}]\n",
    "field-without-selector": ONE_PHASE + "    nodes:\n      - type: extract\n"
    "        fields: {row: {css: tr, fields: {id: {attr: data-id}}}}\n",
    "yaml-1-1-words-stay-strings": "phases:\n  - name: 'no'\n    nodes:\n"
    "      - type: extract\n        fields: {on: h1, off: {css: h2, default: no}}\n",
}


@pytest.mark.parametrize("body", VALID_EDGE_CASES.values(), ids=list(VALID_EDGE_CASES))
def test_edge_cases_that_are_valid(body: str) -> None:
    load_workflow(HEAD + body)
