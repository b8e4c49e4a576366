"""Sitemaps as seeds, as a user sees them: a site whose pages link nowhere is crawled whole
from its sitemaps (found in robots.txt or given), pages carry their ``<lastmod>``, bad
sitemaps are listed failures with classes of their own, and every bound holds.

The crawls are ``trawl run``'s embedded run (tests/crawling.py), the command itself, and
the distributed worker as a function, all over the real http engine against the local
site of tests/sitemap_site.py. The parsing and the ``max_urls`` quota are also tested on
their own, with bytes and the memory seen set.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from backends.clock import SystemClock
from backends.local import LocalBlobStore
from backends.memory import MemoryRateLimiter, MemorySeenSet, MemoryStateStore, MemoryTaskQueue
from tests.crawling import FAST_POLITENESS, PAGE_PHASE, crawl, make_workflow, read_export
from tests.sitemap_site import OUT_OF_SCOPE, PAGES, SitemapSite, lastmod
from trawl.cli import main
from trawl.local_outputs import exported_records
from worker.assemble import Ports
from worker.engines import open_engines
from worker.netguard import NetGuard
from worker.runtime import WorkerOptions, run_until_idle
from worker.sitemaps import (
    MAX_ENTRIES,
    MAX_NESTING,
    SitemapInvalid,
    UrlQuota,
    parse_sitemap,
)
from worker.start import start_execution, store_workflow
from workflows import WorkflowInvalid, validate_data

NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
POLITE = {**FAST_POLITENESS, "respect_robots_txt": True}


@pytest.fixture(scope="module")
def sitemap_site() -> Any:
    with SitemapSite() as server:
        yield server


def pages_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    """path -> (title, lastmod) of each record."""
    return {r["url"].split("/", 3)[3]: (r["data"]["title"], r.get("lastmod")) for r in records}


def every_page() -> dict[str, Any]:
    return {f"p/{n}": (f"Page {n}", lastmod(n)) for n in range(1, PAGES + 1)}


def failures_of(result: Any) -> list[dict[str, Any]]:
    assert result.export is not None
    text = (result.out_dir / result.export.failures_path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


# -- crawls


async def test_a_site_whose_pages_link_nowhere_is_crawled_whole_from_robots_txt(
    sitemap_site: SitemapSite, tmp_path: Path
) -> None:
    site = sitemap_site
    workflow = make_workflow([site.url("/")], sitemaps={"robots_txt": True}, politeness=POLITE)
    before = site.requests.copy()

    result = await crawl(workflow, tmp_path)

    assert result.execution.status == "completed"
    export = read_export(result)
    # Every page the sitemaps list, with its <lastmod>; the start URL has none.
    assert pages_of(export.records) == {"": ("Home", None), **every_page()}
    by_url = {r["url"]: r for r in export.records}
    assert by_url[site.url("/p/3")]["parent_url"] == site.url("/sitemaps/a.xml")
    assert by_url[site.url("/p/9")]["parent_url"] == site.url("/sitemaps/b.xml.gz")
    assert {r["depth"] for r in export.records} == {0}
    summary = export.summary
    # robots.txt, the index and its two sitemaps; /private/1 is listed, robots.txt
    # disallows it; the out-of-scope page is listed, never queued.
    assert summary["sitemaps"] == {
        "read": 3,
        "failed": 0,
        "filtered": 0,
        "urls": 16,
        "queued": PAGES + 1,
        "over_limit": 0,
    }
    assert summary["by_phase"] == {
        "(sitemaps)": {"succeeded": 4},
        "page": {"succeeded": PAGES + 1, "filtered": 1},
    }
    assert summary["failures_by_class"] == {}
    requests = site.requests - before
    assert requests["/robots.txt"] == 1  # one read serves the verdicts and the Sitemap: lines
    for path in ("/sitemap_index.xml", "/sitemaps/a.xml", "/sitemaps/b.xml.gz", "/p/12"):
        assert requests[path] == 1, path
    assert requests["/private/1"] == 0
    assert OUT_OF_SCOPE not in by_url


async def test_sitemaps_alone_in_the_list_form_seed_the_crawl_and_set_its_scope(
    sitemap_site: SitemapSite, tmp_path: Path
) -> None:
    site = sitemap_site
    workflow = make_workflow(
        [], sitemaps=[site.url("/sitemaps/b.xml.gz"), site.url("/sitemaps/plain.txt")]
    )

    result = await crawl(workflow, tmp_path)

    records = read_export(result).records
    from_gzip = {f"p/{n}": (f"Page {n}", lastmod(n)) for n in range(8, PAGES + 1)}
    from_text = {f"p/{n}": (f"Page {n}", None) for n in range(1, 4)}  # no lastmod in text
    assert pages_of(records) == {**from_gzip, **from_text}


async def test_pages_of_sitemaps_go_to_the_phase_named_and_on_from_there(
    sitemap_site: SitemapSite, tmp_path: Path
) -> None:
    site = sitemap_site
    phases = [
        {"name": "home", "nodes": [{"type": "extract", "fields": {"home": "h1"}}]},
        {"name": "listed", "nodes": [{"type": "extract", "fields": {"title": "h1"}}]},
    ]
    workflow = make_workflow(
        [site.url("/")],
        phases=phases,
        sitemaps={"urls": [site.url("/sitemaps/plain.txt")], "phase": "listed"},
    )

    result = await crawl(workflow, tmp_path)

    phases_by_url = {r["url"]: r["phase"] for r in read_export(result).records}
    assert phases_by_url == {
        site.url("/"): "home",
        **{site.url(f"/p/{n}"): "listed" for n in range(1, 4)},
    }


async def test_bad_sitemaps_are_listed_failures_and_the_good_ones_still_crawl(
    sitemap_site: SitemapSite, tmp_path: Path
) -> None:
    site = sitemap_site
    bad = {
        "/sitemaps/truncated.xml": "sitemap_invalid",
        "/sitemaps/page.xml": "sitemap_invalid",
        "/sitemaps/missing.xml": "http_404",
        "/sitemaps/bomb.xml.gz": "sitemap_too_large",
    }
    urls = [site.url(path) for path in bad] + [site.url("/sitemaps/plain.txt")]
    workflow = make_workflow([], sitemaps=urls)

    result = await crawl(workflow, tmp_path)

    assert result.execution.status == "completed"
    export = read_export(result)
    assert sorted(r["url"] for r in export.records) == [site.url(f"/p/{n}") for n in range(1, 4)]
    failures = {f["url"]: f for f in failures_of(result)}
    assert {url: f["error_class"] for url, f in failures.items()} == {
        site.url(path): error_class for path, error_class in bad.items()
    }
    assert all(f["phase"] == "(sitemaps)" for f in failures.values())
    page = failures[site.url("/sitemaps/page.xml")]["message"]
    assert page == (
        f"sitemap {site.url('/sitemaps/page.xml')}: its root element is <html>, "
        "not <urlset> or <sitemapindex>"
    )
    bomb_message = failures[site.url("/sitemaps/bomb.xml.gz")]["message"]
    assert "larger than 52428800 bytes uncompressed" in bomb_message
    assert export.summary["sitemaps"]["failed"] == 4


async def test_max_urls_holds_across_sitemaps_read_at_once(
    sitemap_site: SitemapSite, tmp_path: Path
) -> None:
    site = sitemap_site
    urls = [site.url("/sitemaps/a.xml"), site.url("/sitemaps/b.xml.gz")]
    workflow = make_workflow([], sitemaps={"urls": urls, "max_urls": 5})

    result = await crawl(workflow, tmp_path)

    export = read_export(result)
    assert len(export.records) == 5
    counts = export.summary["sitemaps"]
    assert counts["queued"] == 5
    # In scope: a.xml's 9 distinct URLs (7 pages, /private/1, /p/12) and b.xml.gz's 5.
    assert counts["over_limit"] == 9 + 5 - 5


async def test_nested_indexes_are_followed_only_so_deep(
    sitemap_site: SitemapSite, tmp_path: Path
) -> None:
    site = sitemap_site
    workflow = make_workflow([], sitemaps=[site.url("/deep/0.xml")])
    before = site.requests.copy()

    result = await crawl(workflow, tmp_path)

    assert result.execution.status == "completed"
    requests = site.requests - before
    read = [f"/deep/{level}.xml" for level in range(MAX_NESTING + 1)]
    assert sorted(requests) == read  # the urlset six levels down is never reached
    summary = read_export(result).summary
    assert summary["warnings"] == {"sitemap_nested_too_deep": 1}
    assert summary["sitemaps"]["over_limit"] == 1


async def test_robots_txt_may_disallow_a_sitemap(sitemap_site: SitemapSite, tmp_path: Path) -> None:
    site = sitemap_site
    workflow = make_workflow(
        [],
        sitemaps=[site.url("/private/sitemap.xml"), site.url("/sitemaps/plain.txt")],
        politeness=POLITE,
    )
    before = site.requests.copy()

    result = await crawl(workflow, tmp_path)

    summary = read_export(result).summary
    assert summary["sitemaps"]["filtered"] == 1
    assert summary["by_phase"]["(sitemaps)"] == {"succeeded": 1, "filtered": 1}
    assert (site.requests - before)["/private/sitemap.xml"] == 0


def test_trawl_run_crawls_a_sitemap_only_site(
    sitemap_site: SitemapSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = sitemap_site
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        f"""\
name: sitemap-run
engine: http
sitemaps: ["{site.url("/sitemap_index.xml")}"]
politeness: {{requests_per_second: 200, burst: 20, respect_robots_txt: true}}
phases:
  - name: page
    nodes:
      - {{type: extract, fields: {{title: h1}}}}
