"""A local site whose pages do not link to each other: only its sitemaps lead to them.

``/p/<n>`` (n = 1..PAGES) is a page with an ``<h1>`` and no link. ``/robots.txt`` names
the sitemap index in a ``Sitemap:`` line and disallows ``/private/``. The index lists two
sitemaps, one plain XML and one gzipped (served as ``application/gzip``, no
Content-Encoding), which share the pages between them, each with a ``<lastmod>``; the
plain one also lists a page on another site (out of scope), a page robots.txt disallows
and, twice, a page the other also lists.

For the failures: a sitemap cut off mid-element, one that is an HTML page, a missing one,
and a gzip bomb (a few hundred KB that inflate past the 50 MB a sitemap may have). For the
limits: a chain of indexes nested deeper than Trawl follows, and a plain-text sitemap.

``SitemapSite`` serves it on 127.0.0.1 in a thread of its own (a ``ThreadedApp``: one
server for any event loop), and counts the requests of each path.
"""

from __future__ import annotations

import gzip
from collections import Counter
from functools import cache

from aiohttp import web

from tests.threaded_app import ThreadedApp, by_path

PAGES = 12
SPLIT = 7  # /p/1..SPLIT in the plain sitemap, the rest in the gzipped one
OUT_OF_SCOPE = "http://elsewhere.invalid/p/1"
NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
DEEP_LEVELS = 6  # /deep/0.xml lists /deep/1.xml... each an index, the last a urlset


def lastmod(n: int) -> str:
    """The ``<lastmod>`` the sitemaps give page ``n``."""
    return f"2024-03-{n:02d}T10:00:00+00:00"


def urlset(locs: list[tuple[str, str | None]]) -> bytes:
    entries = "".join(
        f"<url><loc>{loc}</loc>{f'<lastmod>{mod}</lastmod>' if mod else ''}"
        "<changefreq>daily</changefreq></url>"
        for loc, mod in locs
    )
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    return f'{head}<urlset xmlns="{NS}">{entries}</urlset>\n'.encode()


def index(locs: list[str]) -> bytes:
    entries = "".join(f"<sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return f'<?xml version="1.0"?><sitemapindex xmlns="{NS}">{entries}</sitemapindex>'.encode()


def page_urls(base: str, numbers: range) -> list[tuple[str, str | None]]:
    return [(f"{base}/p/{n}", lastmod(n)) for n in numbers]


@cache
def bomb() -> bytes:
    """A gzipped sitemap of 60 MB (60 KB compressed): well-formed, every entry padded with
    blank space, more than a sitemap may hold."""
    entry = b"<url><loc>http://x/p/1</loc>" + b" " * 1000 + b"</url>"
    body = f'<urlset xmlns="{NS}">'.encode() + entry * 60_000 + b"</urlset>"
    return gzip.compress(body, 6)


def build_app() -> web.Application:
    app = web.Application()

    def base(request: web.Request) -> str:
        return f"http://{request.host}"

    async def robots(request: web.Request) -> web.Response:
        text = f"User-agent: *\nDisallow: /private/\nSitemap: {base(request)}/sitemap_index.xml\n"
        return web.Response(text=text)

    async def sitemap_index(request: web.Request) -> web.Response:
        b = base(request)
        body = index([f"{b}/sitemaps/a.xml", f"{b}/sitemaps/b.xml.gz"])
        return web.Response(body=body, content_type="application/xml")

    async def sitemap_a(request: web.Request) -> web.Response:
        b = base(request)
        locs = [
            *page_urls(b, range(1, SPLIT + 1)),
            (OUT_OF_SCOPE, None),
            (f"{b}/private/1", None),
            (f"{b}/p/{PAGES}", lastmod(PAGES)),  # also in b.xml.gz
            (f"{b}/p/1", lastmod(1)),  # twice here
        ]
        return web.Response(body=urlset(locs), content_type="application/xml")

    async def sitemap_b(request: web.Request) -> web.Response:
        b = base(request)
        body = gzip.compress(urlset(page_urls(b, range(SPLIT + 1, PAGES + 1))))
        return web.Response(body=body, content_type="application/gzip")

    async def plain(request: web.Request) -> web.Response:
        b = base(request)
        text = "\n".join(f"{b}/p/{n}" for n in range(1, 4)) + "\n\n"
        return web.Response(text=text)

    async def deep(request: web.Request) -> web.Response:
        level = int(request.match_info["level"])
        b = base(request)
        if level + 1 < DEEP_LEVELS:
            body = index([f"{b}/deep/{level + 1}.xml"])
        else:
            body = urlset(page_urls(b, range(1, 3)))
        return web.Response(body=body, content_type="application/xml")

    async def truncated(request: web.Request) -> web.Response:
        body = urlset(page_urls(base(request), range(1, 3)))[:-40]
        return web.Response(body=body, content_type="application/xml")

    async def html(request: web.Request) -> web.Response:
        return web.Response(
            text="<!DOCTYPE html><html><body>Not here</body></html>", content_type="text/html"
        )

    async def gz_bomb(request: web.Request) -> web.Response:
        return web.Response(body=bomb(), content_type="application/x-gzip")

    async def page(request: web.Request) -> web.Response:
        n = request.match_info["n"]
        text = f"<!DOCTYPE html><html><title>{n}</title><body><h1>Page {n}</h1></body></html>"
        return web.Response(text=text, content_type="text/html")

    async def root(request: web.Request) -> web.Response:
        text = "<!DOCTYPE html><html><body><h1>Home</h1><p>No links here.</p></body></html>"
        return web.Response(text=text, content_type="text/html")

    app.router.add_get("/", root)
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/sitemap_index.xml", sitemap_index)
    app.router.add_get("/sitemaps/a.xml", sitemap_a)
    app.router.add_get("/sitemaps/b.xml.gz", sitemap_b)
    app.router.add_get("/sitemaps/plain.txt", plain)
    app.router.add_get("/sitemaps/truncated.xml", truncated)
    app.router.add_get("/sitemaps/page.xml", html)
    app.router.add_get("/sitemaps/bomb.xml.gz", gz_bomb)
    app.router.add_get("/deep/{level:\\d+}.xml", deep)
    app.router.add_get("/p/{n}", page)
    app.router.add_get("/private/{n}", page)
    return app


class SitemapSite(ThreadedApp):
    """The site on 127.0.0.1:<free port>, served from a thread's event loop; ``requests``
    counts the requests of each path."""

    def __init__(self) -> None:
        super().__init__(build_app, name="sitemap-site", label="the sitemap site", count_by=by_path)

    @property
    def requests(self) -> Counter[str]:
        return self.request_counts
