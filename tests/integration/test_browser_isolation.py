"""Tenants sharing a worker's browser, in real headless Chromium against a site on
127.0.0.1: one execution's cookies, storage and pages (popups included) are invisible to
the next execution's script on the same host; a script spinning past its timeout fails its
task as ``script_timeout``, its renderer is killed and the next task is not held up; and
the browser refuses metadata addresses with private networks allowed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from backends.fetcher import FetchRequest
from nodes.chain import run_chain
from nodes.context import NodeContext
from nodes.script import ScriptTimeout
from tests.crawling import make_workflow, pages, read_export
from trawl.embedded import open_fetchers, run_embedded
from trawl.settings import Settings
from worker.fetchers.browser import BrowserFetcher
from worker.fetchers.http import HttpFetcher
from worker.netguard import BlockedAddressError, NetGuard
from workflows.spec import ScriptNode

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
]

TENANT_A = "tenant-a/exec-1"
TENANT_B = "tenant-b/exec-2"

# Tenant A's script: leaves a cookie and storage behind and opens a named popup.
LEAVE_TRACES = """async () => {
    document.cookie = "js_a=1; path=/";
    localStorage.setItem("a_secret", "42");
    sessionStorage.setItem("a_session", "1");
    const popup = window.open("/popup", "a-popup");
    await new Promise((loaded) => popup.addEventListener("load", loaded));
    return popup.document.title;
}"""
# Another task's script: what of A it can see, and whether it can reach A's popup by name.
LOOK_AROUND = """() => {
    const popup = window.open("", "a-popup");
    const reached = popup ? popup.location.href : null;
    return {
        cookie: document.cookie,
        local: localStorage.getItem("a_secret"),
        session: sessionStorage.getItem("a_session"),
        popup: reached,
    };
}"""
SPIN = "() => { while (true) {} }"


@dataclass
class Hits:
    """The requests the site saw: path and the Cookie header sent with it."""

    entries: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, path: str) -> list[str | None]:
        with self.lock:
            return [cookie for p, cookie in self.entries if p == path]


class _Site(BaseHTTPRequestHandler):
    hits: Hits

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        with self.hits.lock:
            self.hits.entries.append((path, self.headers.get("Cookie")))
        if path == "/favicon.ico":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = f"<!doctype html><title>{path}</title><h1>{path}</h1>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        if path == "/a":
            self.send_header("Set-Cookie", "sid=tenant-a; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Site:
    base: str
    hits: Hits

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture(scope="module")
def tenant_site() -> Iterator[Site]:
    hits = Hits()
    handler = type("Handler", (_Site,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_address[1]}", hits)
    finally:
        server.shutdown()
        server.server_close()


@pytest_asyncio.fixture(loop_scope="module")
async def fetcher(chromium_path: str) -> AsyncIterator[BrowserFetcher]:
    """One worker's browser: the default guard (private networks allowed, as ``trawl
    run``), tabs reused within a session as in production."""
    started = BrowserFetcher(executable_path=chromium_path, max_contexts=2)
    await started.start()
    try:
        yield started
    finally:
        await started.close()


async def run_script(
    fetcher: BrowserFetcher, url: str, session: str, code: str, timeout_s: float = 5.0
) -> Any:
    """Fetch ``url`` for ``session`` and run ``code`` as a script node; its value."""
    spec = ScriptNode(code=code, as_="value", timeout_s=timeout_s)
    async with fetcher.open(FetchRequest(url, session=session)) as page:
        ctx: NodeContext = await run_chain([spec], page, depth=0)
    return ctx.data["value"]


async def wait_until(condition: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the server thread sets no event
            await asyncio.sleep(0.02)


def open_pages(fetcher: BrowserFetcher) -> list[int]:
    """How many pages each live browser context has."""
    return [
        len(context.pages) for handle in fetcher._browsers for context in handle.browser.contexts
    ]


async def test_the_next_tenant_sees_none_of_the_previous_ones_state(
    fetcher: BrowserFetcher, tenant_site: Site
) -> None:
    assert await run_script(fetcher, tenant_site.url("/a"), TENANT_A, LEAVE_TRACES) == "/popup"
    # After A's task its popup is closed: every context is down to its one tab.
    assert open_pages(fetcher) == [1]

    seen = await run_script(fetcher, tenant_site.url("/b"), TENANT_B, LOOK_AROUND)
    assert seen == {"cookie": "", "local": None, "session": None, "popup": "about:blank"}
    assert tenant_site.hits.of("/b") == [None]  # B's request carried none of A's cookies
    assert len(tenant_site.hits.of("/popup")) == 1  # B did not load A's popup again
    assert sorted(open_pages(fetcher)) == [1, 1]  # B's own blank popup was closed too

    # Within A's own execution the tab is reused: its next task does see A's state, so
    # the emptiness above is isolation, not a browser that forgets everything.
    again = await run_script(fetcher, tenant_site.url("/b"), TENANT_A, LOOK_AROUND)
    assert again["cookie"] == "sid=tenant-a; js_a=1"
    assert again["local"] == "42"
    assert tenant_site.hits.of("/b") == [None, "sid=tenant-a; js_a=1"]


async def test_a_third_tenant_evicts_the_oldest_idle_context(
    fetcher: BrowserFetcher, tenant_site: Site
) -> None:
    for session in (TENANT_A, TENANT_B, "tenant-c/exec-3"):
        assert await run_script(fetcher, tenant_site.url("/b"), session, "() => 1") == 1
    # max_contexts=2: live contexts never exceed it, whatever number of executions ran.
    assert len(open_pages(fetcher)) == 2
    assert fetcher.contexts_opened == 3


async def test_a_spinning_script_fails_its_task_and_does_not_hold_up_the_next(
    chromium_path: str, tenant_site: Site
) -> None:
    # One slot: the next task can only run once the spinning one has given its tab back.
    fetcher = BrowserFetcher(executable_path=chromium_path, max_contexts=1)
    await fetcher.start()
    try:
        loop = asyncio.get_running_loop()
        spin_timeout_s = 1.0
        started = loop.time()
        spinning = asyncio.create_task(
            run_script(fetcher, tenant_site.url("/spin"), TENANT_A, SPIN, spin_timeout_s)
        )
        await wait_until(lambda: tenant_site.hits.of("/spin"))
        # Queued behind the spinning task, on the one slot: tenant B, then A's next task.
        after_b = run_script(fetcher, tenant_site.url("/b"), TENANT_B, "() => document.title")
        after_a = run_script(fetcher, tenant_site.url("/b"), TENANT_A, "() => document.title")
        # Each gets a fresh renderer; a spinning one would keep them waiting for their own
        # 30 s navigation timeout.
        async with asyncio.timeout(spin_timeout_s + 10):
            results = await asyncio.gather(spinning, after_b, after_a, return_exceptions=True)
        error, title_b, title_a = results
        assert isinstance(error, ScriptTimeout)
        assert error.error_class == "script_timeout"
        assert str(error) == (
            f"{tenant_site.url('/spin')}: script did not finish within its timeout_s (1 s)"
        )
        assert (title_b, title_a) == ("/b", "/b")
        assert loop.time() - started >= spin_timeout_s
        # The spinning tab was thrown away, not reused by A's next task.
        assert fetcher.contexts_opened == 3
        assert open_pages(fetcher) == [1]
    finally:
        await fetcher.close()


async def test_a_crawl_records_a_spinning_script_as_script_timeout(
    tenant_site: Site, tmp_path: Path
) -> None:
    script = """() => {
        if (location.pathname === "/spin") { while (true) {} }
        return document.title;
    }"""
    workflow = make_workflow(
        [tenant_site.url("/spin"), tenant_site.url("/a"), tenant_site.url("/b")],
        engine="browser",
        max_depth=0,
        phases=[
            {
                "name": "page",
                "nodes": [{"type": "script", "code": script, "as": "title", "timeout_s": 1}],
            }
        ],
    )
    async with (
        asyncio.timeout(60),
        open_fetchers(workflow, Settings()) as (fetchers, robots),
    ):
        result = await run_embedded(
            workflow, out_dir=tmp_path, fetchers=fetchers, robots=robots, concurrency=1
        )
    export = read_export(result)
    assert sorted(r["data"]["title"] for r in export.records) == ["/a", "/b"]
    assert export.summary["pages"] == pages(3, succeeded=2, failed=1)
    assert export.summary["failures_by_class"] == {"script_timeout": 1}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254 is a cloud metadata address",
        ),
        ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is a cloud metadata address"),
    ],
)
async def test_both_engines_refuse_metadata_with_private_networks_allowed(
    fetcher: BrowserFetcher, tenant_site: Site, url: str, message: str
) -> None:
    allow_everything = NetGuard(allow_private=True, allow="0.0.0.0/0,::/0")
    http = HttpFetcher(guard=allow_everything)
    await http.start()
    try:
        # The loopback site is reachable with this guard ...
        async with http.open(FetchRequest(tenant_site.url("/b"))) as page:
            assert page.status == 200
        for engine in (http, fetcher):  # ... the metadata service is not, in either engine
            with pytest.raises(BlockedAddressError) as info:
                async with engine.open(FetchRequest(url, timeout_s=10)):
                    pass
            assert str(info.value) == (
                f"refused {url}: {message}; never allowed, whatever the private-network settings"
            )
    finally:
        await http.close()