""",
        encoding="utf-8",
    )
    out = tmp_path / "out"

    assert main(["run", str(workflow), "--out", str(out)]) == 0

    err = capsys.readouterr().err
    rows = [line.split() for line in err.splitlines() if line.startswith("│")]
    assert ["│", "(sitemaps)", "│", "3", "│", "0", "│", "0", "│"] in rows, err
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    records = exported_records(run)
    assert pages_of(records) == every_page()


async def test_a_distributed_worker_reads_sitemaps_like_the_embedded_run(
    sitemap_site: SitemapSite, tmp_path: Path
) -> None:
    site = sitemap_site
    workflow = make_workflow([], sitemaps=[site.url("/sitemap_index.xml")])
    clock = SystemClock()
    ports = Ports(
        queue=MemoryTaskQueue(clock, ack_deadline_s=60.0),
        seen=MemorySeenSet(),
        limiter=MemoryRateLimiter(clock),
        state=MemoryStateStore(clock),
        blobs=LocalBlobStore(tmp_path),
    )
    version = await store_workflow(ports.state, "acme", workflow)
    execution = await start_execution(ports, workflow, tenant="acme", version=version)

    async with open_engines(NetGuard.allow_all()) as engines, asyncio.timeout(60):
        await run_until_idle(
            ports,
            fetchers=engines.fetchers,
            robots=engines.robots,
            options=WorkerOptions(worker_id="w1", concurrency=8),
        )

    final = await ports.state.get_execution(execution.id)
    assert final is not None and final.status == "completed"
    records = exported_records(tmp_path / execution.id)
    assert pages_of(records) == {
        **every_page(),
        "private/1": ("Page 1", None),  # this workflow does not respect robots.txt
    }


# -- validation


@pytest.mark.parametrize(
    ("sitemaps", "start_urls", "path", "message"),
    [
        (
            {"urls": ["http://a.test/s.xml"], "phase": "pages"},
            [],
            "sitemaps.phase",
            "unknown phase 'pages' (phases: page); did you mean 'page'?",
        ),
        (["/relative.xml"], [], "sitemaps[0]", "must be an absolute http(s) URL"),
        ({"urls": ["ftp://a.test/s.xml"]}, [], "sitemaps.urls[0]", "must be an absolute"),
        ({}, ["http://a.test/"], "sitemaps", "nothing to read: give urls, or robots_txt: true"),
        ({"robots_txt": True}, [], "sitemaps.robots_txt", "there are no start_urls"),
    ],
)
def test_sitemaps_that_cannot_work_are_refused_with_their_path(
    sitemaps: Any, start_urls: list[str], path: str, message: str
) -> None:
    data = {
        "name": "sitemap-check",
        "start_urls": start_urls,
        "sitemaps": sitemaps,
        "engine": "http",
        "phases": [PAGE_PHASE],
    }
    with pytest.raises(WorkflowInvalid) as raised:
        validate_data(data)
    problems = {p.path: p.message for p in raised.value.problems}
    assert path in problems, problems
    assert message in problems[path]


def test_a_phase_only_sitemaps_lead_to_is_reachable() -> None:
    workflow = validate_data(
        {
            "name": "sitemap-phase",
            "start_urls": ["http://a.test/"],
            "sitemaps": {"urls": ["http://a.test/s.xml"], "phase": "listed"},
            "engine": "http",
            "phases": [{"name": "home"}, {"name": "listed"}],
        }
    )
    assert workflow.sitemap_settings is not None


# -- parsing


def test_a_urlset_gives_its_locs_and_lastmods_whatever_its_namespace() -> None:
    body = f"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="{NS}" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <!-- a comment -->
  <url>
    <loc>
      http://a.test/1
    </loc>
    <lastmod>2024-01-02</lastmod>
    <image:image><image:loc>http://a.test/1.png</image:loc></image:image>
  </url>
  <url><loc>/relative</loc></url>
  <url><lastmod>2024-01-03</lastmod></url>
</urlset>""".encode()

    parsed = parse_sitemap(body, "http://a.test/dir/sitemap.xml")

    assert parsed.kind == "urlset"
    assert [(e.loc, e.lastmod) for e in parsed.entries] == [
        ("http://a.test/1", "2024-01-02"),
        ("http://a.test/relative", None),
    ]
    assert parsed.skipped == 1  # the entry without a <loc>
    bare = parse_sitemap(
        b"<urlset><url><loc>http://a.test/2</loc></url></urlset>", "http://a.test/"
    )
    assert [e.loc for e in bare.entries] == ["http://a.test/2"]


