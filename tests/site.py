"""A local website with every kind of page a crawler meets, for the fetcher tests.

Static product pages, a page whose content exists only after JavaScript runs, redirect
chains and loops, error statuses, slow and huge responses, pages in legacy charsets,
malformed HTML, non-HTML types and a server that hangs up mid-response. For the crawl tests:
a generated link graph of any size (``/graph``), pages that fail a few times before they
work (``/flaky``) and a hub page linking wherever a test says (``/hub``).

Every request is logged (path, Host, User-Agent, Referer, and how many requests to its host
were in flight when it arrived) so tests can check what a client really asked for and how
politely.

``SiteServer`` runs the app on 127.0.0.1, on a free port, in a thread with its own event
loop (a ``ThreadedApp``), so one server serves every test whatever event loop the test runs
in.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.threaded_app import ThreadedApp

# A 1x1 transparent PNG.
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)
PDF_STUB = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

# Text with the characters that tell legacy charsets apart: é/è/ï exist in latin-1 and
# windows-1252 alike, the dash and curly quotes only in windows-1252 (bytes 0x96, 0x93, 0x94).
CAFE_LATIN1 = "Le café crème de Noël, naïve façon"
CAFE_1252 = CAFE_LATIN1 + " \u2013 \u201cquoted\u201d"


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    at: float  # time.monotonic() when the request arrived
    method: str
    path: str  # with the query string
    host: str | None
    user_agent: str | None
    referer: str | None
    # Requests to this Host being handled when this one arrived, itself included. Handling
    # ends when the handler returns, before the client has read the body, so this never
    # overstates what the client had in flight.
    in_flight: int = 1


class RequestLog:
    """Every request the site received, readable from any thread or event loop."""

    def __init__(self) -> None:
        self._entries: list[LoggedRequest] = []
        self._in_flight: dict[str | None, int] = {}
        self._changed = threading.Condition()

    def add(self, entry: LoggedRequest) -> None:
        with self._changed:
            self._entries.append(entry)
            self._changed.notify_all()

    def begin(self, entry: LoggedRequest) -> LoggedRequest:
        """Log a request whose handling starts now; pair with ``end(entry.host)``."""
        with self._changed:
            count = self._in_flight.get(entry.host, 0) + 1
            self._in_flight[entry.host] = count
            logged = dataclasses.replace(entry, in_flight=count)
            self._entries.append(logged)
            self._changed.notify_all()
            return logged

    def end(self, host: str | None) -> None:
        with self._changed:
            self._in_flight[host] -= 1

    def entries(self) -> list[LoggedRequest]:
        with self._changed:
            return list(self._entries)

    def paths(self) -> list[str]:
        return [e.path for e in self.entries()]

    def clear(self) -> None:
        with self._changed:
            self._entries.clear()

    def wait_for_sync(
        self, predicate: Callable[[list[LoggedRequest]], bool], timeout_s: float
    ) -> list[LoggedRequest]:
        """Block until ``predicate(entries)`` holds; AssertionError after ``timeout_s``."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self._entries), timeout_s):
                raise AssertionError(
                    f"request log condition not met in {timeout_s} s; log: "
                    f"{[e.path for e in self._entries]}"
                )
            return list(self._entries)

    async def wait_for(
        self, predicate: Callable[[list[LoggedRequest]], bool], timeout_s: float = 5.0
    ) -> list[LoggedRequest]:
        """``wait_for_sync`` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_for_sync, predicate, timeout_s)


LOG_KEY = web.AppKey("request_log", RequestLog)


# --- pages ----------------------------------------------------------------------------------


def product_html(n: int, *, base_href: str | None = None) -> str:
    """A product page: what an `extract` + `extract_links` workflow reads."""
    base = f'<base href="{base_href}">' if base_href else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{base}
<title>Aqua Filter {n} | Aqua Shop</title>
<link rel="stylesheet" href="/static/site.css">
</head><body>
<nav class="breadcrumbs"><a href="/">Home</a> / <a href="/category/filters">Filters</a></nav>
<main>
  <h1>Aqua Filter {n}</h1>
  <p class="price">€{10 + n}.50</p>
  <span data-sku="AF-{n:04d}" class="sku">AF-{n:04d}</span>
  <p class="stock">In stock</p>
  <table class="specs">
    <tr><th>Volume</th><td>{60 + n} l</td></tr>
    <tr><th>Power</th><td>{5 + n} W</td></tr>
    <tr><th>Flow</th><td>  {300 + n}
        l/h </td></tr>
  </table>
  <div class="gallery">
    <img src="/img/p{n}-1.png" alt="front">
    <img src="img/p{n}-2.png" alt="side">
  </div>
  <ul class="related">
    <li><a class="product" href="/product/{n + 1}">Aqua Filter {n + 1}</a></li>
    <li><a class="product" href="../product/{n + 2}?utm_source=related#top">Filter {n + 2}</a></li>
    <li><a class="product" href="product/{n + 3}">relative</a></li>
    <li><a href="#reviews">Reviews</a></li>
    <li><a href="mailto:shop@example.com">Mail us</a></li>
    <li><a href="javascript:void(0)">Compare</a></li>
    <li><a href="  /category/pumps  ">Pumps</a></li>
  </ul>
</main>
<footer><a href="/about">About</a></footer>
</body></html>
"""


