"""The Aqua demo shop: deterministic, internally consistent, served over real HTTP, and its
expected answer is what the crawl rules and node chain actually produce on its pages."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import signal
import sys
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from protego import Protego
from yarl import URL

from examples.aqua import generate
from examples.aqua.generate import (
    Site,
    build_site,
    expected,
    expected_counts,
    expected_failures,
    expected_robots_blocked,
)
from examples.aqua.server import serve
from nodes.chain import run_chain
from nodes.page import Page
from workflows.load import load_workflow_file
from workflows.rules import Admit, CrawlRules, Drop
from workflows.spec import ExtractNode, FilterNode, ScriptNode, Workflow

AQUA = Path(generate.__file__).resolve().parent
ROOT = AQUA.parents[1]
BASE = "http://127.0.0.1:8765"
USER_AGENT = "trawl-test"


@pytest.fixture(scope="module")
def site() -> Site:
    return build_site()


def workflow(name: str, base_url: str = BASE) -> Workflow:
    return load_workflow_file(AQUA / name, overrides=[f"start_urls=[{base_url}/]"])


# --------------------------------------------------------------------------------------
# Determinism and realism


def test_same_seed_same_bytes_other_seed_other_site() -> None:
    a, b, c = build_site(7), build_site(7), build_site(8)
    assert a.pages == b.pages
    assert a.not_found == b.not_found
    assert expected(a, BASE) == expected(b, BASE)
    assert expected_counts(a) == expected_counts(b)
    assert a.pages["/"] != c.pages["/"]
    assert expected(a, BASE) != expected(c, BASE)


def test_pages_look_like_a_real_shop(site: Site) -> None:
    html_pages = [r for r in site.pages.values() if r.content_type.startswith("text/html")]
    assert len(html_pages) > 100
    for resource in [*html_pages, site.not_found]:
        text = resource.body.decode("utf-8")
        assert 5_000 <= len(resource.body) <= 20_000
        assert text.startswith("<!DOCTYPE html>")
        for part in ('<meta charset="utf-8">', "<title>", '<header class="site">', "</footer>"):
            assert part in text


def test_the_generator_sizes_what_it_is_asked_to(site: Site) -> None:
    per_category = Counter(p.category for p in site.products)
    assert len(per_category) == 5
    assert all(12 <= n <= 30 for n in per_category.values())
    assert len(set(per_category.values())) > 1
    small = build_site(3, n_categories=2, products_per_category=(4, 4), page_size=3)
    assert len(small.products) == 8
    assert all(len(page.links) <= 4 for page in small.listing_pages())  # 3 + a repeat


# --------------------------------------------------------------------------------------
# A reference crawl: the workflow's rules and node chain over the site, without a runtime.


@dataclass
class CrawlResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    fetched: Counter[str] = field(default_factory=Counter)
    filtered: int = 0
    seen_drops: Counter[str | None] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # phase, marker

    def by(self, index: int) -> dict[str, dict[str, int]]:
        """Outcome counts per phase (0) or marker (1), shaped like summary.json."""
        out: dict[str, dict[str, int]] = {}
        for key, n in self.outcomes.items():
            group = out.setdefault(key[index], {})
            group[key[2]] = group.get(key[2], 0) + n
        return out


async def reference_crawl(site: Site, wf: Workflow, order_seed: int | None = None) -> CrawlResult:
    """Crawl ``site`` as the runtime will: tasks run in any order (``order_seed`` shuffles)."""
    rules = CrawlRules(wf)
    robots = Protego.parse(site.lookup("/robots.txt").body.decode())
    shuffle = random.Random(order_seed) if order_seed is not None else None
    start = rules.start(wf.start_urls[0])
    assert isinstance(start, Admit)
    queue: deque[Admit] = deque([start])
    seen = {start.url}
    out = CrawlResult()
    while queue:
        if shuffle is not None:
            queue.rotate(shuffle.randrange(len(queue)))
        task = queue.popleft()
        if not robots.can_fetch(task.url, USER_AGENT):
            out.blocked.append(task.url)
            out.outcomes[task.phase, task.marker or "", "filtered"] += 1
            continue
        url = URL(task.url)
        resource = site.lookup(url.path, url.query.items())
        out.fetched[task.phase] += 1
        if resource.status != 200:
            out.failures.append({"url": task.url, "phase": task.phase, "depth": task.depth})
            out.outcomes[task.phase, task.marker or "", "failed"] += 1
            continue
        out.outcomes[task.phase, task.marker or "", "succeeded"] += 1
        phase = wf.phase(task.phase)
        page = Page(url=task.url, html=resource.body.decode(), status=resource.status)
        nodes = [n for n in phase.nodes if not isinstance(n, ScriptNode)]  # no browser here
        ctx = await run_chain(nodes, page, task.depth)
        if nodes and isinstance(nodes[-1], FilterNode):  # aqua's filters end their chain
            unfiltered = await run_chain(nodes[:-1], page, task.depth)
            out.filtered += len(unfiltered.links) - len(ctx.links)
        if wf.has_records(phase):
            out.records.append(
                {
                    "url": task.url,
                    "phase": task.phase,
                    "marker": task.marker,
                    "depth": task.depth,
                    "data": ctx.data,
                }
            )
        for link in ctx.links:
            verdict = rules.judge(task.phase, link.url, link.marker, link.depth)
            assert not isinstance(verdict, Drop), (link, verdict)
            if verdict.url in seen:
                out.seen_drops[link.marker] += 1
                continue
            seen.add(verdict.url)
            queue.append(verdict)
    return out


async def test_reference_crawl_gives_exactly_the_expected_answer(site: Site) -> None:
    result = await reference_crawl(site, workflow("aqua-http.yaml"))
    want = expected(site, BASE, engine="http")
    got = sorted(result.records, key=lambda r: r["url"])
    assert [(r["url"], r["depth"]) for r in got] == [(r["url"], r["depth"]) for r in want]
    for record, answer in zip(got, want, strict=True):
        assert record["data"] == answer["data"], record["url"]
        assert (record["phase"], record["marker"]) == ("product", "product")
    failures = expected_failures(site, BASE)
    assert sorted((f["url"], f["depth"]) for f in result.failures) == [
        (f["url"], f["depth"]) for f in failures
    ]
    assert result.blocked == [b["url"] for b in expected_robots_blocked(site, BASE)]
    counts = expected_counts(site)
    assert dict(result.fetched) == counts["fetched"]
    assert result.by(0) == counts["by_phase"]
    assert result.by(1) == counts["by_marker"]
    assert result.filtered == counts["filter_dropped_links"]
    assert result.seen_drops == Counter({"product": counts["duplicate_product_links"]})
    assert max(r["depth"] for r in got) == counts["max_depth"]


async def test_the_answer_does_not_depend_on_task_order(site: Site) -> None:
    wf = workflow("aqua-http.yaml")
    baseline = await reference_crawl(site, wf)
    key = sorted((r["url"], r["depth"]) for r in baseline.records)
    for order_seed in (1, 2, 3):
        shuffled = await reference_crawl(site, wf, order_seed)
        assert sorted((r["url"], r["depth"]) for r in shuffled.records) == key


async def test_ignore_query_params_is_what_keeps_one_record_per_product(site: Site) -> None:
    wf = workflow("aqua-http.yaml")
    untamed = msgspec.structs.replace(
        wf, scope=msgspec.structs.replace(wf.scope, ignore_query_params=[])
    )
    result = await reference_crawl(site, untamed)
    assert len(result.records) > len(expected(site, BASE, engine="http"))


def test_every_trap_is_present(site: Site) -> None:
    counts = expected_counts(site)
    assert counts["failures_by_class"]["http_404"] > 0
    assert counts["filter_dropped_links"] > 0
    assert counts["robots_blocked"] == 1
    assert counts["duplicate_product_links"] > 0
    hrefs = [link.href for page in site.listing_pages() for link in page.links]
    assert any("utm_source=" in h for h in hrefs)
    assert any("#" in h for h in hrefs)
    assert any(h.startswith("../../p/") for h in hrefs)
    assert any(link.kind == "discontinued" for page in site.listing_pages() for link in page.links)
    for failure in expected_failures(site, BASE):
        assert site.lookup(URL(failure["url"]).path).status == 404
    robots = Protego.parse(site.lookup("/robots.txt").body.decode())
    assert not robots.can_fetch(f"{BASE}/private/trade/", USER_AGENT)
    assert robots.can_fetch(f"{BASE}{site.products[0].path}", USER_AGENT)
    assert 'nav class="categories"' in site.pages["/"].body.decode()
    assert 'href="/private/trade/"' in site.pages["/"].body.decode()


def test_javascript_fields_exist_only_in_the_script_data(site: Site) -> None:
    by_url = {r["url"]: r for r in expected(site, BASE, engine="browser")}
    with_rating = 0
    for product in site.products:
        html = site.pages[product.path].body.decode()
        assert 'class="rating"' not in html
        match = re.search(r"window\.__PRODUCT__ = (\{.*?\});</script>", html)
        assert match is not None
        data = json.loads(match.group(1))
        record = by_url[generate.canonical_url(BASE, product.path)]
        assert data["reviews"] == record["data"]["reviews"]
        assert data["rating"] == record["data"]["rating"]
        with_rating += data["rating"] is not None
    assert 0 < with_rating < len(site.products)
    http = expected(site, BASE, engine="http")
    assert all("reviews" not in r["data"] and r["data"]["rating"] is None for r in http)


def test_expected_counts_for_the_default_seed(site: Site) -> None:
    counts = expected_counts(site)
    assert counts["records"] == len(expected(site, BASE)) == 107
    assert counts["failures_by_class"] == {"http_404": len(expected_failures(site, BASE))}
    assert counts["pages"] == {
        "published": 131,
        "finished": 131,
        "succeeded": 123,
        "failed": 7,
        "filtered": 1,
    }
    by_phase = counts["by_phase"]
    assert sum(sum(v.values()) for v in by_phase.values()) == counts["pages"]["published"]
    by_marker = counts["by_marker"]
    assert sum(sum(v.values()) for v in by_marker.values()) == counts["pages"]["published"]


# --------------------------------------------------------------------------------------
# The workflow files


def test_workflows_validate_and_differ_only_by_engine_and_script(site: Site) -> None:
    browser, http = workflow("aqua.yaml"), workflow("aqua-http.yaml")
    assert browser.name == http.name == "aqua-shop"
    assert (browser.engine, http.engine) == ("browser", "http")
    assert browser.max_depth >= max(build_site(s).max_depth for s in range(10))
    assert browser.scope.ignore_query_params == list(generate.IGNORE_QUERY_PARAMS)
    product = browser.phase("product")
    extract = next(n for n in product.nodes if isinstance(n, ExtractNode))
    scripts = [n for n in product.nodes if isinstance(n, ScriptNode)]
    assert [s.as_ for s in scripts] == ["reviews"]
    assert set(extract.fields) | {"reviews"} == set(expected(site, BASE)[0]["data"])
    assert not any(isinstance(n, ScriptNode) for p in http.phases for n in p.nodes)
    without_script = msgspec.structs.replace(
        product, nodes=[n for n in product.nodes if not isinstance(n, ScriptNode)]
    )
    same = msgspec.structs.replace(
        browser,
        engine="http",
        phases=[without_script if p.name == "product" else p for p in browser.phases],
    )
    assert same == http
    assert [p.name for p in browser.phases if browser.has_records(p)] == ["product"]


# --------------------------------------------------------------------------------------
# The server


async def test_server_serves_the_site_over_http(site: Site) -> None:
    product = site.products[0]
    broken = expected_failures(site, BASE)[0]["url"]
    async with serve(site) as base_url, aiohttp.ClientSession() as session:
        assert base_url.startswith("http://127.0.0.1:")
        cases = [
            ("/", 200, site.pages["/"].body),
            (f"{product.path}?utm_source=test#reviews", 200, site.pages[product.path].body),
            ("/c/" + site.categories[0].slug + "/?page=2&utm_medium=x", 200, None),
            (URL(broken).path, 404, site.not_found.body),
            ("/no/such/page", 404, site.not_found.body),
            ("/private/trade/", 200, None),  # robots.txt asks; the server does not enforce
        ]
        for path, status, body in cases:
            async with session.get(base_url + path) as response:
                assert response.status == status, path
                assert response.content_type == "text/html"
                assert response.charset == "utf-8"
                content = await response.read()
                assert body is None or content == body
        async with session.get(base_url + "/robots.txt") as response:
            assert response.content_type == "text/plain"
            assert "Disallow: /private/" in await response.text()
        async with session.head(base_url + "/") as response:
            assert response.status == 200


async def test_server_refuses_non_loopback_addresses(site: Site) -> None:
    for host in ("0.0.0.0", "192.168.1.10", "example.com"):
        with pytest.raises(ValueError, match="loopback"):
            async with serve(site, host=host):
                pass


@pytest.mark.integration  # runs the example server as a child process
async def test_server_command_line_serves_until_interrupted() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-m",
        "examples.aqua.server",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match is not None, line
        async with aiohttp.ClientSession() as session, session.get(match.group(0)) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_generator_command_writes_the_answer(site: Site, tmp_path: Path) -> None:
    assert generate._main(["--out", str(tmp_path), "--engine", "http"]) == 0
    lines = (tmp_path / "expected.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == expected(site, BASE, engine="http")
    assert json.loads((tmp_path / "counts.json").read_text()) == expected_counts(site)


# --------------------------------------------------------------------------------------
# The browser engine sees what JavaScript renders


def _chromium() -> str | None:
    return os.environ.get("TRAWL_CHROMIUM_PATH") or shutil.which("chromium")


@pytest.mark.integration
@pytest.mark.browser
async def test_browser_rendered_product_pages_give_the_browser_answer(site: Site) -> None:
    from playwright.async_api import async_playwright

    wf = workflow("aqua.yaml")
    nodes = wf.phase("product").nodes
    want = {r["url"]: r["data"] for r in expected(site, BASE, engine="browser")}
    picks = [p for p in site.products if p.reviews][:2] + [
        p for p in site.products if not p.reviews
    ][:1]
    async with serve(site) as base_url, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=_chromium())
        try:
            tab = await browser.new_page()
            for product in picks:
                await tab.goto(base_url + product.path, wait_until="domcontentloaded")

                async def evaluate(code: str, timeout_s: float) -> Any:
                    return await tab.evaluate(code)

                page = Page(url=tab.url, html=await tab.content(), evaluate=evaluate)
                ctx = await run_chain(nodes, page, depth=2)
                answer = want[generate.canonical_url(BASE, product.path)]
                data = dict(
                    ctx.data, images=[i.replace(base_url, BASE) for i in ctx.data["images"]]
                )
                assert data == answer
                assert (data["rating"] is None) == (not product.reviews)
        finally:
            await browser.close()