def test_an_index_gives_its_sitemaps() -> None:
    body = (
        f'<sitemapindex xmlns="{NS}"><sitemap><loc>http://a.test/s1.xml.gz</loc>'
        "<lastmod>2024-01-01</lastmod></sitemap><sitemap><loc>http://a.test/s2.xml</loc>"
        "</sitemap></sitemapindex>"
    ).encode()

    parsed = parse_sitemap(body, "http://a.test/index.xml")

    assert parsed.kind == "sitemapindex"
    assert [e.loc for e in parsed.entries] == ["http://a.test/s1.xml.gz", "http://a.test/s2.xml"]


def test_gzip_is_known_by_its_magic_bytes_and_may_have_several_members() -> None:
    head = f'<urlset xmlns="{NS}"><url><loc>http://a.test/1</loc></url>'.encode()
    tail = b"<url><loc>http://a.test/2</loc></url></urlset>"

    parsed = parse_sitemap(gzip.compress(head) + gzip.compress(tail), "http://a.test/s")

    assert [e.loc for e in parsed.entries] == ["http://a.test/1", "http://a.test/2"]


def test_a_plain_text_sitemap_is_one_url_per_line() -> None:
    body = "\ufeffhttp://a.test/1\r\n\n  http://a.test/2  \nhttp://a.test/é".encode()

    parsed = parse_sitemap(body, "http://a.test/urls.txt")

    assert parsed.kind == "urlset"
    assert [e.loc for e in parsed.entries] == [
        "http://a.test/1",
        "http://a.test/2",
        "http://a.test/é",
    ]