def js_product_html(n: int) -> str:
    """A page whose product data and links exist only after its inline script runs."""
    product = {
        "name": f"Script Pump {n}",
        "price": 20 + n + 0.25,
        "reviews": [{"stars": 5, "text": "Quiet"}, {"stars": 3, "text": "Ok"}],
    }
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Loading…</title></head><body>
<div id="app"><p class="loading">Loading…</p></div>
<script>
window.__PRODUCT__ = {json.dumps(product)};
(function () {{
  var p = window.__PRODUCT__;
  var app = document.getElementById("app");
  app.innerHTML = "";
  var h1 = document.createElement("h1"); h1.textContent = p.name; app.appendChild(h1);
  var price = document.createElement("p"); price.className = "price";
  price.textContent = "€" + p.price.toFixed(2); app.appendChild(price);
  var ul = document.createElement("ul"); ul.className = "js-links";
  ["/product/{n + 1}", "/product/{n + 2}"].forEach(function (href) {{
    var li = document.createElement("li"); var a = document.createElement("a");
    a.href = href; a.textContent = href; li.appendChild(a); ul.appendChild(li);
  }});
  app.appendChild(ul);
  document.title = p.name;
}})();
</script>
</body></html>
"""


def index_html() -> str:
    items = "\n".join(f'<li><a href="/product/{n}">Aqua Filter {n}</a></li>' for n in range(1, 6))
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Aqua Shop</title></head>
<body><h1>Aqua Shop</h1><ul class="products">{items}</ul>
<a href="/js/product/1">Script product</a></body></html>
"""


def charset_body(text: str, meta: str = "") -> str:
    paragraph = f"<p>{html.escape(text)}</p>"
    return (
        f"<!DOCTYPE html><html><head>{meta}<title>{html.escape(text[:8])}</title></head>"
        f"<body><h1>{html.escape(text)}</h1>{paragraph * 20}"
        '<ul><li><a href="/product/1">one</a></li><li><a href="caf%C3%A9/2">two</a></li></ul>'
        "</body></html>"
    )


MALFORMED_HTML = (
    b"<html><head><title>Broken page</title><body>"
    b"</div></div><div class=box><p>one<p>two</div></span>"
    b"<h1>Malformed <b>heading</h1>\x00\x01\x02 junk \xff\xfe"
    b'<a href="/product/1">first<a href=/product/2>second</a>'
    b"<table><tr><td>cell<td>cell2</table></table>"
    b"<p class=price>\xe2\x82\xac 3.50"
    b'<img src="/img/broken.png" <a href="/product/3">third</a>'
    b"<!-- unterminated comment"
)


class _NoContentType(web.Response):
    """A response without a Content-Type header (aiohttp adds one by default)."""

    async def _write_headers(self) -> None:
        self._headers.popall("Content-Type", None)
        await super()._write_headers()


