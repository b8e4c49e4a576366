"""A small local site for the link-claims, scope and HTTP-cache tests: pages from a dict.

``PagesSite`` serves ``pages`` (path -> HTML, settable at any time, so two sites can link to
each other's ports) on 127.0.0.1:<free port> from a thread of its own, so ``trawl run`` and
``trawl preview`` (which run their own event loops) can crawl it. It counts every request
by path, and can fail the first requests of a path (``fail_first``) to exercise retries.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from aiohttp import web


class PagesSite:
    """``pages`` on 127.0.0.1:<free port>; ``requests`` counts what was asked, by path."""

    def __init__(self, pages: dict[str, str] | None = None) -> None:
        self.pages: dict[str, str] = dict(pages or {})
        # Plain-text answers (robots.txt), by path.
        self.texts: dict[str, str] = {}
        # path -> how many of its first requests answer 503 (then it serves normally).
        self.fail_first: dict[str, int] = {}
        self.requests: Counter[str] = Counter()
        self.port = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def total_requests(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def count(self, path: str) -> int:
        with self._lock:
            return self.requests[path]

    def __enter__(self) -> PagesSite:
        self._thread = threading.Thread(target=self._run, name="pages-site", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the pages site did not start within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path_qs
        with self._lock:
            self.requests[path] += 1
            seen = self.requests[path]
        if seen <= self.fail_first.get(path, 0):
            return web.Response(status=503, text="try again")
        if path in self.texts:
            return web.Response(text=self.texts[path], content_type="text/plain")
        html = self.pages.get(path)
        if html is None:
            return web.Response(status=404, text="not here")
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()


def page(title: str, *links: tuple[str, str]) -> str:
    """An HTML page with an ``<h1>`` and links, each (CSS class of its list, href)."""
    groups: dict[str, list[str]] = {}
    for group, href in links:
        groups.setdefault(group, []).append(f'<li><a href="{href}">{href}</a></li>')
    lists = "".join(f'<ul class="{g}">{"".join(items)}</ul>' for g, items in groups.items())
    head = f"<head><title>{title}</title></head>"
    return f"<!doctype html><html>{head}<body><h1>{title}</h1>{lists}</body></html>"
