"""The pure crawl rules: scope, depth, transitions, max_pages."""

from __future__ import annotations

from typing import Any

import msgspec

from workflows.rules import Admit, CrawlRules, Drop
from workflows.spec import Workflow


def make(**overrides: Any) -> Workflow:
    doc: dict[str, Any] = {
        "name": "shop",
        "start_urls": ["http://shop.test/"],
        "engine": "http",
        "max_depth": 2,
        "phases": [
            {
                "name": "listing",
                "nodes": [
                    {"type": "extract_links", "selector": "a.p", "marker": "product"},
                    {"type": "extract_links", "selector": "a.next", "marker": "page"},
                ],
                "transitions": [{"when": {"marker": "product"}, "to": "product"}],
            },
            {"name": "product", "nodes": [{"type": "extract", "fields": {"name": "h1"}}]},
        ],
    }
    doc.update(overrides)
    return msgspec.convert(doc, Workflow)


def test_transition_by_marker_and_staying_in_phase() -> None:
    rules = CrawlRules(make())
    assert rules.judge("listing", "http://shop.test/p/1#x", "product", 1) == Admit(
        "http://shop.test/p/1", "product", 1, "product"
    )
    # No transition matches pagination: it stays in the current phase.
    assert rules.judge("listing", "http://shop.test/?page=2", "page", 1) == Admit(
        "http://shop.test/?page=2", "listing", 1, "page"
    )


def test_depth_scope_and_bad_urls_are_dropped_with_their_reason() -> None:
    rules = CrawlRules(make())
    assert rules.judge("listing", "http://shop.test/a", None, 3) is Drop.TOO_DEEP
    assert rules.judge("listing", "http://other.test/a", None, 1) is Drop.OUT_OF_SCOPE
    assert rules.judge("listing", "mailto:x@shop.test", None, 1) is Drop.BAD_URL


def test_allowed_domains_wildcards_include_and_exclude() -> None:
    scope = {
        "allowed_domains": ["*.shop.test"],
        "include": ["/p/", "/c/"],
        "exclude": ["/p/discontinued"],
        "ignore_query_params": ["utm_*"],
    }
    rules = CrawlRules(make(scope=scope))
    assert rules.in_scope("http://shop.test/p/1")
    assert rules.in_scope("http://www.shop.test/c/x")
    assert not rules.in_scope("http://evilshop.test/p/1")
    assert not rules.in_scope("http://shop.test/about")
    assert not rules.in_scope("http://shop.test/p/discontinued/3")
    admit = rules.judge("listing", "http://shop.test/p/1?utm_source=x&b=1", "product", 1)
    assert isinstance(admit, Admit) and admit.url == "http://shop.test/p/1?b=1"


def test_transition_conditions_url_and_depth() -> None:
    phases = [
        {
            "name": "a",
            "nodes": [{"type": "extract_links"}],
            "transitions": [
                {"when": {"url": r"/deep/", "min_depth": 2}, "to": "c"},
                {"when": {"max_depth": 1}, "to": "b"},
            ],
        },
        {"name": "b", "nodes": [{"type": "extract_links"}]},
        {"name": "c", "nodes": [{"type": "extract_links"}]},
    ]
    rules = CrawlRules(make(phases=phases, max_depth=5))
    assert rules.phase_for("a", None, "http://shop.test/deep/1", 2) == "c"
    assert rules.phase_for("a", None, "http://shop.test/deep/1", 1) == "b"
    assert rules.phase_for("a", None, "http://shop.test/x", 3) == "a"


def test_start_urls() -> None:
    rules = CrawlRules(make(start_phase="product"))
    assert rules.start("HTTP://SHOP.TEST") == Admit("http://shop.test/", "product", 0, None)
    assert rules.start("http://elsewhere.test/") is Drop.OUT_OF_SCOPE