def _html(body: str | bytes, status: int = 200, charset: str | None = "utf-8") -> web.Response:
    ctype = "text/html" + (f"; charset={charset}" if charset else "")
    data = body.encode(charset or "utf-8") if isinstance(body, str) else body
    return web.Response(body=data, status=status, headers={"Content-Type": ctype})


# --- handlers --------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    return _html(index_html())


async def product(request: web.Request) -> web.Response:
    return _html(product_html(int(request.match_info["n"])))


async def catalog_with_base(request: web.Request) -> web.Response:
    # <base href> makes relative links resolve under /shop/, not under /catalog/.
    return _html(product_html(int(request.match_info["n"]), base_href="/shop/"))


async def js_product(request: web.Request) -> web.Response:
    return _html(js_product_html(int(request.match_info["n"])))


# A page whose script breaks the serialization the browser engine asks for in the page's
# own world: reading any element's outerHTML throws.
TAMPERED_HTML = """<!doctype html><html><head><title>Tampered</title></head><body>
<h1>Real heading</h1><a href="/product/1">one</a>
<script>Object.defineProperty(Element.prototype, "outerHTML", {
  get() { throw new Error("not for crawlers"); } });</script></body></html>"""


async def tampered(request: web.Request) -> web.Response:
    return _html(TAMPERED_HTML)


async def image(request: web.Request) -> web.Response:
    return web.Response(body=PNG_1PX, content_type="image/png")


async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(text="body { font-family: sans-serif }", content_type="text/css")


async def redirect(request: web.Request) -> web.Response:
    """/redirect/chain: 301 then 302 to /product/1. /redirect/loop/a <-> b. /redirect/n/K:
    K more redirects before /product/1."""
    kind = request.match_info["kind"]
    rest = request.match_info.get("rest", "")
    if kind == "chain":
        raise web.HTTPMovedPermanently("/redirect/step/2")
    if kind == "step":
        raise web.HTTPFound("/product/1")
    if kind == "loop":
        raise web.HTTPFound("/redirect/loop/" + ("b" if rest == "a" else "a"))
    if kind == "n":
        left = int(rest)
        raise web.HTTPFound("/product/1" if left <= 1 else f"/redirect/n/{left - 1}")
    raise web.HTTPNotFound()


async def status(request: web.Request) -> web.Response:
    """/status/CODE[?retry_after=7 | ?retry_after=date:120 (an HTTP date 120 s ahead)]."""
    code = int(request.match_info["code"])
    headers = {"Content-Type": "text/html; charset=utf-8"}
    retry_after = request.query.get("retry_after")
    if retry_after is not None:
        if retry_after.startswith("date:"):
            retry_after = formatdate(time.time() + float(retry_after[5:]), usegmt=True)
        headers["Retry-After"] = retry_after
    body = f"<html><body><h1>Status {code}</h1></body></html>"
    return web.Response(status=code, body=body.encode(), headers=headers)


async def slow(request: web.Request) -> web.Response:
    """Waits ``delay_s`` before answering at all."""
    await asyncio.sleep(float(request.query.get("delay_s", "10")))
    return _html("<html><body><h1>Finally</h1></body></html>")


async def slow_body(request: web.Request) -> web.StreamResponse:
    """Sends headers and half a page at once, then stalls ``delay_s`` before the rest."""
    resp = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
    await resp.prepare(request)
    await resp.write(b"<html><body><h1>Half")
    await asyncio.sleep(float(request.query.get("delay_s", "10")))
    await resp.write(b"</h1></body></html>")
    await resp.write_eof()
    return resp


async def huge(request: web.Request) -> web.StreamResponse:
    """``bytes`` of HTML, streamed in 64 KB chunks; with ``length=1`` Content-Length says so
    up front, otherwise the size is only known by reading (chunked)."""
    total = int(request.query.get("bytes", str(20 * 1024 * 1024)))
    resp = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
    if request.query.get("length") == "1":
        resp.content_length = total
    await resp.prepare(request)
    head = b"<html><body><h1>Huge</h1><p>"
    await resp.write(head)
    sent = len(head)
    chunk = b"x" * 65536
    while sent < total:
        piece = chunk[: total - sent]
        await resp.write(piece)
        sent += len(piece)
    await resp.write_eof()
    return resp