def test_entities_are_never_expanded_nor_fetched(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET", encoding="utf-8")
    body = f"""<?xml version="1.0"?>
<!DOCTYPE urlset [
  <!ENTITY a "aaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY file SYSTEM "file://{secret}">
]>
<urlset><url><loc>http://a.test/&b;</loc></url><url><loc>http://a.test/&file;</loc></url></urlset>
""".encode()

    parsed = parse_sitemap(body, "http://a.test/s.xml")

    assert [e.loc for e in parsed.entries] == ["http://a.test/", "http://a.test/"]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "it is empty"),
        (b"   \n", "it is empty"),
        (b"<rss><channel/></rss>", "its root element is <rss>, not <urlset> or <sitemapindex>"),
        (b"<urlset><url><loc>http://a.test/1</loc></url>", "not well-formed XML"),
        (gzip.compress(b"<urlset></urlset>")[:-12], "the gzip data ends early"),
        (b"\x1f\x8b\x08\x00garbage-that-is-no-deflate-stream", "broken gzip data"),
    ],
)
def test_a_sitemap_that_cannot_be_read_is_invalid_and_says_why(body: bytes, why: str) -> None:
    with pytest.raises(SitemapInvalid) as raised:
        parse_sitemap(body, "http://a.test/s.xml")
    assert raised.value.error_class == "sitemap_invalid"
    assert str(raised.value).startswith(f"sitemap http://a.test/s.xml: {why}")


