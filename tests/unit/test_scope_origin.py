"""Scope, politeness and robots.txt keyed by origin: scheme, host and port.

Two local sites on 127.0.0.1, on two ports, link to each other. The default scope (the
start URLs' origins) keeps the crawl on the start site; a bare host in ``allowed_domains``
admits both ports; an origin entry pins one. robots.txt is read per origin, and politeness
permits are counted per origin.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.clock import FakeClock
from backends.memory import MemoryRateLimiter
from backends.ratelimit import RatePolicy
from tests.claims_site import PagesSite, page
from tests.crawling import FAST_POLITENESS, crawl, make_workflow, read_export
from worker.politeness import Permit, Politeness, Wait
from workflows.rules import CrawlRules
from workflows.scope import SiteRule, Sites, entry_error, parse_entry


@pytest.fixture
def sites() -> Iterator[tuple[PagesSite, PagesSite]]:
    """Site A links to its own /a and /private and to B's /b and /private; B links back."""
    with PagesSite() as a, PagesSite() as b:
        a.pages["/"] = page(
            "A home",
            ("l", "/a"),
            ("l", "/private"),
            ("l", b.url("/b")),
            ("l", b.url("/private")),
        )
        a.pages["/a"] = page("A a")
        a.pages["/private"] = page("A private")
        b.pages["/b"] = page("B b", ("l", a.url("/")))
        b.pages["/private"] = page("B private")
        yield a, b


def titles(records: list[dict[str, object]]) -> set[object]:
    return {r["data"]["title"] for r in records}  # type: ignore[index]


# -- entries and the default scope


@pytest.mark.parametrize(
    ("entry", "rule"),
    [
        ("Example.COM.", SiteRule("example.com")),
        ("*.example.com", SiteRule("example.com", subdomains=True)),
        ("example.com:8080", SiteRule("example.com", port=8080)),
        ("http://example.com", SiteRule("example.com", scheme="http", port=80)),
        ("https://example.com:8443/", SiteRule("example.com", scheme="https", port=8443)),
        ("https://*.example.com", SiteRule("example.com", True, "https", 443)),
        ("bücher.de", SiteRule("xn--bcher-kva.de")),
        ("[::1]:8080", SiteRule("::1", port=8080)),
        ("::1", SiteRule("::1")),
        ("127.0.0.1", SiteRule("127.0.0.1")),
    ],
)
def test_an_entry_pins_what_it_names(entry: str, rule: SiteRule) -> None:
    assert parse_entry(entry) == rule


def test_a_bad_entry_says_what_is_wrong() -> None:
    assert entry_error("example.com/shop") == (
        "must be a host, *.domain, host:port or scheme://host[:port], with no path, "
        "got 'example.com/shop'"
    )
    assert "a port is a number from 1 to 65535" in str(entry_error("example.com:0"))
    assert "the scheme must be http or https" in str(entry_error("ftp://example.com"))
    assert "* only as the first label" in str(entry_error("a.*.example.com"))


def test_the_default_scope_is_the_start_urls_origins() -> None:
    rules = CrawlRules(make_workflow(["http://shop.test:8080/start", "https://docs.test/"]))
    assert rules.in_scope("http://shop.test:8080/other")
    assert rules.in_scope("https://docs.test/a")
    assert not rules.in_scope("http://shop.test:9090/other")  # another port
    assert not rules.in_scope("https://shop.test:8080/other")  # another scheme
    assert not rules.in_scope("http://shop.test/other")  # the default port is another too
    assert not rules.in_scope("http://docs.test/a")


def test_entries_match_by_host_port_and_scheme() -> None:
    sites = Sites.of(["shop.test", "api.test:8080", "http://docs.test", "*.cdn.test:443"], [])
    assert sites.allows("http://shop.test:1234/") and sites.allows("https://shop.test/")
    assert sites.allows("http://api.test:8080/") and sites.allows("https://api.test:8080/")
    assert not sites.allows("http://api.test/")
    assert sites.allows("http://docs.test/") and sites.allows("http://docs.test:80/x")
    assert not sites.allows("https://docs.test/") and not sites.allows("http://docs.test:81/")
    assert sites.allows("https://img.cdn.test/") and sites.allows("https://cdn.test/")
    assert not sites.allows("http://img.cdn.test/")  # port 80


# -- crawls over two local sites


async def test_the_default_scope_stays_on_the_start_sites_port(
    sites: tuple[PagesSite, PagesSite], tmp_path: Path
) -> None:
    a, b = sites
    result = await crawl(make_workflow([a.url("/")]), tmp_path, deadline_s=30)

    assert titles(read_export(result).records) == {"A home", "A a", "A private"}
    assert b.total_requests() == 0


async def test_a_bare_host_admits_every_port_and_an_origin_pins_one(
    sites: tuple[PagesSite, PagesSite], tmp_path: Path
) -> None:
    a, b = sites
    both = make_workflow([a.url("/")], scope={"allowed_domains": ["127.0.0.1"]})
    result = await crawl(both, tmp_path / "both", deadline_s=30)
    assert titles(read_export(result).records) == {
        "A home",
        "A a",
        "A private",
        "B b",
        "B private",
    }

    pinned = make_workflow([a.url("/")], scope={"allowed_domains": [a.base_url]})
    b_requests = b.total_requests()
    result = await crawl(pinned, tmp_path / "pinned", deadline_s=30)
    assert titles(read_export(result).records) == {"A home", "A a", "A private"}
    assert b.total_requests() == b_requests


async def test_robots_txt_is_read_per_origin(
    sites: tuple[PagesSite, PagesSite], tmp_path: Path
) -> None:
    a, b = sites
    a.texts["/robots.txt"] = "User-agent: *\nDisallow: /private\n"
    b.texts["/robots.txt"] = "User-agent: *\nDisallow:\n"
    politeness = {**FAST_POLITENESS, "respect_robots_txt": True}
    workflow = make_workflow(
        [a.url("/")], scope={"allowed_domains": ["127.0.0.1"]}, politeness=politeness
    )

    export = read_export(await crawl(workflow, tmp_path, deadline_s=30))

    assert titles(export.records) == {"A home", "A a", "B b", "B private"}
    assert export.summary["pages"]["filtered"] == 1  # A's /private, not B's
    assert a.count("/robots.txt") == 1 and b.count("/robots.txt") == 1


async def test_politeness_permits_are_counted_per_origin() -> None:
    clock = FakeClock()
    politeness = Politeness(MemoryRateLimiter(clock), clock, max_inline_wait_s=0)
    one_at_a_time = RatePolicy(rate_per_s=1000, burst=100, min_interval_s=0, max_concurrency=1)

    held = await politeness.acquire("e1", "http://h.test:8080/a", one_at_a_time)
    assert isinstance(held, Permit)
    # The same origin waits for that permit; another port or scheme is another site.
    assert isinstance(await politeness.acquire("e1", "http://h.test:8080/b", one_at_a_time), Wait)
    for other in ("http://h.test:9090/a", "https://h.test:8080/a", "http://h.test/a"):
        permit = await politeness.acquire("e1", other, one_at_a_time)
        assert isinstance(permit, Permit), other
