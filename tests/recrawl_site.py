"""A small site that answers conditional requests, for the recrawl tests.

Pages (``/`` links to every other one):

- ``/p/<n>`` for n in 1..PAGES: an ETag (a hash of the body) and a Last-Modified;
- ``/lm``: a Last-Modified only (a 304 from If-Modified-Since);
- ``/plain``: no validators (a recrawl compares its content hash);
- ``/fresh``: not linked from anywhere until a test links it from a changed page.

The site counts, per path, every request, the conditional ones (If-None-Match or
If-Modified-Since sent) and the 304s it answered, so a test asserts at the server what a
crawl asked. ``change(path, title)`` rewrites a page (new ETag, later Last-Modified).
It runs on 127.0.0.1:<free port> in a thread of its own (a ``ThreadedApp``), so a test can
crawl it with ``trawl run`` in the test's own thread.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

from aiohttp import web

from tests.threaded_app import ThreadedApp

PAGES = 5
_START = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)


@dataclass
class Page:
    title: str
    links: list[str] = field(default_factory=list)
    etag: bool = True
    last_modified: bool = True
    modified: datetime = _START

    def body(self) -> bytes:
        anchors = "".join(f'<a href="{href}">{href}</a>' for href in self.links)
        html = f"<html><body><h1>{self.title}</h1><nav>{anchors}</nav></body></html>"
        return html.encode("utf-8")

    def tag(self) -> str:
        return '"' + hashlib.sha256(self.body()).hexdigest()[:16] + '"'


@dataclass
class Counts:
    """Requests per path: all of them, the conditional ones, the 304s answered."""

    requests: Counter[str] = field(default_factory=Counter)
    conditional: Counter[str] = field(default_factory=Counter)
    not_modified: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        self.requests.clear()
        self.conditional.clear()
        self.not_modified.clear()


class RecrawlSite(ThreadedApp):
    """The site, served from a background thread's event loop."""

    def __init__(self) -> None:
        super().__init__(self._build, name="recrawl-site", label="the recrawl site")
        paths = [f"/p/{n}" for n in range(1, PAGES + 1)] + ["/lm", "/plain"]
        self.pages: dict[str, Page] = {"/": Page("Home", links=paths)}
        for n in range(1, PAGES + 1):
            self.pages[f"/p/{n}"] = Page(f"Page {n}", links=["/"])
        self.pages["/lm"] = Page("Last-Modified only", links=["/"], etag=False)
        self.pages["/plain"] = Page("No validators", etag=False, last_modified=False)
        self.pages["/fresh"] = Page("Fresh page")
        self.counts = Counts()
        # Called (in the site's thread) after each request is counted, with the total.
        self.on_request: Callable[[int], None] | None = None
        self._lock = threading.Lock()

    def paths(self) -> list[str]:
        """Every page a crawl from ``/`` reaches now."""
        reached, todo = [], ["/"]
        while todo:
            path = todo.pop()
            if path not in reached:
                reached.append(path)
                todo.extend(self.pages[path].links)
        return sorted(reached)

    def change(self, path: str, title: str, *, links: list[str] | None = None) -> None:
        """Rewrite a page: its title (and links); a new ETag and a later Last-Modified."""
        with self._lock:
            page = self.pages[path]
            page.title = title
            if links is not None:
                page.links = links
            page.modified = page.modified + timedelta(hours=1)

    # -- serving

    def _build(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        with self._lock:
            page = self.pages.get(path)
            if page is None:
                raise web.HTTPNotFound()
            body, tag, modified = page.body(), page.tag(), page.modified
            use_etag, use_lm = page.etag, page.last_modified
        headers = {"Content-Type": "text/html; charset=utf-8"}
        if use_etag:
            headers["ETag"] = tag
        if use_lm:
            headers["Last-Modified"] = format_datetime(modified, usegmt=True)
        match = request.headers.get("If-None-Match")
        since = request.headers.get("If-Modified-Since")
        self.counts.requests[path] += 1
        if match is not None or since is not None:
            self.counts.conditional[path] += 1
        if self.on_request is not None:
            self.on_request(self.counts.requests.total())
        if _not_modified(match, since, tag if use_etag else None, modified if use_lm else None):
            self.counts.not_modified[path] += 1
            headers.pop("Content-Type")
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers)


def _not_modified(
    match: str | None, since: str | None, tag: str | None, modified: datetime | None
) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides when sent; else If-Modified-Since."""
    if match is not None:
        return tag is not None and tag in [t.strip() for t in match.split(",")]
    if since is not None and modified is not None:
        try:
            return modified <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False