async def charset_page(request: web.Request) -> web.Response:
    """Legacy-charset pages, each declaring its charset in one place only (or nowhere)."""
    kind = request.match_info["kind"]
    if kind == "header-1252":  # declared only in the header
        return _html(charset_body(CAFE_1252), charset="windows-1252")
    if kind == "header-latin1":
        return _html(charset_body(CAFE_LATIN1), charset="iso-8859-1")
    if kind == "meta":  # declared only in <meta charset>
        body = charset_body(CAFE_1252, '<meta charset="windows-1252">').encode("cp1252")
        return _html(body, charset=None)
    if kind == "http-equiv":
        meta = '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
        return _html(charset_body(CAFE_LATIN1, meta).encode("latin-1"), charset=None)
    if kind == "none":  # no declaration at all: detection
        return _html(charset_body(CAFE_1252).encode("cp1252"), charset=None)
    if kind == "utf8-none":  # undeclared UTF-8
        return _html(charset_body(CAFE_1252).encode("utf-8"), charset=None)
    if kind == "conflict":  # the header wins over <meta>
        body = charset_body(CAFE_1252, '<meta charset="iso-8859-1">').encode("utf-8")
        return _html(body, charset="utf-8")
    raise web.HTTPNotFound()


async def malformed(request: web.Request) -> web.Response:
    return _html(MALFORMED_HTML, charset="utf-8")


