"""A small local site for the link-claims, scope and HTTP-cache tests: pages from a dict.

``PagesSite`` serves ``pages`` (path -> HTML, settable at any time, so two sites can link to
each other's ports) on 127.0.0.1:<free port> from a thread of its own (a ``ThreadedApp``),
so ``trawl run`` and ``trawl preview`` (which run their own event loops) can crawl it. It
counts every request by path, and can fail the first requests of a path (``fail_first``)
to exercise retries.
"""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from tests.threaded_app import ThreadedApp, by_path_qs


class PagesSite(ThreadedApp):
    """``pages`` on 127.0.0.1:<free port>; ``requests`` counts what was asked, by path."""

    def __init__(self, pages: dict[str, str] | None = None) -> None:
        super().__init__(
            self._build, name="pages-site", label="the pages site", count_by=by_path_qs
        )
        self.pages: dict[str, str] = dict(pages or {})
        # Plain-text answers (robots.txt), by path.
        self.texts: dict[str, str] = {}
        # path -> how many of its first requests answer 503 (then it serves normally).
        self.fail_first: dict[str, int] = {}

    @property
    def requests(self) -> Counter[str]:
        return self.request_counts

    def _build(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path_qs
        # Counted already, by ThreadedApp's middleware, this request last.
        if self.count(path) <= self.fail_first.get(path, 0):
            return web.Response(status=503, text="try again")
        if path in self.texts:
            return web.Response(text=self.texts[path], content_type="text/plain")
        html = self.pages.get(path)
        if html is None:
            return web.Response(status=404, text="not here")
        return web.Response(text=html, content_type="text/html", charset="utf-8")


def page(title: str, *links: tuple[str, str]) -> str:
    """An HTML page with an ``<h1>`` and links, each (CSS class of its list, href)."""
    groups: dict[str, list[str]] = {}
    for group, href in links:
        groups.setdefault(group, []).append(f'<li><a href="{href}">{href}</a></li>')
    lists = "".join(f'<ul class="{g}">{"".join(items)}</ul>' for g, items in groups.items())
    head = f"<head><title>{title}</title></head>"
    return f"<!doctype html><html>{head}<body><h1>{title}</h1>{lists}</body></html>"