def test_entries_past_the_protocols_limit_are_skipped() -> None:
    entries = b"".join(
        b"<url><loc>http://a.test/%d</loc></url>" % n for n in range(MAX_ENTRIES + 7)
    )

    parsed = parse_sitemap(b"<urlset>" + entries + b"</urlset>", "http://a.test/s.xml")

    assert len(parsed.entries) == MAX_ENTRIES
    assert parsed.skipped == 7


# -- the max_urls quota


async def test_the_url_quota_is_exact_across_processes_and_kept_by_a_redelivered_task() -> None:
    seen = MemorySeenSet()
    one, two = UrlQuota(seen), UrlQuota(seen)  # two worker processes

    assert await one.take("e1", 7, limit=10, claimer="task-a") == 7
    assert await two.take("e1", 7, limit=10, claimer="task-b") == 3
    assert await one.take("e1", 1, limit=10, claimer="task-c") == 0
    assert await two.take("e2", 4, limit=10, claimer="task-b") == 4  # per execution
    # task-a redelivered to a third process: its own slots are its own again.
    assert await UrlQuota(seen).take("e1", 7, limit=10, claimer="task-a") == 7


def test_a_cached_run_reads_its_sitemaps_from_the_site_and_its_pages_from_the_cache(
    sitemap_site: SitemapSite, tmp_path: Path
) -> None:
    site = sitemap_site
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        f"""\
name: sitemap-cached
engine: http
sitemaps: ["{site.url("/sitemap_index.xml")}"]
politeness: {{requests_per_second: 200, burst: 20}}
phases:
  - name: page
    nodes:
      - {{type: extract, fields: {{title: h1}}}}
""",
        encoding="utf-8",
    )
    cache = tmp_path / "cache"
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        assert main(["run", str(workflow), "--out", str(out), "--cache", str(cache)]) == 0
        (run,) = [p for p in out.iterdir() if p.is_dir()]
        assert pages_of(exported_records(run)) == every_page()