async def binary(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    if kind == "image.png":
        return web.Response(body=PNG_1PX, content_type="image/png")
    if kind == "doc.pdf":
        return web.Response(body=PDF_STUB, content_type="application/pdf")
    if kind == "data.json":
        return web.json_response({"not": "html"})
    if kind == "untyped.html":  # HTML without a Content-Type: accepted by sniffing
        return _NoContentType(body=product_html(1).encode())
    if kind == "untyped.png":  # PNG without a Content-Type: refused by sniffing
        return _NoContentType(body=PNG_1PX)
    raise web.HTTPNotFound()


async def gzipped(request: web.Request) -> web.Response:
    resp = _html(product_html(7) + "<!-- padding -->" * 200)
    resp.enable_compression(web.ContentCoding.gzip)
    return resp


async def drop(request: web.Request) -> web.StreamResponse:
    """Promises 100 000 bytes, sends 1 000, hangs up."""
    resp = web.StreamResponse(headers={"Content-Type": "text/html; charset=utf-8"})
    resp.content_length = 100_000
    await resp.prepare(request)
    await resp.write(b"<html><body>" + b"x" * 988)
    assert request.transport is not None
    request.transport.close()
    return resp


async def drop_early(request: web.Request) -> web.Response:
    """Hangs up before any byte of the response."""
    assert request.transport is not None
    request.transport.close()
    return web.Response(text="never sent")


async def graph(request: web.Request) -> web.Response:
    """/graph/TOKEN/SIZE/N: node N of a SIZE-node tree (fan-out 10), a page with one ``h1``.

    Node N links to its children 10N+1..10N+10 that exist, to its parent and to the root
    (links a crawler must deduplicate), so a crawl from node 0 finds all SIZE nodes, node N
    at depth len(path from the root). ``?delay_ms=D&every=K`` makes every node whose
    number is a multiple of K (default 1: all) take D ms to answer; links keep the query.
    TOKEN only keeps one test's pages (and log entries) apart from another's.
    """
    token = request.match_info["token"]
    size = int(request.match_info["size"])
    n = int(request.match_info["n"])
    if n >= size:
        raise web.HTTPNotFound()
    delay_ms = float(request.query.get("delay_ms", "0"))
    every = int(request.query.get("every", "1"))
    if delay_ms and n % every == 0:
        await asyncio.sleep(delay_ms / 1000)
    qs = f"?{request.query_string}" if request.query_string else ""
    targets = [m for m in range(10 * n + 1, 10 * n + 11) if m < size]
    if n > 0:
        targets += [(n - 1) // 10, 0]
    links = "".join(f'<li><a href="/graph/{token}/{size}/{m}{qs}">{m}</a></li>' for m in targets)
    return _html(
        f"<!DOCTYPE html><html><head><title>Node {n}</title></head>"
        f"<body><h1>Node {n}</h1><ul>{links}</ul></body></html>"
    )


FLAKY_KEY = web.AppKey("flaky_counts", dict[str, int])


async def flaky(request: web.Request) -> web.Response:
    """/flaky/KEY: answers ``status`` (default 503) to the first ``fails`` (default 2)
    requests for KEY, then a page whose ``h1`` says which request succeeded.
    ``?retry_after=S`` adds a Retry-After header to the failures."""
    key = request.match_info["key"]
    counts = request.app[FLAKY_KEY]
    counts[key] = seen = counts.get(key, 0) + 1
    if seen <= int(request.query.get("fails", "2")):
        headers = {"Content-Type": "text/html; charset=utf-8"}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        code = int(request.query.get("status", "503"))
        body = f"<html><body><h1>Status {code}</h1></body></html>".encode()
        return web.Response(status=code, body=body, headers=headers)
    return _html(f"<html><body><h1>Flaky {html.escape(key)}</h1><p>{seen}</p></body></html>")


async def hub(request: web.Request) -> web.Response:
    """/hub?to=PATH&to=PATH...: a page linking to each ``to``, in order."""
    items = "".join(
        f'<li><a href="{html.escape(target)}">{html.escape(target)}</a></li>'
        for target in request.query.getall("to", [])
    )
    return _html(f"<html><body><h1>Hub</h1><ul>{items}</ul></body></html>")


@web.middleware
async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    log = request.app[LOG_KEY]
    entry = log.begin(
        LoggedRequest(
            at=time.monotonic(),
            method=request.method,
            path=request.path_qs,
            host=request.headers.get("Host"),
            user_agent=request.headers.get("User-Agent"),
            referer=request.headers.get("Referer"),
        )
    )
    try:
        return await handler(request)
    finally:
        log.end(entry.host)


def build_app(log: RequestLog | None = None) -> web.Application:
    """The site's aiohttp application; ``log`` receives every request."""
    app = web.Application(middlewares=[log_requests])
    app[LOG_KEY] = log if log is not None else RequestLog()
    app[FLAKY_KEY] = {}
    r = app.router
    r.add_get("/", index)
    r.add_get("/product/{n:\\d+}", product)
    r.add_get("/catalog/{n:\\d+}", catalog_with_base)
    r.add_get("/js/product/{n:\\d+}", js_product)
    r.add_get("/js/tampered", tampered)
    r.add_get("/img/{name}", image)
    r.add_get("/shop/img/{name}", image)
    r.add_get("/static/site.css", stylesheet)
    r.add_get("/redirect/{kind}/{rest}", redirect)
    r.add_get("/redirect/{kind}", redirect, name="redirect-short")
    r.add_get("/status/{code:\\d{3}}", status)
    r.add_get("/slow", slow)
    r.add_get("/slow-body", slow_body)
    r.add_get("/huge", huge)
    r.add_get("/charset/{kind}", charset_page)
    r.add_get("/malformed", malformed)
    r.add_get("/binary/{kind}", binary)
    r.add_get("/gzip", gzipped)
    r.add_get("/drop", drop)
    r.add_get("/drop-early", drop_early)
    r.add_get("/graph/{token}/{size:\\d+}/{n:\\d+}", graph)
    r.add_get("/flaky/{key}", flaky)
    r.add_get("/hub", hub)
    return app


# --- serving ----------------------------------------------------------------------------------


class SiteServer(ThreadedApp):
    """The site on 127.0.0.1:<free port>, served from a background thread's event loop."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        # handler_cancellation: a client that gives up (timeout tests) cancels the slow
        # handler instead of leaving it asleep until shutdown.
        super().__init__(
            self._build, host=host, name="test-site", label="test site", handler_cancellation=True
        )
        self.log = RequestLog()

    def _build(self) -> web.Application:
        return build_app(self.log)


if __name__ == "__main__":  # browse it by hand: python -m tests.site
    with SiteServer() as server:
        print(f"serving on {server.base_url}  (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
